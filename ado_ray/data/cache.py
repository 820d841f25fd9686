"""Token cache: packed sequences stored once per (source, options, tokenizer, seq_len).

Layout: ``<cache_dir>/<source>-<key>/`` holds ``train.npy`` and ``val.npy`` (all domains'
sequences stacked, domain k at rows ``offsets[k]:offsets[k+1]``) and ``meta.json`` (domain
names, offsets, entropy rates, metadata and the key's inputs). ``key`` is a SHA-256 over the
canonical JSON of the source name, its resolved options (tokenizer and seq_len included), a
source fingerprint (sizes and mtimes of local input files) and the cache format version.

Each file is written under a unique temporary name and moved into place with ``os.replace``;
``meta.json`` goes last, so an entry is complete exactly when its ``meta.json`` exists.
Concurrent writers produce identical bytes, so whichever replace lands last is harmless, and
readers that already memory-mapped a file keep the old inode. Re-loads memory-map the arrays
(read-only) and set ``Corpus.cache_hit``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import uuid
from collections.abc import Iterator
from typing import IO, Any

import numpy as np

from .corpus import Corpus

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
ENV_VAR = "ADO_RAY_CACHE"


def default_cache_dir() -> str:
    """``$ADO_RAY_CACHE`` or ``~/.cache/ado-ray``."""
    return os.environ.get(ENV_VAR) or os.path.join(os.path.expanduser("~"), ".cache", "ado-ray")


def jsonable(value: Any) -> Any:
    """A JSON-friendly, canonical form of an option value (tokenizer objects -> their name)."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if hasattr(value, "name") and isinstance(value.name, str):
        return {"__object__": type(value).__name__, "name": value.name}
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    return repr(value)


def key_data(source: str, options: dict[str, Any], fingerprint: Any = None) -> dict[str, Any]:
    return {
        "format": FORMAT_VERSION,
        "source": source,
        "options": jsonable(options),
        "fingerprint": jsonable(fingerprint),
    }


def cache_key(data: dict[str, Any]) -> str:
    blob = json.dumps(data, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()[:24]


def entry_path(cache_dir: str | None, source: str, data: dict[str, Any]) -> str:
    root = os.path.abspath(os.path.expanduser(cache_dir or default_cache_dir()))
    return os.path.join(root, f"{source}-{cache_key(data)}")


@contextlib.contextmanager
def _atomic_file(path: str, mode: str) -> Iterator[IO[Any]]:
    """A temporary sibling of ``path`` to write; synced and renamed over ``path`` when the block
    ends (readers see the old file or the new one), removed if it raises. Local files only:
    a cache entry can be large, so it is streamed, not built in memory."""
    tmp = f"{path}.tmp-{uuid.uuid4().hex}"
    try:
        with open(tmp, mode) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def _atomic_save_npy(path: str, array: np.ndarray) -> None:
    with _atomic_file(path, "wb") as fh:
        np.save(fh, np.ascontiguousarray(array))


def _atomic_write_json(path: str, obj: Any) -> None:
    with _atomic_file(path, "w") as fh:
        json.dump(obj, fh, indent=1, sort_keys=True)


def _save_stacked(path: str, arrays: list[np.ndarray], seq_len: int) -> list[int]:
    """Write the domains' arrays stacked into one ``.npy`` (tmp name, then os.replace).

    Streams domain by domain into a memory-mapped file, so no second in-memory copy is made.
    Returns the row offsets.
    """
    offsets = [0]
    for a in arrays:
        offsets.append(offsets[-1] + int(a.shape[0]))
    dtype = np.result_type(*[a.dtype for a in arrays]) if arrays else np.dtype(np.int64)
    if offsets[-1] == 0:
        _atomic_save_npy(path, np.empty((0, seq_len), dtype=dtype))
        return offsets
    tmp = f"{path}.tmp-{uuid.uuid4().hex}"
    try:
        mm = np.lib.format.open_memmap(tmp, mode="w+", dtype=dtype, shape=(offsets[-1], seq_len))
        for a, lo, hi in zip(arrays, offsets[:-1], offsets[1:], strict=True):
            mm[lo:hi] = a
        mm.flush()
        del mm
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return offsets


def store(cache_dir: str | None, source: str, data: dict[str, Any], corpus: Corpus) -> str:
    """Write ``corpus`` under its key; returns the entry directory."""
    path = entry_path(cache_dir, source, data)
    os.makedirs(path, exist_ok=True)
    train_off = _save_stacked(os.path.join(path, "train.npy"), corpus.train, corpus.seq_len)
    val_off = _save_stacked(os.path.join(path, "val.npy"), corpus.val, corpus.seq_len)
    meta = {
        "key": data,
        "domains": list(corpus.domains),
        "train_offsets": train_off,
        "val_offsets": val_off,
        "seq_len": int(corpus.seq_len),
        "vocab_size": int(corpus.vocab_size),
        "entropy_rate": [None if e is None else float(e) for e in corpus.entropy_rate],
        "tokenizer": corpus.tokenizer,
        "options": corpus.options,
        "metadata": jsonable(corpus.metadata),
    }
    _atomic_write_json(os.path.join(path, "meta.json"), meta)
    return path


def load(
    cache_dir: str | None, source: str, data: dict[str, Any], expect_hit: bool = True
) -> Corpus | None:
    """Memory-map the entry for ``data`` if it is complete, else None."""
    path = entry_path(cache_dir, source, data)
    meta_path = os.path.join(path, "meta.json")
    if not os.path.exists(meta_path):
        return None
    try:
        with open(meta_path) as fh:
            meta = json.load(fh)
        if meta.get("key") != json.loads(json.dumps(data)):
            logger.warning("cache entry %s has a different key; ignoring it", path)
            return None
        train = np.load(os.path.join(path, "train.npy"), mmap_mode="r")
        val = np.load(os.path.join(path, "val.npy"), mmap_mode="r")
    except (OSError, ValueError) as exc:  # a damaged entry is rebuilt, never trusted
        logger.warning("cache entry %s unreadable (%s); rebuilding", path, exc)
        return None
    to, vo = meta["train_offsets"], meta["val_offsets"]
    if train.shape[0] != to[-1] or val.shape[0] != vo[-1]:
        logger.warning("cache entry %s has inconsistent shapes; rebuilding", path)
        return None
    k = len(meta["domains"])
    return Corpus(
        domains=list(meta["domains"]),
        train=[train[to[i] : to[i + 1]] for i in range(k)],
        val=[val[vo[i] : vo[i + 1]] for i in range(k)],
        seq_len=int(meta["seq_len"]),
        vocab_size=int(meta["vocab_size"]),
        entropy_rate=list(meta["entropy_rate"]),
        source=source,
        options=meta.get("options", {}),
        tokenizer=meta.get("tokenizer"),
        cache_hit=expect_hit,
        cache_path=path,
        metadata=meta.get("metadata", {}),
    )
