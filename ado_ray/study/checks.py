"""Loading and checking a study file: every problem found, each named by its dotted path.

A bad study raises :class:`~ado_ray.schema.StudyError` (a ``ValueError``) whose message names
each bad field (``training.batch_size``), the value found and what is allowed; all problems are
reported at once, the first first. The run settings are checked by :mod:`ado_ray.schema`, an
arm's options by its policy's declarations (:mod:`ado_ray.policies`), and a search dimension by
Optuna's own distributions. Checks that need the number of domains K (a fixed arm's weight
count, ``delta_min * K < 1``) and the data source's own options run when the corpus is known
(:func:`ado_ray.preflight.validate_before_compute`).
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import yaml

from ado_ray.policies import policy_class, policy_names
from ado_ray.policies.base import MixturePolicy
from ado_ray.policies.options import Option
from ado_ray.schema import (
    _BAD,
    _MISSING,
    StudyError,
    _Checker,
    _coerce_number,
    _pick,
    _show,
    build_training,
    check_data,
    check_model,
    check_resources,
    check_training,
)
from ado_ray.study.schema import (
    DISTRIBUTION_TYPES,
    METRICS,
    MODES,
    SCHEDULER_TYPES,
    SEARCH_SAMPLERS,
    SWARM_ARMS,
    SWARM_CENTERS,
    SWARM_REGRESSIONS,
    ArmSpec,
    ParamSpec,
    SchedulerSpec,
    SearchSpec,
    Study,
    SwarmSpec,
)

__all__ = ["STUDIES_DIR", "dump_study", "load_study", "shipped_studies"]

# Mirrors ado_ray.storage.REMOTE_SCHEMES, plus file://; a bare path is local.
STORAGE_SCHEMES = ("file", "s3", "gs", "gcs", "hdfs", "abfs", "abfss")
# A study's name is a directory under the storage root: a safe slug, never "." or "..".
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
LABEL_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")

_TOP_KEYS = tuple(f.name for f in dataclasses.fields(Study))
_SEARCH_KEYS = tuple(f.name for f in dataclasses.fields(SearchSpec))
_SCHEDULER_KEYS = tuple(f.name for f in dataclasses.fields(SchedulerSpec))
_ARM_KEYS = ("policy", "options", "search", "num_samples", "weights")


# --------------------------------------------------------------------------------------------
# Arms
# --------------------------------------------------------------------------------------------


def _check_option(c: _Checker, opt: Option, value: Any, path: str) -> Any:
    """An arm's fixed option, checked by its declaration (same words as ``make_policy``)."""
    if opt.is_vector:  # element-level paths: arms.fixed.weights[1]
        return c.distribution(value, path, sums_to_one=opt.type == "distribution")
    if opt.type in ("float", "int"):
        value = _coerce_number(value)
    try:
        return opt.check(value)
    except ValueError as exc:
        # "gamma1=2 is out of range: allowed ..." -> "arms.ado.options.gamma1=2 is out of ..."
        c.errors.append(path.rsplit(".", 1)[0] + "." + str(exc))
        return _BAD


