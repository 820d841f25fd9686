"""The settings of one run, as torch-free dataclasses: the only definition of each setting.

A run is data + model + training + an arm's policy and options + a seed (:class:`RunConfig`).
Studies (:mod:`ado_ray.study`) compose the same classes with seeds, searches and resources; the
training loop, the Ray layer and the CLI read them. Each setting's default, range and one-line
doc is written once, as field metadata (:func:`setting`), and checked the same way whichever
way a value arrives: a study file, ``--set key=value``, or Python
(``TrainingSpec(batch_size=0)`` raises the same ``training.batch_size: got 0; allowed: an
integer >= 1`` as the YAML path).

Errors are :class:`StudyError` (a ``ValueError``) whose message names each bad field by its
dotted path, the value found and what is allowed. PyYAML reads ``1e-3`` (no dot) as a string;
numeric fields accept such strings as numbers.

Nothing here imports torch, Ray or Optuna (``ado_ray.data`` is imported for its source names).
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ado_ray.data import source_names

__all__ = [
    "BUDGET_KINDS",
    "MODEL_PRESETS",
    "Budget",
    "DataSpec",
    "ModelSpec",
    "ResourcesSpec",
    "RunConfig",
    "StudyError",
    "TrainingSpec",
    "setting",
]

DATA_SOURCES = tuple(source_names())
# Dropout is off in every preset: modern pre-training runs use none, and it keeps runs
# bit-reproducible across resumes without replaying dropout RNG streams.
MODEL_PRESETS: dict[str, dict[str, int]] = {
    "tiny": {"n_layer": 2, "n_embd": 128, "n_head": 4},  # CPU tests and the quickstart
    "small": {"n_layer": 12, "n_embd": 768, "n_head": 12},  # GPT-2 small, 124M
    "medium": {"n_layer": 24, "n_embd": 1024, "n_head": 16},  # GPT-2 medium, 355M
}
MODEL_OVERRIDE_KEYS = ("n_layer", "n_embd", "n_head", "n_positions", "dropout")
BUDGET_KINDS = ("tokens", "steps", "epochs")
SAMPLERS = ("auto", "multinomial", "largest_remainder")
PRECISIONS = ("auto", "fp32", "bf16")


@dataclass(frozen=True)
class _Range:
    """A numeric interval or a set of choices, for checks and their messages."""

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


def setting(default: Any, kind: str, doc: str, **rule: Any) -> Any:
    """A dataclass field with its check: ``kind`` is int, float, choice, bool or str; ``rule``
    holds ``low``/``high``/``low_open``/``high_open``/``allow_none``/``choices``."""
    meta = {"kind": kind, "doc": doc, **rule}
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: copy.deepcopy(default), metadata=meta)
    return field(default=default, metadata=meta)


def _check_rule(c: _Checker, value: Any, path: str, meta: Mapping[str, Any]) -> Any:
    kind = meta["kind"]
    none_ok = bool(meta.get("allow_none"))
    if kind == "int":
        return c.integer(value, path, meta.get("low"), meta.get("high"), allow_none=none_ok)
    if kind == "float":
        v = c.number(
            value,
            path,
            meta.get("low"),
            meta.get("high"),
            bool(meta.get("low_open")),
            bool(meta.get("high_open")),
            allow_none=none_ok,
        )
        return v if v in (None, _BAD) else float(v)
    if kind == "choice":
        return c.choice(value, path, tuple(meta["choices"]))
    if kind == "bool":
        return c.boolean(value, path)
    if kind == "str":
        return c.string(value, path, allow_none=none_ok)
    raise AssertionError(f"unknown setting kind {kind!r}")  # a declaration bug


def _check_fields(
    c: _Checker, cls: type, d: Mapping[str, Any], prefix: str, skip: tuple[str, ...] = ()
) -> dict[str, Any]:
    """Check every field of ``cls`` that carries a rule (given in ``d`` or its default)."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if f.name in skip or "kind" not in f.metadata:
            continue
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        out[f.name] = _check_rule(c, _pick(d, f.name, default), prefix + f.name, f.metadata)
    return out


def _raise(c: _Checker) -> None:
    if c.errors:
        raise StudyError(c.errors)


def field_docs(cls: type) -> dict[str, str]:
    """Field name -> its one-line doc (for help texts and the README)."""
    return {f.name: f.metadata.get("doc", "") for f in dataclasses.fields(cls)}


