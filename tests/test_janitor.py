"""The sweep's placement-group janitor: its bookkeeping, and on Ray, that it frees the group of a
killed controller (which Ray would otherwise keep until the job ends)."""

from __future__ import annotations

import time
from types import SimpleNamespace

import pytest

from ado_ray.distributed.janitor import PlacementGroupJanitor


class _Cluster:
    """Fake liveness and removal for the pure janitor."""

    def __init__(self):
        self.alive: dict[str, bool | None] = {}
        self.removed: list[str] = []
        self.broken: set[str] = set()

    def is_alive(self, cid: str) -> bool | None:
        return self.alive.get(cid, True)

    def remove(self, group: str) -> None:
        if group in self.broken:
            raise RuntimeError("GCS unavailable")
        self.removed.append(group)


def _janitor() -> tuple[PlacementGroupJanitor, _Cluster]:
    c = _Cluster()
    return PlacementGroupJanitor(c.is_alive, c.remove), c


def test_only_a_dead_controllers_group_is_removed_and_only_once():
    j, c = _janitor()
    j.watch("a", "pg-a")
    j.watch("b", "pg-b")
    assert j.check() == [] and c.removed == []
    c.alive["a"] = False
    assert j.check() == ["a"]
    assert c.removed == ["pg-a"] and j.watching() == 1
    assert j.check() == [] and c.removed == ["pg-a"]  # forgotten once removed


def test_a_released_controller_is_left_alone_when_it_dies():
    j, c = _janitor()
    j.watch("a", "pg-a")
    j.release("a")
    c.alive["a"] = False
    assert j.check() == [] and c.removed == [] and j.watching() == 0
    j.release("never-watched")  # a run that shut down before its group started


def test_unknown_liveness_waits_for_an_answer():
    j, c = _janitor()
    j.watch("a", "pg-a")
    c.alive["a"] = None  # the State API did not answer: not a death
    assert j.check() == [] and j.watching() == 1
    c.alive["a"] = False
    assert j.check() == ["a"] and c.removed == ["pg-a"]


def test_a_restarted_worker_group_replaces_the_watched_group():
    j, c = _janitor()
    j.watch("a", "pg-1")
    j.watch("a", "pg-2")  # Train restarted the worker group after a failure
    c.alive["a"] = False
    j.check()
    assert c.removed == ["pg-2"]


def test_an_unexpected_error_is_an_unknown_not_the_end_of_the_watch(caplog):
    from ado_ray.distributed.janitor import UNKNOWN_WARN_CHECKS

    c = _Cluster()

    def is_alive(cid):
        if cid == "odd":
            raise OSError("connection reset")
        return c.is_alive(cid)

    j = PlacementGroupJanitor(is_alive, c.remove)
    j.watch("odd", "pg-odd")
    j.watch("b", "pg-b")
    c.alive["b"] = False
    assert j.check() == ["b"] and j.watching() == 1
    for _ in range(UNKNOWN_WARN_CHECKS):
        j.check()
    assert "pg-odd" not in c.removed
    assert any(f"for {UNKNOWN_WARN_CHECKS} checks" in r.getMessage() for r in caplog.records)


def test_only_unknowns_in_a_row_are_warned_about(caplog):
    from ado_ray.distributed.janitor import UNKNOWN_WARN_CHECKS

    j, c = _janitor()
    j.watch("a", "pg-a")
    for _ in range(2):  # two spells of unknowns, each one short of the warning, an answer between
        c.alive["a"] = None
        for _ in range(UNKNOWN_WARN_CHECKS - 1):
            j.check()
        c.alive["a"] = True
        j.check()
    assert not any("checks" in r.getMessage() for r in caplog.records)
    c.alive["a"] = None
    for _ in range(UNKNOWN_WARN_CHECKS):
        j.check()
    assert any(f"for {UNKNOWN_WARN_CHECKS} checks" in r.getMessage() for r in caplog.records)
    assert c.removed == [] and j.watching() == 1


def test_a_failed_removal_does_not_stop_the_others():
    j, c = _janitor()
    j.watch("a", "pg-a")
    j.watch("b", "pg-b")
    c.broken.add("pg-a")
    c.alive.update(a=False, b=False)
    assert j.check() == ["b"] and c.removed == ["pg-b"]


def test_only_a_dead_record_is_a_death(monkeypatch):
    import ray.util.state
    from ray.util.state.exception import RayStateApiException

    from ado_ray.distributed.janitor import _controller_alive

    answers = {
        "alive": SimpleNamespace(state="ALIVE"),
        "restarting": SimpleNamespace(state="RESTARTING"),
        "dead": SimpleNamespace(state="DEAD"),
        "missing": None,  # a transient miss must not cost a live run its group
    }

    def get_actor(actor_id, timeout=None):
        if actor_id == "down":
            raise RayStateApiException("dashboard unavailable")
        return answers[actor_id]

    monkeypatch.setattr(ray.util.state, "get_actor", get_actor)
    got = {cid: _controller_alive(cid) for cid in [*answers, "down"]}
    assert got == {"alive": True, "restarting": True, "dead": False, "missing": None, "down": None}


