"""Corpora split into domains, the GPT-2 tokenizer, the token cache and the mixture sampler.

Entry points: :func:`load_corpus` (sources in :data:`SOURCES`), :func:`gpt2_tokenizer`,
:class:`MixtureSampler`. This package imports numpy only; ``datasets``/``tokenizers``/
``transformers`` are imported inside the sources and the tokenizer when needed.
"""

from . import synthetic as _synthetic  # noqa: F401  (registers "synthetic")
from . import text_sources as _text_sources  # noqa: F401  (registers the text sources)
from .cache import default_cache_dir
from .corpus import Corpus, load_corpus, source_names, source_options
from .sampler import MixtureSampler, validate_weights
from .synthetic import BUILTIN_DOMAINS, DEFAULT_DOMAINS, build_process, loss_floor
from .tokenizer import GPT2Tokenizer, gpt2_tokenizer

SOURCES: tuple[str, ...] = source_names()

__all__ = [
    "BUILTIN_DOMAINS",
    "DEFAULT_DOMAINS",
    "SOURCES",
    "Corpus",
    "GPT2Tokenizer",
    "MixtureSampler",
    "build_process",
    "default_cache_dir",
    "gpt2_tokenizer",
    "load_corpus",
    "loss_floor",
    "source_names",
    "source_options",
    "validate_weights",
]
