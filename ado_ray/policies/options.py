"""How a policy declares itself: its options (:class:`Option`) and what it needs (:class:`Needs`).

A policy class lists its options once, as :class:`Option` objects (name, default, type, range or
choices, a one-line doc). Everything else is derived from that list: the policy's own argument
checks (:func:`resolve_options`), the study validator, the search-space checks, the CLI's
choices and the README's options table. No other list of a policy's option names exists.

Errors read ``gamma1=1.5 is out of range: allowed (0, 1]``: the option, the value, what is allowed.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = [
    "OPTION_TYPES",
    "VECTOR_TYPES",
    "PRIOR_OPTION",
    "PRIOR_OPTIONS",
    "REQUIRED", "Needs", "Option", "check_unknown", "resolve_options"]

#: The kinds of option value. ``weights`` is a vector of non-negative numbers over the domains
#: (normalised by the policy, as a prior is); ``distribution`` is one that must sum to 1 (fixed
#: weights). Vectors can be fixed in a study but not searched.
OPTION_TYPES = ("float", "int", "bool", "choice", "weights", "distribution")
VECTOR_TYPES = ("weights", "distribution")


class _Required:
    def __repr__(self) -> str:
        return "REQUIRED"


#: The default of an option that has none: the caller must give it.
REQUIRED: Any = _Required()


def _show(value: Any) -> str:
    """A short, readable form of a value for error messages (one definition for policies)."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, np.ndarray):
        value = value.tolist()
    text = repr(value)
    return text if len(text) <= 200 else text[:197] + "..."


def _fmt(x: float) -> str:
    if x == math.inf:
        return "inf"
    if x == -math.inf:
        return "-inf"
    return str(int(x)) if float(x).is_integer() and abs(x) < 1e15 else repr(float(x))


@dataclass(frozen=True)
class Option:
    """One declared policy option.

    ``low``/``high`` bound numbers (``low_open``/``high_open`` exclude the bound); ``choices``
    lists a ``choice`` option's values. ``default`` is :data:`REQUIRED` when there is none.
    """

    name: str
    default: Any
    type: str
    doc: str
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    choices: tuple[Any, ...] = ()

    def __post_init__(self) -> None:
        if self.type not in OPTION_TYPES:
            raise ValueError(f"option {self.name}: type {self.type!r} is not one of {OPTION_TYPES}")
        if self.type == "choice" and not self.choices:
            raise ValueError(f"option {self.name}: a choice option needs choices")
        if self.default is not REQUIRED and self.default is not None and not self.is_vector:
            self.check(self.default)  # a declaration with a bad default fails at import

    @property
    def is_vector(self) -> bool:
        return self.type in VECTOR_TYPES

    @property
    def searchable(self) -> bool:
        """Whether a study may search this option (vectors cannot be searched)."""
        return not self.is_vector

    @property
    def required(self) -> bool:
        return self.default is REQUIRED

    def describe(self) -> str:
        """What is allowed, in words: ``a number in (0, 1]``, ``one of 'rho', 'pi'``."""
        if self.type == "choice":
            return "one of " + ", ".join(repr(c) for c in self.choices)
        if self.type == "bool":
            return "true or false"
        if self.type == "weights":
            return "a list of non-negative numbers, one per domain"
        if self.type == "distribution":
            return "a list of non-negative numbers, one per domain, summing to 1"
        what = "an integer" if self.type == "int" else "a number"
        if self.low is None and self.high is None:
            return what
        if self.low is not None and self.high is not None:
            left = "(" if self.low_open else "["
            right = ")" if self.high_open else "]"
            return f"{what} in {left}{_fmt(self.low)}, {_fmt(self.high)}{right}"
        if self.low is not None:
            return f"{what} {'>' if self.low_open else '>='} {_fmt(self.low)}"
        return f"{what} {'<' if self.high_open else '<='} {_fmt(self.high)}"

    def contains(self, value: Any) -> bool:
        try:
            self.check(value)
        except ValueError:
            return False
        return True

    def check(self, value: Any) -> Any:
        """``value`` in its canonical type (int, float, bool, str, list) or ``ValueError``.

        A vector is checked for being a non-empty list of non-negative finite numbers (and, for a
        ``distribution``, summing to 1 within 1e-6); its length is the policy's business (it
        depends on the number of domains).
        """
        bad = f"{self.name}={_show(value)} is not allowed: allowed {self.describe()}"
        if self.type == "choice":
            if not any(type(value) is type(c) and value == c for c in self.choices):
                raise ValueError(bad)
            return value
        if self.type == "bool":
            if isinstance(value, (bool, np.bool_)):
                return bool(value)
            raise ValueError(bad)
        if self.is_vector:
            try:
                arr = np.asarray(value, dtype=np.float64)
            except (TypeError, ValueError):
                raise ValueError(bad) from None
            if arr.ndim != 1 or arr.size == 0 or not np.isfinite(arr).all() or (arr < 0).any():
                raise ValueError(bad)
            if self.type == "distribution" and abs(float(arr.sum()) - 1.0) > 1e-6:
                raise ValueError(f"{bad}; it sums to {float(arr.sum())!r}")
            return arr.tolist()
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
            kind = "an integer" if self.type == "int" else "a number"
            raise ValueError(
                f"{self.name}={_show(value)} is not {kind}: allowed {self.describe()}"
            )
        if self.type == "int":
            if not isinstance(value, numbers.Integral):
                f = float(value)
                if not f.is_integer():
                    raise ValueError(
                        f"{self.name}={_show(value)} is not an integer: allowed {self.describe()}"
                    )
            v: float = int(value)
        else:
            v = float(value)
        ok = not (isinstance(v, float) and math.isnan(v))
        if ok and self.low is not None:
            ok = v > self.low if self.low_open else v >= self.low
        if ok and self.high is not None:
            ok = v < self.high if self.high_open else v <= self.high
        if not ok:
            raise ValueError(f"{self.name}={_show(value)} is out of range: allowed {self.describe()}")
        return v

    def to_doc_row(self) -> str:
        """The option as a README table row: name, default, allowed, doc."""
        if self.required:
            default = "required"
        elif self.default is None:
            default = "(see doc)"
        else:
            default = f"`{_show(self.default)}`"
        return f"| `{self.name}` | {default} | {self.describe()} | {self.doc} |"


