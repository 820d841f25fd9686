"""Security defaults of a local run: loopback-only binding, an owner-only Ray auth token, workers
that import the installed package, and reports that do not embed the results' absolute path.

No Ray cluster is started here: ``ray.init`` is replaced by a fake that records how it was
called (and, like Ray 2.60, may write ``~/.ray/auth_token`` with the default file mode). The
config-file side (cluster.yaml, deploy/rayjob.yaml) is checked in tests/test_cluster.py.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import ray

import ado_ray
from ado_ray import report as Rep
from ado_ray.distributed import runtime
from ado_ray.results import ResultsWriter

try:
    import fixtures_results as fx
except ImportError:  # tests/ imported as a package
    from tests import fixtures_results as fx

RAY_CLUSTER_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
SHIP_ENV = "ADO_RAY_SHIP_WORKING_DIR"


def _mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def _write(path: Path, text: str = "x" * 64, mode: int = 0o644) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    os.chmod(path, mode)
    return path


@pytest.fixture
def local_env(tmp_path, monkeypatch):
    """A clean HOME and working directory, no Ray address, no auth settings, Ray not up."""
    home = tmp_path / "home"
    home.mkdir()
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(work)
    for var in (
        "RAY_ADDRESS",
        "RAY_AUTH_TOKEN_PATH",
        "RAY_AUTH_TOKEN",
        RAY_CLUSTER_ENV,
        SHIP_ENV,
        "RAY_JOB_CONFIG_JSON_ENV_VAR",
    ):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "cluster_resources", lambda: {"CPU": 2.0})
    return home


class FakeInit:
    """Stands in for ``ray.init``: records its arguments and what the process looked like
    during the call, and runs ``effect`` (e.g. writing a token file as Ray does)."""

    def __init__(self, effect=None):
        self.calls: list[dict] = []
        self.effect = effect

    def __call__(self, **kwargs):
        from ray._private import ray_constants

        self.calls.append(
            {
                "kwargs": kwargs,
                "env": os.environ.get(RAY_CLUSTER_ENV),
                "enable_ray_cluster": ray_constants.ENABLE_RAY_CLUSTER,
                "node_ip": (
                    ray._private.services.get_node_ip_address()
                    if ray._private.worker._global_node is None
                    else None
                ),
            }
        )
        if self.effect:
            self.effect()


# --------------------------------------------------------------------------- loopback


def test_a_local_cluster_listens_on_loopback_only(local_env, monkeypatch):
    from ray._private import ray_constants

    before = ray_constants.ENABLE_RAY_CLUSTER
    fake = FakeInit()
    monkeypatch.setattr(ray, "init", fake)
    assert runtime.init_ray(num_cpus=2, trial_drivers=3) == {"CPU": 2.0}
    (call,) = fake.calls
    kwargs = call["kwargs"]
    assert kwargs["dashboard_host"] == "127.0.0.1"
    assert kwargs["include_dashboard"] is True  # ASHA's cleanup needs it
    assert kwargs["resources"] == {"trial_driver": 3.0} and kwargs["num_cpus"] == 2
    assert "runtime_env" not in kwargs  # nothing shadows ado_ray in a clean directory
    # While Ray starts, it takes loopback as the node IP (GCS, raylet, agents, /metrics) ...
    assert call["env"] == "0" and call["enable_ray_cluster"] is False
    if call["node_ip"] is not None:
        assert call["node_ip"] == "127.0.0.1"
    # ... and the process is as it was afterwards.
    assert RAY_CLUSTER_ENV not in os.environ
    assert ray_constants.ENABLE_RAY_CLUSTER is before


def test_loopback_is_restored_when_init_fails(local_env, monkeypatch):
    from ray._private import ray_constants

    before = ray_constants.ENABLE_RAY_CLUSTER

    def boom(**kwargs):
        raise RuntimeError("no Ray today")

    monkeypatch.setattr(ray, "init", boom)
    with pytest.raises(RuntimeError, match="no Ray today"):
        runtime.init_ray(num_cpus=1)
    assert RAY_CLUSTER_ENV not in os.environ
    assert ray_constants.ENABLE_RAY_CLUSTER is before


def test_a_users_own_ray_cluster_setting_is_respected(local_env, monkeypatch):
    from ray._private import ray_constants

    monkeypatch.setenv(RAY_CLUSTER_ENV, "1")
    fake = FakeInit()
    monkeypatch.setattr(ray, "init", fake)
    runtime.init_ray(num_cpus=1)
    assert fake.calls[0]["env"] == "1"
    assert fake.calls[0]["enable_ray_cluster"] is ray_constants.ENABLE_RAY_CLUSTER
    assert fake.calls[0]["kwargs"]["dashboard_host"] == "127.0.0.1"


def test_joining_a_cluster_changes_nothing_there(local_env, monkeypatch):
    token = _write(local_env / ".ray" / "auth_token", mode=0o644)
    fake = FakeInit(effect=lambda: None)
    monkeypatch.setattr(ray, "init", fake)
    runtime.init_ray("10.0.0.1:6379")
    (call,) = fake.calls
    assert call["kwargs"] == {
        "address": "10.0.0.1:6379",
        "log_to_driver": True,
        # the job's own environment: how often Train's controller polls (not a cluster setting)
        "runtime_env": {"env_vars": {runtime.TRAIN_POLL_ENV: runtime.TRAIN_POLL_S}},
    }
    assert call["env"] is None
    assert _mode(token) == 0o644  # joining never touches the user's token


# --------------------------------------------------------------------------- the token file


def test_a_token_ray_creates_is_made_owner_only(local_env, monkeypatch):
    token = local_env / ".ray" / "auth_token"
    monkeypatch.setattr(ray, "init", FakeInit(effect=lambda: _write(token, mode=0o644)))
    runtime.init_ray(num_cpus=1)
    assert _mode(token) == 0o600
    assert token.read_text() == "x" * 64  # the content is Ray's


def test_a_token_that_was_there_is_left_alone(local_env, monkeypatch):
    token = _write(local_env / ".ray" / "auth_token", mode=0o644)
    monkeypatch.setattr(ray, "init", FakeInit())
    runtime.init_ray(num_cpus=1)
    assert _mode(token) == 0o644


def test_a_token_at_ray_auth_token_path(local_env, tmp_path, monkeypatch):
    custom = tmp_path / "tokens" / "ray-token"
    monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", str(custom))
    monkeypatch.setattr(ray, "init", FakeInit(effect=lambda: _write(custom, mode=0o664)))
    runtime.init_ray(num_cpus=1)
    assert _mode(custom) == 0o600
    # One that existed before the call is not ours.
    os.chmod(custom, 0o644)
    monkeypatch.setattr(ray, "init", FakeInit())
    runtime.init_ray(num_cpus=1)
    assert _mode(custom) == 0o644


def test_the_token_is_restricted_even_when_init_fails(local_env, monkeypatch):
    token = local_env / ".ray" / "auth_token"

    def write_then_fail(**kwargs):
        _write(token, mode=0o644)
        raise RuntimeError("raylet died")

    monkeypatch.setattr(ray, "init", write_then_fail)
    with pytest.raises(RuntimeError, match="raylet died"):
        runtime.init_ray(num_cpus=1)
    assert _mode(token) == 0o600


def test_a_symlinked_token_is_not_followed(local_env, tmp_path, monkeypatch):
    target = _write(tmp_path / "elsewhere" / "file", mode=0o644)
    token = local_env / ".ray" / "auth_token"

    def link():
        token.parent.mkdir(parents=True, exist_ok=True)
        token.symlink_to(target)

    monkeypatch.setattr(ray, "init", FakeInit(effect=link))
    runtime.init_ray(num_cpus=1)
    assert _mode(target) == 0o644


def test_ray_writes_a_new_token_with_the_default_mode(local_env):
    """Why the chmod is needed: Ray 2.60's own writer leaves the token as the umask allows."""
    from ray._private.authentication.authentication_token_setup import (
        _get_default_token_path,
        generate_and_save_token,
    )

    old = os.umask(0o022)
    try:
        generate_and_save_token()
    finally:
        os.umask(old)
    path = _get_default_token_path()
    assert path == local_env / ".ray" / "auth_token"
    assert _mode(path) == 0o644
    assert runtime._token_file_candidates()[0] == path