def _check_param(c: _Checker, opt: Option, raw: Any, path: str) -> ParamSpec | None:
    """A search dimension for option ``opt``: its form, Optuna's checks, then the option's
    declared range (each bound or choice must be a valid value of the option)."""
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
    required = keys if kind == "categorical" else keys[:3]
    d = c.mapping(raw, path, keys, required=required)
    if d is _BAD or any(k not in d for k in required):
        return None
    n_err = len(c.errors)
    numeric = opt.type in ("float", "int")
    if kind == "categorical":
        choices = d["choices"]
        if not isinstance(choices, list) or not choices:
            c.fail(f"{path}.choices", choices, "a non-empty list of scalars")
            return None
        out = []
        for i, ch in enumerate(choices):
            ch = _coerce_number(ch) if numeric else ch
            if not opt.contains(ch):
                c.fail(f"{path}.choices[{i}]", ch, f"{opt.describe()} (values of {opt.name})")
            out.append(opt.check(ch) if opt.contains(ch) else ch)
        if len({repr(ch) for ch in out}) != len(out):
            c.fail(f"{path}.choices", choices, "distinct choices", problem="duplicate choices")
        spec = ParamSpec("categorical", choices=tuple(out))
    elif not numeric:
        c.fail(
            f"{path}.type",
            kind,
            f"'categorical' ({opt.name} takes {opt.describe()})",
            problem=f"{opt.name} is not numeric",
        )
        return None
    elif opt.type == "int" and kind != "int":
        c.fail(f"{path}.type", kind, "'int' or 'categorical'", problem=f"{opt.name} is an integer")
        return None
    elif kind == "int":
        low = c.integer(d["low"], f"{path}.low", integral_float=True)
        high = c.integer(d["high"], f"{path}.high", integral_float=True)
        step = c.integer(_pick(d, "step", 1), f"{path}.step", low=1)
        log = c.boolean(_pick(d, "log", False), f"{path}.log")
        if _BAD in (low, high, step, log):
            return None
        spec = ParamSpec("int", low, high, step, log)
    else:
        low = c.number(d["low"], f"{path}.low")
        high = c.number(d["high"], f"{path}.high")
        if _BAD in (low, high):
            return None
        spec = ParamSpec(kind, float(low), float(high))
    if len(c.errors) > n_err:
        return None
    try:
        spec.to_optuna()
    except ValueError as exc:  # Optuna's own words: "`low <= high` must hold, ..."
        text = str(exc).rstrip(".")
        if "not divisible" in text:
            where = "high"  # the bound that misses the grid low + k * step
        else:
            where = next((k for k in ("step", "low", "log") if f"`{k}" in text), None)
        sub = f"{path}.{where}" if where else path
        c.fail(sub, d.get(where, raw) if where else raw, "a valid Optuna distribution", text)
        return None
    if kind != "categorical":
        for bound in ("low", "high"):
            value = getattr(spec, bound)
            if not opt.contains(value):
                c.fail(f"{path}.{bound}", value, f"{opt.describe()} (the range of {opt.name})")
    return None if len(c.errors) > n_err else spec


