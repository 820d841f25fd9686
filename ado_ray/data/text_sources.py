"""Text sources: ``wikitext2``, ``hf`` (any Hugging Face dataset) and ``files`` (local files).

All three tokenise with GPT-2 (option ``tokenizer``), pack each domain's token stream into
sequences of ``seq_len`` tokens (dropping the incomplete tail) and keep a validation set per
domain. ``datasets`` is imported only inside the loaders that need it.

Validation sets (``hf`` without ``val_split``, and ``files``): a seeded shuffle of each
domain's documents; whole documents go to validation until it holds at least
``max(seq_len, val_fraction * tokens)`` tokens. When whole documents cannot give that
(a domain of one or a few huge documents), the shuffled token stream is cut instead.
"""

from __future__ import annotations

import glob
import json
import logging
import math
import os
import re
import zlib
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np

from .corpus import Corpus, SourceSpec, register_source
from .synthetic import token_dtype
from .tokenizer import get_tokenizer

logger = logging.getLogger(__name__)

TEXT_EXTENSIONS = (".txt", ".jsonl", ".parquet")
_TOKENIZE_BATCH = 512


# --------------------------------------------------------------------------------------------
# Shared helpers


def _check_seq_len(seq_len: Any) -> int:
    if int(seq_len) != seq_len or seq_len < 2:
        raise ValueError(f"seq_len must be an integer >= 2, got {seq_len!r}")
    return int(seq_len)


def _check_fraction(name: str, value: Any, allow_zero: bool = False) -> float:
    lo_ok = value >= 0 if allow_zero else value > 0
    if not (isinstance(value, (int, float)) and lo_ok and value <= 1):
        raise ValueError(f"{name} must lie in {'[0' if allow_zero else '(0'}, 1], got {value!r}")
    return float(value)


def tokenize(tok: Any, texts: list[str], append_eos: bool) -> list[np.ndarray]:
    """Token ids of each text (plus EOS when ``append_eos``), in order, as compact arrays."""
    out: list[np.ndarray] = []
    dtype = token_dtype(tok.vocab_size)
    eos = [int(tok.eos_token_id)] if append_eos else []
    for i in range(0, len(texts), _TOKENIZE_BATCH):
        for ids in tok.encode_batch(texts[i : i + _TOKENIZE_BATCH]):
            out.append(np.array(list(ids) + eos, dtype=dtype))
    return out


def _flatten(docs: Iterable[np.ndarray], dtype: np.dtype) -> np.ndarray:
    docs = list(docs)
    return np.concatenate(docs).astype(dtype, copy=False) if docs else np.empty(0, dtype)


def pack(tokens: np.ndarray, seq_len: int) -> np.ndarray:
    """``[num_sequences, seq_len]`` view of a token stream, incomplete tail dropped."""
    n = tokens.shape[0] // seq_len
    return np.ascontiguousarray(tokens[: n * seq_len].reshape(n, seq_len))


def _check_domain_size(name: str, n_tokens: int, seq_len: int, what: str = "") -> None:
    if n_tokens == 0:
        raise ValueError(f"domain {name!r} is empty{what}: it has no tokens")
    if n_tokens < seq_len:
        raise ValueError(
            f"domain {name!r}{what} has {n_tokens} tokens, shorter than one sequence of "
            f"{seq_len} tokens"
        )


