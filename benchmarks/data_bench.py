"""Data-layer throughput figures, printed as JSON (no assertions on wall time).

- ``sampler``: MixtureSampler tokens/s at B=32, L=1024, K=22 (uint16 corpus in memory,
  Dirichlet weights redrawn every step, both count modes).
- ``tokenizer``: tokens/s of the offline GPT-2 tokenizer (``encode_batch``) on generated
  English-like text, and of the text sources' path (ids -> uint16 arrays, EOS appended).
- ``synthetic``: generation time of the default synthetic corpus at 50k x 128 tokens/domain.

Run pinned to one core for the documented figures: ``taskset -c 0 python benchmarks/data_bench.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

import numpy as np

from ado_ray.data import Corpus, MixtureSampler, gpt2_tokenizer, load_corpus
from ado_ray.data.text_sources import tokenize


def bench_sampler(
    batch_size: int, seq_len: int, num_domains: int, seqs_per_domain: int, steps: int, mode: str
) -> dict:
    rng = np.random.default_rng(0)
    train = [
        rng.integers(0, 50257, size=(seqs_per_domain, seq_len), dtype=np.uint16)
        for _ in range(num_domains)
    ]
    corpus = Corpus(
        domains=[f"d{k}" for k in range(num_domains)],
        train=train,
        val=[t[:1] for t in train],
        seq_len=seq_len,
        vocab_size=50257,
    )
    sampler = MixtureSampler(corpus, batch_size=batch_size, seed=0, mode=mode)
    weights = rng.dirichlet(np.ones(num_domains), size=steps)
    for w in weights[:20]:  # warm up
        sampler.sample(w)
    t0 = time.perf_counter()
    for w in weights:
        sampler.sample(w)
    dt = time.perf_counter() - t0
    return {
        "mode": mode,
        "batch_size": batch_size,
        "seq_len": seq_len,
        "num_domains": num_domains,
        "sequences_per_domain": seqs_per_domain,
        "steps": steps,
        "batches_per_s": steps / dt,
        "tokens_per_s": steps * batch_size * seq_len / dt,
    }


_WORDS = (
    "the of and to in a is was that for on as with by he at from his it an were are which "
    "this be or has had first one their its new after who they have her she two been other "
    "when there all during into school time may years more most only over city some world "
    "would where later up such used many can state about national out known university "
    "united then made season american river between game called team under also area "
    "history government century war album series against film early music released"
).split()


def english_like(n_words: int, seed: int = 0) -> list[str]:
    """Zipf-weighted words with capitals, commas and full stops, in ~100-word documents."""
    rng = np.random.default_rng(seed)
    p = 1.0 / np.arange(1, len(_WORDS) + 1)
    p /= p.sum()
    words = np.array(_WORDS)[rng.choice(len(_WORDS), size=n_words, p=p)]
    docs, i = [], 0
    while i < n_words:
        chunk = list(words[i : i + 100])
        i += 100
        sent, out = 0, []
        for w in chunk:
            out.append(w.capitalize() if sent == 0 else w)
            sent += 1
            if sent > 8 and rng.random() < 0.2:
                out[-1] += "."
                sent = 0
            elif rng.random() < 0.05:
                out[-1] += ","
        out.append(f"{int(rng.integers(1800, 2024))}.")
        docs.append(" ".join(out))
    return docs


def bench_tokenizer(n_words: int) -> dict:
    tok = gpt2_tokenizer()
    docs = english_like(n_words)
    tok.encode_batch(docs[:50])
    t0 = time.perf_counter()
    ids = tok.encode_batch(docs)
    dt = time.perf_counter() - t0
    n_tokens = sum(len(x) for x in ids)
    t0 = time.perf_counter()
    arrays = tokenize(tok, docs, append_eos=True)  # the sources' path: ids -> uint16 arrays
    dt_arrays = time.perf_counter() - t0
    return {
        "backend": tok.backend.split(" (")[0],
        "documents": len(docs),
        "tokens": n_tokens,
        "seconds": dt,
        "tokens_per_s": n_tokens / dt,
        "to_arrays_tokens_per_s": sum(a.size for a in arrays) / dt_arrays,
        "rayon_threads": os.environ.get("RAYON_NUM_THREADS"),
    }


def bench_synthetic(sequences: int) -> dict:
    t0 = time.perf_counter()
    c = load_corpus("synthetic", sequences_per_domain=sequences, val_sequences_per_domain=256)
    dt = time.perf_counter() - t0
    return {
        "domains": c.domains,
        "sequences_per_domain": sequences,
        "seq_len": c.seq_len,
        "seconds": dt,
        "tokens_per_s": float(c.token_counts().sum()) / dt,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--seqs-per-domain", type=int, default=1024)
    ap.add_argument("--words", type=int, default=300_000)
    ap.add_argument("--synthetic-sequences", type=int, default=50_000)
    args = ap.parse_args()
    affinity = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    out = {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "cpu_affinity": affinity,
        "sampler": [
            bench_sampler(32, 1024, 22, args.seqs_per_domain, args.steps, mode)
            for mode in ("multinomial", "largest_remainder")
        ],
        "tokenizer": bench_tokenizer(args.words),
        "synthetic": bench_synthetic(args.synthetic_sequences),
    }
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
