"""The study's own schema: arms, search spaces, the search and the study that holds them.

The run settings a study shares across its arms (data, model, training, resources) are the
classes of :mod:`ado_ray.schema`; this module adds what only a study has. An *arm* is a label
with a policy and that policy's options; two arms may share a policy (the paper's ADO and a
short-run ADO). Any arm whose policy declares options may carry a search space.
"""

from __future__ import annotations

import copy
import dataclasses
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml

from ado_ray.schema import (
    DataSpec,
    ModelSpec,
    ResourcesSpec,
    RunConfig,
    StudyError,
    TrainingSpec,
    _is_int,
    _is_number,
    _num,
    _show,
)

__all__ = [
    "DISTRIBUTION_TYPES",
    "SWARM_ARMS",
    "SwarmSpec",
    "METRICS",
    "ArmSpec",
    "ParamSpec",
    "SchedulerSpec",
    "SearchSpec",
    "Study",
    "TrialSpec",
]

SEARCH_SAMPLERS = ("tpe", "random", "gp", "cmaes")
SCHEDULER_TYPES = ("asha",)
DISTRIBUTION_TYPES = ("uniform", "loguniform", "int", "categorical")
#: Metric -> the direction that is better. Every metric so far is a loss.
METRICS: dict[str, str] = {
    "val_loss_balanced": "min",
    "val_loss_natural": "min",
    "val_ppl_balanced": "min",
    "val_ppl_natural": "min",
    "excess_loss_balanced": "min",
}
MODES = ("min", "max")
PHASES = ("search", "confirm")


@dataclass(frozen=True)
class ParamSpec:
    """One search dimension in the study file's form: ``uniform`` / ``loguniform`` (floats),
    ``int`` (optional ``step`` and ``log``) or ``categorical`` (``choices``). Optuna's own
    distribution (:meth:`to_optuna`) is the authority on what is valid."""

    type: str
    low: float | int | None = None
    high: float | int | None = None
    step: int | None = None
    log: bool = False
    choices: tuple[Any, ...] | None = None

    def to_dict(self) -> dict[str, Any]:
        if self.type == "categorical":
            return {"type": "categorical", "choices": list(self.choices or ())}
        out: dict[str, Any] = {"type": self.type, "low": self.low, "high": self.high}
        if self.type == "int":
            out["step"] = self.step or 1
            out["log"] = self.log
        return out

    def to_optuna(self) -> Any:
        """The ``optuna.distributions`` object; raises ``ValueError`` (Optuna's message) for an
        invalid dimension, including an int range that ``step`` does not divide."""
        from optuna.distributions import (
            CategoricalDistribution,
            FloatDistribution,
            IntDistribution,
        )

        with warnings.catch_warnings():
            # Optuna only warns, and silently shrinks the range, when step does not divide it.
            warnings.simplefilter("error")
            try:
                if self.type == "uniform":
                    return FloatDistribution(float(self.low), float(self.high))
                if self.type == "loguniform":
                    return FloatDistribution(float(self.low), float(self.high), log=True)
                if self.type == "int":
                    return IntDistribution(
                        int(self.low), int(self.high), log=self.log, step=self.step or 1
                    )
                return CategoricalDistribution(list(self.choices or ()))
            except UserWarning as warning:
                raise ValueError(str(warning)) from None

    def suggest(self, trial: Any, name: str) -> Any:
        """Sample this dimension from an ``optuna.Trial`` under ``name``."""
        if self.type == "uniform":
            return trial.suggest_float(name, float(self.low), float(self.high))
        if self.type == "loguniform":
            return trial.suggest_float(name, float(self.low), float(self.high), log=True)
        if self.type == "int":
            return trial.suggest_int(
                name, int(self.low), int(self.high), step=self.step or 1, log=self.log
            )
        return trial.suggest_categorical(name, list(self.choices or ()))

    def describe(self) -> str:
        """The space in words, for error messages: ``uniform in [0.05, 0.5]``."""
        if self.type == "categorical":
            return f"one of {list(self.choices or ())!r}"
        text = f"{self.type} in [{_num(self.low)}, {_num(self.high)}]"
        if self.type == "int" and (self.step or 1) != 1:
            text += f", step {self.step}"
        return text

    def contains(self, value: Any) -> bool:
        if self.type == "categorical":
            return value in (self.choices or ())
        if not _is_number(value):
            return False
        if self.type == "int":
            step = self.step or 1
            return (
                _is_int(value)
                and self.low <= value <= self.high
                and ((value - self.low) % step == 0)
            )
        return self.low <= value <= self.high

    def clip(self, value: Any) -> Any:
        """The point of the space nearest ``value`` (the first choice if it is not a choice)."""
        if self.type == "categorical":
            return value if value in (self.choices or ()) else (self.choices or (None,))[0]
        value = min(max(value, self.low), self.high)
        if self.type == "int":
            step = self.step or 1
            value = self.low + round((value - self.low) / step) * step
            value = int(min(max(value, self.low), self.high - (self.high - self.low) % step))
        else:
            value = float(value)
        return value