# --------------------------------------------------------------------------- worker code


def _fake_package(root: Path, marker: str = "SHADOW") -> Path:
    pkg = root / "ado_ray"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text(f"{marker} = True\n")
    (pkg / "analysis.py").write_text(f"{marker} = True\n")
    return root


def test_shadowing_paths(tmp_path):
    shadow = _fake_package(tmp_path / "checkout")
    namespace = tmp_path / "ns"
    (namespace / "ado_ray").mkdir(parents=True)  # no __init__.py: never wins over the package
    empty = tmp_path / "empty"
    empty.mkdir()
    installed_root = str(Path(ado_ray.__file__).resolve().parents[1])
    paths = [str(shadow), str(namespace), str(empty), installed_root]
    assert runtime.shadowing_paths(paths) == [str(shadow)]


def test_ray_adds_the_working_directory_for_workers():
    assert os.path.abspath(os.curdir) in runtime._driver_paths()


def test_workers_import_the_installed_package_by_default(local_env, monkeypatch):
    _fake_package(Path.cwd())
    assert runtime.worker_runtime_env() == {"worker_process_setup_hook": runtime.PIN_HOOK}
    fake = FakeInit()
    monkeypatch.setattr(ray, "init", fake)
    runtime.init_ray(num_cpus=1)
    runtime.init_ray("auto")
    for call in fake.calls:
        env = dict(call["kwargs"]["runtime_env"])
        env.pop("env_vars", None)  # on a cluster, the Train poll interval rides along
        assert env == {"worker_process_setup_hook": runtime.PIN_HOOK}


def test_nothing_is_added_without_a_shadowing_copy(local_env):
    assert runtime.worker_runtime_env() is None


