"""How many trials fit on a Ray cluster, and what each one asks for.

Pure functions over resource dicts: nothing here calls ``ray.init`` or talks to a cluster, so
the study runner, the CLI and the tests share one piece of arithmetic.

A trial is two things to the scheduler:

* its **driver**, the Tune function trainable that builds a ``TorchTrainer`` and calls
  ``fit()``. It asks for ``{"CPU": 0, "trial_driver": 1}`` (:func:`driver_resources`).
  Tune drops the zero and places the driver in a one-bundle placement group holding only
  the custom resource (``ray.tune.execution.placement_groups.resource_dict_to_pg_factory``
  then ``ray.air.execution.resources.request.ResourceRequest``, which removes zero-valued
  keys; the actor is created with ``num_cpus=0``). So a driver costs no CPU, and the
  ``trial_driver`` slots bound how many drivers run at once. On a launched cluster only the
  on-demand head node type advertises ``trial_driver``, so drivers (and the Train controllers
  that Ray pins to the driver's node) never sit on a spot node. A request of ``{"CPU": 0}``
  alone is all zeros and is rejected by Tune.
* its **worker group**, ``workers_per_trial`` Train workers of ``cpus_per_worker`` CPUs and
  ``gpus_per_worker`` GPUs each (:func:`trial_resources`). Tune cannot see this demand, so
  :func:`max_concurrent_trials` caps Tune's concurrency by it.

On an autoscaling cluster the resources present when a sweep starts are not the ones the
autoscaler can reach (a fresh ``cluster.yaml`` cluster is a head node with ``CPU: 0`` and no
GPU worker yet). Plan with the potential capacity instead: :func:`capacity_from_cluster_config`
reads a launcher config such as the ``~/ray_bootstrap_config.yaml`` that ``ray up`` leaves on
the head (:func:`load_autoscaler_config`).
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple

DRIVER_RESOURCE = "trial_driver"
"""The custom resource each Tune trial driver requests, one unit per driver."""

DEFAULT_AUTOSCALER_CONFIG = "~/ray_bootstrap_config.yaml"
"""Where the Ray cluster launcher writes the resolved cluster config on the head node."""

# Ray accounts resources in fixed point at 1e-4; leave room for float noise in divisions.
_EPS = 1e-6

_FIELD = {
    "CPU": "resources.cpus_per_worker",
    "GPU": "resources.gpus_per_worker",
}


def driver_resources(resource: str = DRIVER_RESOURCE) -> dict[str, float]:
    """The resource request of one trial driver, for ``tune.with_resources``."""
    return {"CPU": 0, resource: 1}


def _check_shape(workers_per_trial: int, cpus_per_worker: float, gpus_per_worker: float) -> None:
    if (
        isinstance(workers_per_trial, bool)
        or not isinstance(workers_per_trial, int)
        or workers_per_trial < 1
    ):
        raise ValueError(
            f"resources.workers_per_trial must be an integer >= 1, got {workers_per_trial!r}"
        )
    for name, value in (("cpus_per_worker", cpus_per_worker), ("gpus_per_worker", gpus_per_worker)):
        if (
            isinstance(value, bool)
            or not isinstance(value, (int, float))
            or not math.isfinite(value)
            or value < 0
        ):
            raise ValueError(f"resources.{name} must be a number >= 0, got {value!r}")
    if cpus_per_worker == 0 and gpus_per_worker == 0:
        raise ValueError(
            "resources.cpus_per_worker and resources.gpus_per_worker are both 0: a Train worker "
            "must ask for some resource, or Ray would pack unlimited workers onto one node"
        )
    if gpus_per_worker > 1 and float(gpus_per_worker) != int(gpus_per_worker):
        raise ValueError(
            f"resources.gpus_per_worker={gpus_per_worker}: Ray accepts fractional GPUs only "
            "below 1; above 1 it must be a whole number"
        )


def worker_resources(cpus_per_worker: float, gpus_per_worker: float) -> dict[str, float]:
    """One Train worker's resources, for ``ScalingConfig(resources_per_worker=...)``."""
    _check_shape(1, cpus_per_worker, gpus_per_worker)
    out: dict[str, float] = {"CPU": float(cpus_per_worker)}
    if gpus_per_worker:
        out["GPU"] = float(gpus_per_worker)
    return out