@dataclass
class ArmSpec:
    """One arm: a ``label`` (its name in the study and the results), a ``policy`` (default: the
    label) with fixed ``options``, and optionally a search space over other options."""

    label: str
    policy: str
    options: dict[str, Any] = field(default_factory=dict)
    search: dict[str, ParamSpec] = field(default_factory=dict)
    num_samples: int | None = None  # None: search.num_samples

    @property
    def name(self) -> str:
        return self.label

    def policy_options(self) -> dict[str, Any]:
        """The fixed options (what ``make_policy`` gets before any sampled value)."""
        return copy.deepcopy(self.options)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"policy": self.policy, "options": copy.deepcopy(self.options)}
        if self.search:
            out["search"] = {k: v.to_dict() for k, v in self.search.items()}
        if self.num_samples is not None:
            out["num_samples"] = self.num_samples
        return out


@dataclass
class SchedulerSpec:
    """An early-stopping scheduler for the search phase; time is counted in eval rounds."""

    type: str = "asha"
    grace_period: int = 1
    reduction_factor: float = 2


@dataclass
class SearchSpec:
    """The search phase: one Optuna study per searched arm, each ``num_samples`` trials."""

    sampler: str = "tpe"
    seed: int | None = 0
    num_samples: int = 8
    enqueue_defaults: bool = True
    search_seeds: list[int] | None = None  # None: one seed past the study's seeds
    top_k: int = 1
    scheduler: SchedulerSpec | None = None
    arms: list[str] | None = None  # None: every arm with a search space


SWARM_CENTERS = ("natural", "uniform")
SWARM_REGRESSIONS = ("ridge", "lightgbm")
#: The confirm-phase arms a swarm adds: the regression's proposal and the best member observed.
SWARM_ARMS = ("swarm_best", "swarm_top")


@dataclass
class SwarmSpec:
    """The swarm phase (see :mod:`ado_ray.swarm`): fixed mixtures run in parallel, a regression
    that proposes the best static mixture, and that mixture confirmed on every seed."""

    n_mixtures: int = 16
    concentration: float = 1.0
    center: str = "natural"
    budget_fraction: float = 1.0
    seeds: list[int] | None = None  # None: the search seeds
    seed: int = 0
    regression: str = "ridge"
    folds: int = 5
    candidates: int = 100_000
    top_k: int = 100


@dataclass(frozen=True)
class TrialSpec:
    """One run of the confirm phase: an arm's policy and options on one seed."""

    arm: str
    phase: str
    seed: int
    policy_options: dict[str, Any]
    config_index: int = 0  # rank among the arm's searched top_k configs; 0 for unsearched arms
    policy: str | None = None  # None: the arm's label


