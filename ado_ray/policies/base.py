"""The mixture-policy interface and the option checks shared by all policies.

A policy sees, after each training step ``t``, the number of sequences of each
domain in the global batch and each domain's mean training loss (NaN where the
count is 0), and answers with the sampling weights for the next step. It is
pure NumPy, deterministic, and its whole state round-trips exactly through
``state_dict`` / ``load_state_dict``.

Steps are numbered from 0 and must be observed in order, each once:
``observe(step, ...)`` requires ``step == policy.steps_observed``. A caller that
replays steps (for example after a worker restart) should skip the steps below
``steps_observed``, or restore the policy from its saved state.
"""

from __future__ import annotations

import abc
import math
import numbers
from collections.abc import Iterable, Mapping
from typing import Any, ClassVar

import numpy as np

from .options import PRIOR_OPTION, PRIOR_OPTIONS, Needs, Option, _show, resolve_options

__all__ = [
    "MixturePolicy",
    "check_bool",
    "check_choice",
    "check_distribution",
    "check_int",
    "check_range",
    "check_token_counts",
    "floor_clip",
    "resolve_prior",
]

#: Tolerance on the sum of a given distribution (prior, fixed weights).
SUM_TOLERANCE = 1e-6

STATE_VERSION = 1


def _fmt(x: float) -> str:
    if x == math.inf:
        return "inf"
    if x == -math.inf:
        return "-inf"
    return repr(float(x)) if not float(x).is_integer() else str(int(x))


def check_range(
    name: str,
    value: Any,
    lo: float = -math.inf,
    hi: float = math.inf,
    *,
    lo_open: bool = False,
    hi_open: bool = False,
    note: str = "",
) -> float:
    """Return ``value`` as a float if it is a real number in the interval, else
    raise ``ValueError("gamma1=1.5 is out of range: allowed (0, 1]")``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(
            f"{name}={_show(value)} is not a number: allowed {_interval(lo, hi, lo_open, hi_open)}{note}"
        )
    v = float(value)
    ok = not math.isnan(v)
    ok = ok and (v > lo if lo_open else v >= lo) and (v < hi if hi_open else v <= hi)
    if not ok:
        raise ValueError(
            f"{name}={_show(value)} is out of range: allowed {_interval(lo, hi, lo_open, hi_open)}{note}"
        )
    return v


def _interval(lo: float, hi: float, lo_open: bool, hi_open: bool) -> str:
    left = "(" if lo_open or lo == -math.inf else "["
    right = ")" if hi_open or hi == math.inf else "]"
    return f"{left}{_fmt(lo)}, {_fmt(hi)}{right}"


def check_int(name: str, value: Any, lo: int = 0, hi: float = math.inf) -> int:
    """Return ``value`` as an int if it is an integer in [lo, hi], else raise."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(
            f"{name}={_show(value)} is not an integer: allowed {_interval(lo, hi, False, False)}"
        )
    if isinstance(value, numbers.Integral):
        v = int(value)
    else:
        f = float(value)
        if not f.is_integer():
            raise ValueError(
                f"{name}={_show(value)} is not an integer: allowed {_interval(lo, hi, False, False)}"
            )
        v = int(f)
    if v < lo or v > hi:
        raise ValueError(
            f"{name}={_show(value)} is out of range: allowed {_interval(lo, hi, False, False)}"
        )
    return v


def check_choice(name: str, value: Any, choices: Iterable[str]) -> str:
    """Return ``value`` if it is one of ``choices``, else raise."""
    choices = tuple(choices)
    if not isinstance(value, str) or value not in choices:
        allowed = ", ".join(repr(c) for c in choices)
        raise ValueError(f"{name}={_show(value)} is not allowed: allowed {allowed}")
    return value


