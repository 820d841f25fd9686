"""Where policies are found: the built-ins, installed plugins, and in-process registrations.

- **Built-ins** are the concrete :class:`~ado_ray.policies.base.MixturePolicy` subclasses with a
  ``name`` defined in the modules of this package. Adding one means adding its module: no list
  of names to edit.
- **Plugins** are installed packages that declare an entry point in the group
  ``ado_ray.policies`` (``name = "package.module:Class"``). They are found in every process that
  has the package installed, so they work in Ray workers and in the mixture actor too.
- **In-process**: :func:`register_policy` (a notebook, a test). The sweep ships these to its Ray
  processes (:func:`registered_policies`).

A registered class's ``name`` must equal the name it is registered under: a saved policy state
names its policy, and :func:`~ado_ray.policies.load_policy` looks it up by that name.
"""

from __future__ import annotations

import importlib
import inspect
import logging
import pkgutil
from collections.abc import Mapping, Sequence
from importlib.metadata import entry_points
from typing import Any

from .base import MixturePolicy

__all__ = [
    "ENTRY_POINT_GROUP",
    "complete_options",
    "options_markdown",
    "policy_class",
    "policy_names",
    "register_policy",
    "registered_policies",
]

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "ado_ray.policies"

_builtins: dict[str, type[MixturePolicy]] | None = None
_registered: dict[str, type[MixturePolicy]] = {}


def _check_class(name: str, cls: object, where: str) -> type[MixturePolicy]:
    if not (inspect.isclass(cls) and issubclass(cls, MixturePolicy)):
        raise ValueError(f"policy {name!r} ({where}): {cls!r} is not a MixturePolicy subclass")
    if inspect.isabstract(cls):
        raise ValueError(f"policy {name!r} ({where}): {cls.__name__} is abstract")
    if cls.name != name:
        raise ValueError(
            f"policy {name!r} ({where}): {cls.__name__}.name is {cls.name!r}; it must be {name!r}"
        )
    return cls


def _scan_builtins() -> dict[str, type[MixturePolicy]]:
    global _builtins
    if _builtins is None:
        found: dict[str, type[MixturePolicy]] = {}
        package = importlib.import_module(__package__)
        for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda m: m.name):
            module = importlib.import_module(f"{__package__}.{info.name}")
            for obj in vars(module).values():
                if (
                    inspect.isclass(obj)
                    and issubclass(obj, MixturePolicy)
                    and obj.__module__ == module.__name__
                    and obj.name
                    and not inspect.isabstract(obj)
                ):
                    if obj.name in found:
                        raise RuntimeError(f"two built-in policies are named {obj.name!r}")
                    found[obj.name] = obj
        _builtins = dict(sorted(found.items()))
    return _builtins


def _plugin_entry_points() -> dict[str, object]:
    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def register_policy(name: str, cls: type[MixturePolicy], *, replace: bool = False) -> None:
    """Make ``cls`` available as policy ``name`` in this process (``cls.name`` must be
    ``name``). A built-in or plugin name cannot be taken unless ``replace``."""
    if not isinstance(name, str) or not name.isidentifier():
        raise ValueError(f"policy name {name!r}: allowed a Python identifier such as 'my_policy'")
    _check_class(name, cls, "register_policy")
    if not replace and (name in _scan_builtins() or name in _plugin_entry_points()):
        raise ValueError(f"policy {name!r} already exists; pass replace=True to override it")
    _registered[name] = cls


def registered_policies() -> dict[str, type[MixturePolicy]]:
    """The in-process registrations (not the built-ins or plugins), to ship to other processes."""
    return dict(_registered)


def policy_names() -> tuple[str, ...]:
    """Every policy name available here: built-ins, then plugins, then in-process ones."""
    names = list(_scan_builtins())
    names += [n for n in sorted(_plugin_entry_points()) if n not in names]
    names += [n for n in _registered if n not in names]
    return tuple(names)


def policy_class(name: str) -> type[MixturePolicy]:
    """The class of policy ``name``; ``ValueError`` naming the allowed ones if unknown."""
    if isinstance(name, str):
        if name in _registered:
            return _registered[name]
        builtins = _scan_builtins()
        if name in builtins:
            return builtins[name]
        ep = _plugin_entry_points().get(name)
        if ep is None:
            # A long-lived process (a Ray worker of a running cluster) caches directory
            # listings: a plugin installed after it started is found once they are dropped.
            importlib.invalidate_caches()
            ep = _plugin_entry_points().get(name)
        if ep is not None:
            try:
                cls = ep.load()  # type: ignore[attr-defined]
            except Exception as exc:  # noqa: BLE001 - a broken plugin: say which and why
                raise ValueError(
                    f"policy {name!r}: the entry point {ep.value!r} of group "  # type: ignore[attr-defined]
                    f"{ENTRY_POINT_GROUP!r} failed to load: {exc}"
                ) from None
            return _check_class(name, cls, f"entry point {ep.value}")  # type: ignore[attr-defined]
    raise ValueError(f"unknown policy {name!r}: allowed {', '.join(policy_names())}")


def complete_options(
    name: str,
    options: Mapping[str, Any],
    *,
    token_counts: Sequence[float],
    seq_len: int,
    total_tokens: int,
) -> dict[str, Any]:
    """``options`` completed with what policy ``name`` declares it needs from the run
    (:class:`~ado_ray.policies.options.Needs`): the corpus' ``token_counts`` as the prior unless
    the arm gives ``prior`` or ``token_counts``; ``seq_len``; ``total_tokens`` (the run's
    training tokens) and ``domain_tokens`` (each domain's training tokens)."""
    needs = policy_class(name).needs
    out = dict(options)
    counts = [float(x) for x in token_counts]
    if needs.prior and "prior" not in out and "token_counts" not in out:
        out["token_counts"] = counts
    if needs.seq_len:
        out.setdefault("seq_len", int(seq_len))
    if needs.run_budget:
        out.setdefault("total_tokens", int(total_tokens))
        out.setdefault("domain_tokens", counts)
    return out


def options_markdown(name: str) -> str:
    """Policy ``name``'s options as the README's Markdown table (derived from its declarations;
    a test keeps the README in step)."""
    cls = policy_class(name)
    rows = [
        f"**`{name}`**: {cls.describe()} Needs: {cls.needs.describe()}.",
        "",
        "| option | default | allowed | what it does |",
        "| --- | --- | --- | --- |",
    ]
    rows += [opt.to_doc_row() for opt in cls.user_options().values()]
    if len(rows) == 4:
        rows = rows[:1] + ["", "No options."]
    return "\n".join(rows)