@dataclass
class Study:
    name: str
    arms: dict[str, ArmSpec]
    description: str = ""
    data: DataSpec = field(default_factory=DataSpec)
    model: ModelSpec = field(default_factory=ModelSpec)
    training: TrainingSpec = field(default_factory=TrainingSpec)
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    search: SearchSpec = field(default_factory=SearchSpec)
    resources: ResourcesSpec = field(default_factory=ResourcesSpec)
    storage: str = "./ado_results"
    metric: str = "val_loss_balanced"
    mode: str = "min"
    swarm: SwarmSpec | None = None

    # -- serialisation ---------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """A plain dict (YAML-ready) that :func:`load_study` accepts and maps back to ``self``."""
        return {
            "name": self.name,
            "description": self.description,
            "data": {"source": self.data.source, "options": copy.deepcopy(self.data.options)},
            "model": dataclasses.asdict(self.model),
            "training": self.training.to_dict(),
            "arms": {label: arm.to_dict() for label, arm in self.arms.items()},
            "seeds": list(self.seeds),
            "search": dataclasses.asdict(self.search),
            "resources": dataclasses.asdict(self.resources),
            "storage": self.storage,
            "metric": self.metric,
            "mode": self.mode,
            "swarm": None if self.swarm is None else dataclasses.asdict(self.swarm),
        }

    def with_overrides(self, sets: list[str] | tuple[str, ...]) -> Study:
        """A new study with ``--set key=value`` overrides applied, then validated again.

        Keys are dotted paths (``training.budget.steps=50``, ``arms.ado.options.gamma1=0.5``);
        values are parsed as YAML (``null``, ``[0, 1]``, ``{steps: 50}`` work). Setting one
        member of an either/or group replaces the others: ``training.budget.<kind>`` replaces the
        budget, ``training.lr_warmup_steps`` / ``training.lr_warmup_fraction`` clear each other,
        and ``arms.<label>.options.<name>`` takes ``<name>`` out of that arm's search space.
        Missing intermediate mappings are created (``search.scheduler.type=asha``).
        """
        from ado_ray.study.checks import load_study

        data = self.to_dict()
        for item in sets:
            if not isinstance(item, str) or "=" not in item:
                raise StudyError(f"--set {item!r}: expected key=value, e.g. training.lr=3e-4")
            key, _, raw = item.partition("=")
            key = key.strip()
            parts = key.split(".")
            if not key or any(not p for p in parts):
                raise StudyError(f"--set {item!r}: expected a dotted key such as training.lr")
            try:
                value = yaml.safe_load(raw) if raw.strip() else None
            except yaml.YAMLError as exc:
                raise StudyError(f"{key}: --set value {raw!r} is not valid YAML ({exc})") from None
            node: dict[str, Any] = data
            for depth, part in enumerate(parts[:-1]):
                if parts[: depth + 1] == ["training", "budget"]:
                    node[part] = {}  # a new budget kind replaces the old one
                child = node.get(part)
                if child is None:
                    child = node[part] = {}
                elif not isinstance(child, dict):
                    here = ".".join(parts[: depth + 1])
                    raise StudyError(
                        f"{key}: --set cannot go inside {here}, which holds {_show(child)}"
                    )
                node = child
            node[parts[-1]] = value
            if len(parts) == 2 and parts[0] == "training" and value is not None:
                other = {
                    "lr_warmup_steps": "lr_warmup_fraction",
                    "lr_warmup_fraction": "lr_warmup_steps",
                }.get(parts[1])
                if other:
                    node[other] = None
            if len(parts) == 4 and parts[0] == "arms" and parts[2] == "options":
                search = data["arms"].get(parts[1], {}).get("search")
                if isinstance(search, dict):
                    search.pop(parts[3], None)  # fixing an option takes it out of the search
        return load_study(data)

    # -- arms --------------------------------------------------------------------------------
    def arm(self, label: str) -> ArmSpec:
        if label not in self.arms:
            raise StudyError(
                f"arm {label!r}: the study has no such arm; allowed: {', '.join(self.arms)}"
            )
        return self.arms[label]

    def search_space(self, label: str) -> dict[str, ParamSpec]:
        """Arm ``label``'s search space: option name -> :class:`ParamSpec` (may be empty)."""
        return dict(self.arm(label).search)

    def searched_arms(self) -> list[str]:
        """The labels the search phase tunes: ``search.arms``, else every arm with a search
        space; arms whose sample budget is 0 are left out."""
        labels = self.search.arms if self.search.arms is not None else list(self.arms)
        return [lb for lb in labels if self.arms[lb].search and self.num_samples(lb) > 0]

    def num_samples(self, label: str) -> int:
        """Search trials for arm ``label``: its own ``num_samples``, else ``search.num_samples``."""
        own = self.arm(label).num_samples
        return int(self.search.num_samples if own is None else own)

    @property
    def has_search(self) -> bool:
        """Whether the study runs a search phase at all."""
        return bool(self.searched_arms())

    @property
    def swarm_seeds(self) -> list[int]:
        """The swarm's seeds: ``swarm.seeds``, else the search seeds (not the confirm ones)."""
        if self.swarm is None:
            return []
        return list(self.swarm.seeds or self.search_seeds)

    def swarm_steps(self, total_steps: int) -> int:
        """Steps of each swarm trial: ``budget_fraction`` of the main budget (at least 1)."""
        frac = 1.0 if self.swarm is None else float(self.swarm.budget_fraction)
        return max(1, round(frac * int(total_steps)))

    @property
    def search_seeds(self) -> list[int]:
        """The seeds of the search phase: ``search.search_seeds``, or else ``max(seeds) + 1``.

        The default is a seed the confirm phase does not use. The best search trial won partly
        by luck on its seed; confirming on that same seed would carry the luck into the
        comparison (the winner's curse), so by default the confirm seeds are all fresh."""
        return list(self.search.search_seeds or [max(self.seeds) + 1])

    def budget_steps(self, seq_len: int, total_train_sequences: int) -> int:
        """Optimiser steps of every trial (see :meth:`TrainingSpec.total_steps`)."""
        return self.training.total_steps(seq_len, total_train_sequences)

    def run_config(self, label: str, policy_options: Mapping[str, Any], seed: int) -> RunConfig:
        """One run of arm ``label`` with ``policy_options`` on ``seed``."""
        return RunConfig(
            data=copy.deepcopy(self.data),
            model=copy.deepcopy(self.model),
            training=copy.deepcopy(self.training),
            policy=self.arm(label).policy,
            policy_options=copy.deepcopy(dict(policy_options)),
            arm=label,
            seed=seed,
        )

    # Expansion into trials lives in ado_ray.study.trials; these are its entry points.
    def arm_options(self, label: str, sampled: Mapping[str, Any] | None = None) -> dict[str, Any]:
        from ado_ray.study.trials import arm_options

        return arm_options(self, label, sampled)

    def default_config(self, label: str, total_steps: int | None = None) -> dict[str, Any]:
        from ado_ray.study.trials import default_config

        return default_config(self, label, total_steps)

    def default_arm_options(self, label: str, total_steps: int | None = None) -> dict[str, Any]:
        return self.arm_options(label, self.default_config(label, total_steps))

    def confirm_trials(
        self,
        configs: Mapping[str, list[Mapping[str, Any]]] | None = None,
        total_steps: int | None = None,
    ) -> list[TrialSpec]:
        from ado_ray.study.trials import confirm_trials

        return confirm_trials(self, configs, total_steps)

