"""The GPU path on a GPU: bf16 autocast, torch.compile, fused AdamW and the CUDA RNG in an exact
resume, with MFU in the summary. Skipped without CUDA; ``scripts/gpu_check.sh`` runs them."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ado_ray.data import load_corpus
from ado_ray.schema import ModelSpec, TrainingSpec
from ado_ray.train import Runtime, TrainConfig, run_training
from ado_ray.train.loop import serialise_state

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA"),
]


def test_compiled_bf16_training_resumes_exactly_on_the_gpu_with_dropout():
    corpus = load_corpus("synthetic", seq_len=128, sequences_per_domain=400, seed=0)
    cfg = TrainConfig(
        training=TrainingSpec(
            budget={"steps": 12},
            batch_size=16,
            eval_interval=4,
            eval_sequences=16,
            checkpoint_interval=4,
            compile=True,
        ),
        # dropout draws from the CUDA RNG, which the checkpoint must carry
        model=ModelSpec(overrides={"dropout": 0.1}),
        policy="uniform",
    )
    device = torch.device("cuda")
    states: list[dict] = []

    def keep(metrics, state):
        if state is not None:
            states.append(serialise_state(state))

    full = run_training(cfg, corpus, runtime=Runtime(device=device, report=keep))
    assert full["summary"]["mfu"] is None or 0 < full["summary"]["mfu"] < 1
    resumed = run_training(cfg, corpus, runtime=Runtime(device=device, resume_state=states[0]))
    a = np.array([s["train_loss"] for s in full["steps"]], dtype=float)
    b = np.array([s["train_loss"] for s in resumed["steps"]], dtype=float)
    np.testing.assert_array_equal(a, b)
