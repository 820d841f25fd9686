"""Starting or joining Ray with the resources our trial drivers need.

Security defaults (README, "Security"):

- A local cluster listens on loopback only: the dashboard and job API (``dashboard_host``), and,
  through Ray's node IP, the GCS, raylet, agents and the Prometheus ``/metrics`` endpoint (see
  :func:`_loopback_node_ip`).
- Ray 2.60 turns token authentication on for a local ``ray.init()`` unless ``RAY_AUTH_MODE`` says
  otherwise, and writes a new token to ``~/.ray/auth_token`` with the default file mode. A token
  file that appears during our ``ray.init`` is made owner-only (0600); one that was there before
  is left alone (:func:`_restrict_new_token_files`).
- Workers import the ``ado_ray`` the driver imported (the installed package), even when the
  driver's working directory holds another copy, unless ``ADO_RAY_SHIP_WORKING_DIR=1`` asks Ray
  to ship the working directory (:func:`worker_runtime_env`).
"""

from __future__ import annotations

import contextlib
import importlib.machinery
import logging
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import ray

import ado_ray
from ado_ray.distributed.placement import DRIVER_RESOURCE

log = logging.getLogger(__name__)

#: Where a local cluster listens.
LOOPBACK = "127.0.0.1"
#: Set to 1 to have Ray ship the driver's working directory to the workers (runtime_env
#: ``working_dir``), so that they run the code in it rather than the installed package.
SHIP_WORKING_DIR_ENV = "ADO_RAY_SHIP_WORKING_DIR"
#: The worker setup hook that pins ``ado_ray`` to the installed package (see worker_runtime_env).
PIN_HOOK = f"{__name__}.pin_installed_package"
#: Ray reads this once, at import, into ``ray._private.ray_constants.ENABLE_RAY_CLUSTER``; when it
#: is false, ``ray._private.services.get_node_ip_address`` answers loopback (as on macOS/Windows).
_RAY_CLUSTER_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
#: How often Ray Train's controller polls its workers (Ray's default: 2 s). A worker's report
#: waits for that poll, so each evaluation round cost about 2 s of a trial's wall time; 0.25 s
#: costs the controller a few cheap polls a second. A value set by the user is kept.
TRAIN_POLL_ENV = "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S"
TRAIN_POLL_S = "0.25"
#: Ray Train's preemption watcher: an extra actor per trial that polls whether a node is being
#: drained (a spot instance reclaimed). A local cluster is this one machine, which nobody drains;
#: the watcher there only cost a process per trial and a ``core_worker.cc`` error line (its
#: constructor arguments sit in the object store while it has restarts). It is turned off for
#: a local cluster only; a value set by the user is kept.
PREEMPTION_WATCHER_ENV = "RAY_TRAIN_ENABLE_PREEMPTION_WATCHER"
#: Set by Ray's job manager in a ``ray job submit`` driver; the job's runtime_env then rules.
_RAY_JOB_ENV = "RAY_JOB_CONFIG_JSON_ENV_VAR"


def init_ray(
    address: str | None = None,
    num_cpus: int | None = None,
    trial_drivers: int | None = None,
    *,
    ship_working_dir: bool | None = None,
) -> dict[str, float]:
    """Join the cluster at ``address`` (or ``RAY_ADDRESS``), or start a local one.

    A local cluster advertises ``trial_drivers`` slots of the driver resource (default: one per
    CPU); on a launched cluster the head node type advertises it (``cluster.yaml``). It listens
    on loopback only, and a token file Ray creates for it is made owner-only. Returns the
    cluster's total resources. ``ship_working_dir`` (default: ``ADO_RAY_SHIP_WORKING_DIR``): see
    :func:`worker_runtime_env`.
    """
    if ray.is_initialized():
        return ray.cluster_resources()
    address = address or os.environ.get("RAY_ADDRESS")
    kwargs: dict = {"log_to_driver": True}
    runtime_env = worker_runtime_env(ship_working_dir)
    poll = os.environ.setdefault(TRAIN_POLL_ENV, TRAIN_POLL_S)  # a local cluster inherits it
    if address and not os.environ.get(_RAY_JOB_ENV):  # on a cluster: the job's env carries it
        runtime_env = dict(runtime_env or {})
        runtime_env["env_vars"] = {**runtime_env.get("env_vars", {}), TRAIN_POLL_ENV: poll}
    if runtime_env:
        kwargs["runtime_env"] = runtime_env
    if address:
        ray.init(address=address, **kwargs)
    else:
        os.environ.setdefault(PREEMPTION_WATCHER_ENV, "0")  # the local cluster inherits it
        cpus = num_cpus or os.cpu_count() or 1
        token_files = _token_file_candidates()
        existed = {p for p in token_files if os.path.lexists(p)}
        try:
            with _loopback_node_ip():
                ray.init(
                    num_cpus=cpus,
                    resources={DRIVER_RESOURCE: float(trial_drivers or max(2, cpus))},
                    include_dashboard=True,
                    dashboard_host=LOOPBACK,
                    **kwargs,
                )
        finally:
            _restrict_new_token_files(token_files, existed)
    resources = ray.cluster_resources()
    log.info("Ray resources: %s", resources)
    return resources


# --------------------------------------------------------------------------- loopback only


