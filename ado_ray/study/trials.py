"""A study's expansion into trials: each arm's options, the search's first point, the confirm
phase, and the plan that ``ado-ray validate`` prints before any compute is spent."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ado_ray.policies import policy_class
from ado_ray.schema import StudyError, _show
from ado_ray.study.schema import SWARM_ARMS, Study, TrialSpec

__all__ = ["Plan", "arm_options", "confirm_trials", "default_config", "plan"]


def arm_options(
    study: Study, label: str, sampled: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """Arm ``label``'s policy options: its fixed ``options`` merged with ``sampled`` values of
    its search space (each checked against the space and the option's declaration)."""
    arm = study.arm(label)
    declared = policy_class(arm.policy).user_options()
    errors = []
    for key, value in dict(sampled or {}).items():
        if key not in arm.search:
            errors.append(
                f"arms.{label}.search.{key}: sampled value {_show(value)} for an option that is "
                f"not searched; allowed keys: {', '.join(arm.search) or '(none)'}"
            )
        elif not arm.search[key].contains(value):
            errors.append(
                f"arms.{label}.search.{key}: sampled value {_show(value)} is outside the "
                f"search space; allowed: {arm.search[key].describe()}"
            )
        elif not declared[key].contains(value):
            errors.append(
                f"arms.{label}.search.{key}: got {_show(value)}; allowed: "
                f"{declared[key].describe()}"
            )
    if errors:
        raise StudyError(errors)
    out = arm.policy_options()
    out.update(copy.deepcopy(dict(sampled or {})))
    return out


def default_config(study: Study, label: str, total_steps: int | None = None) -> dict[str, Any]:
    """The point a search of arm ``label`` enqueues first, and what an unsearched run of it
    uses: each searched option at its run-length-scaled default
    (``policy.scaled_defaults(total_steps)``) or else its declared default, moved into the
    space. ``total_steps`` defaults to a ``steps`` budget's value."""
    arm = study.arm(label)
    cls = policy_class(arm.policy)
    if total_steps is None and study.training.budget.kind == "steps":
        total_steps = int(study.training.budget.value)
    scaled = cls.scaled_defaults(total_steps)
    declared = cls.user_options()
    out: dict[str, Any] = {}
    for name, spec in arm.search.items():
        value = scaled.get(name, declared[name].default)
        if value is None or declared[name].required:
            continue  # no default: Optuna samples it
        out[name] = spec.clip(value)
    return out


def confirm_trials(
    study: Study,
    configs: Mapping[str, list[Mapping[str, Any]]] | None = None,
    total_steps: int | None = None,
) -> list[TrialSpec]:
    """The confirm phase: every arm on every seed. A searched arm runs each of its ``configs``
    (full policy options, best first, e.g. the search's ``top_k``); an arm without configs
    runs its default configuration."""
    configs = dict(configs or {})
    out = []
    for seed in study.seeds:
        for label, arm in study.arms.items():
            chosen = configs.get(label) or [study.default_arm_options(label, total_steps)]
            for i, cfg in enumerate(chosen):
                out.append(
                    TrialSpec(label, "confirm", seed, dict(cfg), config_index=i, policy=arm.policy)
                )
    return out


@dataclass(frozen=True)
class PhasePlan:
    phase: str
    arm: str
    policy: str
    seeds: tuple[int, ...]
    trials: int
    steps: int | None = None  # steps per trial; None: the study's budget


@dataclass(frozen=True)
class Plan:
    """What a study will run: phases, arms, seeds, budgets, trials and compute."""

    study: str
    phases: tuple[PhasePlan, ...]
    steps_per_trial: int
    tokens_per_step: int
    workers_per_trial: int
    cpus_per_worker: float
    gpus_per_worker: float

    @property
    def trials(self) -> int:
        return sum(p.trials for p in self.phases)

    @property
    def total_steps(self) -> int:
        return sum(p.trials * (p.steps or self.steps_per_trial) for p in self.phases)

    @property
    def total_tokens(self) -> int:
        return self.total_steps * self.tokens_per_step

    def text(self) -> str:
        lines = [f"study {self.study}: plan"]
        lines.append(f"  {'phase':<8} {'arm':<18} {'policy':<14} {'seeds':<14} {'trials':>6}")
        for p in self.phases:
            seeds = ",".join(map(str, p.seeds))
            lines.append(
                f"  {p.phase:<8} {p.arm:<18} {p.policy:<14} {seeds:<14} {p.trials:>6}"
            )
        for p in self.phases:
            if p.steps is not None and p.steps != self.steps_per_trial:
                lines.append(f"  ({p.phase} trials run {p.steps} steps each)")
        if any(p.steps not in (None, self.steps_per_trial) for p in self.phases):
            lines.append(
                f"  {self.trials} trials, {self.steps_per_trial} steps each unless noted, x "
                f"{self.tokens_per_step} tokens/step = {self.total_steps:,} optimizer steps, "
                f"{self.total_tokens:,} tokens"
            )
        else:
            lines.append(
                f"  {self.trials} trials x {self.steps_per_trial} steps x {self.tokens_per_step} "
                f"tokens/step = {self.total_steps:,} optimizer steps, {self.total_tokens:,} tokens"
            )
        res = f"{self.workers_per_trial} worker(s) x {_g(self.cpus_per_worker)} CPU"
        if self.gpus_per_worker:
            res += f" + {_g(self.gpus_per_worker)} GPU"
        lines.append(f"  each trial asks for {res}")
        return "\n".join(lines)


def _g(x: float) -> str:
    return f"{x:g}"


def plan(study: Study, total_steps: int, seq_len: int) -> Plan:
    """The study's plan for runs of ``total_steps`` steps of ``seq_len``-token sequences."""
    phases = []
    if study.swarm is not None:
        phases.append(
            PhasePlan(
                "swarm",
                "swarm",
                "fixed",
                tuple(study.swarm_seeds),
                study.swarm.n_mixtures * len(study.swarm_seeds),
                study.swarm_steps(total_steps),
            )
        )
    searched = study.searched_arms()
    for label in searched:
        phases.append(
            PhasePlan(
                "search",
                label,
                study.arms[label].policy,
                tuple(study.search_seeds),
                study.num_samples(label),
            )
        )
    for label, arm in study.arms.items():
        k = int(study.search.top_k) if label in searched else 1
        phases.append(
            PhasePlan("confirm", label, arm.policy, tuple(study.seeds), k * len(study.seeds))
        )
    if study.swarm is not None:
        for label in SWARM_ARMS:
            phases.append(
                PhasePlan("confirm", label, "fixed", tuple(study.seeds), len(study.seeds))
            )
    r = study.resources
    return Plan(
        study=study.name,
        phases=tuple(phases),
        steps_per_trial=int(total_steps),
        tokens_per_step=int(study.training.batch_size) * int(seq_len),
        workers_per_trial=int(r.workers_per_trial),
        cpus_per_worker=float(r.cpus_per_worker),
        gpus_per_worker=float(r.gpus_per_worker),
    )