def trial_resources(
    workers_per_trial: int, cpus_per_worker: float, gpus_per_worker: float
) -> dict[str, float]:
    """The worker group's total demand: ``{"CPU": w * c, "GPU": w * g}``.

    The driver is not included: it uses the ``trial_driver`` resource and no CPU.
    """
    _check_shape(workers_per_trial, cpus_per_worker, gpus_per_worker)
    return {
        "CPU": float(workers_per_trial * cpus_per_worker),
        "GPU": float(workers_per_trial * gpus_per_worker),
    }


def _fits(have: float, need: float) -> int:
    """How many times ``need`` fits into ``have`` (``need`` > 0)."""
    return int(math.floor((float(have) + _EPS) / need))


def _worker_slots(node: Mapping[str, Any], per_worker: Mapping[str, float]) -> int:
    """How many workers of shape ``per_worker`` one node can host at once."""
    slots = [_fits(node.get(r, 0.0), need) for r, need in per_worker.items() if need > 0]
    return max(0, min(slots)) if slots else 0


def _largest(nodes: list[Mapping[str, Any]], resource: str) -> float:
    return max((float(n.get(resource, 0.0)) for n in nodes), default=0.0)


def _check_single_worker_fits(
    nodes: list[Mapping[str, Any]], cpus_per_worker: float, gpus_per_worker: float
) -> None:
    per_worker = {"CPU": float(cpus_per_worker), "GPU": float(gpus_per_worker)}
    if any(_worker_slots(n, per_worker) >= 1 for n in nodes):
        return
    if not nodes:
        raise ValueError("the cluster has no nodes to place a Train worker on")
    short = [r for r, need in per_worker.items() if need > 0 and _largest(nodes, r) + _EPS < need]
    if not short:  # each resource suffices on some node, but never both on the same one
        short = [r for r, need in per_worker.items() if need > 0]
    detail = ", ".join(
        f"{_FIELD[r]}={per_worker[r]:g} but the largest node has {_largest(nodes, r):g} {r}"
        for r in short
    )
    raise ValueError(
        f"a single Train worker can never be placed: {detail}. No node offers "
        f"{per_worker['CPU']:g} CPU and {per_worker['GPU']:g} GPU together; lower "
        f"{' and '.join(_FIELD[r] for r in short)} or add a larger node type to cluster.yaml."
    )


def require_driver_resource(
    cluster_resources: Mapping[str, Any], driver_resource: str = DRIVER_RESOURCE
) -> None:
    """Every trial driver asks for one unit of ``driver_resource``: a cluster that advertises
    none would leave every trial pending for ever, so say so before any trial starts."""
    if _fits(cluster_resources.get(driver_resource, 0.0), 1.0) < 1:
        raise ValueError(
            f"the Ray cluster advertises no {driver_resource!r} resource, which every trial "
            f"driver asks for (found {cluster_resources.get(driver_resource, 0)!r}). Give the "
            f"node that should host the drivers resources: {{{driver_resource}: N}} (cluster.yaml's "
            f"head node type, or `ray start --head --resources='{{\"{driver_resource}\": 8}}'`)"
        )


