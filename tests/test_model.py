"""The GPT-2 models: presets and hub checkpoints use the fused tanh-GELU, which is GPT-2's own
activation (``gelu_new``) computed by one kernel."""

from __future__ import annotations

import torch
from transformers import GPT2Config, GPT2LMHeadModel

from ado_ray.train.model import ACTIVATION, build_model


def _logits(model: torch.nn.Module, ids: torch.Tensor) -> torch.Tensor:
    model.eval()
    with torch.no_grad():
        return model(input_ids=ids).logits


def test_preset_activation_computes_gpt2_gelu_new():
    torch.manual_seed(0)
    model = build_model("tiny", 64, 64)
    assert model.config.activation_function == ACTIVATION
    reference = GPT2LMHeadModel._from_config(
        GPT2Config(**{**model.config.to_dict(), "activation_function": "gelu_new"}),
        attn_implementation="sdpa",
    )
    reference.load_state_dict(model.state_dict())
    ids = torch.randint(0, 64, (4, 64), generator=torch.Generator().manual_seed(1))
    fused, spelled_out = _logits(model, ids), _logits(reference, ids)
    torch.testing.assert_close(fused, spelled_out, rtol=1e-5, atol=1e-5)


def test_pretrained_checkpoint_loads_with_the_fused_activation(tmp_path):
    # A hub-style checkpoint saved by transformers with GPT-2's own config (gelu_new), loaded
    # through the same from_pretrained call that reads the hub.
    torch.manual_seed(0)
    config = GPT2Config(vocab_size=80, n_positions=64, n_embd=32, n_layer=1, n_head=2)
    assert config.activation_function == "gelu_new"
    original = GPT2LMHeadModel(config)
    original.save_pretrained(tmp_path)
    loaded = build_model("small", 64, 64, pretrained=str(tmp_path))
    assert loaded.config.activation_function == ACTIVATION
    assert loaded.config.n_embd == 32  # the checkpoint's architecture, not the preset's
    ids = torch.randint(0, 80, (2, 64), generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(_logits(loaded, ids), _logits(original, ids), rtol=1e-5, atol=1e-5)


def test_a_checkpoint_with_another_activation_keeps_it(tmp_path):
    config = GPT2Config(
        vocab_size=80, n_positions=64, n_embd=32, n_layer=1, n_head=2, activation_function="gelu"
    )
    GPT2LMHeadModel(config).save_pretrained(tmp_path)
    assert build_model("small", 64, 64, pretrained=str(tmp_path)).config.activation_function == (
        "gelu"
    )