# --------------------------------------------------------------------------------------------
# Data and model
# --------------------------------------------------------------------------------------------


@dataclass
class DataSpec:
    """The corpus: a source of ``ado_ray.data`` and its options (checked by the source)."""

    source: str = setting("synthetic", "choice", "the data source", choices=DATA_SOURCES)
    options: dict[str, Any] = field(default_factory=dict, metadata={"doc": "the source's options"})

    def __post_init__(self) -> None:
        c = _Checker()
        check_data(c, {"source": self.source, "options": self.options})
        _raise(c)


def check_data(c: _Checker, raw: Any) -> DataSpec | None:
    d = c.mapping(raw, "data", tuple(f.name for f in dataclasses.fields(DataSpec)))
    if d is _BAD:
        return None
    v = _check_fields(c, DataSpec, d, "data.")
    options = c.mapping(_pick(d, "options", {}), "data.options", None)
    if _BAD in (*v.values(), options):
        return None
    return _build(DataSpec, source=v["source"], options=copy.deepcopy(options))


@dataclass
class ModelSpec:
    """A GPT-2 preset (or a pretrained checkpoint) with optional shape overrides."""

    preset: str = setting("tiny", "choice", "GPT-2 size", choices=tuple(MODEL_PRESETS))
    pretrained: str | None = setting(
        None, "str", "a checkpoint name or path to start from", allow_none=True
    )
    overrides: dict[str, Any] = field(
        default_factory=dict, metadata={"doc": "n_layer, n_embd, n_head, n_positions, dropout"}
    )

    def __post_init__(self) -> None:
        c = _Checker()
        check_model(c, dataclasses.asdict(self))
        _raise(c)


def check_model(c: _Checker, raw: Any) -> ModelSpec | None:
    d = c.mapping(raw, "model", tuple(f.name for f in dataclasses.fields(ModelSpec)))
    if d is _BAD:
        return None
    v = _check_fields(c, ModelSpec, d, "model.")
    preset, pretrained = v["preset"], v["pretrained"]
    ov = c.mapping(_pick(d, "overrides", {}), "model.overrides", MODEL_OVERRIDE_KEYS)
    if ov is _BAD:
        return None
    overrides: dict[str, Any] = {}
    for key, value in ov.items():
        path = f"model.overrides.{key}"
        if key == "dropout":
            val = c.number(value, path, 0.0, 1.0, high_open=True)
        else:
            val = c.integer(value, path, low=1)
        if val is not _BAD:
            overrides[key] = val
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
    return _build(ModelSpec, preset=preset, pretrained=pretrained, overrides=overrides)


# --------------------------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------------------------


@dataclass
class Budget:
    """Exactly one of tokens / steps / epochs; the same for every arm."""

    kind: str = "steps"
    value: int | float = 300

    def to_dict(self) -> dict[str, Any]:
        return {self.kind: self.value}


def check_budget(c: _Checker, raw: Any, path: str = "training.budget") -> Budget | None:
    allowed = "exactly one of tokens, steps, epochs with a positive value, e.g. {steps: 300}"
    if isinstance(raw, Budget):
        raw = raw.to_dict()
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


