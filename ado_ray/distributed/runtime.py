"""Starting or joining Ray with the resources our trial drivers need."""

from __future__ import annotations

import logging
import os

import ray

from ado_ray.distributed.placement import DRIVER_RESOURCE

log = logging.getLogger(__name__)


def init_ray(
    address: str | None = None, num_cpus: int | None = None, trial_drivers: int | None = None
) -> dict[str, float]:
    """Join the cluster at ``address`` (or ``RAY_ADDRESS``), or start a local one.

    A local cluster advertises ``trial_drivers`` slots of the driver resource (default: one per
    CPU); on a launched cluster the head node type advertises it (``cluster.yaml``). Returns the
    cluster's total resources.
    """
    if ray.is_initialized():
        return ray.cluster_resources()
    address = address or os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address, log_to_driver=True)
    else:
        cpus = num_cpus or os.cpu_count() or 1
        ray.init(
            num_cpus=cpus,
            resources={DRIVER_RESOURCE: float(trial_drivers or max(2, cpus))},
            include_dashboard=True,
            log_to_driver=True,
        )
    resources = ray.cluster_resources()
    log.info("Ray resources: %s", resources)
    return resources
