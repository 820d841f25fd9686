"""The study file: a YAML document, validated on load, and its expansion into trials.

A study compares mixture *arms* (``uniform``, ``natural``, ``fixed``, ``ado``) on one shared
setup: the same data, model, optimiser, schedule, token budget and seeds. ADO's options may be
searched (Optuna, through Ray Tune) on ``search.search_seeds``; the ``search.top_k`` best configs
are then confirmed against the baselines on every seed in ``seeds``.

Everything is checked here, before any compute: a bad study raises :class:`StudyError` (a
``ValueError``) whose message names each bad field by its dotted path (``training.batch_size``),
the value found and what is allowed. All problems found are reported at once, the first first.
Checks that need the number of domains K (a fixed arm's weight count, ``delta_min * K < 1``) and
the data source's own options are left to the policy and to ``ado_ray.data.load_corpus``.

PyYAML reads ``1e-3`` (no dot) as a string; numeric fields accept such strings as numbers.

Nothing here imports Ray or torch; Optuna is imported only by the helpers that return Optuna
objects.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import yaml

__all__ = [
    "ADO_OPTION_NAMES",
    "ArmSpec",
    "Budget",
    "DataSpec",
    "ModelSpec",
    "ParamSpec",
    "ResourcesSpec",
    "SchedulerSpec",
    "SearchSpec",
    "Study",
    "StudyError",
    "TrainingSpec",
    "TrialSpec",
    "dump_study",
    "load_study",
    "shipped_studies",
]

# --------------------------------------------------------------------------------------------
# Vocabulary. Each list lives in one place; update it here.
# --------------------------------------------------------------------------------------------

#: Every ADO option a study may fix (``arms.ado.options``) or search (``arms.ado.search``).
#: ``ado_ray.policies`` is the authority: if it exports ``ADO_OPTION_NAMES``, that list is used.
ADO_OPTION_NAMES: tuple[str, ...] = (
    "gamma1",
    "gamma2",
    "s",
    "delta_min",
    "warmup_steps",
    "update_interval",
    "ignore_steps",
    "subsample",
    "smoothing",
    "count_mode",
    "count_unit",
    "min_fit_points",
    "alpha_floor",
    "pibar_clock",
    "clip",
    "credit",
    "alpha_max",
    "alpha_min",
    "log_beta_max",
    "log_eps_min",
)
try:  # pragma: no cover - depends on what ado_ray.policies exports at the time
    from ado_ray.policies import ADO_OPTION_NAMES as _POLICY_OPTION_NAMES  # type: ignore

    ADO_OPTION_NAMES = tuple(_POLICY_OPTION_NAMES)
except ImportError:
    pass

#: Options that may be fixed for ADO but not searched (the prior is a vector).
ADO_FIXED_ONLY_OPTIONS: tuple[str, ...] = ("prior",)

DATA_SOURCES = ("synthetic", "wikitext2", "hf", "files")
# Mirrors ado_ray.train.model.PRESETS (not imported: that pulls in torch).
MODEL_PRESETS: dict[str, dict[str, int]] = {
    "tiny": {"n_layer": 2, "n_embd": 128, "n_head": 4},
    "small": {"n_layer": 12, "n_embd": 768, "n_head": 12},
    "medium": {"n_layer": 24, "n_embd": 1024, "n_head": 16},
}
MODEL_OVERRIDE_KEYS = ("n_layer", "n_embd", "n_head", "n_positions", "dropout")
BUDGET_KINDS = ("tokens", "steps", "epochs")
SAMPLERS = ("multinomial", "largest_remainder")
PRECISIONS = ("auto", "fp32", "bf16")
ARM_NAMES = ("uniform", "natural", "fixed", "ado")
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
# Mirrors ado_ray.storage.REMOTE_SCHEMES, plus file://; a bare path is local.
STORAGE_SCHEMES = ("file", "s3", "gs", "gcs", "hdfs", "abfs", "abfss")
NAME_RE = re.compile(r"^[A-Za-z0-9_.-]+$")

#: The authors' defaults for ADO (their 124M config). ``warmup_steps``, ``update_interval`` and
#: ``ignore_steps`` are 1,000 of 60,000 steps there; :meth:`Study.paper_defaults` scales them to
#: ``PAPER_STEP_FRACTION`` of the run instead.
PAPER_DEFAULTS: dict[str, Any] = {
    "gamma1": 0.1,
    "gamma2": 0.1,
    "s": 0.5,
    "delta_min": 0.01,
    "subsample": 10,
    "count_mode": "same_step_size",
    "alpha_floor": 0.05,
    "alpha_max": 0.8,
    "alpha_min": 0.001,
    "log_beta_max": 6.5,
    "log_eps_min": 0.5,
}
PAPER_STEP_OPTIONS = ("warmup_steps", "update_interval", "ignore_steps")
PAPER_STEP_FRACTION = 0.02  # about the paper's 1,000 / 60,000 (1.7%), rounded to 2%
PAPER_STEPS_ABSOLUTE = 1000  # used, clipped into the space, when the run's length is unknown


@dataclass(frozen=True)
class _Range:
    """The values an ADO option may take (checked on fixed values and on search bounds)."""

    kind: str  # "float" | "int" | "choice"
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    choices: tuple[Any, ...] = ()

    def describe(self) -> str:
        if self.kind == "choice":
            return "one of " + ", ".join(repr(c) for c in self.choices)
        what = "an integer" if self.kind == "int" else "a number"
        lo = None if self.low is None else ("> " if self.low_open else ">= ") + _num(self.low)
        hi = None if self.high is None else ("< " if self.high_open else "<= ") + _num(self.high)
        if lo and hi:
            left = "(" if self.low_open else "["
            right = ")" if self.high_open else "]"
            return f"{what} in {left}{_num(self.low)}, {_num(self.high)}{right}"
        return " ".join(x for x in (what, lo or hi) if x)

    def contains(self, value: Any) -> bool:
        if self.kind == "choice":
            return value in self.choices
        if not _is_number(value) or not math.isfinite(value):
            return False
        if self.kind == "int" and not _is_int(value):
            return False
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return False
        if self.high is not None and (value >= self.high if self.high_open else value > self.high):
            return False
        return True


#: Value ranges of the ADO options this module knows; the others are checked by the policy.
ADO_OPTION_RANGES: dict[str, _Range] = {
    "gamma1": _Range("float", 0.0, 1.0, low_open=True),
    "gamma2": _Range("float", 0.0, 1.0, low_open=True),
    "s": _Range("float", 0.0),
    "delta_min": _Range("float", 0.0, 1.0, high_open=True),
    "warmup_steps": _Range("int", 0),
    "update_interval": _Range("int", 1),
    "ignore_steps": _Range("int", 0),
    "subsample": _Range("int", 1),
    "min_fit_points": _Range("int", 1),
    "alpha_floor": _Range("float", 0.0),
    "alpha_min": _Range("float", 0.0),
    "alpha_max": _Range("float", 0.0, low_open=True),
    "log_beta_max": _Range("float"),
    "log_eps_min": _Range("float"),
    "count_mode": _Range("choice", choices=("same_step_size", "own")),
}


# --------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------


class StudyError(ValueError):
    """A study that does not validate. ``errors`` holds one message per problem, each starting
    with the dotted path of the field (``training.batch_size: ...``)."""

    def __init__(self, errors: list[str] | str, source: str | None = None):
        self.errors = [errors] if isinstance(errors, str) else list(errors)
        self.source = source
        where = f" in {source}" if source else ""
        if len(self.errors) == 1:
            text = self.errors[0] + (f" ({source})" if source else "")
        else:
            text = f"{len(self.errors)} problems{where}:\n" + "\n".join(
                f"  - {e}" for e in self.errors
            )
        super().__init__(text)


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _num(x: float) -> str:
    return repr(int(x)) if float(x).is_integer() and abs(x) < 1e15 else repr(float(x))


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


_FLOAT_RE = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")


def _coerce_number(value: Any) -> Any:
    """``'1e-3'`` (a YAML 1.1 string) -> ``0.001``; anything else unchanged."""
    if isinstance(value, str) and _FLOAT_RE.match(value.strip()):
        return float(value)
    return value


class _Checker:
    """Collects problems; each helper returns the checked value or ``_BAD``."""

    def __init__(self) -> None:
        self.errors: list[str] = []

    def fail(
        self,
        path: str,
        value: Any,
        allowed: str,
        problem: str | None = None,
        hint: str | None = None,
    ) -> Any:
        got = "missing" if value is _MISSING else f"got {_show(value)}"
        lead = f"{problem} ({got})" if problem else got
        if hint:
            lead += f" ({hint})"
        self.errors.append(f"{path}: {lead}; allowed: {allowed}")
        return _BAD

    # -- structure ---------------------------------------------------------------------------
    def mapping(
        self,
        value: Any,
        path: str,
        keys: tuple[str, ...] | None,
        required: tuple[str, ...] = (),
        none_is_empty: bool = True,
    ) -> dict[str, Any] | Any:
        if value is None and none_is_empty:
            value = {}
        if not isinstance(value, Mapping):
            return self.fail(path or "<study>", value, "a mapping (key: value)")
        out: dict[str, Any] = {}
        for key, item in value.items():
            sub = f"{path}.{key}" if path else str(key)
            if not isinstance(key, str):
                self.fail(sub, key, "string keys", problem="key is not a string")
                continue
            if keys is not None and key not in keys:
                close = difflib.get_close_matches(key, keys, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                listed = ", ".join(keys) or "(none)"
                self.errors.append(f"{sub}: unknown key{hint}; allowed keys: {listed}")
                continue
            out[key] = item
        for key in required:
            if key not in out:
                self.fail(f"{path}.{key}" if path else key, _MISSING, "a value (required)")
        return out

    # -- scalars -----------------------------------------------------------------------------
    def integer(
        self,
        value: Any,
        path: str,
        low: int | None = None,
        high: int | None = None,
        allow_none: bool = False,
        integral_float: bool = False,
    ) -> Any:
        if value is None and allow_none:
            return None
        given, value = value, _coerce_number(value)
        if integral_float and isinstance(value, float) and value.is_integer():
            value = int(value)
        rng = _Range("int", low, high).describe() + (" or null" if allow_none else "")
        if not _is_int(value):
            return self.fail(path, given, rng)
        if (low is not None and value < low) or (high is not None and value > high):
            return self.fail(path, given, rng)
        return value

    def number(
        self,
        value: Any,
        path: str,
        low: float | None = None,
        high: float | None = None,
        low_open: bool = False,
        high_open: bool = False,
        allow_none: bool = False,
    ) -> Any:
        if value is None and allow_none:
            return None
        given, value = value, _coerce_number(value)
        rng = _Range("float", low, high, low_open, high_open)
        allowed = rng.describe() + (" or null" if allow_none else "")
        if not _is_number(value) or not rng.contains(value):
            return self.fail(path, given, allowed)
        return value

    def choice(self, value: Any, path: str, choices: tuple[Any, ...]) -> Any:
        if not any(type(value) is type(ch) and value == ch for ch in choices):
            close = (
                difflib.get_close_matches(value, [str(ch) for ch in choices], n=1)
                if isinstance(value, str)
                else []
            )
            hint = f"did you mean {close[0]!r}?" if close else None
            return self.fail(path, value, "one of " + ", ".join(map(repr, choices)), hint=hint)
        return value

    def boolean(self, value: Any, path: str) -> Any:
        if not isinstance(value, bool):
            return self.fail(path, value, "true or false")
        return value

    def string(self, value: Any, path: str, allow_none: bool = False) -> Any:
        if value is None and allow_none:
            return None
        if not isinstance(value, str) or not value.strip():
            return self.fail(path, value, "a non-empty string" + (" or null" if allow_none else ""))
        return value

    def seed_list(self, value: Any, path: str) -> Any:
        if not isinstance(value, list) or not value:
            return self.fail(path, value, "a non-empty list of distinct integers >= 0")
        ok = True
        for i, s in enumerate(value):
            if self.integer(s, f"{path}[{i}]", low=0) is _BAD:
                ok = False
        if ok and len(set(value)) != len(value):
            dup = sorted({s for s in value if value.count(s) > 1})
            return self.fail(
                path, value, "a non-empty list of distinct integers >= 0", f"duplicate seeds {dup}"
            )
        return list(value) if ok else _BAD

    def distribution(self, value: Any, path: str, sums_to_one: bool = True) -> Any:
        """A probability vector (or, without ``sums_to_one``, non-negative weights)."""
        allowed = (
            "a non-empty list of non-negative numbers summing to 1"
            if sums_to_one
            else "a non-empty list of non-negative numbers with a positive sum"
        )
        if not isinstance(value, list) or not value:
            return self.fail(path, value, allowed)
        out = []
        for i, w in enumerate(value):
            w = _coerce_number(w)
            if not _is_number(w) or not math.isfinite(w) or w < 0:
                return self.fail(f"{path}[{i}]", w, "a finite number >= 0")
            out.append(float(w))
        total = sum(out)
        if sums_to_one and abs(total - 1.0) > 1e-6:
            return self.fail(path, value, allowed, f"sums to {total:.6g}")
        if not sums_to_one and total <= 0:
            return self.fail(path, value, allowed, "sums to 0")
        return out


class _Missing:
    def __repr__(self) -> str:
        return "<missing>"


_MISSING: Any = _Missing()
_BAD: Any = type("_Bad", (), {"__repr__": lambda self: "<invalid>"})()


def _pick(values: Mapping[str, Any], key: str, default: Any) -> Any:
    return values[key] if key in values else copy.deepcopy(default)


# --------------------------------------------------------------------------------------------
# Schema
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ParamSpec:
    """One search dimension: ``uniform`` / ``loguniform`` (float low < high), ``int`` (low <= high,
    optional ``step`` and ``log``) or ``categorical`` (``choices``)."""

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
        """The ``optuna.distributions`` object for this dimension."""
        from optuna.distributions import (
            CategoricalDistribution,
            FloatDistribution,
            IntDistribution,
        )

        if self.type == "uniform":
            return FloatDistribution(float(self.low), float(self.high))
        if self.type == "loguniform":
            return FloatDistribution(float(self.low), float(self.high), log=True)
        if self.type == "int":
            return IntDistribution(int(self.low), int(self.high), log=self.log, step=self.step or 1)
        return CategoricalDistribution(list(self.choices or ()))

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
class DataSpec:
    source: str = "synthetic"
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class ModelSpec:
    preset: str = "tiny"
    pretrained: str | None = None
    overrides: dict[str, Any] = field(default_factory=dict)


@dataclass
class Budget:
    """Exactly one of tokens / steps / epochs; the same for every arm."""

    kind: str = "steps"
    value: int | float = 300

    def to_dict(self) -> dict[str, Any]:
        return {self.kind: self.value}


@dataclass
class TrainingSpec:
    budget: Budget = field(default_factory=Budget)
    batch_size: int = 16
    grad_accum: int = 1
    lr: float = 1.0e-3
    min_lr_ratio: float = 0.1
    lr_warmup_steps: int | None = 20
    lr_warmup_fraction: float | None = None
    betas: list[float] = field(default_factory=lambda: [0.9, 0.95])
    weight_decay: float = 0.1
    grad_clip: float | None = 1.0
    eval_interval: int = 50
    eval_sequences: int | None = 256
    eval_batch_size: int = 64
    checkpoint_interval: int = 100
    mixture_lag: int = 2
    sampler: str = "multinomial"
    compile: bool = False
    precision: str = "auto"
    max_failures: int = 1


@dataclass
class ArmSpec:
    """One mixture arm. ``name`` is also the policy's name."""

    name: str
    options: dict[str, Any] = field(default_factory=dict)
    weights: list[float] | None = None  # the fixed arm's distribution
    search: dict[str, ParamSpec] = field(default_factory=dict)  # ado only

    def policy_options(self) -> dict[str, Any]:
        """The options handed to ``make_policy`` (for ``ado``: the fixed ones only)."""
        out = copy.deepcopy(self.options)
        if self.weights is not None:
            out["weights"] = list(self.weights)
        return out

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.weights is not None:
            out["weights"] = list(self.weights)
        if self.options or self.name in ("natural", "ado"):
            out["options"] = copy.deepcopy(self.options)
        if self.name == "ado":
            out["search"] = {k: v.to_dict() for k, v in self.search.items()}
        return out


