"""One placement-group janitor per sweep, in place of Ray Train's cleaner per run.

A Train run's placement group is created by its controller, a non-detached actor, so it belongs
to the Ray job and outlives the controller until the job's driver exits. When Tune stops a trial
(an ASHA stop) it kills the trial's driver, and with it the controller, before the controller
can remove its group: without a cleaner, the stopped trial keeps its CPUs and the sweep waits
for them forever. Ray Train 2.60 therefore starts a detached ``PlacementGroupCleaner`` actor with
every run (``ray.train.v2._internal.callbacks.placement_group_callback``), which polls the State
API once a second and removes the group if the controller dies. That is one more process per
trial: a Ray worker's start-up, the import of ``ray.train``, and the polling, about 3 s of CPU
per trial on 2 cores (``docs/architecture.md``). Upstream plans to share one cleaner
(ray-project/ray#65443); this is that, scoped to one sweep.

``run_sweep`` starts one :class:`Janitor` actor, owned by the sweep's own process and named for
that sweep (:func:`start_janitor`); its trials get the name. Each run's :class:`JanitorCallback`
registers its controller and placement group with it, and withdraws them when the controller
shuts down or aborts cleanly; the janitor polls only while it watches something. Which cleaner a
run gets (:func:`cleaner_callback`, used by ``trainer.TorchTrainer``):

- a run whose driver has a janitor (a sweep's trial): the janitor;
- a run driven by the job's own driver (``ado-ray train``, the benchmarks): none, since its
  group goes with the job, which is that very process;
- a run in another actor or task with no janitor (someone's own Tune script): Ray's cleaner.

How it differs from Ray's cleaner, besides being shared: it is not detached but lives as long as
the sweep that owns it (a sweep's end is its job's end, or the end of every run it started); it
does not exit after a cleanup; and a controller the State API does not find is not taken for
dead (see :func:`_controller_alive`), though the janitor warns if that lasts.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable
from typing import Any

import ray

from ado_ray.distributed.actor import NAMESPACE

log = logging.getLogger(__name__)

#: How often the janitor looks at the controllers it watches (Ray's cleaner: 1 s). A stopped
#: trial's CPUs come back within about this long.
CHECK_INTERVAL_S = 1.0
#: Checks in a row without an answer about a controller before the janitor warns.
UNKNOWN_WARN_CHECKS = 60
#: How long a run's controller waits on the janitor before it goes on without it.
CALL_TIMEOUT_S = 30.0


class PlacementGroupJanitor:
    """The janitor's bookkeeping, plain Python (testable without Ray).

    ``is_alive(controller_id)`` answers True, False, or None when it cannot tell (the State API
    is unavailable); ``remove(group)`` removes a placement group that is not already gone."""

    def __init__(
        self,
        is_alive: Callable[[str], bool | None],
        remove: Callable[[Any], None],
    ):
        self._is_alive = is_alive
        self._remove = remove
        self._lock = threading.Lock()
        self._watched: dict[str, Any] = {}  # controller actor id -> its current group
        self._unknown: dict[str, int] = {}  # controller actor id -> checks in a row unanswered

    def watch(self, controller_id: str, group: Any) -> None:
        """Watch a controller's group (a restarted worker group replaces the previous one)."""
        with self._lock:
            self._watched[controller_id] = group

    def release(self, controller_id: str) -> None:
        """The controller shuts down cleanly: its group is its own business again."""
        with self._lock:
            self._watched.pop(controller_id, None)
            self._unknown.pop(controller_id, None)

    def watching(self) -> int:
        with self._lock:
            return len(self._watched)

    def check(self) -> list[str]:
        """Remove the groups of the watched controllers that are dead; return their ids."""
        with self._lock:
            watched = list(self._watched.items())
        cleaned = []
        for controller_id, group in watched:
            try:
                alive = self._is_alive(controller_id)
            except Exception as exc:  # noqa: BLE001 - an unexpected error must not end the watch
                log.warning("could not tell whether controller %s lives: %s", controller_id, exc)
                alive = None
            if alive is None:
                self._count_unknown(controller_id)
            elif alive:
                with self._lock:
                    self._unknown.pop(controller_id, None)  # an answer ends a run of unknowns
            if alive is not False:
                continue  # alive, or cannot tell: look again next time
            with self._lock:
                if self._watched.get(controller_id) is not group:
                    continue  # released (or re-registered) meanwhile
                del self._watched[controller_id]
                self._unknown.pop(controller_id, None)
            try:
                self._remove(group)
            except Exception as exc:  # noqa: BLE001 - one bad group must not stop the others
                log.warning("could not remove placement group %s: %s", group, exc)
                continue
            log.info("removed the placement group of dead Train controller %s", controller_id)
            cleaned.append(controller_id)
        return cleaned

    def _count_unknown(self, controller_id: str) -> None:
        with self._lock:
            n = self._unknown[controller_id] = self._unknown.get(controller_id, 0) + 1
        if n == UNKNOWN_WARN_CHECKS:
            log.warning(
                "no answer about Train controller %s for %d checks: its placement group is "
                "not freed while this lasts",
                controller_id,
                n,
            )


def _controller_alive(controller_id: str) -> bool | None:
    from ray.util.state import get_actor
    from ray.util.state.exception import RayStateApiException

    try:
        state = get_actor(controller_id, timeout=GET_ACTOR_TIMEOUT_S)
    except RayStateApiException:
        return None
    if state is None:
        # Ray's cleaner takes this for a death. The GCS keeps dead actors' records, so a miss
        # is far likelier a transient one, and removing a live run's group would kill the run.
        return None
    return state.state != "DEAD"