def _check_arm(c: _Checker, label: str, raw: Any) -> ArmSpec | None:
    path = f"arms.{label}"
    if not isinstance(label, str) or not LABEL_RE.match(label):
        c.fail(path, label, "a label of letters, digits and '_', starting with a letter")
        return None
    d = c.mapping(raw, path, _ARM_KEYS)
    if d is _BAD:
        return None
    n_err = len(c.errors)
    name = _pick(d, "policy", label)
    try:
        cls: type[MixturePolicy] = policy_class(name)
    except ValueError:
        known = policy_names()
        close = difflib.get_close_matches(str(name), known, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        if "policy" not in d:
            hint += " (an arm's label is its policy unless `policy:` is given)"
        c.errors.append(
            f"{path}.policy: unknown policy {name!r}{hint}; allowed: {', '.join(known)}"
        )
        return None
    allowed = cls.user_options()
    opts = c.mapping(_pick(d, "options", {}), f"{path}.options", tuple(allowed))
    options: dict[str, Any] = {}
    if opts is not _BAD:
        for key, value in opts.items():
            value = _check_option(c, allowed[key], value, f"{path}.options.{key}")
            if value is not _BAD:
                options[key] = copy.deepcopy(value)
    if "weights" in d:  # shorthand: `weights:` at the arm level is the policy's weights option
        if "weights" not in allowed:
            c.fail(f"{path}.weights", d["weights"], f"no weights key for policy {name!r}")
        elif "weights" in options:
            c.fail(f"{path}.weights", d["weights"], "weights in options or here, not both")
        else:
            value = _check_option(c, allowed["weights"], d["weights"], f"{path}.weights")
            if value is not _BAD:
                options["weights"] = value
    for key, opt in allowed.items():
        if opt.required and key not in options and len(c.errors) == n_err:
            c.fail(f"{path}.options.{key}", _MISSING, f"{opt.describe()} (required: {opt.doc})")
    search = _check_search_space(c, cls, _pick(d, "search", {}), f"{path}.search", options)
    num_samples = c.integer(_pick(d, "num_samples", None), f"{path}.num_samples", low=0,
                            allow_none=True)
    if len(c.errors) > n_err or search is None:
        return None
    return ArmSpec(label, name, options, search, num_samples)


def _check_search_space(
    c: _Checker,
    cls: type[MixturePolicy],
    raw: Any,
    path: str,
    fixed: Mapping[str, Any],
) -> dict[str, ParamSpec] | None:
    if raw == "default":
        if not cls.search_space:
            c.fail(path, raw, f"a search space (policy {cls.name!r} declares no default one)")
            return None
        raw = {k: v for k, v in cls.search_space.items() if k not in fixed}
    searchable = {k: o for k, o in cls.user_options().items() if o.searchable}
    s = c.mapping(raw, path, tuple(searchable))
    if s is _BAD:
        return None
    n_err = len(c.errors)
    search: dict[str, ParamSpec] = {}
    for key, spec in s.items():
        if key in fixed:
            c.fail(
                f"{path}.{key}",
                spec,
                f"{key} in either the arm's options or its search, not both",
                problem=f"{key} is also fixed in options",
            )
            continue
        p = _check_param(c, searchable[key], spec, f"{path}.{key}")
        if p is not None:
            search[key] = p
    return None if len(c.errors) > n_err else search


# --------------------------------------------------------------------------------------------
# Search, storage, the whole study
# --------------------------------------------------------------------------------------------


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
        "arms": None,
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
    if d.get("arms") is not None:
        arms = d["arms"]
        if not isinstance(arms, list) or not all(isinstance(a, str) for a in arms):
            v["arms"] = c.fail(p + "arms", arms, "a list of arm labels")
        else:
            v["arms"] = list(arms)
    if d.get("scheduler") is not None:
        sd = c.mapping(d["scheduler"], p + "scheduler", _SCHEDULER_KEYS)
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


def _check_swarm(c: _Checker, raw: Any) -> SwarmSpec | None | Any:
    if raw is None:
        return None
    d = c.mapping(raw, "swarm", tuple(f.name for f in dataclasses.fields(SwarmSpec)))
    if d is _BAD:
        return _BAD
    D, p = SwarmSpec(), "swarm."
    g = lambda k: _pick(d, k, getattr(D, k))  # noqa: E731
    v: dict[str, Any] = {
        "n_mixtures": c.integer(g("n_mixtures"), p + "n_mixtures", low=3),
        "concentration": c.number(g("concentration"), p + "concentration", 0.0, low_open=True),
        "center": c.choice(g("center"), p + "center", SWARM_CENTERS),
        "budget_fraction": c.number(
            g("budget_fraction"), p + "budget_fraction", 0.0, 1.0, low_open=True
        ),
        "seeds": None,
        "seed": c.integer(g("seed"), p + "seed", low=0),
        "regression": c.choice(g("regression"), p + "regression", SWARM_REGRESSIONS),
        "folds": c.integer(g("folds"), p + "folds", low=2),
        "candidates": c.integer(g("candidates"), p + "candidates", low=1),
        "top_k": c.integer(g("top_k"), p + "top_k", low=1),
    }
    if d.get("seeds") is not None:
        v["seeds"] = c.seed_list(d["seeds"], p + "seeds")
    if _BAD in v.values():
        return _BAD
    if v["top_k"] > v["candidates"]:
        return c.fail(p + "top_k", v["top_k"], f"an integer in [1, {v['candidates']}] (candidates)")
    v["concentration"] = float(v["concentration"])
    v["budget_fraction"] = float(v["budget_fraction"])
    return SwarmSpec(**v)


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


def _check_cross(c: _Checker, arms: dict[str, ArmSpec], search: SearchSpec) -> None:
    """Checks across sections, on parts that passed their own."""
    if search.arms is not None:
        for i, label in enumerate(search.arms):
            if label not in arms:
                c.fail(f"search.arms[{i}]", label, "an arm label: " + ", ".join(arms))
            elif not arms[label].search:
                c.fail(
                    f"search.arms[{i}]",
                    label,
                    "an arm with a search space (" + ", ".join(a for a in arms if arms[a].search)
                    + ")",
                    problem=f"arms.{label} has no search block",
                )
    for label, arm in arms.items():
        n = search.num_samples if arm.num_samples is None else arm.num_samples
        if arm.search and n > 0 and search.top_k > n:
            c.fail(
                "search.top_k",
                search.top_k,
                f"an integer in [1, {n}] (the search trials of arms.{label})",
                problem="more configs to confirm than search trials",
            )


def _validate(raw: Any, source: str | None = None) -> Study:
    c = _Checker()
    top = c.mapping(raw, "", _TOP_KEYS, required=("name", "arms"), none_is_empty=False)
    if top is _BAD:
        raise StudyError(c.errors, source)
    name = top.get("name")
    if "name" in top and (not isinstance(name, str) or not NAME_RE.match(name)):
        c.fail(
            "name",
            name,
            "a slug of letters, digits, '_', '.', '-' starting with a letter or digit",
        )
    description = _pick(top, "description", "")
    if description is None:
        description = ""
    if not isinstance(description, str):
        c.fail("description", description, "a string")
    data = check_data(c, _pick(top, "data", {}))
    model = check_model(c, _pick(top, "model", {}))
    training = check_training(c, _pick(top, "training", {}))

    arms: dict[str, ArmSpec] = {}
    arms_ok = False
    if "arms" in top:
        a = c.mapping(top["arms"], "arms", None, none_is_empty=False)
        if a is not _BAD:
            arms_ok = len(a) == len(top["arms"])
            if not a and arms_ok:
                c.fail("arms", top["arms"], "at least one arm, e.g. {uniform: {}, ado: {}}")
                arms_ok = False
            for label, spec in a.items():
                arm = _check_arm(c, label, spec)
                if arm is None:
                    arms_ok = False
                else:
                    arms[label] = arm

    seeds = c.seed_list(_pick(top, "seeds", [0, 1, 2]), "seeds")
    search = _check_search(c, _pick(top, "search", {}))
    resources = check_resources(c, _pick(top, "resources", {}))
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
    swarm = _check_swarm(c, _pick(top, "swarm", None))
    if search is not None and arms_ok:
        _check_cross(c, arms, search)
    if swarm not in (None, _BAD):
        for label in SWARM_ARMS:
            if label in arms:
                c.fail(f"arms.{label}", label, "another label: the swarm adds this arm itself")
    if c.errors:
        raise StudyError(c.errors, source)
    return Study(
        name=name,
        description=description,
        data=data,
        model=model,
        training=build_training(training),
        arms=arms,
        seeds=seeds,
        search=search,
        resources=resources,
        storage=storage,
        metric=metric,
        mode=mode,
        swarm=swarm,
    )


# --------------------------------------------------------------------------------------------
# Loading and dumping
# --------------------------------------------------------------------------------------------

#: The shipped studies: ``studies/*.yaml`` of a checkout, else the copy inside an installed
#: wheel (``ado_ray.studies``). A bare name (``quickstart``) loads one of them.
_CHECKOUT_STUDIES = Path(__file__).resolve().parents[2] / "studies"
STUDIES_DIR = (
    _CHECKOUT_STUDIES
    if _CHECKOUT_STUDIES.is_dir()
    else Path(__file__).resolve().parents[1] / "studies"
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
    if not path.is_file():
        raise StudyError(f"<study>: {str(path)!r} is not a file; allowed: a YAML study file")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise StudyError(f"<study>: {path} is not a text file; allowed: a YAML study file") from None
    except OSError as exc:
        raise StudyError(f"<study>: {path} cannot be read ({exc.strerror})") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        first = " ".join(str(exc).split())
        raise StudyError(f"<study>: {path} is not valid YAML: {first}") from None
    return _validate(raw, source=str(path))


def dump_study(study: Study) -> str:
    """The study as YAML (every field, defaults included); :func:`load_study` reads it back."""
    return yaml.safe_dump(study.to_dict(), sort_keys=False, default_flow_style=False, width=100)

