"""The cluster configs (cluster.yaml, deploy/rayjob.yaml) and the placement arithmetic.

No Ray cluster is started here: cluster.yaml is checked the way `ray up` checks it before it
touches a cloud (prepare_config, then validate_config), with the network cut off.
"""

from __future__ import annotations

import copy
import json
import socket
from pathlib import Path

import pytest
import yaml

from ado_ray.distributed import placement
from ado_ray.distributed.placement import (
    DRIVER_RESOURCE,
    Capacity,
    alive_node_resources,
    capacity_from_cluster_config,
    driver_resources,
    load_autoscaler_config,
    max_concurrent_trials,
    num_nodes,
    plan_capacity,
    trial_resources,
    worker_resources,
)
from ado_ray.storage import require_shared_storage

ROOT = Path(__file__).resolve().parents[1]
CLUSTER_YAML = ROOT / "cluster.yaml"
RAYJOB_YAML = ROOT / "deploy" / "rayjob.yaml"
GPU_STUDIES = ["studies/wikitext2_seed.yaml", "studies/pile_domains.yaml"]
RAY_VERSION = "2.60.0"


@pytest.fixture
def no_network(monkeypatch):
    """Fail any attempt to open a connection (the checks must work without cloud access)."""

    def refuse(*args, **kwargs):
        raise AssertionError("cluster config validation tried to reach the network")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def _raw_cluster_config() -> dict:
    with open(CLUSTER_YAML) as f:
        return yaml.safe_load(f)


def _prepared(cfg: dict) -> dict:
    """`ray up`'s offline steps: merge the provider defaults, then validate against the schema.

    `ray.autoscaler._private.commands._bootstrap_config` runs exactly these two before it asks
    the provider (AWS) to fill in instance resources and bootstrap IAM, keys and subnets, which
    needs credentials and is not done here. Both are offline: prepare_config only reads the
    provider's defaults.yaml that ships with Ray.
    """
    from ray.autoscaler._private.util import prepare_config, validate_config

    prepared = prepare_config(copy.deepcopy(cfg))
    validate_config(prepared)
    return prepared


@pytest.fixture(scope="module")
def cluster_config() -> dict:
    return _prepared(_raw_cluster_config())


def _is_spot(node_config: dict) -> bool:
    market = (node_config.get("InstanceMarketOptions") or {}).get("MarketType", "")
    scheduling = node_config.get("scheduling") or {}  # GCP
    if isinstance(scheduling, list):
        scheduling = {k: v for item in scheduling for k, v in item.items()}
    return (
        str(market).lower() == "spot"
        or str(scheduling.get("provisioningModel", "")).upper() == "SPOT"
        or bool(scheduling.get("preemptible"))
    )


def _study_resources(rel: str) -> dict:
    path = ROOT / rel
    if not path.exists():
        pytest.skip(f"{rel} does not exist yet (another change adds it)")
    with open(path) as f:
        study = yaml.safe_load(f) or {}
    res = study.get("resources") or {}
    return {
        "workers_per_trial": int(res.get("workers_per_trial", 1)),
        "cpus_per_worker": float(res.get("cpus_per_worker", 1)),
        "gpus_per_worker": float(res.get("gpus_per_worker", 0)),
    }


# --------------------------------------------------------------------------- cluster.yaml


def test_cluster_yaml_passes_the_launchers_validation(no_network):
    prepared = _prepared(_raw_cluster_config())
    assert prepared["provider"]["type"] == "aws"
    assert prepared["provider"]["region"] == "us-west-2"
    assert prepared["provider"]["cache_stopped_nodes"] is False
    assert prepared["auth"]["ssh_user"] == "ubuntu"
    assert prepared["head_node_type"] in prepared["available_node_types"]


def test_validation_is_not_vacuous(no_network):
    from jsonschema import ValidationError

    bad = _raw_cluster_config()
    bad["available_node_types"][bad["head_node_type"]]["resources"]["trial_driver"] = 0.5
    with pytest.raises(ValidationError):  # custom resources must be integers
        _prepared(bad)
    bad = _raw_cluster_config()
    bad["docker"]["imagee"] = "typo"
    with pytest.raises(ValidationError):
        _prepared(bad)


