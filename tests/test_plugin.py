"""The example policy plugin (examples/policy_plugin): the policy itself, imported from its source,
and the installed package, whose entry point makes ``example_greedy`` a policy in any process.

The ``installed_plugin`` fixture pip-installs the example into this venv once per module; the Ray
tests at the end of this file reuse it.
"""

from __future__ import annotations

import importlib.metadata
import json
import math
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
PLUGIN = ROOT / "examples" / "policy_plugin"
PLUGIN_SRC = PLUGIN / "src"
DIST = "ado-greedy"


@pytest.fixture(scope="module")
def greedy_cls():
    """``ExampleGreedyPolicy`` imported from the example's source tree (no install)."""
    sys.path.insert(0, str(PLUGIN_SRC))
    try:
        from ado_greedy.policy import ExampleGreedyPolicy
    finally:
        sys.path.remove(str(PLUGIN_SRC))
    return ExampleGreedyPolicy


def _check_distribution(w: np.ndarray, k: int, floor: float = 0.0) -> None:
    assert isinstance(w, np.ndarray) and w.dtype == np.float64 and w.shape == (k,)
    assert np.isfinite(w).all()
    assert math.isclose(float(w.sum()), 1.0, rel_tol=0, abs_tol=1e-12)
    assert (w >= floor).all(), (w, floor)


def _run(policy, steps: int, rng: np.random.Generator, *, base=(2.0, 3.0, 4.0, 5.0)) -> None:
    """Observe ``steps`` random steps with gaps (count 0) and the odd non-finite loss."""
    k = policy.num_domains
    base = np.asarray(base[:k])
    for _ in range(steps):
        counts = rng.integers(0, 4, size=k).astype(float)
        losses = base + rng.normal(0.0, 0.1, size=k)
        losses[counts == 0] = np.nan
        if rng.random() < 0.1:
            losses[rng.integers(k)] = rng.choice([np.inf, -np.inf, np.nan])
        policy.observe(policy.steps_observed, counts, losses)


# -- the policy, from its source ------------------------------------------------------------


def test_declarations(greedy_cls):
    assert greedy_cls.name == "example_greedy"
    assert [o.name for o in greedy_cls.options_spec] == ["temperature", "window", "delta_min"]
    assert set(greedy_cls.search_space) <= {o.name for o in greedy_cls.options_spec}
    p = greedy_cls(3)
    assert p.options == {"temperature": 1.0, "window": 20, "delta_min": 0.01}


def test_uniform_before_any_loss(greedy_cls):
    p = greedy_cls(4)
    np.testing.assert_array_equal(p.weights(), np.full(4, 0.25))
    p.observe(0, [0, 0, 0, 0], [np.nan] * 4)  # an empty batch records nothing
    p.observe(1, [2, 1, 0, 0], [np.inf, np.nan, np.nan, np.nan])  # non-finite = missing
    np.testing.assert_array_equal(p.weights(), np.full(4, 0.25))
    assert p.diagnostics()["num_losses"].tolist() == [0, 0, 0, 0]


def test_valid_distributions_and_floor_every_step(greedy_cls):
    rng = np.random.default_rng(0)
    for k, options in [
        (2, {}),
        (4, {"temperature": 0.05, "window": 3, "delta_min": 0.1}),
        (4, {"temperature": 0.01, "delta_min": 0.0}),
    ]:
        p = greedy_cls(k, **options)
        floor = p.options["delta_min"]
        for _ in range(60):
            _check_distribution(p.weights(), k, floor)
            _run(p, 1, rng)
    # A sharp temperature puts everything but the floors on the highest-loss domain.
    p = greedy_cls(4, temperature=0.01, delta_min=0.05)
    p.observe(0, [1, 1, 1, 1], [1.0, 2.0, 3.0, 4.0])
    w = p.weights()
    np.testing.assert_allclose(w, [0.05, 0.05, 0.05, 0.85], atol=1e-12)
    assert (w >= 0.05).all()


def test_higher_loss_domain_is_up_weighted(greedy_cls):
    p = greedy_cls(3, temperature=0.5)
    _run(p, 50, np.random.default_rng(1), base=(2.0, 3.0, 4.0))
    w = p.weights()
    assert w[0] < w[1] < w[2]
    # The softmax of the mean recent losses, exactly as documented.
    means = p.diagnostics()["recent_loss"]
    expected = np.exp(means / 0.5) / np.exp(means / 0.5).sum()
    np.testing.assert_allclose(w, expected, rtol=1e-12)


