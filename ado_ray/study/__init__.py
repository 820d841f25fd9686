"""The study file: a YAML document, validated on load, and its expansion into trials.

A study compares mixture *arms* on one shared setup: the same data, model, optimiser, schedule,
token budget and seeds. An arm is a label with a policy and its options
(``arms: {ado_fast: {policy: ado, options: {...}}}``; the policy defaults to the label). Any arm
may carry a search space, searched by Optuna through Ray Tune on ``search.search_seeds``; the
``search.top_k`` best configs of each searched arm are then confirmed with every other arm on
every seed in ``seeds``.

- :mod:`ado_ray.study.schema`: the study's classes (arms, search spaces, the search);
- :mod:`ado_ray.study.checks`: loading and checking a study file;
- :mod:`ado_ray.study.trials`: the expansion into trials, and the plan.

The run settings (data, model, training, resources) are :mod:`ado_ray.schema`'s. Nothing here
imports Ray or torch; Optuna is imported only to build and check search dimensions.
"""

from ado_ray.schema import (
    Budget,
    DataSpec,
    ModelSpec,
    ResourcesSpec,
    RunConfig,
    StudyError,
    TrainingSpec,
)
from ado_ray.study.checks import STUDIES_DIR, dump_study, load_study, shipped_studies
from ado_ray.study.schema import (
    METRICS,
    ArmSpec,
    ParamSpec,
    SchedulerSpec,
    SearchSpec,
    Study,
    TrialSpec,
)
from ado_ray.study.trials import Plan, plan

__all__ = [
    "METRICS",
    "STUDIES_DIR",
    "ArmSpec",
    "Budget",
    "DataSpec",
    "ModelSpec",
    "ParamSpec",
    "Plan",
    "ResourcesSpec",
    "RunConfig",
    "SchedulerSpec",
    "SearchSpec",
    "Study",
    "StudyError",
    "TrainingSpec",
    "TrialSpec",
    "dump_study",
    "load_study",
    "plan",
    "shipped_studies",
]