def test_shipping_the_working_directory_is_opt_in(local_env, monkeypatch):
    _fake_package(Path.cwd())
    monkeypatch.setenv(SHIP_ENV, "1")
    assert runtime.worker_runtime_env() == {"working_dir": os.getcwd()}
    monkeypatch.setenv(SHIP_ENV, "0")
    assert runtime.worker_runtime_env() == {"worker_process_setup_hook": runtime.PIN_HOOK}
    assert runtime.worker_runtime_env(ship_working_dir=True) == {"working_dir": os.getcwd()}


def test_a_submitted_job_keeps_its_own_runtime_env(local_env, monkeypatch):
    _fake_package(Path.cwd())
    monkeypatch.setenv("RAY_JOB_CONFIG_JSON_ENV_VAR", "{}")
    assert runtime.worker_runtime_env() is None
    assert runtime.worker_runtime_env(ship_working_dir=True) is None


WORKER = textwrap.dedent(
    """
    import sys
    from ray._common.utils import load_class
    if sys.argv[1] == "hook":
        load_class({hook!r})()  # what Ray's default_worker does at start
    sys.path.insert(0, {shadow!r})  # then Ray puts the driver's directory first
    import ado_ray, ado_ray.analysis
    print(ado_ray.__file__)
    print(ado_ray.analysis.__file__)
    """
)


def test_the_hook_pins_the_installed_package_in_a_worker(tmp_path):
    """A Ray worker's order of events, without Ray: the setup hook runs, then the driver's
    directory goes first on sys.path. With the hook, ado_ray still comes from the install."""
    shadow = _fake_package(tmp_path / "checkout")
    script = tmp_path / "worker.py"
    script.write_text(WORKER.format(hook=runtime.PIN_HOOK, shadow=str(shadow)))
    installed = Path(ado_ray.__file__).resolve().parent

    def run(mode: str) -> list[Path]:
        out = subprocess.run(
            [sys.executable, str(script), mode],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
            env={**os.environ, "PYTHONPATH": ""},
        )
        assert out.returncode == 0, out.stderr
        return [Path(line).resolve().parent for line in out.stdout.split()]

    assert run("hook") == [installed, installed]
    assert run("none") == [shadow / "ado_ray", shadow / "ado_ray"]  # what it guards against


# --------------------------------------------------------------------------- the report


def _results_with_a_path_in_an_error(uri: str) -> None:
    """The fixture study, its failed trial's error naming a file under the results."""
    writer = ResultsWriter(uri, fx.STUDY)
    writer.write_meta(fx.STUDY_YAML, "0.1.0", extra=fx.meta_extra(fx.ARMS, fx.SEARCH_SPACES))
    for arm, phase, seed, hp, fail in fx.trial_specs():
        record, steps, evals = fx.make_trial(arm, phase, seed, hp, fail=fail)
        if fail:
            record["error"] = f"OSError: cannot write {uri}/ray/checkpoint_000001 (disk full)"
        writer.add_trial(record, steps, evals)
    writer.merge()


@pytest.fixture(scope="module")
def results_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("security") / "study"
    _results_with_a_path_in_an_error(str(root))
    return root


def _texts(rep) -> tuple[str, str]:
    return Path(rep.report_path).read_text(), Path(rep.html_path).read_text()


def test_the_report_names_no_absolute_path(results_dir):
    rep = Rep.analyze(str(results_dir))  # default: <results>/analysis
    md, page = _texts(rep)
    for text in (md, page):
        assert str(results_dir) not in text
        assert str(results_dir.parent) not in text
        assert "plots/weights.png" in text
    assert "Results: `..`" in md
    assert "cannot write ../ray/checkpoint_000001 (disk full)" in md
    # The CLI still reports where it wrote, in full.
    assert rep.report_path == str(results_dir / "analysis" / "report.md")


def test_a_report_written_elsewhere(results_dir, tmp_path):
    out = tmp_path / "reports" / "study"
    rep = Rep.analyze("file://" + str(results_dir), "file://" + str(out), make_plots=False)
    md, page = _texts_at(out)
    rel = os.path.relpath(results_dir, out)
    for text in (md, page):
        assert str(results_dir) not in text and str(out) not in text
    assert f"Results: `{rel}`" in md
    assert f"cannot write {rel}/ray/checkpoint_000001" in md
    assert rep.plots == []


def _texts_at(out: Path) -> tuple[str, str]:
    return (out / "report.md").read_text(), (out / "report.html").read_text()


def test_scrub_paths_keeps_sibling_paths_and_remote_uris():
    text = "a /data/study/x b /data/study c /data/study2/y d file:///data/study/z"
    assert Rep._scrub_paths(text, "/data/study", "/data/study/analysis") == (
        "a ../x b .. c /data/study2/y d ../z"
    )
    assert Rep._shown_results("s3://bucket/ado-ray/study", "/tmp/analysis-study") == (
        "s3://bucket/ado-ray/study"
    )
    assert Rep._shown_results("/data/study", "s3://bucket/reports") == "study"
    assert Rep._rel("/data/study/analysis", "/data/study/analysis/plots/a.png") == "plots/a.png"
    assert Rep._rel("/data/study/analysis", "/data/other/a.png") == "../../other/a.png"
