"""The :class:`Corpus` container, the source registry and :func:`load_corpus`.

A corpus is a list of domains. Each domain holds packed token sequences of one fixed length
for training (``train[k]``, an integer array ``[num_sequences, seq_len]``) and a held-out
validation set (``val[k]``, same layout). Sources build corpora; :func:`load_corpus` picks the
source by name, checks its options, consults the token cache and validates the result.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

# Options every source accepts; they steer the cache and never change the corpus contents.
CACHE_OPTIONS = ("cache_dir", "cache")


@dataclass
class Corpus:
    """Per-domain packed token sequences.

    Attributes:
        domains: domain names, in a fixed order; index k everywhere refers to ``domains[k]``.
        train: per domain, an integer array ``[num_sequences, seq_len]`` (may be a read-only
            memory map when it comes from the token cache).
        val: per domain, the held-out sequences, same layout.
        seq_len: tokens per sequence.
        vocab_size: token ids lie in ``[0, vocab_size)``.
        entropy_rate: per domain, the exact lower bound on the expected next-token loss (nats
            per predicted token, positions 1..seq_len-1 of a sequence, each predicted from its
            prefix) where the generative process is known (synthetic), else None.
        source: the name of the source that built it.
        options: the options it was built with (without the cache controls).
        tokenizer: the tokenizer's name for text sources, None for synthetic corpora.
        cache_hit: True when the sequences were memory-mapped from an existing cache entry.
        cache_path: the cache entry's directory, when caching was used.
        metadata: source-specific extras (JSON-serialisable).
    """

    domains: list[str]
    train: list[np.ndarray]
    val: list[np.ndarray]
    seq_len: int
    vocab_size: int
    entropy_rate: list[float | None] = field(default_factory=list)
    source: str = ""
    options: dict[str, Any] = field(default_factory=dict)
    tokenizer: str | None = None
    cache_hit: bool = False
    cache_path: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.entropy_rate:
            self.entropy_rate = [None] * len(self.domains)

    @property
    def num_domains(self) -> int:
        return len(self.domains)

    def token_counts(self) -> np.ndarray:
        """Training tokens per domain (int64 array of length K)."""
        return np.array([a.shape[0] * a.shape[1] for a in self.train], dtype=np.int64)

    def val_token_counts(self) -> np.ndarray:
        """Validation tokens per domain (int64 array of length K)."""
        return np.array([a.shape[0] * a.shape[1] for a in self.val], dtype=np.int64)

    def sequence_counts(self) -> np.ndarray:
        """Training sequences per domain (int64 array of length K)."""
        return np.array([a.shape[0] for a in self.train], dtype=np.int64)

    def natural_weights(self) -> np.ndarray:
        """Training-token proportions per domain (float64, sums to 1)."""
        counts = self.token_counts().astype(np.float64)
        return counts / counts.sum()

    def domain_index(self, name: str) -> int:
        try:
            return self.domains.index(name)
        except ValueError:
            raise ValueError(f"unknown domain {name!r}; domains are {self.domains}") from None

    def validate(self) -> Corpus:
        """Check the layout; raise ValueError naming the first problem. Returns self."""
        if not self.domains:
            raise ValueError("corpus has no domains")
        if len(set(self.domains)) != len(self.domains):
            raise ValueError(f"domain names must be unique, got {self.domains}")
        if not isinstance(self.seq_len, (int, np.integer)) or self.seq_len < 2:
            raise ValueError(f"seq_len must be an integer >= 2, got {self.seq_len!r}")
        k = len(self.domains)
        for what, arrays in (("train", self.train), ("val", self.val)):
            if len(arrays) != k:
                raise ValueError(f"{what} has {len(arrays)} arrays for {k} domains")
        if len(self.entropy_rate) != k:
            raise ValueError(f"entropy_rate has {len(self.entropy_rate)} entries for {k} domains")
        for name, tr, va in zip(self.domains, self.train, self.val, strict=True):
            for what, arr in (("train", tr), ("val", va)):
                if not np.issubdtype(arr.dtype, np.integer):
                    raise ValueError(f"domain {name!r}: {what} sequences must be integers")
                if arr.ndim != 2 or arr.shape[1] != self.seq_len:
                    raise ValueError(
                        f"domain {name!r}: {what} sequences have shape {arr.shape}, "
                        f"expected [num_sequences, {self.seq_len}]"
                    )
                if arr.shape[0] == 0:
                    raise ValueError(
                        f"domain {name!r} has no {what} sequence: it is shorter than one "
                        f"sequence of {self.seq_len} tokens"
                    )
        return self

    def summary(self) -> dict[str, Any]:
        """A small JSON-friendly description (for logs and results)."""
        return {
            "source": self.source,
            "domains": list(self.domains),
            "seq_len": int(self.seq_len),
            "vocab_size": int(self.vocab_size),
            "train_tokens": self.token_counts().tolist(),
            "val_tokens": self.val_token_counts().tolist(),
            "entropy_rate": list(self.entropy_rate),
            "tokenizer": self.tokenizer,
            "cache_hit": self.cache_hit,
        }


# --------------------------------------------------------------------------------------------
# Registry


@dataclass(frozen=True)
class SourceSpec:
    """A registered source: its builder and how it is cached.

    ``build(**options)`` returns a Corpus. ``fingerprint(options)`` returns extra JSON data
    that must enter the cache key (e.g. sizes and mtimes of local files), or None.
    ``cache_default`` says whether results are cached when the ``cache`` option is not given.
    """

    name: str
    build: Callable[..., Corpus]
    cache_default: bool
    fingerprint: Callable[[dict[str, Any]], Any] | None = None


_REGISTRY: dict[str, SourceSpec] = {}


def register_source(spec: SourceSpec) -> None:
    _REGISTRY[spec.name] = spec


def _ensure_registered() -> None:
    if not _REGISTRY:
        from . import synthetic, text_sources  # noqa: F401  (registration side effect)


def source_names() -> tuple[str, ...]:
    _ensure_registered()
    return tuple(_REGISTRY)


def source_options(source: str) -> dict[str, Any]:
    """The options of a source and their defaults (cache controls included)."""
    spec = _get_spec(source)
    params = inspect.signature(spec.build).parameters
    out = {n: p.default for n, p in params.items() if p.kind is inspect.Parameter.KEYWORD_ONLY}
    out.update({"cache_dir": None, "cache": spec.cache_default})
    return out


def _get_spec(source: str) -> SourceSpec:
    _ensure_registered()
    if not isinstance(source, str) or source not in _REGISTRY:
        raise ValueError(
            f"unknown corpus source {source!r}; allowed sources: {', '.join(sorted(_REGISTRY))}"
        )
    return _REGISTRY[source]


def resolve_options(source: str, options: dict[str, Any]) -> dict[str, Any]:
    """All options of ``source`` with defaults filled in; ValueError on unknown names."""
    allowed = source_options(source)
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise ValueError(
            f"unknown option(s) {unknown} for corpus source {source!r}; "
            f"allowed options: {sorted(allowed)}"
        )
    merged = dict(allowed)
    merged.update(options)
    missing = sorted(n for n, v in merged.items() if v is inspect.Parameter.empty)
    if missing:
        raise ValueError(f"corpus source {source!r} needs option(s) {missing}")
    return merged


def load_corpus(source: str, **options: Any) -> Corpus:
    """Build (or load from the token cache) the corpus of ``source`` with ``options``.

    Sources: ``synthetic`` (offline default), ``wikitext2``, ``hf``, ``files``. Every source
    accepts ``cache_dir`` (default: env ``ADO_RAY_CACHE`` or ``~/.cache/ado-ray``) and
    ``cache`` (bool; default True for text sources and False for ``synthetic``, whose
    generation is fast).

    Raises ValueError for an unknown source (listing the allowed ones), unknown options,
    an empty domain, a domain shorter than one sequence, or a missing text/domain field.
    """
    from . import cache as cache_mod

    spec = _get_spec(source)
    opts = resolve_options(source, options)
    cache_dir = opts.pop("cache_dir")
    use_cache = opts.pop("cache")
    if use_cache is None:
        use_cache = spec.cache_default

    if use_cache:
        fingerprint = spec.fingerprint(opts) if spec.fingerprint else None
        key_data = cache_mod.key_data(source, opts, fingerprint)
        corpus = cache_mod.load(cache_dir, source, key_data)
        if corpus is not None:
            logger.info("corpus %s: cache hit at %s", source, corpus.cache_path)
            return corpus.validate()
        corpus = spec.build(**opts)
        corpus.source = source
        corpus.options = cache_mod.jsonable(opts)
        corpus.validate()
        path = cache_mod.store(cache_dir, source, key_data, corpus)
        logger.info("corpus %s: built and cached at %s", source, path)
        return cache_mod.load(cache_dir, source, key_data, expect_hit=False) or corpus

    corpus = spec.build(**opts)
    corpus.source = source
    corpus.options = cache_mod.jsonable(opts)
    return corpus.validate()