def _remove_group(group: Any) -> None:
    from ray.util.placement_group import placement_group_table, remove_placement_group

    if placement_group_table(group).get("state", "REMOVED") != "REMOVED":
        remove_placement_group(group)


@ray.remote(num_cpus=0, max_concurrency=4)
class Janitor:
    """The sweep's janitor actor: a :class:`PlacementGroupJanitor` and a thread that checks
    its controllers every ``interval_s`` while it watches any."""

    def __init__(self, interval_s: float = CHECK_INTERVAL_S):
        self._core = PlacementGroupJanitor(_controller_alive, _remove_group)
        self._interval_s = float(interval_s)
        self._wake = threading.Event()
        threading.Thread(target=self._loop, name="pg-janitor", daemon=True).start()

    def watch(self, controller_id: str, group: Any) -> None:
        self._core.watch(controller_id, group)
        self._wake.set()

    def release(self, controller_id: str) -> None:
        self._core.release(controller_id)

    def watching(self) -> int:
        return self._core.watching()

    def _loop(self) -> None:
        while True:
            if not self._core.watching():
                self._wake.wait()  # nothing to watch: no queries
                self._wake.clear()
                continue
            try:
                self._core.check()
            except Exception:  # noqa: BLE001 - the watch goes on: a sweep would hang without it
                log.exception("placement-group janitor: check failed")
            self._wake.wait(self._interval_s)
            self._wake.clear()


def start_janitor() -> tuple[Any, str]:
    """Start a janitor for one sweep: its handle (which keeps it, so hold it for the sweep) and
    its name (for the sweep's trials). It sits on the head node, as Ray places its own
    cleaner: on a launched cluster it then never pins a spot or GPU worker node, nor goes with
    one."""
    name = f"pg-janitor-{uuid.uuid4().hex[:12]}"
    head = {HEAD_NODE_RESOURCE_NAME: 0.001} if HEAD_NODE_RESOURCE_NAME else None
    return Janitor.options(name=name, namespace=NAMESPACE, resources=head).remote(), name


def find_janitor(name: str) -> Any | None:
    """The janitor of that name, or None when it is gone."""
    try:
        return ray.get_actor(name, namespace=NAMESPACE)
    except ValueError:
        return None


try:  # Ray's internals, as its own cleaner uses them
    from ray._common.constants import HEAD_NODE_RESOURCE_NAME
    from ray.train.v2._internal.callbacks.placement_group_callback import (
        PlacementGroupCleanerCallback,
    )
    from ray.train.v2._internal.constants import GET_ACTOR_TIMEOUT_S
    from ray.train.v2._internal.execution.callback import ControllerCallback, WorkerGroupCallback
except ImportError:  # another Ray: trainer.TorchTrainer keeps Ray's default callbacks
    HEAD_NODE_RESOURCE_NAME = PlacementGroupCleanerCallback = None
    GET_ACTOR_TIMEOUT_S = 10

    class ControllerCallback:  # never used: placeholders that let the module import
        pass

    class WorkerGroupCallback:
        pass


class JanitorCallback(ControllerCallback, WorkerGroupCallback):
    """Runs in Train's controller: registers the run's placement group with the sweep's
    janitor, and withdraws it when the controller shuts down or aborts cleanly."""

    def __init__(self, janitor: Any):
        self._janitor = janitor
        self._controller_id: str | None = None

    def after_controller_start(self, train_run_context: Any) -> None:
        self._controller_id = ray.get_runtime_context().get_actor_id()

    def after_worker_group_start(self, worker_group: Any) -> None:
        state = worker_group.get_worker_group_state()
        group = state.placement_group_handle.placement_group
        try:
            ray.get(self._janitor.watch.remote(self._controller_id, group), timeout=CALL_TIMEOUT_S)
        except Exception as exc:  # noqa: BLE001 - as Ray's cleaner: the run goes on without it
            log.warning("no janitor for this run's placement group: %s", exc)

    async def before_controller_shutdown(self) -> None:
        self._release()

    def before_controller_abort(self) -> None:
        self._release()

    def _release(self) -> None:
        if self._controller_id is not None:
            try:
                ray.get(self._janitor.release.remote(self._controller_id), timeout=CALL_TIMEOUT_S)
            except Exception as exc:  # noqa: BLE001 - never the run's error (it is done)
                log.warning("could not release this run from the janitor: %s", exc)


def cleaner_callback(callbacks: list[Any], janitor: str | None = None) -> list[Any]:
    """``callbacks`` (Train's defaults) with Ray's per-run cleaner swapped, in its place, for
    the janitor named ``janitor``, or dropped for a run driven by the job's driver (see the
    module docstring)."""
    if PlacementGroupCleanerCallback is None:
        return callbacks
    at = [i for i, cb in enumerate(callbacks) if isinstance(cb, PlacementGroupCleanerCallback)]
    if len(at) != 1:
        return callbacks  # Ray's defaults changed: leave them alone
    ours: list[Any] = []
    if ray.get_runtime_context().worker.mode != ray.SCRIPT_MODE:  # in an actor (Tune) or task
        handle = find_janitor(janitor) if janitor else None
        if handle is None:
            return callbacks
        ours = [JanitorCallback(handle)]
    return callbacks[: at[0]] + ours + callbacks[at[0] + 1 :]