def test_cluster_yaml_runs_the_pinned_ray_image_and_installs_this_checkout(cluster_config):
    import ray

    docker = cluster_config["docker"]
    assert docker["image"] == f"rayproject/ray:{RAY_VERSION}-py311-gpu"
    assert RAY_VERSION == ray.__version__, "bump the image, rayVersion and this test together"
    assert docker["container_name"] and docker["pull_before_run"] is True
    mounts = cluster_config["file_mounts"]
    assert mounts["/home/ray/ado-ray"] == "."
    assert mounts["/home/ray/studies"] == "./studies"
    for key in ("head_setup_commands", "worker_setup_commands"):  # setup_commands merged in
        cmds = " ".join(cluster_config[key])
        assert "pip install" in cmds and "-e /home/ray/ado-ray" in cmds
        assert f"ray[default,tune,train]=={RAY_VERSION}" in cmds
    head_start = " ".join(cluster_config["head_start_ray_commands"])
    assert (
        "--head" in head_start and "--autoscaling-config=~/ray_bootstrap_config.yaml" in head_start
    )
    assert "--dashboard-host=0.0.0.0" in head_start
    assert "$RAY_HEAD_IP:6379" in " ".join(cluster_config["worker_start_ray_commands"])


def test_head_runs_no_training_and_hosts_the_trial_drivers(cluster_config):
    types = cluster_config["available_node_types"]
    head = types[cluster_config["head_node_type"]]
    assert head["resources"].get("CPU") == 0
    assert head["resources"].get("GPU", 0) == 0
    assert not _is_spot(head["node_config"])
    driver_hosts = [
        name
        for name, t in types.items()
        if t["resources"].get(DRIVER_RESOURCE, 0) >= 1 and not _is_spot(t["node_config"])
    ]
    assert driver_hosts, "some on-demand node type must advertise the trial_driver resource"
    for name, t in types.items():
        if _is_spot(t["node_config"]):
            assert DRIVER_RESOURCE not in t["resources"], f"{name}: drivers must stay off spot"


def test_node_types_state_their_resources_and_disks(cluster_config):
    types = cluster_config["available_node_types"]
    gpu_types = {n: t for n, t in types.items() if t["resources"].get("GPU", 0) > 0}
    assert gpu_types, "cluster.yaml needs a GPU worker node type"
    assert any(_is_spot(t["node_config"]) for t in gpu_types.values())
    for name, t in types.items():
        cfg = t["node_config"]
        assert cfg.get("InstanceType") and cfg.get("ImageId"), name
        assert cfg["BlockDeviceMappings"][0]["Ebs"]["VolumeSize"] >= 100, name
        assert "CPU" in t["resources"], f"{name}: state CPU (autodetection needs AWS access)"
    for name, t in gpu_types.items():
        assert t["max_workers"] >= 1 and t["min_workers"] == 0, name
        # Workers write checkpoints to S3 themselves: they need an instance profile too.
        assert "IamInstanceProfile" in t["node_config"], name


@pytest.mark.parametrize("study", GPU_STUDIES)
def test_gpu_node_types_fit_the_gpu_studies(cluster_config, study):
    res = _study_resources(study)
    types = cluster_config["available_node_types"]
    workers = {n: t for n, t in types.items() if n != cluster_config["head_node_type"]}
    fitting = [
        n
        for n, t in workers.items()
        if t["resources"].get("GPU", 0) >= res["gpus_per_worker"]
        and t["resources"].get("CPU", 0) >= res["cpus_per_worker"]
    ]
    assert fitting, f"no worker node type holds one worker of {study}: {res}"
    capacity = capacity_from_cluster_config(cluster_config)
    n = max_concurrent_trials(capacity.total, **res, node_resources=capacity.nodes)
    assert 1 <= n <= capacity.total[DRIVER_RESOURCE]


def test_capacity_of_cluster_yaml(cluster_config):
    capacity = capacity_from_cluster_config(cluster_config)
    assert capacity.max_nodes == 1 + cluster_config["max_workers"]
    assert len(capacity.nodes) == capacity.max_nodes
    assert capacity.total["GPU"] >= 8
    assert capacity.nodes[0] == {
        k: float(v) for k, v in cluster_config["available_node_types"]["head"]["resources"].items()
    }


# --------------------------------------------------------------------------- rayjob.yaml


@pytest.fixture(scope="module")
def rayjob() -> dict:
    with open(RAYJOB_YAML) as f:
        return yaml.safe_load(f)


def _containers(template: dict) -> list[dict]:
    return template["spec"]["containers"]