def check_bool(name: str, value: Any) -> bool:
    """Return ``value`` if it is a bool (or NumPy bool), else raise."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    raise ValueError(f"{name}={_show(value)} is not allowed: allowed True, False")


def _as_vector(name: str, value: Any, k: int, what: str) -> np.ndarray:
    try:
        arr = np.array(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{name}={_show(value)} is not allowed: allowed {what}") from None
    if arr.shape != (k,):
        raise ValueError(
            f"{name}={_show(value)} is not allowed: allowed {what} (got shape {arr.shape})"
        )
    if isinstance(value, np.ndarray) and value.dtype == np.bool_:
        raise ValueError(f"{name}={_show(value)} is not allowed: allowed {what}")
    if not np.isfinite(arr).all() or (arr < 0).any():
        raise ValueError(f"{name}={_show(value)} is not allowed: allowed {what}")
    return arr


def check_distribution(name: str, value: Any, k: int) -> np.ndarray:
    """A K-vector of non-negative finite numbers summing to 1 (within 1e-6), as
    float64: unchanged (bitwise) when it sums to 1 within 1e-12, else normalised."""
    what = f"{k} non-negative numbers summing to 1 (within {SUM_TOLERANCE:g})"
    arr = _as_vector(name, value, k, what)
    total = float(arr.sum())
    if abs(total - 1.0) > SUM_TOLERANCE:
        raise ValueError(
            f"{name}={_show(value)} is not allowed: allowed {what}; it sums to {total!r}"
        )
    return arr if abs(total - 1.0) <= 1e-12 else arr / total


def check_token_counts(name: str, value: Any, k: int) -> np.ndarray:
    """A K-vector of non-negative finite numbers, not all zero, returned normalised."""
    what = f"{k} non-negative numbers, not all zero"
    arr = _as_vector(name, value, k, what)
    total = float(arr.sum())
    if not total > 0 or not math.isfinite(total):
        raise ValueError(f"{name}={_show(value)} is not allowed: allowed {what}")
    return arr / total


def resolve_prior(options: dict[str, Any], k: int, *, required: bool, policy: str) -> np.ndarray:
    """Pop ``prior`` / ``token_counts`` from ``options`` and return the prior."""
    prior = options.pop("prior", None)
    counts = options.pop("token_counts", None)
    if prior is not None and counts is not None:
        raise ValueError(f"policy {policy!r}: give prior= or token_counts=, not both")
    if prior is not None:
        return check_distribution("prior", prior, k)
    if counts is not None:
        return check_token_counts("token_counts", counts, k)
    if required:
        raise ValueError(f"policy {policy!r} needs prior= (a distribution) or token_counts=")
    return np.full(k, 1.0 / k)


def floor_clip(p: np.ndarray, floor: float) -> np.ndarray:
    """The distribution q with q_k = max(floor, c * p_k), sum(q) = 1.

    ``p`` is a non-negative vector summing to 1 and ``floor * len(p) < 1``. Every
    entry ends at least ``floor`` exactly; the entries above the floor keep their
    ratios (scale to leave room, floor, renormalise, done exactly). Returns ``p``
    itself when it already satisfies the floor.
    """
    if floor <= 0.0:
        return p
    # Scalar work on the sorted values: for K ~ 20 this is several times faster
    # than the equivalent sort/cumsum/argmax in NumPy (each call costs ~1-3 us).
    ps = sorted(p.tolist())
    if ps[0] >= floor:
        return p
    tail = math.fsum(ps)
    room = 1.0
    m = 0
    # Floor the smallest entries until the rest, scaled to fill the room left,
    # all stay above the floor (always true by m = K - 1 since K * floor < 1).
    while ps[m] * room < floor * tail and m < len(ps) - 1:
        tail -= ps[m]
        room -= floor
        m += 1
    out = p * (room / tail)
    np.maximum(out, floor, out=out)
    return out


class MixturePolicy(abc.ABC):
    """Base class of the mixture policies (see the module docstring).

    A subclass declares itself with class attributes, from which the study schema, the search
    space, the CLI and the README are derived:

    - ``name``: the registered name (``make_policy(name, ...)``);
    - ``options_spec``: its options, as :class:`~ado_ray.policies.options.Option` objects;
    - ``needs``: what the runner must supply (:class:`~ado_ray.policies.options.Needs`);
    - ``search_space``: a default search space, ``{option: {type, low, high, ...}}`` in the
      study file's form (a study uses it with ``search: default``);
    - :meth:`scaled_defaults`: defaults that scale with the run's length (used for the point a
      search enqueues first).

    It implements :meth:`weights`, and may override :meth:`_observe` (validated float64 arrays),
    :meth:`_observe_eval`, :meth:`diagnostics`, :meth:`_state` and :meth:`_load_state`.
    ``__init__`` calls :meth:`_resolve_options` with the caller's options.
    """

    name: ClassVar[str] = ""
    options_spec: ClassVar[tuple[Option, ...]] = ()
    needs: ClassVar[Needs] = Needs()
    search_space: ClassVar[Mapping[str, Mapping[str, Any]]] = {}

    def __init__(self, num_domains: int) -> None:
        self._k = check_int("num_domains", num_domains, 2)
        self._steps = 0
        self._resolved: dict[str, Any] = {}
        self._ones = np.ones(self._k)

    # -- declarations -----------------------------------------------------

    @classmethod
    def declared_options(cls) -> dict[str, Option]:
        """Option name -> declaration."""
        return {o.name: o for o in cls.options_spec}

    @classmethod
    def accepted_options(cls) -> tuple[str, ...]:
        """Every option name ``__init__`` accepts: the declared ones, plus ``prior`` and
        ``token_counts`` for a policy that needs a prior."""
        extra = PRIOR_OPTIONS if cls.needs.prior else ()
        return tuple(o.name for o in cls.options_spec) + extra

    @classmethod
    def user_options(cls) -> dict[str, Option]:
        """The options a study (or ``--set``) may give: the declared ones, less those the runner
        supplies (``needs``), plus ``prior`` for a policy that needs a prior."""
        context = set(cls.needs.context_options())
        out = {o.name: o for o in cls.options_spec if o.name not in context}
        if cls.needs.prior:
            out["prior"] = PRIOR_OPTION
        return out

    @classmethod
    def scaled_defaults(cls, total_steps: int | None) -> dict[str, Any]:
        """Defaults that scale with the run's length (``total_steps`` optimiser steps, None when
        unknown). The base class has none."""
        return {}

    @classmethod
    def describe(cls) -> str:
        """The first line of the class docstring."""
        return (cls.__doc__ or cls.name).strip().splitlines()[0]

    def _resolve_options(
        self, options: Mapping[str, Any], *, prior_required: bool = False
    ) -> np.ndarray | None:
        """Check ``options`` against the declarations and store the resolved values (defaults
        filled in) as :attr:`options`. Returns the prior for a policy that needs one (uniform
        when neither ``prior`` nor ``token_counts`` is given, unless ``prior_required``)."""
        extra = PRIOR_OPTIONS if self.needs.prior else ()
        resolved = resolve_options(self.name, self.options_spec, options, extra=extra)
        mu = None
        if self.needs.prior:
            mu = resolve_prior(dict(options), self._k, required=prior_required, policy=self.name)
            resolved = {"prior": mu.tolist(), **resolved}
        self._resolved = resolved
        return mu

    # -- public interface -------------------------------------------------

    @property
    def num_domains(self) -> int:
        """K, the number of domains."""
        return self._k

    @property
    def steps_observed(self) -> int:
        """How many steps have been observed: the next ``observe`` takes this step."""
        return self._steps

    @property
    def options(self) -> dict[str, Any]:
        """The fully-resolved options (defaults filled in), JSON-able.

        ``make_policy(policy.name, policy.num_domains, **policy.options)`` builds
        an equivalent fresh policy.
        """
        return {k: (list(v) if isinstance(v, list) else v) for k, v in self._resolved.items()}

    @property
    def wants_eval_feedback(self) -> bool:
        """Whether the loop should call :meth:`observe_eval` after each held-out evaluation
        (``needs.eval_feedback`` by default; a policy may decide from its options)."""
        return self.needs.eval_feedback

    def wants_eval_at(self, step: int) -> bool:
        """Whether the policy needs held-out losses measured after ``step`` training steps, on
        top of the run's regular evaluations (Aioli measures around its probe phases). It must
        be a pure function of the options and ``step``: each rank asks its own copy of the
        policy, so the schedule is known everywhere without a round trip. The evaluation is fed
        to :meth:`observe_eval` and counts in the trial's evaluation tokens. Default: never."""
        return False

    def diagnostics(self) -> dict[str, np.ndarray]:
        """Named per-domain arrays (each of length K) describing the policy's current internal
        state, for the results (ADO: its fitted law parameters). Empty by default."""
        return {}

    @abc.abstractmethod
    def weights(self) -> np.ndarray:
        """Sampling weights (float64, length K, sums to 1) for step ``steps_observed``."""

    def observe(self, step: int, counts: Any, losses: Any) -> None:
        """Record step ``step``: per-domain sequence counts in the global batch and
        per-domain mean training losses (NaN where the count is 0)."""
        if step != self._steps or isinstance(step, bool):
            check_int("step", step, 0)
            raise ValueError(
                f"step={_show(step)} is out of order: expected step {self._steps} "
                "(steps are observed once each, in order from 0; see steps_observed)"
            )
        c = np.asarray(counts, dtype=np.float64)
        l_ = np.asarray(losses, dtype=np.float64)
        k = self._k
        if c.shape != (k,):
            raise ValueError(f"counts has shape {c.shape}: expected ({k},)")
        if l_.shape != (k,):
            raise ValueError(f"losses has shape {l_.shape}: expected ({k},)")
        c_min = float(c.min())
        total = float(c.dot(self._ones))
        if not c_min >= 0.0 or not math.isfinite(total):
            raise ValueError(f"counts={_show(c)} is not allowed: allowed finite numbers >= 0")
        self._observe(self._steps, c, l_, c_min, total)
        self._steps += 1

    def observe_eval(self, step: int, val_losses: Any) -> None:
        """Record held-out per-domain losses measured after ``step`` training steps, that is
        between ``observe(step - 1)`` and ``observe(step)``: ``step`` must equal
        :attr:`steps_observed`. Non-finite entries mean "not measured". Only called for policies
        whose :attr:`wants_eval_feedback` is true; the base class ignores it."""
        if step != self._steps or isinstance(step, bool):
            raise ValueError(
                f"eval step={_show(step)} is out of order: expected {self._steps} "
                "(an evaluation after step t-1 comes before observe(t))"
            )
        v = np.asarray(val_losses, dtype=np.float64)
        if v.shape != (self._k,):
            raise ValueError(f"val_losses has shape {v.shape}: expected ({self._k},)")
        self._observe_eval(int(step), v)

    def state_dict(self) -> dict[str, Any]:
        """The whole state, as plain Python / NumPy values (picklable)."""
        state = {
            "policy": self.name,
            "version": STATE_VERSION,
            "num_domains": self._k,
            "options": self.options,
            "steps_observed": self._steps,
        }
        state.update(self._state())
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore a state from :meth:`state_dict` (same policy, K and options)."""
        if not isinstance(state, Mapping):
            raise ValueError(f"state must be a mapping, got {type(state).__name__}")
        if state.get("policy") != self.name:
            raise ValueError(f"state is for policy {state.get('policy')!r}, not {self.name!r}")
        if state.get("version") != STATE_VERSION:
            raise ValueError(f"state version {state.get('version')!r} is not supported")
        if state.get("num_domains") != self._k:
            raise ValueError(
                f"state has num_domains={state.get('num_domains')!r}, this policy has {self._k}"
            )
        saved = dict(state.get("options", {}))
        mine = self.options
        differ = sorted(k for k in set(saved) | set(mine) if saved.get(k) != mine.get(k))
        if differ:
            raise ValueError(
                "state was saved with different options: "
                + ", ".join(
                    f"{k}={_show(saved.get(k))} (this policy: {_show(mine.get(k))})" for k in differ
                )
                + "; build the policy with load_policy(state)"
            )
        self._load_state(state)
        self._steps = check_int("steps_observed", state["steps_observed"], 0)

    # -- subclass hooks ---------------------------------------------------

    def _observe(
        self, step: int, counts: np.ndarray, losses: np.ndarray, c_min: float, total: float
    ) -> None:
        """Validated observation (``c_min``, ``total``: min and sum of counts).

        The baselines ignore it.
        """
        return None

    def _observe_eval(self, step: int, val_losses: np.ndarray) -> None:
        """Validated held-out losses (see :meth:`observe_eval`)."""
        return None

    def _state(self) -> dict[str, Any]:
        return {}

    def _load_state(self, state: Mapping[str, Any]) -> None:
        """Restore the subclass part of ``state`` (nothing for the baselines)."""
        return None
