"""The GPU path, run on CPU: bf16 autocast, torch.compile of the model and loss, the fused or
foreach optimiser choice, and exact resume with compile on. The one device-specific function
(``device_plan``) is tested for both devices; everything else runs here as it runs on a GPU."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ado_ray.data import load_corpus
from ado_ray.schema import ModelSpec, TrainingSpec
from ado_ray.train import Runtime, TrainConfig, run_training
from ado_ray.train.loop import device_plan, peak_flops, serialise_state

TINY = {"n_layer": 1, "n_embd": 32, "n_head": 2}


@pytest.fixture(scope="module")
def corpus():
    return load_corpus(
        "synthetic", seq_len=32, sequences_per_domain=200, val_sequences_per_domain=32, seed=0
    )


def config(**training) -> TrainConfig:
    base = dict(
        budget={"steps": 8},
        batch_size=8,
        lr=3e-3,
        lr_warmup_steps=2,
        eval_interval=4,
        eval_sequences=16,
        eval_batch_size=16,
        checkpoint_interval=4,
    )
    base.update(training)
    return TrainConfig(training=TrainingSpec(**base), model=ModelSpec(overrides=TINY))


def losses(record: dict) -> np.ndarray:
    return np.array([s["train_loss"] for s in record["steps"]], dtype=float)


def test_the_device_plan_is_the_only_device_switch():
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert device_plan(cpu, "auto").autocast_dtype is None
    assert device_plan(cpu, "bf16").autocast_dtype == torch.bfloat16
    assert device_plan(cuda, "auto").autocast_dtype == torch.bfloat16
    assert device_plan(cuda, "fp32").autocast_dtype is None
    assert device_plan(cuda, "auto").fused_adamw and not device_plan(cpu, "auto").fused_adamw
    assert device_plan(cuda, "auto").cuda_rng and not device_plan(cpu, "auto").cuda_rng
    assert peak_flops(cpu) is None


def test_bf16_autocast_trains_on_cpu_close_to_fp32(corpus):
    fp32 = run_training(config(precision="fp32"), corpus)
    bf16 = run_training(config(precision="bf16"), corpus)
    a, b = losses(fp32), losses(bf16)  # per step and domain; NaN where a domain was absent
    assert np.isfinite(b[~np.isnan(a)]).all()
    assert not np.array_equal(a, b, equal_nan=True)  # bf16 really ran
    np.testing.assert_allclose(b, a, rtol=0.05)  # and it is the same training
    assert bf16["summary"]["mfu"] is None  # no MFU on CPU


def test_torch_compile_matches_eager_and_resumes_exactly(corpus):
    eager = run_training(config(), corpus)
    states: list[dict] = []

    def keep(metrics, state):
        if state is not None:
            states.append(serialise_state(state))

    compiled = run_training(config(compile=True), corpus, runtime=Runtime(report=keep))
    np.testing.assert_allclose(losses(compiled), losses(eager), rtol=1e-4)
    resumed = run_training(config(compile=True), corpus, runtime=Runtime(resume_state=states[0]))
    # Static-shape graphs make the resumed run compute what the uninterrupted one did; compiled
    # CPU kernels (OpenMP reductions) may still differ in the last bits between two compilations
    # in one process, so: equal to float32 rounding, and identical where eager runs are.
    np.testing.assert_allclose(losses(resumed), losses(compiled), rtol=1e-6)
    np.testing.assert_allclose(
        [e["val_loss"] for e in resumed["evals"]],
        [e["val_loss"] for e in compiled["evals"]],
        rtol=1e-6,
    )
