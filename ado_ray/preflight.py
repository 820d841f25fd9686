"""Everything a study is checked against before any compute: the corpus it names, every arm's
policy built against that corpus (at each corner of a searched arm's space), and the plan.

``ado-ray validate`` prints the plan and stops here; ``ado-ray sweep`` prints it and goes on.
No Ray and no torch: a bad study is rejected in well under a second plus the corpus' load.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ado_ray.data import load_corpus
from ado_ray.policies import complete_options, make_policy
from ado_ray.study import Plan, Study, plan

__all__ = ["Preflight", "preflight", "run_options", "validate_before_compute"]


def run_options(
    study: Study, label: str, options: dict[str, Any], corpus: Any, steps: int
) -> dict[str, Any]:
    """Arm ``label``'s ``options`` completed with what its policy needs from this run."""
    seq_len = int(corpus.seq_len)
    return complete_options(
        study.arm(label).policy,
        options,
        token_counts=corpus.token_counts(),
        seq_len=seq_len,
        total_tokens=steps * int(study.training.batch_size) * seq_len,
    )


def validate_before_compute(study: Study, corpus: Any) -> int:
    """Every arm's policy is built once against the corpus, so a bad option (fixed weights of
    the wrong length, delta_min * K >= 1...) fails before any trial starts; for a searched arm,
    also at every corner of its space. Returns the steps of each trial."""
    total_seqs = int(sum(len(t) for t in corpus.train))
    steps = study.budget_steps(int(corpus.seq_len), total_seqs)
    for label, arm in study.arms.items():
        base = study.default_arm_options(label, steps)
        candidates = [base]
        for name, spec in arm.search.items():
            values = spec.choices if spec.type == "categorical" else (spec.low, spec.high)
            candidates += [{**base, name: v} for v in values]
        for opts in candidates:
            try:
                make_policy(
                    arm.policy, corpus.num_domains, **run_options(study, label, opts, corpus, steps)
                )
            except ValueError as exc:
                raise ValueError(f"arms.{label}: {exc}") from None
    return steps


@dataclass(frozen=True)
class Preflight:
    """A checked study with its corpus, the steps of each trial and the plan."""

    study: Study
    corpus: Any
    steps: int
    plan: Plan


def preflight(study: Study) -> Preflight:
    """Load the study's corpus, check every arm against it, and make the plan."""
    corpus = load_corpus(study.data.source, **study.data.options)
    steps = validate_before_compute(study, corpus)
    return Preflight(study, corpus, steps, plan(study, steps, int(corpus.seq_len)))