def test_rayjob_fields(rayjob):
    assert rayjob["apiVersion"] == "ray.io/v1"
    assert rayjob["kind"] == "RayJob"
    assert rayjob["metadata"]["name"]
    spec = rayjob["spec"]
    assert "ado-ray sweep" in spec["entrypoint"]
    assert "--storage s3://" in spec["entrypoint"]
    assert spec["shutdownAfterJobFinishes"] is True
    assert isinstance(spec["ttlSecondsAfterFinished"], int) and spec["ttlSecondsAfterFinished"] > 0
    assert spec["submissionMode"] in ("K8sJobMode", "HTTPMode", "SidecarMode", "InteractiveMode")
    cluster = spec["rayClusterSpec"]
    assert cluster["rayVersion"] == RAY_VERSION
    images = {c["image"] for c in _containers(cluster["headGroupSpec"]["template"])}
    for group in cluster["workerGroupSpecs"]:
        images |= {c["image"] for c in _containers(group["template"])}
    assert len(images) == 1, f"head and workers must run one image: {images}"
    assert images.pop().rsplit(":", 1)[1].startswith(f"{RAY_VERSION}-"), "image tag != rayVersion"


def test_rayjob_entrypoint_names_a_study_in_this_repo(rayjob):
    args = rayjob["spec"]["entrypoint"].split()
    path = args[args.index("sweep") + 1]
    rel = path.removeprefix("/home/ray/ado-ray/")
    assert rel.startswith("studies/")
    if not (ROOT / rel).exists():
        pytest.skip(f"{rel} does not exist yet (another change adds it)")


def test_rayjob_head_hosts_drivers_and_no_training(rayjob):
    head = rayjob["spec"]["rayClusterSpec"]["headGroupSpec"]
    params = head["rayStartParams"]
    assert params["num-cpus"] == "0"
    assert params["dashboard-host"] == "0.0.0.0"
    # KubeRay passes the value to `ray start --resources=...` as is: a quoted JSON object.
    resources = json.loads(json.loads(params["resources"]))
    assert resources[DRIVER_RESOURCE] >= 1
    for c in _containers(head["template"]):
        assert "nvidia.com/gpu" not in c.get("resources", {}).get("limits", {})


def test_rayjob_gpu_workers(rayjob):
    groups = rayjob["spec"]["rayClusterSpec"]["workerGroupSpecs"]
    assert groups
    for group in groups:
        assert group["groupName"]
        assert 0 <= group["minReplicas"] <= group["replicas"] <= group["maxReplicas"]
        assert group["maxReplicas"] >= 1
        for c in _containers(group["template"]):
            assert int(c["resources"]["limits"]["nvidia.com/gpu"]) >= 1


@pytest.mark.parametrize("study", GPU_STUDIES)
def test_rayjob_worker_pods_fit_the_gpu_studies(rayjob, study):
    res = _study_resources(study)
    pods = [
        {
            "CPU": float(c["resources"]["limits"]["cpu"]),
            "GPU": float(c["resources"]["limits"]["nvidia.com/gpu"]),
        }
        for group in rayjob["spec"]["rayClusterSpec"]["workerGroupSpecs"]
        for c in _containers(group["template"])
    ]
    assert any(
        p["GPU"] >= res["gpus_per_worker"] and p["CPU"] >= res["cpus_per_worker"] for p in pods
    ), f"no worker pod holds one worker of {study}: {res}"


# --------------------------------------------------------------------------- placement


def test_driver_request_is_accepted_by_tune_and_costs_no_cpu():
    from ray.tune.execution.placement_groups import resource_dict_to_pg_factory

    pgf = resource_dict_to_pg_factory(driver_resources())
    assert pgf.bundles == [{DRIVER_RESOURCE: 1.0}]
    assert pgf.head_cpus == 0
    with pytest.raises(ValueError):  # all zeros is refused, hence the custom resource
        resource_dict_to_pg_factory({"CPU": 0})


def test_trial_and_worker_resources():
    assert trial_resources(4, 8, 1) == {"CPU": 32.0, "GPU": 4.0}
    assert trial_resources(1, 2, 0) == {"CPU": 2.0, "GPU": 0.0}
    assert worker_resources(8, 1) == {"CPU": 8.0, "GPU": 1.0}
    assert worker_resources(2, 0) == {"CPU": 2.0}
    assert driver_resources() == {"CPU": 0, "trial_driver": 1}
    assert placement.DRIVER_RESOURCE == "trial_driver"


