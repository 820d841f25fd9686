"""The configuration of one training run: :class:`ado_ray.schema.RunConfig`, under the name the
training loop has always used, and what a run's settings come to on a corpus (its step budget and
its policy's completed options). Torch-free, like all of :mod:`ado_ray.schema`: a trial's driver
uses it without importing the training loop."""

from __future__ import annotations

from typing import Any

from ado_ray.policies import complete_options
from ado_ray.schema import RunConfig as TrainConfig

__all__ = [
    "TrainConfig",
    "policy_run_options",
    "resolve_policy_options",
    "run_total_steps",
    "total_train_sequences",
]


def total_train_sequences(corpus: Any) -> int:
    return int(sum(len(t) for t in corpus.train))


def run_total_steps(cfg: TrainConfig, corpus: Any) -> int:
    """The run's optimiser steps for ``cfg``'s budget on ``corpus``."""
    return cfg.training.total_steps(int(corpus.seq_len), total_train_sequences(corpus))


def policy_run_options(
    policy: str, options: dict[str, Any], corpus: Any, total_steps: int, batch_size: int
) -> dict[str, Any]:
    """``options`` of ``policy`` completed with what it declares it needs from the run
    (:func:`ado_ray.policies.complete_options`): prior, sequence length, token budget."""
    seq_len = int(corpus.seq_len)
    return complete_options(
        policy,
        options,
        token_counts=[float(c) for c in corpus.token_counts()],
        seq_len=seq_len,
        total_tokens=int(total_steps) * int(batch_size) * seq_len,
    )


def resolve_policy_options(cfg: TrainConfig, corpus: Any) -> dict[str, Any]:
    """``cfg.policy_options`` completed for ``cfg``'s run on ``corpus`` (see
    :func:`policy_run_options`)."""
    return policy_run_options(
        cfg.policy,
        cfg.policy_options,
        corpus,
        run_total_steps(cfg, corpus),
        cfg.training.batch_size,
    )