@dataclass
class TrainingSpec:
    """Optimisation, evaluation and checkpointing: the same for every arm of a study."""

    budget: Budget = field(
        default_factory=Budget, metadata={"doc": "one of {steps: N}, {tokens: N}, {epochs: x}"}
    )
    batch_size: int = setting(16, "int", "global sequences per optimiser step", low=1)
    grad_accum: int = setting(1, "int", "micro-batches per step on each worker", low=1)
    lr: float = setting(1.0e-3, "float", "peak learning rate", low=0.0, low_open=True)
    min_lr_ratio: float = setting(
        0.1, "float", "final learning rate as a fraction of the peak (cosine)", low=0.0, high=1.0
    )
    lr_warmup_steps: int | None = setting(
        20, "int", "linear warmup steps (or lr_warmup_fraction)", low=0, allow_none=True
    )
    lr_warmup_fraction: float | None = setting(
        None,
        "float",
        "linear warmup as a fraction of the run (or lr_warmup_steps)",
        low=0.0,
        high=1.0,
        high_open=True,
        allow_none=True,
    )
    betas: list[float] = field(
        default_factory=lambda: [0.9, 0.95], metadata={"doc": "AdamW betas"}
    )
    weight_decay: float = setting(0.1, "float", "AdamW weight decay (matrices only)", low=0.0)
    grad_clip: float | None = setting(
        1.0, "float", "gradient-norm clip (null: none)", low=0.0, low_open=True, allow_none=True
    )
    eval_interval: int = setting(50, "int", "steps between held-out evaluations", low=1)
    eval_sequences: int | None = setting(
        256, "int", "held-out sequences per domain (null: all)", low=1, allow_none=True
    )
    eval_batch_size: int = setting(64, "int", "sequences per evaluation forward pass", low=1)
    checkpoint_interval: int = setting(100, "int", "steps between checkpoints", low=1)
    mixture_lag: int = setting(2, "int", "steps before new weights take effect", low=1)
    sampler: str = setting(
        "auto",
        "choice",
        "batch composition; auto: largest_remainder for policies that need exact batches, "
        "else multinomial",
        choices=SAMPLERS,
    )
    compile: bool = setting(False, "bool", "torch.compile the model")
    precision: str = setting(
        "auto", "choice", "auto: bf16 autocast on CUDA, fp32 on CPU", choices=PRECISIONS
    )
    max_failures: int = setting(1, "int", "Ray Train restarts after a lost worker", low=0)

    def __post_init__(self) -> None:
        if isinstance(self.budget, Mapping):
            c = _Checker()
            budget = check_budget(c, self.budget)
            _raise(c)
            self.budget = budget  # type: ignore[assignment]
        default_warm = TrainingSpec.__dataclass_fields__["lr_warmup_steps"].default
        if self.lr_warmup_fraction is not None and self.lr_warmup_steps == default_warm:
            self.lr_warmup_steps = None  # a fraction replaces the default step count
        c = _Checker()
        values = check_training(c, dataclasses.asdict(self) | {"budget": self.budget.to_dict()})
        _raise(c)
        for key in ("lr_warmup_steps", "lr_warmup_fraction", "betas"):
            setattr(self, key, values[key])

    # -- derived ---------------------------------------------------------------------------
    def total_steps(self, seq_len: int, total_train_sequences: int) -> int:
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
        b, batch = self.budget, self.batch_size
        if b.kind == "steps":
            return int(b.value)
        if b.kind == "tokens":
            return max(1, math.ceil(b.value / (batch * seq_len)))
        return max(1, math.ceil(b.value * total_train_sequences / batch))

    def sampler_mode(self, exact_batches: bool) -> str:
        """The sampler's mode for a policy (``exact_batches``: its ``needs``)."""
        if self.sampler != "auto":
            return self.sampler
        return "largest_remainder" if exact_batches else "multinomial"

    def warmup_steps(self, total: int) -> int:
        """Learning-rate warmup steps of a ``total``-step run."""
        if self.lr_warmup_fraction is not None:
            return int(self.lr_warmup_fraction * total)
        return min(int(self.lr_warmup_steps or 0), total)

    def to_dict(self) -> dict[str, Any]:
        out = {f.name: copy.deepcopy(getattr(self, f.name)) for f in dataclasses.fields(self)}
        out["budget"] = self.budget.to_dict()
        out["betas"] = list(self.betas)
        return out


def check_training(c: _Checker, raw: Any) -> dict[str, Any] | None:
    """The checked training values (a dict for :class:`TrainingSpec`), or None."""
    d = c.mapping(raw, "training", tuple(f.name for f in dataclasses.fields(TrainingSpec)))
    if d is _BAD:
        return None
    p = "training."
    v = _check_fields(c, TrainingSpec, d, p, skip=("lr_warmup_steps", "lr_warmup_fraction"))
    v["budget"] = check_budget(c, d["budget"]) if "budget" in d else Budget()
    default_warm = TrainingSpec.__dataclass_fields__["lr_warmup_steps"].default
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
        v["lr_warmup_fraction"] = _check_rule(
            c,
            d["lr_warmup_fraction"],
            p + "lr_warmup_fraction",
            TrainingSpec.__dataclass_fields__["lr_warmup_fraction"].metadata,
        )
    else:
        warm = d["lr_warmup_steps"] if "lr_warmup_steps" in d else default_warm
        if warm is None:  # both null: no warmup
            warm = 0
        v["lr_warmup_steps"] = c.integer(warm, p + "lr_warmup_steps", low=0)
        v["lr_warmup_fraction"] = None
    betas = _pick(d, "betas", [0.9, 0.95])
    if isinstance(betas, (list, tuple)) and len(betas) == 2:
        bs = [c.number(b, f"{p}betas[{i}]", 0.0, 1.0, high_open=True) for i, b in enumerate(betas)]
        v["betas"] = _BAD if _BAD in bs else [float(b) for b in bs]
    else:
        v["betas"] = c.fail(p + "betas", betas, "a list of two numbers in [0, 1)")
    if v["budget"] is None or _BAD in v.values():
        return None
    return v