def split_holdout(
    name: str,
    docs: list[np.ndarray],
    val_fraction: float,
    seq_len: int,
    rng: np.random.Generator,
    dtype: np.dtype,
) -> tuple[np.ndarray, np.ndarray]:
    """Split one domain's documents into packed (train, val) sequences."""
    lengths = np.array([len(d) for d in docs], dtype=np.int64)
    total = int(lengths.sum())
    _check_domain_size(name, total, seq_len)
    if total < 2 * seq_len:
        raise ValueError(
            f"domain {name!r} has {total} tokens, shorter than one training plus one "
            f"validation sequence ({2 * seq_len} tokens)"
        )
    target = max(seq_len, math.ceil(val_fraction * total))
    order = rng.permutation(len(docs))
    cum = np.cumsum(lengths[order])
    n_val_docs = int(np.searchsorted(cum, target) + 1)
    val_tokens = int(cum[n_val_docs - 1]) if n_val_docs <= len(docs) else total
    if n_val_docs < len(docs) and total - val_tokens >= seq_len and val_tokens <= 2 * target:
        val_docs = [docs[i] for i in order[:n_val_docs]]
        train_docs = [docs[i] for i in np.sort(order[n_val_docs:])]
        return pack(_flatten(train_docs, dtype), seq_len), pack(_flatten(val_docs, dtype), seq_len)
    # Token-level cut of the shuffled stream (few, large documents).
    stream = _flatten([docs[i] for i in order], dtype)
    n_val = math.ceil(target / seq_len) * seq_len
    if total - n_val < seq_len:
        n_val = seq_len
    return pack(stream[n_val:], seq_len), pack(stream[:n_val], seq_len)


def _holdout_rng(seed: int, domain: str) -> np.random.Generator:
    return np.random.default_rng([int(seed), zlib.crc32(domain.encode())])


def _get_field(record: Any, dotted: str, where: str) -> Any:
    value = record
    for part in dotted.split("."):
        if isinstance(value, dict) and part in value:
            value = value[part]
        else:
            keys = sorted(value) if isinstance(value, dict) else []
            raise ValueError(f"field {dotted!r} not found in {where}; available fields: {keys}")
    return value


def _file_fingerprint(paths: Iterable[str]) -> list[list[Any]]:
    out = []
    for p in sorted(set(paths)):
        st = os.stat(p)
        out.append([os.path.abspath(p), st.st_size, st.st_mtime_ns])
    return out


def _local_files(path: Any) -> list[str]:
    """All files under a local path (file or directory), [] when it is not local."""
    if isinstance(path, (list, tuple)):
        return [f for p in path for f in _local_files(p)]
    if isinstance(path, dict):
        return [f for p in path.values() for f in _local_files(p)]
    if not isinstance(path, (str, os.PathLike)):
        return []
    path = os.path.expanduser(os.fspath(path))
    if os.path.isfile(path):
        return [path]
    if os.path.isdir(path):
        return [
            os.path.join(d, f)
            for d, _sub, files in os.walk(path)
            for f in files
            if not f.startswith(".")
        ]
    return sorted(glob.glob(path)) if any(c in path for c in "*?[") else []


def _make_corpus(
    names: list[str],
    train: list[np.ndarray],
    val: list[np.ndarray],
    seq_len: int,
    tok: Any,
    metadata: dict[str, Any],
) -> Corpus:
    for name, tr, va in zip(names, train, val, strict=True):
        if tr.shape[0] == 0:
            raise ValueError(f"domain {name!r} is shorter than one sequence of {seq_len} tokens")
        if va.shape[0] == 0:
            raise ValueError(
                f"domain {name!r} has no validation sequence: its validation text is shorter "
                f"than one sequence of {seq_len} tokens"
            )
    return Corpus(
        domains=list(names),
        train=train,
        val=val,
        seq_len=seq_len,
        vocab_size=int(tok.vocab_size),
        entropy_rate=[None] * len(names),
        tokenizer=tok.name,
        metadata=metadata,
    )


# --------------------------------------------------------------------------------------------
# wikitext2

_HEADING = re.compile(r"^ ?= (?!=)(.*?) = ?$")


def is_article_heading(line: str) -> bool:
    """True for a level-1 wikitext heading line (`` = Title = ``), not `` = = Sub = = ``."""
    s = line.strip()
    return bool(_HEADING.match(s)) and not s.startswith("= =") and not s.endswith("= =")


def split_articles(lines: list[str]) -> list[list[str]]:
    """Group wikitext lines into articles at level-1 headings.

    Lines before the first heading are prepended to the first article.
    """
    articles: list[list[str]] = []
    leading: list[str] = []
    for line in lines:
        if is_article_heading(line):
            articles.append(leading + [line])
            leading = []
        elif articles:
            articles[-1].append(line)
        else:
            leading.append(line)
    if leading:  # no heading at all
        articles.append(leading)
    return articles


