"""An example ado-ray policy plugin: ``example_greedy`` (see :mod:`ado_greedy.policy`)."""

from __future__ import annotations

from .policy import ExampleGreedyPolicy

__all__ = ["ExampleGreedyPolicy"]