@contextlib.contextmanager
def _loopback_node_ip() -> Iterator[None]:
    """While a local cluster starts, make Ray take loopback as this node's IP.

    Ray 2.60 binds the GCS, the raylet, the dashboard agent and the metrics agent's Prometheus
    endpoint to the node IP (the agent's ``/metrics`` to every interface unless that IP is
    loopback: ``dashboard/modules/reporter/reporter_agent.py``), and it has no public option to
    change that on Linux: ``ray.init(_node_ip_address="127.0.0.1")`` is turned back into the
    machine's IP (``services.resolve_ip_for_localhost``). What macOS and Windows do by default
    does it: with ``ENABLE_RAY_CLUSTER`` false, ``services.get_node_ip_address`` answers
    loopback. The flag is set for the call (this process's cached constant, and the environment
    the Ray processes started now inherit) and restored after. A user who set
    ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER`` themselves is left to it.
    """
    if _RAY_CLUSTER_ENV in os.environ:
        yield
        return
    from ray._private import ray_constants

    saved = ray_constants.ENABLE_RAY_CLUSTER
    os.environ[_RAY_CLUSTER_ENV] = "0"
    ray_constants.ENABLE_RAY_CLUSTER = False
    try:
        yield
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = saved
        os.environ.pop(_RAY_CLUSTER_ENV, None)


# --------------------------------------------------------------------------- the token file


def _token_file_candidates() -> list[Path]:
    """The files Ray 2.60 reads a token from: ``RAY_AUTH_TOKEN_PATH`` if set, and the default
    ``~/.ray/auth_token`` (``ray._private.authentication.authentication_token_setup``), which
    is where ``ray.init`` writes a new one."""
    paths = [Path.home() / ".ray" / "auth_token"]
    custom = os.environ.get("RAY_AUTH_TOKEN_PATH")
    if custom:
        paths.append(Path(os.path.expanduser(custom)))
    return paths


def _restrict_new_token_files(candidates: list[Path], existed: set[Path]) -> list[Path]:
    """Make owner-only (0600) each candidate token file that exists now but did not before the
    call. A file that existed before, or a symbolic link, is not touched. Returns the files
    changed."""
    changed = []
    for path in candidates:
        if path in existed or os.path.islink(path) or not path.is_file():
            continue
        try:
            os.chmod(path, 0o600)
        except OSError as exc:  # not ours to change, e.g. another user's file
            log.warning("could not make the Ray auth token %s owner-only: %s", path, exc)
            continue
        log.info("Ray created the auth token %s; made it owner-only (0600)", path)
        changed.append(path)
    return changed


# --------------------------------------------------------------------------- worker code


def worker_runtime_env(ship_working_dir: bool | None = None) -> dict | None:
    """The runtime_env the driver passes to ``ray.init``, or None for none.

    Ray puts the driver's working directory (and its script's directory) first on every
    worker's ``sys.path`` unless the job has a ``working_dir`` (``ray._private.worker.connect``,
    ``job_config._py_driver_sys_path``). A directory there that holds another ``ado_ray`` (a
    checkout, a stale copy) would shadow the installed package in the workers while the driver
    runs the installed one. So, by default, when such a copy is there, every worker first
    imports ``ado_ray`` from where the driver did (:data:`PIN_HOOK`, which Ray runs at worker
    start, before it adds the driver's paths); later imports find it in ``sys.modules``.

    ``ship_working_dir`` (default: ``ADO_RAY_SHIP_WORKING_DIR=1``) asks for the opposite: Ray
    uploads the working directory as the job's ``working_dir`` and the workers import from it.
    Inside ``ray job submit`` nothing is added: the job's own runtime_env (``--working-dir``)
    decides.
    """
    if _RAY_JOB_ENV in os.environ:
        return None
    if ship_working_dir is None:
        ship_working_dir = os.environ.get(SHIP_WORKING_DIR_ENV, "").strip().lower() in (
            "1",
            "true",
            "yes",
        )
    if ship_working_dir:
        return {"working_dir": os.getcwd()}
    shadows = shadowing_paths()
    if not shadows:
        return None
    log.warning(
        "%s holds another ado_ray package than the installed one (%s); Ray workers will "
        "import the installed one. Set %s=1 to ship the working directory instead.",
        ", ".join(shadows),
        _package_dir(),
        SHIP_WORKING_DIR_ENV,
    )
    return {"worker_process_setup_hook": PIN_HOOK}


def _driver_paths() -> list[str]:
    """The directories Ray 2.60 adds to the workers' ``sys.path`` for a driver without a
    ``working_dir``: its script's directory (when on its own ``sys.path``) and its working
    directory."""
    paths = []
    script = sys.argv[0] if sys.argv else ""
    if script and script != "-c":
        script_dir = os.path.dirname(os.path.realpath(script))
        if script_dir in sys.path:
            paths.append(script_dir)
    paths.append(os.path.abspath(os.curdir))
    return paths


def _package_dir() -> str:
    return os.path.realpath(os.path.dirname(ado_ray.__file__))


def shadowing_paths(paths: list[str] | None = None) -> list[str]:
    """Those of ``paths`` (default: :func:`_driver_paths`) in which ``import ado_ray`` would
    find a regular package other than the one this process imported."""
    mine = _package_dir()
    found = []
    for path in paths if paths is not None else _driver_paths():
        spec = importlib.machinery.PathFinder.find_spec("ado_ray", [path])
        origin = getattr(spec, "origin", None)
        if not origin or not os.path.isfile(origin):  # none, or a namespace portion
            continue
        if os.path.realpath(os.path.dirname(origin)) != mine:
            found.append(path)
    return found


def pin_installed_package() -> str:
    """The worker setup hook: Ray imports this module to call it, which imports ``ado_ray``
    from the worker's own ``sys.path`` (the installed package) before Ray adds the driver's
    directories. Returns where it came from."""
    return ado_ray.__file__