def _wikitext_split(path: str, name: str, data_files: Any, split: str, revision: Any) -> list[str]:
    import datasets

    if data_files is not None:
        files = data_files.get(split) if isinstance(data_files, dict) else None
        if files is None:
            raise ValueError(f"data_files has no entry for split {split!r}")
        ds = datasets.load_dataset("parquet", data_files={split: files}, split=split)
    elif os.path.isdir(os.path.expanduser(path)):
        root = os.path.expanduser(path)
        patterns = [
            os.path.join(root, name, f"{split}-*.parquet"),
            os.path.join(root, name, f"{split}.parquet"),
            os.path.join(root, f"{split}-*.parquet"),
            os.path.join(root, f"{split}.parquet"),
        ]
        files = next((sorted(glob.glob(p)) for p in patterns if glob.glob(p)), [])
        if not files:
            raise ValueError(
                f"no parquet files for split {split!r} under {root!r} "
                f"(looked for {name}/{split}-*.parquet and {split}-*.parquet)"
            )
        ds = datasets.load_dataset("parquet", data_files={split: files}, split=split)
    else:
        ds = datasets.load_dataset(path, name, split=split, revision=revision)
    if "text" not in ds.column_names:
        raise ValueError(
            f"field 'text' not found in the wikitext {split} split; columns: {ds.column_names}"
        )
    return list(ds["text"])


def _tfidf_features(docs: list[np.ndarray], max_features: int, idf: Any = None, vocab: Any = None):
    """L2-normalised TF-IDF rows over a token vocabulary (built from ``docs`` if not given)."""
    n = len(docs)
    if vocab is None:
        df: dict[int, int] = {}
        for d in docs:
            for t in np.unique(d).tolist():
                df[t] = df.get(t, 0) + 1
        cands = [(c, t) for t, c in df.items() if c >= 2 and c <= max(2, 0.5 * n)]
        if not cands:  # tiny inputs: use every token
            cands = [(c, t) for t, c in df.items()]
        cands.sort(key=lambda ct: (-ct[0], ct[1]))
        vocab = np.array(sorted(t for _c, t in cands[:max_features]), dtype=np.int64)
        dfv = np.array([df[t] for t in vocab], dtype=np.float64)
        idf = np.log((1.0 + n) / (1.0 + dfv)) + 1.0
    x = np.zeros((n, vocab.size))
    for i, d in enumerate(docs):
        ids = np.asarray(d, dtype=np.int64)
        pos = np.searchsorted(vocab, ids)
        ok = (pos < vocab.size) & (vocab[np.minimum(pos, vocab.size - 1)] == ids)
        x[i] = np.bincount(pos[ok], minlength=vocab.size)
    x = np.log1p(x) * idf
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    x /= np.where(norms > 0, norms, 1.0)
    return x, idf, vocab


def spherical_kmeans(
    x: np.ndarray, k: int, rng: np.random.Generator, n_init: int = 8, iters: int = 100
) -> tuple[np.ndarray, np.ndarray]:
    """Cosine k-means on L2-normalised rows: (labels, centroids). k-means++ seeding."""
    n = x.shape[0]
    if n < k:
        raise ValueError(f"cannot cluster {n} articles into {k} domains")
    best = None
    for _ in range(n_init):
        idx = [int(rng.integers(n))]
        for _j in range(1, k):
            d = 1.0 - (x @ x[idx].T).max(axis=1)
            d = np.clip(d, 0, None)
            p = d / d.sum() if d.sum() > 0 else np.full(n, 1.0 / n)
            idx.append(int(rng.choice(n, p=p)))
        c = x[idx].copy()
        labels = np.full(n, -1)
        for _it in range(iters):
            sims = x @ c.T
            new = sims.argmax(axis=1)
            for j in range(k):  # refill an empty cluster with the worst-fitting point
                if not np.any(new == j):
                    worst = int(np.argmin(sims[np.arange(n), new]))
                    new[worst] = j
            if np.array_equal(new, labels):
                break
            labels = new
            for j in range(k):
                m = x[labels == j].sum(axis=0)
                nm = np.linalg.norm(m)
                c[j] = m / nm if nm > 0 else x[rng.integers(n)]
        score = float((x * c[labels]).sum())
        if best is None or score > best[0]:
            best = (score, labels.copy(), c.copy())
    return best[1], best[2]