# --- on Ray ---------------------------------------------------------------------------------


def _group_state(pg) -> str:
    from ray.util.placement_group import placement_group_table

    return placement_group_table(pg).get("state", "REMOVED")


def _wait_for(predicate, timeout_s: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.2)
    return predicate()


@pytest.fixture
def controller_cls(ray_cluster):
    """Stands in for Train's controller: a non-detached actor that creates a placement group
    and runs the janitor's callback as Train runs it."""
    import ray

    @ray.remote(num_cpus=0)
    class FakeController:
        def __init__(self, janitor):
            from ado_ray.distributed.janitor import JanitorCallback

            self.cb = JanitorCallback(janitor) if janitor is not None else None
            if self.cb is not None:
                self.cb.after_controller_start(None)

        def start_group(self):
            from ray.util.placement_group import placement_group

            pg = placement_group([{"CPU": 1}])
            ray.get(pg.ready())
            if self.cb is not None:
                group = SimpleNamespace(
                    get_worker_group_state=lambda: SimpleNamespace(
                        placement_group_handle=SimpleNamespace(placement_group=pg)
                    )
                )
                self.cb.after_worker_group_start(group)
            return pg

        def shut_down_cleanly(self):
            self.cb.before_controller_abort()

    return FakeController


@pytest.mark.ray
def test_a_killed_controllers_group_outlives_it_unless_the_janitor_watches(controller_cls):
    import ray
    from ray.util.placement_group import remove_placement_group

    from ado_ray.distributed.janitor import start_janitor

    # The premise: a group made by a non-detached actor is the job's, not the actor's.
    bare = controller_cls.remote(None)
    pg = ray.get(bare.start_group.remote())
    ray.kill(bare)
    time.sleep(3.0)  # longer than the janitor's interval
    assert _group_state(pg) == "CREATED"
    remove_placement_group(pg)

    janitor, _ = start_janitor()
    watched = controller_cls.remote(janitor)
    pg = ray.get(watched.start_group.remote())
    assert ray.get(janitor.watching.remote()) == 1
    ray.kill(watched)
    assert _wait_for(lambda: _group_state(pg) == "REMOVED")
    assert ray.get(janitor.watching.remote()) == 0

    # A controller that shut down cleanly is released: its group is left to Train.
    clean = controller_cls.remote(janitor)
    pg = ray.get(clean.start_group.remote())
    ray.get(clean.shut_down_cleanly.remote())
    assert ray.get(janitor.watching.remote()) == 0
    ray.kill(clean)
    time.sleep(3.0)
    assert _group_state(pg) == "CREATED"
    remove_placement_group(pg)

    # A janitor that is gone costs the run its cleanup, not its life (as Ray's cleaner).
    ray.kill(janitor)
    orphan = controller_cls.remote(janitor)
    pg = ray.get(orphan.start_group.remote())
    assert _group_state(pg) == "CREATED"
    ray.kill(orphan)
    remove_placement_group(pg)


@pytest.mark.ray
def test_which_cleaner_a_run_gets(ray_cluster):
    import ray
    from ray.train.v2._internal.callbacks.placement_group_callback import (
        PlacementGroupCleanerCallback,
    )

    from ado_ray.distributed.janitor import cleaner_callback, start_janitor

    def names(callbacks) -> list[str]:
        return [type(cb).__name__ for cb in callbacks]

    def defaults():
        return [0, PlacementGroupCleanerCallback(), object()]

    # Driven by the job's own driver (this test process): its group goes with the job.
    assert names(cleaner_callback(defaults(), "any")) == ["int", "object"]

    @ray.remote(num_cpus=0)
    def in_a_task(janitor):  # a task may be cancelled under its run, as an actor may be killed
        return names(cleaner_callback(defaults(), janitor))

    @ray.remote(num_cpus=0)
    class Driver:  # a Tune trial's driver is an actor
        def cleaners(self, janitor):
            return names(cleaner_callback(defaults(), janitor))

    driver = Driver.remote()
    ray_s = ["int", "PlacementGroupCleanerCallback", "object"]
    handle, name = start_janitor()
    for janitor in (None, "pg-janitor-gone"):  # none named, or the named one is gone
        assert ray.get(driver.cleaners.remote(janitor)) == ray_s
        assert ray.get(in_a_task.remote(janitor)) == ray_s
    ours = ["int", "JanitorCallback", "object"]  # in the cleaner's place
    assert ray.get(driver.cleaners.remote(name)) == ours
    assert ray.get(in_a_task.remote(name)) == ours
    ray.kill(handle)
    ray.kill(driver)