def test_missing_domain_keeps_its_losses_and_window(greedy_cls):
    p = greedy_cls(3, window=2, delta_min=0.0)
    p.observe(0, [1, 1, 1], [1.0, 2.0, 3.0])
    p.observe(1, [1, 1, 0], [3.0, 4.0, np.nan])
    p.observe(2, [1, 0, 0], [5.0, np.nan, np.nan])
    # Domain 0: last 2 of (1, 3, 5); domain 1: (2, 4); domain 2: only 3.
    np.testing.assert_array_equal(p.diagnostics()["recent_loss"], [4.0, 3.0, 3.0])
    np.testing.assert_array_equal(p.diagnostics()["num_losses"], [3.0, 2.0, 1.0])
    # A domain with no loss yet takes the mean of the others' means.
    q = greedy_cls(3, delta_min=0.0)
    q.observe(0, [1, 1, 0], [1.0, 3.0, np.nan])
    e = np.exp([1.0, 3.0, 2.0])
    np.testing.assert_allclose(q.weights(), e / e.sum(), rtol=1e-12)


def test_large_temperature_is_near_uniform(greedy_cls):
    p = greedy_cls(4, temperature=1e6)
    _run(p, 30, np.random.default_rng(2))
    np.testing.assert_allclose(p.weights(), np.full(4, 0.25), atol=1e-5)


def test_state_dict_round_trip_is_bit_identical(greedy_cls):
    rng = np.random.default_rng(3)
    p = greedy_cls(4, temperature=0.3, window=5)
    _run(p, 23, rng)  # past the window: the ring buffer has wrapped
    state = p.state_dict()
    q = greedy_cls(4, temperature=0.3, window=5)
    q.load_state_dict(state)
    assert q.steps_observed == p.steps_observed == 23
    assert q.weights().tobytes() == p.weights().tobytes()
    # And they stay identical on the same future observations (state is a copy, not shared).
    twin = np.random.default_rng(4), np.random.default_rng(4)
    for _ in range(12):
        _run(p, 1, twin[0])
        _run(q, 1, twin[1])
        assert q.weights().tobytes() == p.weights().tobytes()
    assert state["steps_observed"] == 23  # the saved state did not move with the policy
    # Through a pickle-free, JSON-able round trip as well.
    as_json = json.loads(
        json.dumps(
            {
                k: np.asarray(v).tolist() if isinstance(v, np.ndarray) else v
                for k, v in p.state_dict().items()
            }
        )
    )
    r = greedy_cls(4, temperature=0.3, window=5)
    r.load_state_dict(as_json)
    assert r.weights().tobytes() == p.weights().tobytes()
    # A state from other options, or a broken one, is refused.
    with pytest.raises(ValueError, match="window"):
        greedy_cls(4, temperature=0.3, window=6).load_state_dict(state)
    bad = dict(state, recent_losses=np.zeros((3, 4)))
    with pytest.raises(ValueError, match="not a valid example_greedy state"):
        greedy_cls(4, temperature=0.3, window=5).load_state_dict(bad)


@pytest.mark.parametrize(
    "k, options, name",
    [
        (3, {"temperature": 0.0}, "temperature"),
        (3, {"temperature": -1.0}, "temperature"),
        (3, {"temperature": "hot"}, "temperature"),
        (3, {"window": 0}, "window"),
        (3, {"window": 2.5}, "window"),
        (3, {"delta_min": 1.0}, "delta_min"),
        (3, {"delta_min": -0.1}, "delta_min"),
        (4, {"delta_min": 0.25}, "delta_min"),  # in [0, 1) but not below 1/K
        (3, {"tempreature": 1.0}, "tempreature"),
    ],
)
def test_bad_option_raises_naming_it(greedy_cls, k, options, name):
    with pytest.raises(ValueError, match=name):
        greedy_cls(k, **options)


# -- the installed plugin ----------------------------------------------------------------------


def _installed() -> bool:
    try:
        importlib.metadata.version(DIST)
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


@pytest.fixture(scope="module")
def installed_plugin(tmp_path_factory):
    """pip-install examples/policy_plugin into this venv (offline, no deps, no build isolation).

    Built from a copy, so no build/ or egg-info lands in the checkout; installing again (a rerun)
    just replaces it. Uninstalled at the end unless it was installed before. Yields the plugin's
    source directory. Entry points are read per process: check them in a fresh subprocess (or a
    Ray worker started after the install).
    """
    was_installed = _installed()
    copy = tmp_path_factory.mktemp("plugin") / "policy_plugin"
    shutil.copytree(
        PLUGIN, copy, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__")
    )
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "install",
        "-q",
        "--no-deps",
        "--no-build-isolation",
        "--no-index",
        "--force-reinstall",
        str(copy),
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    importlib.invalidate_caches()
    yield PLUGIN
    if not was_installed:
        subprocess.run(
            [sys.executable, "-m", "pip", "uninstall", "-q", "-y", DIST],
            capture_output=True,
            text=True,
            timeout=120,
        )