def build_wikitext2(
    *,
    path: str = "Salesforce/wikitext",
    name: str = "wikitext-2-raw-v1",
    data_files: dict[str, Any] | None = None,
    revision: str | None = None,
    fraction: float = 0.2,
    val_fraction: float = 1.0,
    seq_len: int = 100,
    num_domains: int = 5,
    grouping: str = "segments",
    cluster: str = "tfidf",
    max_features: int = 4096,
    tokenizer: Any = "gpt2",
    seed: int = 0,
) -> Corpus:
    """WikiText-2 split into ``num_domains`` domains, as in the original ADO small study.

    Rows (lines) of the train split are kept up to the first ``fraction`` of them and of the
    validation split up to ``val_fraction``; each row is tokenised with GPT-2 and the rows are
    concatenated (no EOS, as in HF ``run_clm``).

    ``grouping="segments"``: the packed ``seq_len`` sequences are cut into ``num_domains``
    contiguous, equal segments (``segment_0`` ..), remainder sequences dropped; validation
    is cut the same way.
    ``grouping="articles"``: rows are grouped into articles at level-1 ``= Title =``
    headings and the articles into ``num_domains`` groups. ``cluster="tfidf"``: spherical
    k-means (seeded k-means++, 8 restarts) on L2-normalised log-TF-IDF token histograms over
    the ``max_features`` most document-frequent tokens found in 2..50% of the articles;
    domains ``cluster_0`` .. in decreasing size; validation articles go to the nearest
    centroid. ``cluster="length"``: articles sorted by token length and cut into groups of
    about equal token mass (``length_0`` = shortest); validation articles use the same
    length boundaries. Each group's articles are concatenated in corpus order and packed.

    ``path``: the hub dataset (default) or a local directory holding
    ``<name>/<split>-*.parquet`` (or ``<split>-*.parquet``) with a ``text`` column;
    ``data_files``: explicit ``{"train": [...], "validation": [...]}`` parquet files.
    """
    seq_len = _check_seq_len(seq_len)
    fraction = _check_fraction("fraction", fraction)
    val_fraction = _check_fraction("val_fraction", val_fraction)
    if int(num_domains) != num_domains or num_domains < 1:
        raise ValueError(f"num_domains must be an integer >= 1, got {num_domains!r}")
    if grouping not in ("segments", "articles"):
        raise ValueError(f"grouping must be 'segments' or 'articles', got {grouping!r}")
    if cluster not in ("tfidf", "length"):
        raise ValueError(f"cluster must be 'tfidf' or 'length', got {cluster!r}")
    k = int(num_domains)
    tok = get_tokenizer(tokenizer)
    dtype = token_dtype(tok.vocab_size)
    rows = {}
    for split, frac in (("train", fraction), ("validation", val_fraction)):
        lines = _wikitext_split(path, name, data_files, split, revision)
        rows[split] = lines[: math.ceil(frac * len(lines))]
    meta: dict[str, Any] = {"grouping": grouping, "rows": {s: len(r) for s, r in rows.items()}}

    if grouping == "segments":
        names = [f"segment_{i}" for i in range(k)]
        train, val = [], []
        for split, out in (("train", train), ("validation", val)):
            seqs = pack(_flatten(tokenize(tok, rows[split], False), dtype), seq_len)
            per = seqs.shape[0] // k
            if per == 0:
                raise ValueError(
                    f"wikitext {split} split gives {seqs.shape[0]} sequences of {seq_len} "
                    f"tokens, fewer than num_domains={k}: every domain (e.g. {names[-1]!r}) "
                    "would be shorter than one sequence"
                )
            out.extend(seqs[i * per : (i + 1) * per] for i in range(k))
        return _make_corpus(names, train, val, seq_len, tok, meta)

    arts = {s: split_articles(r) for s, r in rows.items()}
    docs = {}
    for s, a in arts.items():
        toks = tokenize(tok, [line for art in a for line in art], False)
        it = iter(toks)
        docs[s] = [_flatten([next(it) for _ in art], dtype) for art in a]
    lengths = np.array([len(d) for d in docs["train"]])
    if cluster == "tfidf":
        x, idf, vocab = _tfidf_features(docs["train"], max_features)
        labels, cent = spherical_kmeans(x, k, np.random.default_rng(seed))
        xv, _, _ = _tfidf_features(docs["validation"], max_features, idf=idf, vocab=vocab)
        val_labels = (xv @ cent.T).argmax(axis=1) if len(docs["validation"]) else np.array([])
        mass = np.bincount(labels, weights=lengths, minlength=k)
        order = np.argsort(-mass, kind="stable")
        remap = np.empty(k, dtype=np.int64)
        remap[order] = np.arange(k)
        labels, val_labels = remap[labels], remap[val_labels.astype(np.int64)]
        names = [f"cluster_{i}" for i in range(k)]
        cent = cent[order]
        top = {
            names[j]: [tok.decode([int(vocab[t])]) for t in np.argsort(-cent[j])[:8]]
            for j in range(k)
        }
        meta["top_tokens"] = top
    else:
        if len(lengths) < k:
            raise ValueError(f"cannot bucket {len(lengths)} articles into {k} domains")
        srt = np.argsort(lengths, kind="stable")
        cum = np.cumsum(lengths[srt])
        cuts = np.searchsorted(cum, cum[-1] * np.arange(1, k) / k, side="left")
        labels = np.empty(len(lengths), dtype=np.int64)
        bounds = []
        for j, (lo, hi) in enumerate(zip([0, *cuts], [*cuts, len(srt)], strict=True)):
            labels[srt[lo:hi]] = j
            if j < k - 1:
                bounds.append(int(lengths[srt[hi]]) if hi < len(srt) else int(lengths.max()) + 1)
        vlen = np.array([len(d) for d in docs["validation"]])
        val_labels = np.searchsorted(np.array(bounds), vlen, side="right")
        names = [f"length_{i}" for i in range(k)]
        meta["length_bounds"] = bounds
    meta["articles"] = {
        "train": np.bincount(labels, minlength=k).tolist(),
        "validation": np.bincount(val_labels, minlength=k).tolist(),
    }
    train, val = [], []
    for j, nm in enumerate(names):
        tr_tokens = _flatten(
            [d for d, lab in zip(docs["train"], labels, strict=True) if lab == j], dtype
        )
        va_tokens = _flatten(
            [d for d, lab in zip(docs["validation"], val_labels, strict=True) if lab == j], dtype
        )
        _check_domain_size(nm, tr_tokens.size, seq_len)
        _check_domain_size(nm, va_tokens.size, seq_len, what=" in the validation split")
        train.append(pack(tr_tokens, seq_len))
        val.append(pack(va_tokens, seq_len))
    return _make_corpus(names, train, val, seq_len, tok, meta)