@dataclass
class SchedulerSpec:
    """An early-stopping scheduler for the search phase; time is counted in eval rounds."""

    type: str = "asha"
    grace_period: int = 1
    reduction_factor: float = 2


@dataclass
class SearchSpec:
    sampler: str = "tpe"
    seed: int | None = 0
    num_samples: int = 8
    enqueue_defaults: bool = True
    search_seeds: list[int] | None = None  # None: one seed past the study's seeds
    top_k: int = 1
    scheduler: SchedulerSpec | None = None


@dataclass
class ResourcesSpec:
    workers_per_trial: int = 1
    cpus_per_worker: float = 1
    gpus_per_worker: float = 0
    max_concurrent_trials: int | None = None


@dataclass(frozen=True)
class TrialSpec:
    """One run of the confirm phase: an arm's policy and options on one seed."""

    arm: str
    phase: str
    seed: int
    policy_options: dict[str, Any]
    config_index: int = 0  # which ADO config (rank among the search's top_k); 0 for baselines


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

    # -- serialisation ---------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """A plain dict (YAML-ready) that :func:`load_study` accepts and maps back to ``self``."""
        t = self.training
        training = {f.name: copy.deepcopy(getattr(t, f.name)) for f in dataclasses.fields(t)}
        training["budget"] = t.budget.to_dict()
        training["betas"] = list(t.betas)
        search = dataclasses.asdict(self.search)
        return {
            "name": self.name,
            "description": self.description,
            "data": {"source": self.data.source, "options": copy.deepcopy(self.data.options)},
            "model": {
                "preset": self.model.preset,
                "pretrained": self.model.pretrained,
                "overrides": copy.deepcopy(self.model.overrides),
            },
            "training": training,
            "arms": {name: arm.to_dict() for name, arm in self.arms.items()},
            "seeds": list(self.seeds),
            "search": search,
            "resources": dataclasses.asdict(self.resources),
            "storage": self.storage,
            "metric": self.metric,
            "mode": self.mode,
        }

    def with_overrides(self, sets: list[str] | tuple[str, ...]) -> Study:
        """A new study with ``--set key=value`` overrides applied, then validated again.

        Keys are dotted paths (``training.budget.steps=50``, ``arms.ado.options.gamma1=0.5``);
        values are parsed as YAML (``null``, ``[0, 1]``, ``{steps: 50}`` work). Setting one
        member of an either/or group replaces the others: ``training.budget.<kind>`` replaces the
        budget, and ``training.lr_warmup_steps`` / ``training.lr_warmup_fraction`` clear each
        other, and ``arms.ado.options.<name>`` takes ``<name>`` out of the search space. Missing
        intermediate mappings are created (``search.scheduler.type=asha``).
        """
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
            if len(parts) == 4 and parts[:3] == ["arms", "ado", "options"]:
                search = data["arms"]["ado"].get("search")
                if isinstance(search, dict):
                    search.pop(parts[3], None)  # fixing an option takes it out of the search
        return load_study(data)

    # -- arms --------------------------------------------------------------------------------
    @property
    def ado(self) -> ArmSpec | None:
        return self.arms.get("ado")

    def baseline_arms(self) -> list[tuple[str, dict[str, Any]]]:
        """``(arm_name, policy_options)`` for every non-ADO arm, in the study's order."""
        return [(n, a.policy_options()) for n, a in self.arms.items() if n != "ado"]

    def search_space(self) -> dict[str, ParamSpec]:
        """ADO's search space: option name -> :class:`ParamSpec` (empty without an ado arm)."""
        return dict(self.ado.search) if self.ado else {}

    @property
    def has_search(self) -> bool:
        """Whether the study runs a search phase: an ado arm, a non-empty space, samples > 0."""
        return bool(self.search_space()) and self.search.num_samples > 0

    @property
    def search_seeds(self) -> list[int]:
        """The seeds of the search phase: ``search.search_seeds``, or else ``max(seeds) + 1``.

        The default is a seed the confirm phase does not use. The best search trial won partly
        by luck on its seed; confirming on that same seed would carry the luck into the
        comparison (the winner's curse), so by default the confirm seeds are all fresh."""
        return list(self.search.search_seeds or [max(self.seeds) + 1])

    def to_optuna_distributions(self, prefix: str = "") -> dict[str, Any]:
        """``{prefix + name: optuna distribution}`` for the ADO search space."""
        return {prefix + k: v.to_optuna() for k, v in self.search_space().items()}

    def suggest(self, trial: Any, prefix: str = "") -> dict[str, Any]:
        """Sample the ADO search space define-by-run from an ``optuna.Trial``.

        Parameters are registered as ``prefix + name``; the returned dict uses the plain names.
        """
        return {k: spec.suggest(trial, prefix + k) for k, spec in self.search_space().items()}

    def paper_defaults(self, total_steps: int | None = None) -> dict[str, Any]:
        """The authors' defaults for the *searched* options, moved into the space.

        ``gamma1 = gamma2 = 0.1``, ``s = 0.5``, ``delta_min = 0.01`` and the other values of
        :data:`PAPER_DEFAULTS`. ``warmup_steps``, ``update_interval`` and ``ignore_steps`` are
        1,000 of the paper's 60,000 steps; here they are ``PAPER_STEP_FRACTION`` (2%) of the
        run's ``total_steps`` (the budget itself for a ``steps`` budget; otherwise pass it, from
        :meth:`budget_steps`), or 1,000 when unknown, then rounded into the space's range.
        Searched options with no known default are left out (Optuna samples them).
        """
        if total_steps is None and self.training.budget.kind == "steps":
            total_steps = int(self.training.budget.value)
        out: dict[str, Any] = {}
        for name, spec in self.search_space().items():
            if name in PAPER_DEFAULTS:
                value = PAPER_DEFAULTS[name]
            elif name in PAPER_STEP_OPTIONS:
                if total_steps is not None:
                    value = max(1, round(PAPER_STEP_FRACTION * total_steps))
                else:
                    value = PAPER_STEPS_ABSOLUTE
            else:
                continue
            out[name] = spec.clip(value)
        return out

    def ado_options(self, sampled: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """ADO's policy options: the fixed ``options`` merged with ``sampled`` search values."""
        if self.ado is None:
            raise StudyError("arms.ado: missing; the study has no ado arm to build options for")
        sampled = dict(sampled or {})
        space = self.search_space()
        errors = []
        for key, value in sampled.items():
            if key not in space:
                errors.append(
                    f"arms.ado.search.{key}: sampled value {_show(value)} for an option that is "
                    f"not searched; allowed keys: {', '.join(space) or '(none)'}"
                )
            elif key in ADO_OPTION_RANGES and not ADO_OPTION_RANGES[key].contains(value):
                errors.append(
                    f"arms.ado.search.{key}: got {_show(value)}; allowed: "
                    f"{ADO_OPTION_RANGES[key].describe()}"
                )
        if errors:
            raise StudyError(errors)
        out = self.ado.policy_options()
        out.update(sampled)
        return out

    def default_ado_options(self, total_steps: int | None = None) -> dict[str, Any]:
        """ADO's options with the paper's defaults for the searched options (the config a
        ``num_samples: 0`` study confirms, and the point enqueued first by a search)."""
        return self.ado_options(self.paper_defaults(total_steps))

    def confirm_trials(self, ado_configs: list[Mapping[str, Any]] | None = None) -> list[TrialSpec]:
        """The confirm phase: every baseline arm and every ADO config (full policy options, e.g.
        from :meth:`ado_options`; default: :meth:`default_ado_options`) on every seed."""
        out = []
        for seed in self.seeds:
            for name, opts in self.baseline_arms():
                out.append(TrialSpec(name, "confirm", seed, copy.deepcopy(opts)))
            if self.ado is not None:
                configs = ado_configs if ado_configs is not None else [self.default_ado_options()]
                for i, cfg in enumerate(configs):
                    out.append(TrialSpec("ado", "confirm", seed, dict(cfg), config_index=i))
        return out

    # -- budget ------------------------------------------------------------------------------
    def budget_steps(self, seq_len: int, total_train_sequences: int) -> int:
        """Optimiser steps for the budget: ``steps`` as given; ``tokens`` ->
        ``ceil(tokens / (batch_size * seq_len))``; ``epochs`` ->
        ``ceil(epochs * total_train_sequences / batch_size)``."""
        if not _is_int(seq_len) or seq_len < 1:
            raise ValueError(f"seq_len: got {_show(seq_len)}; allowed: an integer >= 1")
        if not _is_int(total_train_sequences) or total_train_sequences < 1:
            raise ValueError(
                f"total_train_sequences: got {_show(total_train_sequences)}; "
                "allowed: an integer >= 1"
            )
        b, batch = self.training.budget, self.training.batch_size
        if b.kind == "steps":
            return int(b.value)
        if b.kind == "tokens":
            return max(1, math.ceil(b.value / (batch * seq_len)))
        return max(1, math.ceil(b.value * total_train_sequences / batch))

    def trial_config(self, arm: str, policy_options: Mapping[str, Any], seed: int) -> dict:
        """One run's flat settings, keyed as ``ado_ray.train.config.TrainConfig``'s fields."""
        t = self.training
        return {
            "data_source": self.data.source,
            "data_options": copy.deepcopy(self.data.options),
            "model_preset": self.model.preset,
            "pretrained": self.model.pretrained,
            "model_overrides": copy.deepcopy(self.model.overrides),
            "budget": t.budget.to_dict(),
            "batch_size": t.batch_size,
            "grad_accum": t.grad_accum,
            "lr": t.lr,
            "min_lr_ratio": t.min_lr_ratio,
            "lr_warmup_steps": t.lr_warmup_steps,
            "lr_warmup_fraction": t.lr_warmup_fraction,
            "betas": list(t.betas),
            "weight_decay": t.weight_decay,
            "grad_clip": t.grad_clip,
            "precision": t.precision,
            "compile": t.compile,
            "eval_interval": t.eval_interval,
            "eval_sequences": t.eval_sequences,
            "eval_batch_size": t.eval_batch_size,
            "checkpoint_interval": t.checkpoint_interval,
            "policy": arm,
            "policy_options": copy.deepcopy(dict(policy_options)),
            "mixture_lag": t.mixture_lag,
            "sampler": t.sampler,
            "seed": seed,
        }


# --------------------------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------------------------

_TOP_KEYS = tuple(f.name for f in dataclasses.fields(Study))
_TRAINING_KEYS = tuple(f.name for f in dataclasses.fields(TrainingSpec))
_SEARCH_KEYS = tuple(f.name for f in dataclasses.fields(SearchSpec))
_RESOURCES_KEYS = tuple(f.name for f in dataclasses.fields(ResourcesSpec))
_SCHEDULER_KEYS = tuple(f.name for f in dataclasses.fields(SchedulerSpec))
_ARM_KEYS: dict[str, tuple[str, ...]] = {
    "uniform": ("options",),
    "natural": ("options",),
    "fixed": ("weights", "options"),
    "ado": ("options", "search"),
}
_ARM_OPTION_KEYS: dict[str, tuple[str, ...]] = {
    "uniform": (),
    "natural": ("prior",),
    "fixed": (),
    "ado": ADO_OPTION_NAMES + ADO_FIXED_ONLY_OPTIONS,
}


def _check_data(c: _Checker, raw: Any) -> DataSpec | None:
    d = c.mapping(raw, "data", ("source", "options"))
    if d is _BAD:
        return None
    source = c.choice(_pick(d, "source", "synthetic"), "data.source", DATA_SOURCES)
    options = c.mapping(_pick(d, "options", {}), "data.options", None)
    if _BAD in (source, options):
        return None
    return DataSpec(source, copy.deepcopy(options))


def _check_model(c: _Checker, raw: Any) -> ModelSpec | None:
    d = c.mapping(raw, "model", ("preset", "pretrained", "overrides"))
    if d is _BAD:
        return None
    preset = c.choice(_pick(d, "preset", "tiny"), "model.preset", tuple(MODEL_PRESETS))
    pretrained = c.string(_pick(d, "pretrained", None), "model.pretrained", allow_none=True)
    ov = c.mapping(_pick(d, "overrides", {}), "model.overrides", MODEL_OVERRIDE_KEYS)
    if ov is _BAD:
        return None
    overrides: dict[str, Any] = {}
    for key, value in ov.items():
        path = f"model.overrides.{key}"
        if key == "dropout":
            v = c.number(value, path, 0.0, 1.0, high_open=True)
        else:
            v = c.integer(value, path, low=1)
        if v is not _BAD:
            overrides[key] = v
        if pretrained not in (None, _BAD) and key != "dropout":
            c.fail(
                path,
                value,
                "only dropout with model.pretrained (the architecture comes from the checkpoint)",
                problem=f"cannot change {key} of pretrained {pretrained!r}",
            )
    if len(overrides) == len(ov) and preset is not _BAD and pretrained is None:
        shape = {**MODEL_PRESETS[preset], **overrides}
        if shape["n_embd"] % shape["n_head"]:
            c.fail(
                "model.overrides.n_head",
                shape["n_head"],
                f"a divisor of n_embd={shape['n_embd']}",
                problem="n_embd is not divisible by n_head",
            )
    if _BAD in (preset, pretrained) or len(overrides) != len(ov):
        return None
    return ModelSpec(preset, pretrained, overrides)


def _check_budget(c: _Checker, raw: Any) -> Budget | None:
    path = "training.budget"
    allowed = "exactly one of tokens, steps, epochs with a positive value, e.g. {steps: 300}"
    d = c.mapping(raw, path, BUDGET_KINDS, none_is_empty=False)
    if d is _BAD:
        return None
    if len(d) != 1:
        if len(d) == len(raw):  # no unknown key was reported already
            c.fail(path, dict(raw), allowed, problem=f"{len(d)} budget kinds given")
        return None
    kind, value = next(iter(d.items()))
    if kind == "epochs":
        v = c.number(value, f"{path}.epochs", 0.0, low_open=True)
    else:
        v = c.integer(value, f"{path}.{kind}", low=1, integral_float=True)
    return None if v is _BAD else Budget(kind, v)


def _check_training(c: _Checker, raw: Any) -> TrainingSpec | None:
    d = c.mapping(raw, "training", _TRAINING_KEYS)
    if d is _BAD:
        return None
    D = TrainingSpec()
    p = "training."
    v: dict[str, Any] = {}
    v["budget"] = (
        _check_budget(c, d["budget"]) if "budget" in d else Budget(D.budget.kind, D.budget.value)
    )
    g = lambda k: _pick(d, k, getattr(D, k))  # noqa: E731
    v["batch_size"] = c.integer(g("batch_size"), p + "batch_size", low=1)
    v["grad_accum"] = c.integer(g("grad_accum"), p + "grad_accum", low=1)
    v["lr"] = c.number(g("lr"), p + "lr", 0.0, low_open=True)
    v["min_lr_ratio"] = c.number(g("min_lr_ratio"), p + "min_lr_ratio", 0.0, 1.0)
    steps_given = d.get("lr_warmup_steps") is not None
    frac_given = d.get("lr_warmup_fraction") is not None
    if steps_given and frac_given:
        c.fail(
            p + "lr_warmup_fraction",
            d["lr_warmup_fraction"],
            "one of training.lr_warmup_steps or training.lr_warmup_fraction (set the other null)",
            problem=f"given together with lr_warmup_steps={d['lr_warmup_steps']!r}",
        )
        v["lr_warmup_steps"] = v["lr_warmup_fraction"] = _BAD
    elif frac_given:
        v["lr_warmup_steps"] = None
        v["lr_warmup_fraction"] = c.number(
            d["lr_warmup_fraction"], p + "lr_warmup_fraction", 0.0, 1.0, high_open=True
        )
    else:
        warm = d["lr_warmup_steps"] if "lr_warmup_steps" in d else D.lr_warmup_steps
        if warm is None:  # both null: no warmup
            warm = 0
        v["lr_warmup_steps"] = c.integer(warm, p + "lr_warmup_steps", low=0)
        v["lr_warmup_fraction"] = None
    betas = g("betas")
    if isinstance(betas, (list, tuple)) and len(betas) == 2:
        bs = [c.number(b, f"{p}betas[{i}]", 0.0, 1.0, high_open=True) for i, b in enumerate(betas)]
        v["betas"] = _BAD if _BAD in bs else [float(b) for b in bs]
    else:
        v["betas"] = c.fail(p + "betas", betas, "a list of two numbers in [0, 1)")
    v["weight_decay"] = c.number(g("weight_decay"), p + "weight_decay", 0.0)
    v["grad_clip"] = c.number(g("grad_clip"), p + "grad_clip", 0.0, low_open=True, allow_none=True)
    v["eval_interval"] = c.integer(g("eval_interval"), p + "eval_interval", low=1)
    v["eval_sequences"] = c.integer(
        g("eval_sequences"), p + "eval_sequences", low=1, allow_none=True
    )
    v["eval_batch_size"] = c.integer(g("eval_batch_size"), p + "eval_batch_size", low=1)
    v["checkpoint_interval"] = c.integer(g("checkpoint_interval"), p + "checkpoint_interval", low=1)
    v["mixture_lag"] = c.integer(g("mixture_lag"), p + "mixture_lag", low=1)
    v["sampler"] = c.choice(g("sampler"), p + "sampler", SAMPLERS)
    v["compile"] = c.boolean(g("compile"), p + "compile")
    v["precision"] = c.choice(g("precision"), p + "precision", PRECISIONS)
    v["max_failures"] = c.integer(g("max_failures"), p + "max_failures", low=0)
    if v["budget"] is None or _BAD in v.values():
        return None
    for k in ("lr", "min_lr_ratio", "weight_decay"):
        v[k] = float(v[k])
    if v["grad_clip"] is not None:
        v["grad_clip"] = float(v["grad_clip"])
    if v["lr_warmup_fraction"] is not None:
        v["lr_warmup_fraction"] = float(v["lr_warmup_fraction"])
    return TrainingSpec(**v)


def _check_option_value(c: _Checker, name: str, value: Any, path: str) -> Any:
    rng = ADO_OPTION_RANGES.get(name)
    if rng is None:
        return value  # checked by the policy
    value = _coerce_number(value)
    if not rng.contains(value):
        return c.fail(path, value, rng.describe())
    return value


def _check_param(c: _Checker, name: str, raw: Any, path: str) -> ParamSpec | None:
    if isinstance(raw, Mapping) and "type" not in raw:
        c.fail(f"{path}.type", _MISSING, "one of " + ", ".join(map(repr, DISTRIBUTION_TYPES)))
        return None
    if not isinstance(raw, Mapping):
        c.fail(path, raw, "a distribution such as {type: uniform, low: 0.0, high: 1.0}")
        return None
    kind = c.choice(raw["type"], f"{path}.type", DISTRIBUTION_TYPES)
    if kind is _BAD:
        return None
    keys = {
        "uniform": ("type", "low", "high"),
        "loguniform": ("type", "low", "high"),
        "int": ("type", "low", "high", "step", "log"),
        "categorical": ("type", "choices"),
    }[kind]
    d = c.mapping(raw, path, keys, required=keys[:3] if kind != "categorical" else keys)
    if (
        d is _BAD
        or any(k not in d for k in keys[:3] if kind != "categorical")
        or (kind == "categorical" and "choices" not in d)
    ):
        return None
    rng = ADO_OPTION_RANGES.get(name)
    n_err = len(c.errors)
    if kind == "categorical":
        choices = d["choices"]
        if not isinstance(choices, list) or not choices:
            c.fail(f"{path}.choices", choices, "a non-empty list of scalars")
            return None
        for i, ch in enumerate(choices):
            if ch is not None and not isinstance(ch, (bool, int, float, str)):
                c.fail(f"{path}.choices[{i}]", ch, "a scalar (null, bool, number or string)")
            elif rng is not None and not rng.contains(
                ch if rng.kind == "choice" else _coerce_number(ch)
            ):
                c.fail(f"{path}.choices[{i}]", ch, f"{rng.describe()} (values of {name})")
        if len({repr(ch) for ch in choices}) != len(choices):
            c.fail(f"{path}.choices", choices, "distinct choices", problem="duplicate choices")
        if len(c.errors) > n_err:
            return None
        if rng is not None and rng.kind != "choice":
            choices = [_coerce_number(ch) for ch in choices]
        return ParamSpec("categorical", choices=tuple(choices))

    if kind == "int":
        low = c.integer(d["low"], f"{path}.low", integral_float=True)
        high = c.integer(d["high"], f"{path}.high", integral_float=True)
        step = c.integer(_pick(d, "step", 1), f"{path}.step", low=1)
        log = c.boolean(_pick(d, "log", False), f"{path}.log")
        if _BAD in (low, high, step, log):
            return None
        if low > high:
            c.fail(f"{path}.low", low, f"<= high ({high})", problem="low > high")
        if log and low < 1:
            c.fail(f"{path}.low", low, "an integer >= 1 when log is true")
        if log and step != 1:
            c.fail(f"{path}.step", step, "1 when log is true (Optuna cannot combine them)")
        if low <= high and (high - low) % step:
            c.fail(
                f"{path}.high",
                high,
                f"low plus a multiple of step ({low} + k * {step})",
                problem="high - low is not a multiple of step",
            )
    else:
        low = c.number(d["low"], f"{path}.low")
        high = c.number(d["high"], f"{path}.high")
        step, log = None, False
        if _BAD in (low, high):
            return None
        low, high = float(low), float(high)
        if low >= high:
            c.fail(f"{path}.low", low, f"< high ({_num(high)})", problem="low >= high")
        if kind == "loguniform" and low <= 0:
            c.fail(f"{path}.low", low, "a number > 0 for loguniform")
    if len(c.errors) > n_err:
        return None
    if rng is not None and rng.kind == "choice":
        c.fail(
            f"{path}.type",
            kind,
            f"'categorical' ({name} takes {rng.describe()})",
            problem=f"{name} is not numeric",
        )
    elif rng is not None and rng.kind == "int" and kind != "int":
        c.fail(f"{path}.type", kind, "'int' or 'categorical'", problem=f"{name} is an integer")
    elif rng is not None:
        for bound, val in (("low", low), ("high", high)):
            if not rng.contains(val):
                c.fail(f"{path}.{bound}", val, f"{rng.describe()} (the range of {name})")
    if len(c.errors) > n_err:
        return None
    return ParamSpec(kind, low, high, step if kind == "int" else None, log)


def _check_arm(c: _Checker, name: str, raw: Any) -> ArmSpec | None:
    path = f"arms.{name}"
    d = c.mapping(raw, path, _ARM_KEYS[name])
    if d is _BAD:
        return None
    n_err = len(c.errors)
    opts = c.mapping(_pick(d, "options", {}), f"{path}.options", _ARM_OPTION_KEYS[name])
    options: dict[str, Any] = {}
    if opts is not _BAD:
        for key, value in opts.items():
            opath = f"{path}.options.{key}"
            if key == "prior":
                if not isinstance(value, str):
                    value = c.distribution(value, opath, sums_to_one=False)
            else:
                value = _check_option_value(c, key, value, opath)
            options[key] = copy.deepcopy(value)
    weights = None
    if name == "fixed":
        if "weights" not in d:
            c.fail(f"{path}.weights", _MISSING, "a list of non-negative numbers summing to 1")
        else:
            weights = c.distribution(d["weights"], f"{path}.weights")
    search: dict[str, ParamSpec] = {}
    if name == "ado":
        s = c.mapping(_pick(d, "search", {}), f"{path}.search", ADO_OPTION_NAMES)
        if s is not _BAD:
            for key, spec in s.items():
                if key in options:
                    c.fail(
                        f"{path}.search.{key}",
                        spec,
                        f"{key} in either {path}.options or {path}.search, not both",
                        problem=f"{key} is also fixed in {path}.options",
                    )
                    continue
                p = _check_param(c, key, spec, f"{path}.search.{key}")
                if p is not None:
                    search[key] = p
    if len(c.errors) > n_err:
        return None
    return ArmSpec(name, options, weights, search)


def _check_search(c: _Checker, raw: Any) -> SearchSpec | None:
    d = c.mapping(raw, "search", _SEARCH_KEYS)
    if d is _BAD:
        return None
    D, p = SearchSpec(), "search."
    g = lambda k: _pick(d, k, getattr(D, k))  # noqa: E731
    v: dict[str, Any] = {
        "sampler": c.choice(g("sampler"), p + "sampler", SEARCH_SAMPLERS),
        "seed": c.integer(g("seed"), p + "seed", low=0, allow_none=True),
        "num_samples": c.integer(g("num_samples"), p + "num_samples", low=0),
        "enqueue_defaults": c.boolean(g("enqueue_defaults"), p + "enqueue_defaults"),
        "top_k": c.integer(g("top_k"), p + "top_k", low=1),
        "search_seeds": None,
        "scheduler": None,
    }
    if d.get("search_seeds") is not None:
        seeds = c.seed_list(d["search_seeds"], p + "search_seeds")
        if seeds is not _BAD and len(seeds) > 1:
            # Each search trial is one training run; averaging a sample over seeds is not
            # built, and silently using the first seed would mislead. Seeds are replicated in
            # the confirm phase.
            seeds = c.fail(
                p + "search_seeds",
                seeds,
                "a list of exactly one seed (repeat seeds in `seeds`, the confirm phase)",
            )
        v["search_seeds"] = seeds
    if d.get("scheduler") is not None:
        sd = c.mapping(d["scheduler"], p + "scheduler", _SCHEDULER_KEYS, required=("type",))
        if sd is _BAD:
            v["scheduler"] = _BAD
        else:
            SD = SchedulerSpec()
            sched = {
                "type": c.choice(sd.get("type", SD.type), p + "scheduler.type", SCHEDULER_TYPES),
                "grace_period": c.integer(
                    _pick(sd, "grace_period", SD.grace_period), p + "scheduler.grace_period", low=1
                ),
                "reduction_factor": c.number(
                    _pick(sd, "reduction_factor", SD.reduction_factor),
                    p + "scheduler.reduction_factor",
                    1.0,
                    low_open=True,
                ),
            }
            v["scheduler"] = _BAD if _BAD in sched.values() else SchedulerSpec(**sched)
    if _BAD in v.values():
        return None
    return SearchSpec(**v)


def _check_resources(c: _Checker, raw: Any) -> ResourcesSpec | None:
    d = c.mapping(raw, "resources", _RESOURCES_KEYS)
    if d is _BAD:
        return None
    D, p = ResourcesSpec(), "resources."
    g = lambda k: _pick(d, k, getattr(D, k))  # noqa: E731
    v = {
        "workers_per_trial": c.integer(g("workers_per_trial"), p + "workers_per_trial", low=1),
        "cpus_per_worker": c.number(g("cpus_per_worker"), p + "cpus_per_worker", 0, low_open=True),
        "gpus_per_worker": c.number(g("gpus_per_worker"), p + "gpus_per_worker", 0),
        "max_concurrent_trials": c.integer(
            g("max_concurrent_trials"), p + "max_concurrent_trials", low=1, allow_none=True
        ),
    }
    if _BAD in v.values():
        return None
    return ResourcesSpec(**v)


def _check_storage(c: _Checker, value: Any) -> Any:
    allowed = "a local path, or a file://, s3:// or gs:// URI (" + ", ".join(STORAGE_SCHEMES) + ")"
    if not isinstance(value, str) or not value.strip():
        return c.fail("storage", value, allowed)
    parsed = urlparse(value)
    scheme = parsed.scheme if len(parsed.scheme) > 1 else ""  # C:\ is a drive, not a scheme
    if scheme and scheme not in STORAGE_SCHEMES:
        return c.fail("storage", value, allowed, problem=f"unsupported scheme {scheme!r}")
    if scheme and scheme != "file" and not parsed.netloc:
        return c.fail("storage", value, allowed, problem="no bucket or host after the scheme")
    return value


def _validate(raw: Any, source: str | None = None) -> Study:
    c = _Checker()
    top = c.mapping(raw, "", _TOP_KEYS, required=("name", "arms"), none_is_empty=False)
    if top is _BAD:
        raise StudyError(c.errors, source)
    name = top.get("name")
    if "name" in top and (not isinstance(name, str) or not NAME_RE.match(name)):
        c.fail("name", name, "a non-empty string of letters, digits, '_', '.', '-'")
    description = _pick(top, "description", "")
    if description is None:
        description = ""
    if not isinstance(description, str):
        c.fail("description", description, "a string")
    data = _check_data(c, _pick(top, "data", {}))
    model = _check_model(c, _pick(top, "model", {}))
    training = _check_training(c, _pick(top, "training", {}))

    arms: dict[str, ArmSpec] = {}
    arms_ok = False
    if "arms" in top:
        a = c.mapping(top["arms"], "arms", ARM_NAMES, none_is_empty=False)
        if a is not _BAD:
            arms_ok = len(a) == len(top["arms"])
            if not a and arms_ok:
                c.fail("arms", top["arms"], "at least one of " + ", ".join(ARM_NAMES))
                arms_ok = False
            for arm_name, spec in a.items():
                arm = _check_arm(c, arm_name, spec)
                if arm is None:
                    arms_ok = False
                else:
                    arms[arm_name] = arm

    seeds = c.seed_list(_pick(top, "seeds", [0, 1, 2]), "seeds")
    search = _check_search(c, _pick(top, "search", {}))
    resources = _check_resources(c, _pick(top, "resources", {}))
    storage = _check_storage(c, _pick(top, "storage", "./ado_results"))
    metric = c.choice(_pick(top, "metric", "val_loss_balanced"), "metric", tuple(METRICS))
    mode = c.choice(_pick(top, "mode", "min"), "mode", MODES)
    if metric is not _BAD and mode is not _BAD and METRICS[metric] != mode:
        c.fail(
            "mode",
            mode,
            f"{METRICS[metric]!r} for metric {metric!r}",
            problem=f"{metric} is better when {'lower' if METRICS[metric] == 'min' else 'higher'}",
        )

    # Cross-field checks, on parts that passed.
    if search is not None and arms_ok and "ado" in arms:
        space = arms["ado"].search
        if space and search.num_samples > 0 and search.top_k > search.num_samples:
            c.fail(
                "search.top_k",
                search.top_k,
                f"an integer in [1, {search.num_samples}] (search.num_samples)",
                problem="more configs to confirm than search trials",
            )

    if c.errors:
        raise StudyError(c.errors, source)
    return Study(
        name=name,
        description=description,
        data=data,
        model=model,
        training=training,
        arms=arms,
        seeds=seeds,
        search=search,
        resources=resources,
        storage=storage,
        metric=metric,
        mode=mode,
    )


# --------------------------------------------------------------------------------------------
# Loading and dumping
# --------------------------------------------------------------------------------------------

#: The shipped studies: ``studies/*.yaml`` of a checkout, else the copy inside an installed
#: wheel (``ado_ray.studies``). A bare name (``quickstart``) loads one of them.
_CHECKOUT_STUDIES = Path(__file__).resolve().parent.parent / "studies"
STUDIES_DIR = (
    _CHECKOUT_STUDIES if _CHECKOUT_STUDIES.is_dir() else Path(__file__).resolve().parent / "studies"
)


def shipped_studies() -> dict[str, Path]:
    """Name -> path of the study files under :data:`STUDIES_DIR` (empty if not present)."""
    if not STUDIES_DIR.is_dir():
        return {}
    return {p.stem: p for p in sorted(STUDIES_DIR.glob("*.yaml"))}


def load_study(study: str | os.PathLike | Mapping[str, Any] | Study) -> Study:
    """A validated :class:`Study` from a YAML path, a shipped study's name (``"quickstart"``),
    a plain mapping (e.g. ``Study.to_dict()``) or a ``Study``. Raises :class:`StudyError`."""
    if isinstance(study, Study):
        return _validate(study.to_dict())
    if isinstance(study, Mapping):
        return _validate(copy.deepcopy(dict(study)))
    if not isinstance(study, (str, os.PathLike)):
        raise StudyError(
            f"<study>: got {_show(study)}; allowed: a YAML file path, a shipped study name "
            f"({', '.join(shipped_studies())}) or a mapping"
        )
    path = Path(study)
    if not path.exists():
        shipped = shipped_studies()
        if str(study) in shipped:
            path = shipped[str(study)]
        else:
            raise StudyError(
                f"<study>: file {str(study)!r} not found; allowed: a YAML file path or a "
                f"shipped study name ({', '.join(shipped) or 'none found'})"
            )
    text = path.read_text(encoding="utf-8")
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise StudyError(f"<study>: {path} is not valid YAML: {exc}") from None
    return _validate(raw, source=str(path))


def dump_study(study: Study) -> str:
    """The study as YAML (every field, defaults included); :func:`load_study` reads it back."""
    return yaml.safe_dump(study.to_dict(), sort_keys=False, default_flow_style=False, width=100)