# --------------------------------------------------------------------------------------------
# Resources
# --------------------------------------------------------------------------------------------


@dataclass
class ResourcesSpec:
    """What each trial asks of the cluster."""

    workers_per_trial: int = setting(1, "int", "Ray Train workers (DDP ranks) per trial", low=1)
    cpus_per_worker: float = setting(1, "float", "CPUs per worker", low=0.0, low_open=True)
    gpus_per_worker: float = setting(0, "float", "GPUs per worker (fractions pack)", low=0.0)
    max_concurrent_trials: int | None = setting(
        None, "int", "cap on trials at once (null: what the cluster fits)", low=1, allow_none=True
    )

    def __post_init__(self) -> None:
        c = _Checker()
        check_resources(c, dataclasses.asdict(self))
        _raise(c)


def check_resources(c: _Checker, raw: Any) -> ResourcesSpec | None:
    d = c.mapping(raw, "resources", tuple(f.name for f in dataclasses.fields(ResourcesSpec)))
    if d is _BAD:
        return None
    v = _check_fields(c, ResourcesSpec, d, "resources.")
    if _BAD in v.values():
        return None
    return _build(ResourcesSpec, **v)


def _build(cls: type, **values: Any) -> Any:
    """An instance from already-checked values, skipping ``__post_init__``'s second check."""
    obj = cls.__new__(cls)
    for f in dataclasses.fields(cls):
        setattr(obj, f.name, values[f.name])
    return obj


def build_training(values: Mapping[str, Any]) -> TrainingSpec:
    """A :class:`TrainingSpec` from :func:`check_training`'s values."""
    return _build(TrainingSpec, **values)


# --------------------------------------------------------------------------------------------
# One run
# --------------------------------------------------------------------------------------------


@dataclass
class RunConfig:
    """Everything one run (one trial) needs. Every arm of a study shares all of it but ``arm``,
    ``policy`` and ``policy_options``.

    ``arm`` is the label in the results (default: the policy's name); ``policy_options`` are
    checked by the policy when it is built (``make_policy``), against its declarations.
    """

    data: DataSpec = field(default_factory=DataSpec)
    model: ModelSpec = field(default_factory=ModelSpec)
    training: TrainingSpec = field(default_factory=TrainingSpec)
    policy: str = "uniform"
    policy_options: dict[str, Any] = field(default_factory=dict)
    arm: str | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        c = _Checker()
        c.string(self.policy, "policy")
        c.integer(self.seed, "seed", low=0)
        c.mapping(self.policy_options, "policy_options", None)
        if self.arm is not None:
            c.string(self.arm, "arm")
        _raise(c)
        if self.arm is None:
            self.arm = self.policy

    def to_dict(self) -> dict[str, Any]:
        return {
            "data": {"source": self.data.source, "options": copy.deepcopy(self.data.options)},
            "model": dataclasses.asdict(self.model),
            "training": self.training.to_dict(),
            "policy": self.policy,
            "policy_options": copy.deepcopy(self.policy_options),
            "arm": self.arm,
            "seed": self.seed,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RunConfig:
        """The inverse of :meth:`to_dict`; sections may be partial (defaults fill the rest)."""
        c = _Checker()
        d = c.mapping(data, "", tuple(f.name for f in dataclasses.fields(cls)))
        _raise(c)
        return cls(
            data=DataSpec(**dict(d.get("data") or {})),
            model=ModelSpec(**dict(d.get("model") or {})),
            training=TrainingSpec(**dict(d.get("training") or {})),
            policy=d.get("policy", "uniform"),
            policy_options=dict(d.get("policy_options") or {}),
            arm=d.get("arm"),
            seed=d.get("seed", 0),
        )