def max_concurrent_trials(
    cluster_resources: Mapping[str, Any],
    workers_per_trial: int,
    cpus_per_worker: float,
    gpus_per_worker: float,
    requested: int | None = None,
    driver_resource: str = DRIVER_RESOURCE,
    node_resources: Iterable[Mapping[str, Any]] | None = None,
) -> int:
    """How many trials can train at once: Tune's ``max_concurrent_trials``.

    ``cluster_resources`` is a total such as ``ray.cluster_resources()``, or better on an
    autoscaling cluster the potential total from :func:`capacity_from_cluster_config`. The
    answer is the number of worker groups that fit in it (the minimum over CPU and GPU),
    further capped by the number of ``driver_resource`` slots when the cluster advertises that
    resource, and by ``requested`` when given. It is at least 1.

    ``node_resources``, one resource dict per node (``alive_node_resources(ray.nodes())`` or
    ``capacity.nodes``), makes the count exact: workers are placed whole on single nodes, so
    the per-node worker slots are summed instead of pooling the totals, and a worker that no
    node can hold is reported.

    Raises ``ValueError``, naming the study field to change (``resources.gpus_per_worker``,
    ...), when not even one trial can ever run on the cluster.
    """
    demand = trial_resources(workers_per_trial, cpus_per_worker, gpus_per_worker)
    if requested is not None and (
        isinstance(requested, bool) or not isinstance(requested, int) or requested < 1
    ):
        raise ValueError(
            f"resources.max_concurrent_trials must be an integer >= 1, got {requested!r}"
        )

    fits: list[int] = []
    for r, need in demand.items():
        if need <= 0:
            continue
        have = float(cluster_resources.get(r, 0.0))
        n = _fits(have, need)
        if n < 1:
            raise ValueError(
                f"one trial needs {need:g} {r} (resources.workers_per_trial={workers_per_trial} "
                f"x {_FIELD[r]}={cpus_per_worker if r == 'CPU' else gpus_per_worker:g}) but the "
                f"cluster has {have:g} {r} in total. Lower resources.workers_per_trial or "
                f"{_FIELD[r]}, or grow the cluster. On an autoscaling cluster, plan with its "
                "potential capacity (placement.capacity_from_cluster_config), not with the "
                "resources of the nodes that happen to be up."
            )
        fits.append(n)

    if node_resources is not None:
        nodes = list(node_resources)
        _check_single_worker_fits(nodes, cpus_per_worker, gpus_per_worker)
        per_worker = {"CPU": float(cpus_per_worker), "GPU": float(gpus_per_worker)}
        slots = sum(_worker_slots(n, per_worker) for n in nodes)
        if slots < workers_per_trial:
            raise ValueError(
                f"resources.workers_per_trial={workers_per_trial} but the cluster's nodes hold "
                f"at most {slots} workers of {cpus_per_worker:g} CPU and {gpus_per_worker:g} "
                "GPU at once (workers are never split across nodes). Lower "
                "resources.workers_per_trial or the per-worker resources, or add nodes."
            )
        fits.append(slots // workers_per_trial)

    count = min(fits)
    if driver_resource in cluster_resources:
        require_driver_resource(cluster_resources, driver_resource)
        count = min(count, _fits(cluster_resources[driver_resource], 1.0))
    if requested is not None:
        count = min(count, requested)
    return max(1, count)


def _is_alive(node: Mapping[str, Any]) -> bool:
    if "Alive" in node:
        return bool(node["Alive"])
    if "alive" in node:
        return bool(node["alive"])
    return str(node.get("state", node.get("State", ""))).upper() == "ALIVE"


def num_nodes(cluster_nodes: Iterable[Mapping[str, Any]]) -> int:
    """The number of alive nodes in a ``ray.nodes()``-shaped list.

    Dead nodes stay in ``ray.nodes()`` (with ``"Alive": False``) after a spot reclaim or a
    scale-down, so they are not counted. The State API's ``{"state": "ALIVE"}`` form works too.
    """
    return sum(1 for node in cluster_nodes if _is_alive(node))


def alive_node_resources(cluster_nodes: Iterable[Mapping[str, Any]]) -> list[dict[str, float]]:
    """Each alive node's total resources (``ray.nodes()[i]["Resources"]``)."""
    return [
        dict(node.get("Resources", node.get("resources_total", {})))
        for node in cluster_nodes
        if _is_alive(node)
    ]


class Capacity(NamedTuple):
    """What an autoscaling cluster can grow to."""

    total: dict[str, float]
    """Summed resources of the head and the largest worker set the autoscaler may launch."""
    nodes: list[dict[str, float]]
    """One resource dict per potential node (the head first), for per-node fit checks."""
    max_nodes: int
    """The head plus the global ``max_workers``: the node count to plan storage for."""


def capacity_from_cluster_config(config: Mapping[str, Any]) -> Capacity:
    """The potential capacity of a Ray cluster launcher config (e.g. ``cluster.yaml``).

    Every node type must state its ``resources`` (CPU and GPU too: the launcher fills them in
    from the cloud only at ``ray up`` time, and only on AWS). The head counts once, plus any
    workers of its own type. Worker node types are filled up to their own ``max_workers``,
    the ones with the most GPUs (then CPUs) first, until the global ``max_workers`` is spent:
    the largest cluster the autoscaler can build, which is what concurrency should be planned
    for. Spot capacity may of course never materialise; trials beyond it just wait.
    """
    types: Mapping[str, Any] = config.get("available_node_types") or {}
    head_type = config.get("head_node_type")
    if head_type not in types:
        raise ValueError(f"head_node_type {head_type!r} is not one of available_node_types")
    global_max = int(config.get("max_workers", 0))

    def res(name: str) -> dict[str, float]:
        raw = types[name].get("resources")
        if not raw:
            raise ValueError(
                f"node type {name!r} has no resources; state CPU, GPU and any custom resources"
            )
        return {str(k): float(v) for k, v in raw.items()}

    nodes: list[dict[str, float]] = [res(head_type)]
    workers: list[tuple[str, int]] = []
    for name, spec in types.items():
        default_max = 0 if name == head_type else global_max
        count = min(int(spec.get("max_workers", default_max)), global_max)
        if count > 0:
            workers.append((name, count))
    workers.sort(key=lambda item: (-res(item[0]).get("GPU", 0.0), -res(item[0]).get("CPU", 0.0)))
    budget = global_max
    for name, count in workers:
        take = min(count, budget)
        nodes.extend(res(name) for _ in range(take))
        budget -= take
    total: dict[str, float] = {}
    for node in nodes:
        for k, v in node.items():
            total[k] = total.get(k, 0.0) + v
    return Capacity(total=total, nodes=nodes, max_nodes=1 + global_max)


def plan_capacity(
    cluster_resources: Mapping[str, Any],
    cluster_nodes: Iterable[Mapping[str, Any]],
    autoscaler_config: Mapping[str, Any] | None = None,
) -> Capacity:
    """The cluster a sweep should plan for: what is up now, or what the autoscaler can add.

    Pass ``ray.cluster_resources()``, ``ray.nodes()`` and :func:`load_autoscaler_config`.
    Without a launcher config (a local cluster, a fixed-size KubeRay cluster) this is the
    alive nodes. With one, it is the larger of the two, resource by resource: a freshly
    launched cluster is only its head (``CPU: 0``, no GPU), and sizing concurrency or the
    storage check by that would refuse the study or let node-local storage through. Use
    ``max_nodes`` for ``storage.require_shared_storage`` and ``total`` / ``nodes`` for
    :func:`max_concurrent_trials`.
    """
    nodes_now = list(cluster_nodes)
    now = Capacity(
        total={str(k): float(v) for k, v in cluster_resources.items()},
        nodes=alive_node_resources(nodes_now),
        max_nodes=num_nodes(nodes_now),
    )
    if not autoscaler_config:
        return now
    potential = capacity_from_cluster_config(autoscaler_config)
    total = dict(now.total)
    for k, v in potential.total.items():
        total[k] = max(total.get(k, 0.0), v)
    nodes = potential.nodes if len(potential.nodes) >= len(now.nodes) else now.nodes
    return Capacity(total=total, nodes=nodes, max_nodes=max(potential.max_nodes, now.max_nodes))


def load_autoscaler_config(path: str | None = None) -> dict[str, Any] | None:
    """The cluster launcher's config on this node, or ``None`` when there is none.

    ``ray up`` writes the resolved config to ``~/ray_bootstrap_config.yaml`` on the head (inside
    the container when ``docker`` is set), where ``ado-ray sweep`` runs as a Ray job. KubeRay
    clusters have no such file.
    """
    import yaml

    path = os.path.expanduser(path or DEFAULT_AUTOSCALER_CONFIG)
    if not os.path.isfile(path):
        return None
    with open(path) as f:
        config = yaml.safe_load(f)
    return config if isinstance(config, dict) else None