@pytest.mark.parametrize(
    "shape, field",
    [
        ((0, 1, 0), "resources.workers_per_trial"),
        ((1.5, 1, 0), "resources.workers_per_trial"),
        ((1, -1, 0), "resources.cpus_per_worker"),
        ((1, 1, float("nan")), "resources.gpus_per_worker"),
        ((1, 1, 1.5), "resources.gpus_per_worker"),
        ((1, 0, 0), "resources.cpus_per_worker"),
    ],
)
def test_bad_shapes_name_the_study_field(shape, field):
    with pytest.raises(ValueError, match=field.replace(".", r"\.")):
        trial_resources(*shape)


def test_local_cpu_cluster():
    local = {"CPU": 2.0, "memory": 1e9, DRIVER_RESOURCE: 4.0}
    assert max_concurrent_trials(local, 1, 1, 0) == 2
    assert max_concurrent_trials(local, 1, 1, 0, requested=1) == 1
    assert max_concurrent_trials(local, 1, 1, 0, requested=8) == 2
    assert max_concurrent_trials(local, 2, 1, 0) == 1
    assert max_concurrent_trials({"CPU": 2.0}, 1, 0.5, 0) == 4  # no driver resource: no cap


def test_min_over_cpu_and_gpu_and_driver_cap():
    total = {"CPU": 96.0, "GPU": 8.0, DRIVER_RESOURCE: 8.0}
    assert max_concurrent_trials(total, 2, 8, 1) == 4  # GPU-bound: 8 / 2
    assert max_concurrent_trials(total, 2, 16, 1) == 3  # CPU-bound: 96 / 32
    assert max_concurrent_trials(total, 1, 1, 0.25) == 8  # 32 by GPU, capped by 8 drivers
    assert max_concurrent_trials({**total, DRIVER_RESOURCE: 2.0}, 1, 8, 1) == 2
    # Ray's fixed-point totals must not lose a slot to float noise.
    assert max_concurrent_trials({"CPU": 0.3 * 3}, 1, 0.3, 0) == 3


def test_too_big_for_the_cluster_total():
    with pytest.raises(ValueError, match=r"resources\.gpus_per_worker"):
        max_concurrent_trials({"CPU": 64.0}, 1, 8, 1)  # no GPU at all
    with pytest.raises(ValueError, match=r"resources\.cpus_per_worker"):
        max_concurrent_trials({"CPU": 8.0, "GPU": 8.0}, 2, 8, 1)


def test_a_worker_that_no_node_can_hold():
    nodes = [{"CPU": 48.0, "GPU": 4.0}] * 4  # four g5.12xlarge: 16 GPUs in total
    total = {"CPU": 192.0, "GPU": 16.0}
    with pytest.raises(ValueError, match=r"resources\.gpus_per_worker=8.*largest node has 4"):
        max_concurrent_trials(total, 1, 8, 8, node_resources=nodes)
    with pytest.raises(ValueError, match=r"resources\.cpus_per_worker=64"):
        max_concurrent_trials(total, 1, 64, 1, node_resources=nodes)
    # CPUs on one node, GPUs on another: both fields named.
    split = [{"CPU": 0.0, "GPU": 4.0}, {"CPU": 16.0}]
    with pytest.raises(ValueError, match=r"cpus_per_worker.*gpus_per_worker"):
        max_concurrent_trials({"CPU": 16.0, "GPU": 4.0}, 1, 4, 1, node_resources=split)


def test_node_packing_beats_pooled_totals():
    nodes = [{"CPU": 10.0}] * 3
    assert max_concurrent_trials({"CPU": 30.0}, 1, 4, 0) == 7  # pooled: 30 / 4
    assert max_concurrent_trials({"CPU": 30.0}, 1, 4, 0, node_resources=nodes) == 6  # 2 a node
    with pytest.raises(ValueError, match=r"resources\.workers_per_trial=3"):
        max_concurrent_trials({"CPU": 12.0}, 3, 4, 0, node_resources=[{"CPU": 6.0}] * 2)


def test_bad_requested_and_driver_resource():
    with pytest.raises(ValueError, match=r"max_concurrent_trials"):
        max_concurrent_trials({"CPU": 4.0}, 1, 1, 0, requested=0)
    with pytest.raises(ValueError, match=DRIVER_RESOURCE):
        max_concurrent_trials({"CPU": 4.0, DRIVER_RESOURCE: 0.0}, 1, 1, 0)