def _wikitext_fingerprint(opts: dict[str, Any]) -> Any:
    files = _local_files(opts.get("data_files")) or _local_files(opts.get("path"))
    return {"files": _file_fingerprint(files)} if files else None


# --------------------------------------------------------------------------------------------
# hf


_BUILDER_BY_EXT = {".json": "json", ".jsonl": "json", ".parquet": "parquet", ".csv": "csv"}


def _load_hf(path, name, split, data_files, revision, streaming):
    import datasets

    kwargs: dict[str, Any] = {"split": split, "streaming": bool(streaming)}
    if revision is not None:
        kwargs["revision"] = revision
    local = os.path.expanduser(str(path))
    ext = os.path.splitext(local)[1].lower()
    if os.path.isfile(local) and ext in _BUILDER_BY_EXT:
        kwargs.pop("revision", None)
        return datasets.load_dataset(_BUILDER_BY_EXT[ext], data_files={split: local}, **kwargs)
    if data_files is not None:
        kwargs["data_files"] = data_files
    return datasets.load_dataset(path, name, **kwargs)


def _iter_records(ds: Any, batch_size: int) -> Iterator[dict[str, Any]]:
    for batch in ds.iter(batch_size=batch_size):
        cols = list(batch)
        n = len(batch[cols[0]]) if cols else 0
        for i in range(n):
            yield {c: batch[c][i] for c in cols}