def test_installed_plugin_is_found_by_entry_point(installed_plugin):
    script = textwrap.dedent(
        """
        import json
        from ado_ray.policies import load_policy, make_policy, policy_class, policy_names

        p = make_policy("example_greedy", 3)
        p.observe(0, [1, 1, 1], [1.0, 2.0, 3.0])
        q = load_policy(p.state_dict())
        print(json.dumps({
            "names": list(policy_names()),
            "module": policy_class("example_greedy").__module__,
            "weights": p.weights().tolist(),
            "same": q.weights().tobytes() == p.weights().tobytes(),
        }))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, cwd=ROOT
    )
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert "example_greedy" in out["names"]
    assert out["module"] == "ado_greedy.policy"
    w = np.array(out["weights"])
    assert w[0] < w[1] < w[2] and math.isclose(w.sum(), 1.0)
    assert out["same"]


# -- The CLI, Ray and a whole study with the plugin ----------------------------------------------

FAST_ADO = {
    "warmup_steps": 4,
    "update_interval": 4,
    "ignore_steps": 0,
    "subsample": 1,
    "min_fit_points": 4,
    "pibar_clock": "since_first_fit",
    "log_eps_min": -5.0,
}


def _plugin_study(storage: str) -> dict:
    """Two labelled ADO arms, a searched plugin arm and uniform, on tiny synthetic data."""
    return {
        "name": "plugin_showdown",
        "data": {
            "source": "synthetic",
            "options": {"seq_len": 32, "sequences_per_domain": 300, "val_sequences_per_domain": 32},
        },
        "model": {"preset": "tiny", "overrides": {"n_layer": 1, "n_embd": 32, "n_head": 2}},
        "training": {
            "budget": {"steps": 16},
            "batch_size": 8,
            "eval_interval": 8,
            "checkpoint_interval": 8,
            "eval_sequences": 16,
            "lr_warmup_steps": 2,
        },
        "arms": {
            "uniform": {},
            "ado_paper": {"policy": "ado"},
            "ado_short": {"policy": "ado", "options": FAST_ADO},
            "greedy": {
                "policy": "example_greedy",
                "search": {"temperature": {"type": "loguniform", "low": 0.1, "high": 5.0}},
                "num_samples": 2,
            },
        },
        "seeds": [0],
        "search": {"num_samples": 2, "top_k": 1},
        "resources": {"max_concurrent_trials": 2},
        "storage": storage,
    }


def _cli(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).with_name("ado-ray")
    return subprocess.run(
        [str(exe), *args], capture_output=True, text=True, timeout=timeout, cwd=ROOT
    )


def test_cli_validates_and_trains_a_plugin_arm(installed_plugin, tmp_path):
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(_plugin_study(str(tmp_path / "results"))))
    done = _cli("validate", str(path))
    assert done.returncode == 0, done.stderr
    assert re.search(r"search\s+greedy\s+example_greedy", done.stdout)
    assert re.search(r"confirm\s+ado_short\s+ado", done.stdout)
    bad = _cli("validate", str(path), "--set", "arms.greedy.options.temperature=-1")
    assert bad.returncode == 2 and "arms.greedy.options.temperature" in bad.stderr
    assert "Traceback" not in bad.stderr
    done = _cli("train", str(path), "--arm", "greedy", "--set", "training.budget.steps=8")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "val_loss_balanced" in done.stdout


@pytest.mark.ray
def test_a_study_with_labelled_arms_and_a_searched_plugin_sweeps_and_analyses(
    installed_plugin, ray_cluster, tmp_path
):
    from ado_ray.distributed.sweep import run_sweep
    from ado_ray.report import analyze
    from ado_ray.results import read_results
    from ado_ray.study import load_study

    study = load_study(_plugin_study(str(tmp_path / "results")))
    plans: list[str] = []
    uri = run_sweep(study, announce=plans.append)
    assert "greedy" in plans[0] and "6 trials x 16 steps" in plans[0]  # 2 search + 4 confirm
    res = read_results(uri)
    t = res.trials
    search = t[t.phase == "search"]
    assert set(search.arm) == {"greedy"} and len(search) == 2
    assert search.hp_temperature.between(0.1, 5.0).all()
    confirm = t[t.phase == "confirm"]
    assert sorted(confirm.arm) == ["ado_paper", "ado_short", "greedy", "uniform"]
    assert set(confirm.policy) == {"uniform", "ado", "example_greedy"}
    assert (confirm.status == "completed").all()
    assert (confirm.eval_tokens > 0).all() and (confirm.tokens_seen == 16 * 8 * 32).all()
    # The two ADO arms differ only in their options, and the short one fitted its laws.
    short = confirm[confirm.arm == "ado_short"].trial_id.iloc[0]
    assert "law_alpha" in set(res.diagnostics_for([short]).name)
    report = analyze(uri, out_dir=str(tmp_path / "analysis"))
    for label in ("ado_paper", "ado_short", "greedy", "uniform"):
        assert label in report.text
    assert "greedy" in report.importances