def test_num_nodes_counts_alive_nodes():
    nodes = [
        {"NodeID": "a", "Alive": True, "Resources": {"CPU": 0.0, DRIVER_RESOURCE: 8.0}},
        {"NodeID": "b", "Alive": False, "Resources": {"CPU": 48.0, "GPU": 4.0}},
        {"NodeID": "c", "Alive": True, "Resources": {"CPU": 48.0, "GPU": 4.0}},
    ]
    assert num_nodes(nodes) == 2
    assert num_nodes([]) == 0
    assert num_nodes([{"state": "ALIVE"}, {"state": "DEAD"}]) == 1
    assert alive_node_resources(nodes) == [
        {"CPU": 0.0, DRIVER_RESOURCE: 8.0},
        {"CPU": 48.0, "GPU": 4.0},
    ]


def test_capacity_respects_the_global_max_workers():
    config = {
        "max_workers": 3,
        "head_node_type": "head",
        "available_node_types": {
            "head": {"resources": {"CPU": 0, DRIVER_RESOURCE: 4}},
            "small": {"max_workers": 5, "resources": {"CPU": 8, "GPU": 1}},
            "big": {"max_workers": 1, "resources": {"CPU": 96, "GPU": 8}},
        },
    }
    cap = capacity_from_cluster_config(config)
    assert isinstance(cap, Capacity)
    assert cap.max_nodes == 4
    assert cap.total == {"CPU": 112.0, DRIVER_RESOURCE: 4.0, "GPU": 10.0}  # big + 2 small
    assert max_concurrent_trials(cap.total, 1, 8, 1, node_resources=cap.nodes) == 4
    del config["available_node_types"]["small"]["resources"]
    with pytest.raises(ValueError, match="small"):
        capacity_from_cluster_config(config)


def test_plan_capacity_on_a_fresh_launched_cluster(cluster_config):
    # Right after `ray up`: only the head is up, with no CPU for training and no GPU.
    head_only = {"CPU": 0.0, DRIVER_RESOURCE: 8.0, "memory": 4e10}
    nodes = [{"NodeID": "h", "Alive": True, "Resources": head_only}]
    with pytest.raises(ValueError, match="potential capacity"):
        max_concurrent_trials(head_only, 4, 4, 1)
    now = plan_capacity(head_only, nodes)
    assert now.max_nodes == 1 and now.nodes == [head_only]
    cap = plan_capacity(head_only, nodes, cluster_config)
    assert cap.max_nodes == 1 + cluster_config["max_workers"]
    assert cap.total["memory"] == 4e10 and cap.total["GPU"] >= 8
    assert max_concurrent_trials(cap.total, 4, 4, 1, node_resources=cap.nodes) >= 2
    with pytest.raises(ValueError, match="s3://"):
        require_shared_storage("/home/ray/results", cap.max_nodes)


def test_load_autoscaler_config(tmp_path):
    assert load_autoscaler_config(str(tmp_path / "missing.yaml")) is None
    path = tmp_path / "ray_bootstrap_config.yaml"  # `ray up` writes it as JSON
    path.write_text(json.dumps(_raw_cluster_config()))
    loaded = load_autoscaler_config(str(path))
    assert loaded["head_node_type"] == "head"
    assert capacity_from_cluster_config(loaded).total[DRIVER_RESOURCE] == 8


# --------------------------------------------------------------------------- storage


def test_local_storage_is_refused_on_a_multi_node_cluster(monkeypatch):
    monkeypatch.delenv("ADO_RAY_SHARED_FS", raising=False)
    with pytest.raises(ValueError) as err:
        require_shared_storage("/tmp/x", num_nodes=2)
    assert "/tmp/x" in str(err.value) and "s3://" in str(err.value)
    require_shared_storage("s3://bucket/ado-ray", num_nodes=8)
    require_shared_storage("gs://bucket/ado-ray", num_nodes=8)
    require_shared_storage("/tmp/x", num_nodes=1)
    with pytest.raises(ValueError):
        require_shared_storage("file:///mnt/nfs/ado-ray", num_nodes=2)
    monkeypatch.setenv("ADO_RAY_SHARED_FS", "1")
    require_shared_storage("file:///mnt/nfs/ado-ray", num_nodes=2)


def test_a_cluster_without_driver_slots_is_refused():
    from ado_ray.distributed.placement import require_driver_resource

    require_driver_resource({"CPU": 2.0, DRIVER_RESOURCE: 2.0})
    for total in ({"CPU": 64.0, "GPU": 8.0}, {"CPU": 4.0, DRIVER_RESOURCE: 0.5}):
        with pytest.raises(ValueError, match=f"no '{DRIVER_RESOURCE}' resource"):
            require_driver_resource(total)
