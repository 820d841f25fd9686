"""Mixture policies (pure NumPy/SciPy): ``uniform``, ``natural``, ``fixed``, ``ado``, and any
policy an installed plugin or :func:`register_policy` adds.

>>> from ado_ray.policies import make_policy
>>> p = make_policy("ado", 3, token_counts=[5, 3, 2], warmup_steps=10)
>>> w = p.weights()              # weights for step 0
>>> p.observe(0, [4, 3, 1], [5.1, 4.9, 6.0])
>>> w = p.weights()              # weights for step 1

See :class:`~ado_ray.policies.base.MixturePolicy` for the interface and how a policy declares its
options, :mod:`ado_ray.policies.registry` for how policies are found, and
:mod:`ado_ray.policies.ado` for ADO's options and where it differs from the authors' code.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .ado import ADO_DEFAULTS, AdoPolicy
from .base import MixturePolicy, floor_clip
from .baselines import FixedPolicy, NaturalPolicy, UniformPolicy
from .options import REQUIRED, Needs, Option
from .registry import (
    ENTRY_POINT_GROUP,
    complete_options,
    options_markdown,
    policy_class,
    policy_names,
    register_policy,
    registered_policies,
)
from .scaling_law import LawBounds, LawFit, fit_scaling_laws, law_objective, predict_loss

__all__ = [
    "ADO_DEFAULTS",
    "ENTRY_POINT_GROUP",
    "REQUIRED",
    "AdoPolicy",
    "FixedPolicy",
    "LawBounds",
    "LawFit",
    "MixturePolicy",
    "NaturalPolicy",
    "Needs",
    "Option",
    "UniformPolicy",
    "complete_options",
    "fit_scaling_laws",
    "floor_clip",
    "law_objective",
    "load_policy",
    "make_policy",
    "options_markdown",
    "policy_class",
    "policy_names",
    "predict_loss",
    "register_policy",
    "registered_policies",
]


def make_policy(name: str, num_domains: int, **options: Any) -> MixturePolicy:
    """Build the policy ``name`` over ``num_domains`` domains with ``options`` (see the class's
    ``options_spec``; a policy that needs a prior also takes ``prior=`` or ``token_counts=``).
    Unknown names or options, and values out of range, raise ``ValueError``."""
    return policy_class(name)(num_domains, **options)


def load_policy(state: Mapping[str, Any]) -> MixturePolicy:
    """Rebuild a policy from ``policy.state_dict()`` (name, K and options included)."""
    if not isinstance(state, Mapping) or "policy" not in state:
        raise ValueError("not a policy state: expected a mapping from state_dict()")
    policy = make_policy(state["policy"], state["num_domains"], **dict(state.get("options", {})))
    policy.load_state_dict(state)
    return policy