def _collect(
    records: Iterator[dict[str, Any]],
    where: str,
    text_field: str,
    domain_field: str | None,
    allow: list[str] | None,
    cap: int | None,
    max_documents: int | None,
    tok: Any,
    append_eos: bool,
) -> dict[str, list[np.ndarray]]:
    """Tokenised documents per domain, honouring the allow-list, caps and document limit."""
    docs: dict[str, list[np.ndarray]] = {}
    counts: dict[str, int] = {}
    allowed = set(allow) if allow is not None else None
    pending_text: list[str] = []
    pending_dom: list[str] = []
    seen = 0

    def full(d: str) -> bool:
        return cap is not None and counts.get(d, 0) >= cap

    def flush() -> None:
        for d, ids in zip(pending_dom, tokenize(tok, pending_text, append_eos), strict=True):
            if full(d):
                continue
            if cap is not None:
                ids = ids[: cap - counts.get(d, 0)]
            docs.setdefault(d, []).append(ids)
            counts[d] = counts.get(d, 0) + len(ids)
        pending_text.clear()
        pending_dom.clear()

    for rec in records:
        if max_documents is not None and seen >= max_documents:
            break
        seen += 1
        text = _get_field(rec, text_field, where)
        dom = "all" if domain_field is None else _get_field(rec, domain_field, where)
        dom = str(dom)
        if (allowed is not None and dom not in allowed) or full(dom):
            continue
        if not isinstance(text, str) or not text:
            continue
        pending_text.append(text)
        pending_dom.append(dom)
        if len(pending_text) >= _TOKENIZE_BATCH:
            flush()
            if cap is not None and allowed is not None and all(full(d) for d in allowed):
                break
    flush()
    return docs


def _check_fields(ds: Any, fields: list[tuple[str, str]], where: str) -> None:
    names = getattr(ds, "column_names", None)
    if not names:
        return  # unknown until records arrive (streaming); checked per record
    for option, dotted in fields:
        if dotted.split(".")[0] not in names:
            raise ValueError(
                f"{option} {dotted!r} not found in {where}; available fields: {sorted(names)}"
            )


