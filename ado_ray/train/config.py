"""The flat configuration of one training run (one trial): data, model, optimiser, policy."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

BUDGET_KINDS = ("steps", "tokens", "epochs")


@dataclass
class TrainConfig:
    """Everything one run needs. Every arm of a study shares all of it but the policy."""

    # data
    data_source: str = "synthetic"
    data_options: dict[str, Any] = field(default_factory=dict)
    # model
    model_preset: str = "tiny"
    pretrained: str | None = None
    model_overrides: dict[str, Any] = field(default_factory=dict)
    # budget: one of steps / tokens / epochs; every arm gets the same
    budget: dict[str, float] = field(default_factory=lambda: {"steps": 100})
    # optimisation
    batch_size: int = 16  # global sequences per optimiser step
    grad_accum: int = 1  # micro-batches per step on each worker
    lr: float = 1e-3
    min_lr_ratio: float = 0.1
    lr_warmup_steps: int | None = 20
    lr_warmup_fraction: float | None = None
    betas: tuple[float, float] = (0.9, 0.95)
    weight_decay: float = 0.1
    grad_clip: float | None = 1.0
    precision: str = "auto"  # auto: bf16 autocast on CUDA, fp32 on CPU
    compile: bool = False
    # evaluation and checkpoints
    eval_interval: int = 50
    eval_sequences: int | None = 256  # per domain
    eval_batch_size: int = 64
    checkpoint_interval: int = 100
    # mixture
    policy: str = "uniform"
    policy_options: dict[str, Any] = field(default_factory=dict)
    mixture_lag: int = 2
    sampler: str = "multinomial"
    # run
    seed: int = 0

    def __post_init__(self) -> None:
        kinds = [k for k in self.budget if k in BUDGET_KINDS]
        if len(self.budget) != 1 or len(kinds) != 1 or not self.budget[kinds[0]] > 0:
            raise ValueError(
                f"training.budget={self.budget!r}: allowed exactly one of {list(BUDGET_KINDS)} "
                "with a positive value"
            )
        for name, low in (("batch_size", 1), ("grad_accum", 1), ("eval_interval", 1)):
            if int(getattr(self, name)) < low:
                raise ValueError(
                    f"training.{name}={getattr(self, name)} is out of range: allowed >= {low}"
                )
        if self.precision not in ("auto", "fp32", "bf16"):
            raise ValueError(
                f"training.precision={self.precision!r}: allowed 'auto', 'fp32', 'bf16'"
            )
        self.betas = tuple(float(b) for b in self.betas)

    def total_steps(self, seq_len: int, total_train_sequences: int) -> int:
        """Optimiser steps for the budget; tokens and epochs round up to whole steps."""
        kind, value = next(iter(self.budget.items()))
        if kind == "steps":
            return int(value)
        if kind == "tokens":
            return max(1, math.ceil(float(value) / (self.batch_size * seq_len)))
        return max(1, math.ceil(float(value) * total_train_sequences / self.batch_size))

    def warmup_steps(self, total: int) -> int:
        if self.lr_warmup_fraction is not None:
            return int(self.lr_warmup_fraction * total)
        return min(int(self.lr_warmup_steps or 0), total)

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["betas"] = list(self.betas)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - names
        if unknown:
            raise ValueError(f"unknown training config keys {sorted(unknown)}")
        return cls(**data)
