"""GPT-2 models from presets, built with Hugging Face ``transformers`` and PyTorch SDPA attention."""

from __future__ import annotations

import logging
from typing import Any

import torch
from transformers import GPT2Config, GPT2LMHeadModel

from ado_ray.schema import MODEL_OVERRIDE_KEYS as OVERRIDE_KEYS
from ado_ray.schema import MODEL_PRESETS as PRESETS

log = logging.getLogger(__name__)
#: GPT-2's activation is the tanh approximation of GELU (``gelu_new``). HF's ``gelu_new`` spells
#: it out in five element-wise ops; ``gelu_pytorch_tanh`` is the same function as PyTorch's one
#: fused kernel (``F.gelu(approximate="tanh")``): equal up to float rounding, and a tiny-preset
#: CPU step about 18% faster (66 -> 54 ms, 4 alternating runs). A hub checkpoint whose config
#: says ``gelu_new`` gets it too; any other activation is kept. (A run checkpointed before this
#: choice resumes with it: equal up to rounding, not bit for bit.)
ACTIVATION = "gelu_pytorch_tanh"
_SAME_FUNCTION = "gelu_new"


def model_config(
    preset: str, vocab_size: int, seq_len: int, overrides: dict[str, Any] | None = None
) -> GPT2Config:
    """A ``GPT2Config`` for ``preset`` with ``overrides`` applied.

    The context (``n_positions``) defaults to the training sequence length, rounded up to a
    multiple of 64; the vocabulary is the corpus's.
    """
    if preset not in PRESETS:
        raise ValueError(f"model.preset={preset!r} is unknown: allowed {sorted(PRESETS)}")
    overrides = dict(overrides or {})
    unknown = set(overrides) - set(OVERRIDE_KEYS)
    if unknown:
        raise ValueError(
            f"model.overrides has unknown keys {sorted(unknown)}: allowed {list(OVERRIDE_KEYS)}"
        )
    params = dict(PRESETS[preset])
    params["n_positions"] = max(64, -(-seq_len // 64) * 64)
    dropout = float(overrides.pop("dropout", 0.0))
    params.update(overrides)
    if params["n_positions"] < seq_len:
        raise ValueError(
            f"model.overrides.n_positions={params['n_positions']} is shorter than the "
            f"sequence length {seq_len}: allowed >= {seq_len}"
        )
    if params["n_embd"] % params["n_head"]:
        raise ValueError(
            f"model n_embd={params['n_embd']} is not divisible by n_head={params['n_head']}"
        )
    return GPT2Config(
        vocab_size=vocab_size,
        resid_pdrop=dropout,
        embd_pdrop=dropout,
        attn_pdrop=dropout,
        bos_token_id=vocab_size - 1,
        eos_token_id=vocab_size - 1,
        activation_function=ACTIVATION,
        **params,
    )


def build_model(
    preset: str,
    vocab_size: int,
    seq_len: int,
    overrides: dict[str, Any] | None = None,
    pretrained: str | None = None,
) -> GPT2LMHeadModel:
    """A GPT-2 LM with SDPA attention: fresh from ``preset``, or ``pretrained`` hub weights.

    ``pretrained`` (e.g. ``"gpt2"``) loads the hub checkpoint (the hub or its local cache must be
    reachable); the corpus must then use the GPT-2 tokenizer, so its vocabulary must fit.
    """
    if pretrained:
        config = GPT2Config.from_pretrained(pretrained)
        if config.activation_function == _SAME_FUNCTION:
            config.activation_function = ACTIVATION
        model = GPT2LMHeadModel.from_pretrained(
            pretrained, config=config, attn_implementation="sdpa"
        )
        if model.config.vocab_size < vocab_size:
            raise ValueError(
                f"model.pretrained={pretrained!r} has a vocabulary of {model.config.vocab_size}, "
                f"smaller than the corpus's {vocab_size}: use a corpus tokenised with its tokenizer"
            )
        if model.config.n_positions < seq_len:
            raise ValueError(
                f"model.pretrained={pretrained!r} has a context of {model.config.n_positions}, "
                f"shorter than the sequence length {seq_len}"
            )
        log.info("loaded pretrained weights %s", pretrained)
        return model
    config = model_config(preset, vocab_size, seq_len, overrides)
    return GPT2LMHeadModel._from_config(config, attn_implementation="sdpa")


def count_parameters(model: torch.nn.Module, non_embedding: bool = True) -> int:
    """Parameter count; without the position and token embeddings when ``non_embedding``."""
    total = sum(p.numel() for p in model.parameters())
    if non_embedding:
        total -= model.transformer.wpe.weight.numel()
    return total


def flops_per_token(model: GPT2LMHeadModel, seq_len: int) -> float:
    """Training FLOPs per token (forward + backward), as in the PaLM appendix: 6N + 12 L d T."""
    cfg = model.config
    n = count_parameters(model, non_embedding=True)
    return 6.0 * n + 12.0 * cfg.n_layer * cfg.n_embd * seq_len