def build_hf(
    *,
    path: str,
    name: str | None = None,
    split: str = "train",
    data_files: Any = None,
    revision: str | None = None,
    text_field: str = "text",
    domain_field: str | None = None,
    domains: list[str] | None = None,
    streaming: bool = False,
    max_tokens_per_domain: int | None = None,
    max_documents: int | None = None,
    val_split: str | None = None,
    val_fraction: float = 0.05,
    seq_len: int = 1024,
    append_eos: bool = True,
    tokenizer: Any = "gpt2",
    seed: int = 0,
) -> Corpus:
    """Any Hugging Face dataset, one domain per value of ``domain_field``.

    ``path``/``name``/``split``/``data_files``/``revision`` go to ``datasets.load_dataset``
    (``path`` may also be a local ``.json``/``.jsonl``/``.parquet``/``.csv`` file).
    ``text_field`` and ``domain_field`` are dotted paths into a record
    (``meta.pile_set_name``); without ``domain_field`` everything is one domain ``all``.
    ``domains`` is an allow-list (and fixes the domain order; otherwise domains are sorted by
    name). ``max_tokens_per_domain`` caps the tokens taken per domain (train + validation,
    EOS included); with ``streaming`` and an allow-list, reading stops once every allowed
    domain is full. ``max_documents`` caps the records read. Validation: ``val_split`` (same
    processing, capped alike) or a ``val_fraction`` document hold-out.
    """
    seq_len = _check_seq_len(seq_len)
    if val_split is None:
        val_fraction = _check_fraction("val_fraction", val_fraction)
    if domains is not None and (isinstance(domains, str) or not len(domains)):
        raise ValueError(f"domains must be a non-empty list of names, got {domains!r}")
    if max_tokens_per_domain is not None and max_tokens_per_domain < 1:
        raise ValueError(f"max_tokens_per_domain must be >= 1, got {max_tokens_per_domain}")
    allow = [str(d) for d in domains] if domains is not None else None
    tok = get_tokenizer(tokenizer)
    dtype = token_dtype(tok.vocab_size)
    fields = [("text_field", text_field)]
    if domain_field is not None:
        fields.append(("domain_field", domain_field))

    def gather(which: str) -> dict[str, list[np.ndarray]]:
        ds = _load_hf(path, name, which, data_files, revision, streaming)
        where = f"dataset {path!r} split {which!r}"
        _check_fields(ds, fields, where)
        return _collect(
            _iter_records(ds, 1000),
            where,
            text_field,
            domain_field,
            allow,
            max_tokens_per_domain,
            max_documents,
            tok,
            append_eos,
        )

    docs = gather(split)
    names = allow if allow is not None else sorted(docs)
    if not names:
        raise ValueError(f"dataset {path!r} split {split!r} gave no documents")
    train, val = [], []
    if val_split is None:
        for nm in names:
            rng = _holdout_rng(seed, nm)
            tr, va = split_holdout(nm, docs.get(nm, []), val_fraction, seq_len, rng, dtype)
            train.append(tr)
            val.append(va)
    else:
        vdocs = gather(val_split)
        for nm in names:
            tr_tokens = _flatten(docs.get(nm, []), dtype)
            va_tokens = _flatten(vdocs.get(nm, []), dtype)
            _check_domain_size(nm, tr_tokens.size, seq_len)
            _check_domain_size(nm, va_tokens.size, seq_len, what=f" in split {val_split!r}")
            train.append(pack(tr_tokens, seq_len))
            val.append(pack(va_tokens, seq_len))
    return _make_corpus(names, train, val, seq_len, tok, {"path": str(path)})


def _hf_fingerprint(opts: dict[str, Any]) -> Any:
    files = _local_files(opts.get("data_files")) or _local_files(opts.get("path"))
    return {"files": _file_fingerprint(files)} if files else None


# --------------------------------------------------------------------------------------------
# files


def _domain_entries(root: str) -> dict[str, list[str]]:
    if not os.path.isdir(root):
        raise ValueError(f"files source: {root!r} is not a directory")
    entries: dict[str, list[str]] = {}
    for entry in sorted(os.listdir(root)):
        if entry.startswith("."):
            continue
        full = os.path.join(root, entry)
        if os.path.isdir(full):
            files = sorted(
                os.path.join(d, f)
                for d, _sub, fs in os.walk(full)
                for f in fs
                if f.lower().endswith(TEXT_EXTENSIONS) and not f.startswith(".")
            )
            dom = entry
        elif entry.lower().endswith(TEXT_EXTENSIONS):
            files, dom = [full], os.path.splitext(entry)[0]
        else:
            continue
        if dom in entries:
            raise ValueError(f"files source: domain {dom!r} appears twice under {root!r}")
        entries[dom] = files
    if not entries:
        raise ValueError(
            f"files source: no domains under {root!r} (expected subdirectories or "
            f"{'/'.join(TEXT_EXTENSIONS)} files)"
        )
    return entries