@dataclass(frozen=True)
class Needs:
    """What a policy needs from the run, which the runner supplies as options.

    - ``prior``: the corpus' token counts as ``token_counts=`` unless the arm sets ``prior``;
    - ``seq_len``: the corpus' sequence length as ``seq_len=``;
    - ``eval_feedback``: held-out per-domain losses through ``observe_eval`` after each evaluation
      (a policy may decide per instance: see ``MixturePolicy.wants_eval_feedback``);
    - ``run_budget``: the run's total training tokens as ``total_tokens=`` and every domain's
      training tokens as ``domain_tokens=``;
    - ``exact_batches``: batches whose domain counts follow the weights step by step (the
      sampler's ``largest_remainder`` mode, under ``training.sampler: auto``): a policy that
      probes short near-one-hot phases would otherwise measure multinomial noise.
    """

    prior: bool = False
    seq_len: bool = False
    eval_feedback: bool = False
    run_budget: bool = False
    exact_batches: bool = False

    def context_options(self) -> tuple[str, ...]:
        """The option names the runner fills in (they describe the run, not the policy)."""
        out: list[str] = []
        if self.prior:
            out.append("token_counts")
        if self.seq_len:
            out.append("seq_len")
        if self.run_budget:
            out += ["total_tokens", "domain_tokens"]
        return tuple(out)

    def describe(self) -> str:
        names = ("prior", "seq_len", "eval_feedback", "run_budget", "exact_batches")
        words = [n for n in names if getattr(self, n)]
        return ", ".join(words) or "nothing"


#: Options every policy that needs a prior accepts besides its own (the prior itself).
PRIOR_OPTIONS = ("prior", "token_counts")
#: The prior, as a study may set it for a policy that needs one.
PRIOR_OPTION = Option(
    "prior",
    None,
    "weights",
    "the prior over domains (normalised); default: the corpus' token shares",
)
#: Options the runner passes for ``Needs.run_budget``.
BUDGET_OPTIONS = ("total_tokens", "domain_tokens")


def check_unknown(policy: str, given: Iterable[str], allowed: Iterable[str]) -> None:
    """Raise ``ValueError`` naming any unknown option and listing the allowed ones."""
    allowed = sorted(allowed)
    unknown = sorted(set(given) - set(allowed))
    if unknown:
        names = ", ".join(repr(u) for u in unknown)
        raise ValueError(
            f"unknown option {names} for policy {policy!r}: allowed "
            + (", ".join(allowed) if allowed else "none")
        )


def resolve_options(
    policy: str, declared: Iterable[Option], given: Mapping[str, Any], extra: Iterable[str] = ()
) -> dict[str, Any]:
    """``given`` checked against ``declared`` and completed with the defaults.

    ``extra`` names options the caller handles itself (``prior``, ``token_counts``...); they are
    accepted and left out of the result. Raises ``ValueError`` for an unknown option, a missing
    required one or a value out of its declared range.
    """
    declared = tuple(declared)
    extra = tuple(extra)
    check_unknown(policy, given, [o.name for o in declared] + list(extra))
    out: dict[str, Any] = {}
    for opt in declared:
        if opt.name in given and given[opt.name] is not None:
            out[opt.name] = opt.check(given[opt.name])
        elif opt.required:
            raise ValueError(f"policy {policy!r} needs {opt.name}= ({opt.describe()}): {opt.doc}")
        else:
            out[opt.name] = opt.default
    return out
