"""A table of bad inputs, each refused the same way: exit code 2, one line naming the field path,
no traceback, Ray not started and nothing written, before any compute."""

from __future__ import annotations

import time

import pytest

from ado_ray.cli import main

Q = "studies/quickstart.yaml"

# (extra CLI args, the field path the one-line error must name)
CASES: list[tuple[list[str], str]] = [
    # training
    (["--set", "training.batch_size=0"], "training.batch_size"),
    (["--set", "training.batch_size=-3"], "training.batch_size"),
    (["--set", "training.batch_size=abc"], "training.batch_size"),
    (["--set", "training.grad_accum=0"], "training.grad_accum"),
    (["--set", "training.lr=0"], "training.lr"),
    (["--set", "training.lr=-1e-3"], "training.lr"),
    (["--set", "training.lr=fast"], "training.lr"),
    (["--set", "training.min_lr_ratio=1.5"], "training.min_lr_ratio"),
    (["--set", "training.lr_warmup_steps=-1"], "training.lr_warmup_steps"),
    (["--set", "training.lr_warmup_fraction=1.0"], "training.lr_warmup_fraction"),
    (["--set", "training.betas=[0.9]"], "training.betas"),
    (["--set", "training.betas=[0.9, 1.5]"], "training.betas[1]"),
    (["--set", "training.weight_decay=-0.1"], "training.weight_decay"),
    (["--set", "training.grad_clip=0"], "training.grad_clip"),
    (["--set", "training.eval_interval=0"], "training.eval_interval"),
    (["--set", "training.eval_sequences=0"], "training.eval_sequences"),
    (["--set", "training.eval_batch_size=0"], "training.eval_batch_size"),
    (["--set", "training.checkpoint_interval=0"], "training.checkpoint_interval"),
    (["--set", "training.mixture_lag=0"], "training.mixture_lag"),
    (["--set", "training.sampler=random"], "training.sampler"),
    (["--set", "training.compile=maybe"], "training.compile"),
    (["--set", "training.precision=fp16"], "training.precision"),
    (["--set", "training.max_failures=-1"], "training.max_failures"),
    (["--set", "training.budget.steps=0"], "training.budget.steps"),
    (["--set", "training.budget.epochs=-1"], "training.budget.epochs"),
    (["--set", "training.budget.minutes=5"], "training.budget.minutes"),
    (["--set", "training.batchsize=8"], "training.batchsize"),
    # model and data
    (["--set", "model.preset=huge"], "model.preset"),
    (["--set", "model.overrides.n_layer=0"], "model.overrides.n_layer"),
    (["--set", "model.overrides.n_head=3"], "model.overrides.n_head"),
    (["--set", "model.overrides.dropout=1.0"], "model.overrides.dropout"),
    (["--set", "model.overrides.width=3"], "model.overrides.width"),
    (["--set", "data.source=pile"], "data.source"),
    (["--set", "data.options.seq_len=0"], "seq_len"),
    (["--set", "data.options.domains=[nosuch]"], "domains"),
    (["--set", "data.options.colour=red"], "colour"),
    # arms
    (["--set", "arms.ado.options.gamma1=2"], "arms.ado.options.gamma1"),
    (["--set", "arms.ado.options.gamma2=0"], "arms.ado.options.gamma2"),
    (["--set", "arms.ado.options.s=-1"], "arms.ado.options.s"),
    (["--set", "arms.ado.options.delta_min=0.5"], "arms.ado"),
    (["--set", "arms.ado.options.clip=both"], "arms.ado.options.clip"),
    (["--set", "arms.ado.options.smoothing=1"], "arms.ado.options.smoothing"),
    (["--set", "arms.ado.options.gama1=0.1"], "arms.ado.options.gama1"),
    (["--set", "arms.ado.options.prior=[1, -1, 1, 1, 1]"], "arms.ado.options.prior[1]"),
    (["--set", "arms.ado.search.gamma1.low=5"], "arms.ado.search.gamma1"),
    (["--set", "arms.ado.search.gamma1.type=normal"], "arms.ado.search.gamma1.type"),
    (["--set", "arms.ado.search.clip={type: uniform, low: 0, high: 1}"], "arms.ado.search.clip"),
    (["--set", "arms.ado.search.prior={type: uniform, low: 0, high: 1}"], "arms.ado.search"),
    (["--set", "arms.bogus={}"], "arms.bogus.policy"),
    (["--set", "arms.x={policy: odm, options: {smoothing: 1.5}}"], "arms.x.options.smoothing"),
    (["--set", "arms.t={policy: temperature, options: {temperature: 0}}"], "arms.t.options"),
    (["--set", "arms.f={policy: fixed, options: {weights: [0.5, 0.5]}}"], "arms.f"),
    (["--set", "arms.f={policy: fixed}"], "arms.f.options.weights"),
    (["--set", "arms.u={policy: unimax, options: {max_epochs: 0}}"], "arms.u.options.max_epochs"),
    (["--set", "arms.a={policy: aioli, options: {signal: both}}"], "arms.a.options.signal"),
    (["--set", "arms.ado.num_samples=-1"], "arms.ado.num_samples"),
    (["--set", "arms.9lives={}"], "arms.9lives"),
    # search, swarm, seeds, top level
    (["--set", "search.num_samples=-1"], "search.num_samples"),
    (["--set", "search.top_k=0"], "search.top_k"),
    (["--set", "search.top_k=9"], "search.top_k"),
    (["--set", "search.sampler=grid"], "search.sampler"),
    (["--set", "search.search_seeds=[1, 2]"], "search.search_seeds"),
    (["--set", "search.arms=[uniform]"], "search.arms[0]"),
    (["--set", "search.scheduler.type=pbt"], "search.scheduler.type"),
    (["--set", "search.scheduler.reduction_factor=1"], "search.scheduler.reduction_factor"),
    (["--set", "swarm.n_mixtures=2"], "swarm.n_mixtures"),
    (["--set", "swarm.budget_fraction=0"], "swarm.budget_fraction"),
    (["--set", "swarm.regression=forest"], "swarm.regression"),
    (["--set", "swarm.center=median"], "swarm.center"),
    (["--set", "seeds=[]"], "seeds"),
    (["--set", "seeds=[1, 1]"], "seeds"),
    (["--set", "seeds=[-1]"], "seeds[0]"),
    (["--set", "name=.."], "name"),
    (["--set", "name=a/b"], "name"),
    (["--set", "metric=accuracy"], "metric"),
    (["--set", "mode=max"], "mode"),
    (["--set", "storage=ftp://host/x"], "storage"),
    (["--set", "resources.workers_per_trial=0"], "resources.workers_per_trial"),
    (["--set", "resources.cpus_per_worker=0"], "resources.cpus_per_worker"),
    (["--set", "resources.gpus_per_worker=-1"], "resources.gpus_per_worker"),
    (["--set", "resources.max_concurrent_trials=0"], "resources.max_concurrent_trials"),
    (["--set", "resources.gpus_per_worker=1"], "resources.gpus_per_worker"),
    (["--set", "resources.workers_per_trial=64"], "resources.workers_per_trial"),
    (["--set", "description=[1]"], "description"),
    (["--set", "training"], "--set"),
]


@pytest.fixture(scope="module")
def timings() -> list[float]:
    seen: list[float] = []
    yield seen
    fast = sum(t < 1.0 for t in seen)
    print(f"\nbad inputs refused in under 1 s: {fast} of {len(seen)}")


@pytest.mark.parametrize("args, field", CASES, ids=[c[0][-1][:40] for c in CASES])
def test_a_bad_input_is_one_line_naming_the_field(args, field, tmp_path, capsys, timings):
    import ray

    store = tmp_path / "store"
    t0 = time.perf_counter()
    code = main(["sweep", Q, "--storage", str(store), *args])
    timings.append(time.perf_counter() - t0)
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    lines = [ln for ln in err.splitlines() if not ln.startswith(("20", "INFO", "WARNING"))]
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ") and field in lines[0], lines[0]
    assert "Traceback" not in err
    assert not ray.is_initialized()
    assert not store.exists(), "nothing is written for a refused study"


def test_there_are_at_least_sixty_cases():
    assert len(CASES) >= 60