def _read_texts(path: str, text_field: str, txt_split: str) -> list[str]:
    low = path.lower()
    if low.endswith(".txt"):
        with open(path, encoding="utf-8") as fh:
            content = fh.read()
        if txt_split == "file":
            return [content]
        if txt_split == "paragraphs":
            return [p for p in re.split(r"\n\s*\n", content) if p.strip()]
        return [line for line in content.splitlines() if line.strip()]
    if low.endswith(".jsonl"):
        texts = []
        with open(path, encoding="utf-8") as fh:
            for lineno, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                rec = json.loads(line)
                texts.append(_get_field(rec, text_field, f"{path} line {lineno}"))
        return texts
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    top = text_field.split(".")[0]
    if top not in table.column_names:
        raise ValueError(
            f"field {text_field!r} not found in {path}; available fields: {table.column_names}"
        )
    col = table.column(top).to_pylist()
    rest = text_field.split(".")[1:]
    if not rest:
        return col
    return [_get_field(v, ".".join(rest), path) for v in col]


def build_files(
    *,
    path: str,
    text_field: str = "text",
    domains: list[str] | None = None,
    txt_split: str = "file",
    max_tokens_per_domain: int | None = None,
    val_fraction: float = 0.05,
    seq_len: int = 1024,
    append_eos: bool = True,
    tokenizer: Any = "gpt2",
    seed: int = 0,
) -> Corpus:
    """A local directory with one subdirectory or one file per domain.

    A subdirectory ``<domain>/`` contributes every ``.txt``, ``.jsonl`` and ``.parquet`` file
    below it (sorted); a file ``<domain>.txt|.jsonl|.parquet`` is a domain by itself.
    ``.jsonl`` and ``.parquet`` records give one document each (``text_field``, dotted);
    ``.txt`` files are one document per file (``txt_split="file"``), per blank-line-separated
    paragraph (``"paragraphs"``) or per non-empty line (``"lines"``). ``domains`` is an
    allow-list (and order); ``max_tokens_per_domain`` caps each domain's tokens.
    Validation: a ``val_fraction`` hold-out of documents (see the module docstring).
    """
    seq_len = _check_seq_len(seq_len)
    val_fraction = _check_fraction("val_fraction", val_fraction)
    if txt_split not in ("file", "paragraphs", "lines"):
        raise ValueError(f"txt_split must be 'file', 'paragraphs' or 'lines', got {txt_split!r}")
    root = os.path.expanduser(str(path))
    entries = _domain_entries(root)
    if domains is not None:
        missing = [d for d in domains if d not in entries]
        if missing:
            raise ValueError(
                f"domain(s) {missing} not found under {root!r}; found {sorted(entries)}"
            )
        entries = {d: entries[d] for d in domains}
    tok = get_tokenizer(tokenizer)
    dtype = token_dtype(tok.vocab_size)
    train, val = [], []
    for dom, files in entries.items():
        texts = [t for f in files for t in _read_texts(f, text_field, txt_split)]
        docs = tokenize(tok, [t for t in texts if isinstance(t, str) and t], append_eos)
        if max_tokens_per_domain is not None:
            kept, n = [], 0
            for d in docs:
                if n >= max_tokens_per_domain:
                    break
                kept.append(d[: max_tokens_per_domain - n])
                n += len(kept[-1])
            docs = kept
        rng = _holdout_rng(seed, dom)
        tr, va = split_holdout(dom, docs, val_fraction, seq_len, rng, dtype)
        train.append(tr)
        val.append(va)
    return _make_corpus(list(entries), train, val, seq_len, tok, {"path": os.path.abspath(root)})


def _files_fingerprint(opts: dict[str, Any]) -> Any:
    return {"files": _file_fingerprint(_local_files(opts.get("path")))}


register_source(
    SourceSpec(
        name="wikitext2",
        build=build_wikitext2,
        cache_default=True,
        fingerprint=_wikitext_fingerprint,
    )
)
register_source(
    SourceSpec(name="hf", build=build_hf, cache_default=True, fingerprint=_hf_fingerprint)
)
register_source(
    SourceSpec(name="files", build=build_files, cache_default=True, fingerprint=_files_fingerprint)
)
