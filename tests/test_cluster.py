"""The cluster configs (cluster.yaml, deploy/rayjob.yaml) and the placement arithmetic.

No Ray cluster is started here: cluster.yaml is checked the way `ray up` checks it before it
touches a cloud (prepare_config, then validate_config), with the network cut off.
"""

from __future__ import annotations

import copy
import json
import os
import re
import socket
import subprocess
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
#: Where cluster.yaml puts the Ray auth token on every node, and where its local copy lives.
TOKEN_MOUNT = "/home/ray/ado-ray-auth-token"
TOKEN_SECRET = "ado-ray-auth-token"


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
    assert set(mounts) == {"/home/ray/ado-ray", "/home/ray/studies", TOKEN_MOUNT}
    for key in ("head_setup_commands", "worker_setup_commands"):  # setup_commands merged in
        cmds = " ".join(cluster_config[key])
        assert "pip install" in cmds and "-e /home/ray/ado-ray" in cmds
        assert f"ray[default,tune,train]=={RAY_VERSION}" in cmds
    head_start = " ".join(cluster_config["head_start_ray_commands"])
    assert (
        "--head" in head_start and "--autoscaling-config=~/ray_bootstrap_config.yaml" in head_start
    )
    assert "--dashboard-host=127.0.0.1" in head_start
    assert "$RAY_HEAD_IP:6379" in " ".join(cluster_config["worker_start_ray_commands"])


def _ray_start_commands(cluster_config: dict, key: str) -> list[str]:
    cmds = [c for c in cluster_config[key] if "ray start" in c]
    assert cmds, f"{key} starts no Ray"
    return cmds


def _docker_env(cluster_config: dict) -> dict[str, str]:
    env = {}
    for opt in cluster_config["docker"]["run_options"]:
        parts = opt.split()
        if parts[0] in ("--env", "-e"):
            name, _, value = parts[1].partition("=")
            env[name] = value
    return env


def test_cluster_yaml_turns_token_auth_on(cluster_config):
    # `ray start` on the head and on every worker runs in token mode, so it refuses to start
    # without the token (Ray 2.60 enables token auth on `ray start` only when told or when a
    # token happens to exist).
    for key in ("head_start_ray_commands", "worker_start_ray_commands"):
        for cmd in _ray_start_commands(cluster_config, key):
            env_part = cmd.split("ray start")[0]
            assert "RAY_AUTH_MODE=token" in env_part.split(), f"{key}: {cmd}"
    # Every process in the container (job drivers, `ray exec ... 'ray status'`) too, reading
    # the token from the file that file_mounts puts on each node.
    env = _docker_env(cluster_config)
    assert env.get("RAY_AUTH_MODE") == "token"
    assert env.get("RAY_AUTH_TOKEN_PATH") == TOKEN_MOUNT
    assert "RAY_AUTH_TOKEN" not in env  # never the token itself
    assert TOKEN_MOUNT in cluster_config["file_mounts"]


def test_cluster_yaml_keeps_the_token_out_of_the_repository(cluster_config):
    source = cluster_config["file_mounts"][TOKEN_MOUNT]
    assert source.startswith("~/"), "the token comes from the user's home, not the checkout"
    local = Path(os.path.expanduser(source)).resolve()
    assert ROOT not in local.parents and local != ROOT
    text = CLUSTER_YAML.read_text()
    assert not re.search(r"RAY_AUTH_TOKEN\s*=\s*[^\s$]", text.replace("RAY_AUTH_TOKEN_PATH", ""))
    assert not re.search(r"\b[0-9a-f]{64}\b", text), "a token-like value in cluster.yaml"


def test_cluster_yaml_dashboard_listens_on_loopback(cluster_config):
    (head_start,) = _ray_start_commands(cluster_config, "head_start_ray_commands")
    hosts = re.findall(r"--dashboard-host[= ](\S+)", head_start)
    assert hosts == ["127.0.0.1"], "reach it through `ray dashboard cluster.yaml` (SSH tunnel)"
    for key in ("head_start_ray_commands", "worker_start_ray_commands"):
        assert "0.0.0.0" not in " ".join(cluster_config[key])
    assert "ray dashboard cluster.yaml" in CLUSTER_YAML.read_text()


def test_repository_holds_no_token_file():
    try:
        out = subprocess.run(
            ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
    except (OSError, subprocess.TimeoutExpired):
        pytest.skip("git is not available")
    if out.returncode != 0:
        pytest.skip("not a git checkout")
    names = [Path(f).name.lower() for f in out.stdout.splitlines()]
    assert not [n for n in names if re.search(r"auth[_-]?token", n)]
    for path in (ROOT / "deploy").glob("*.y*ml"):
        for doc in yaml.safe_load_all(path.read_text()):
            assert (doc or {}).get("kind") != "Secret", f"{path}: create the Secret with kubectl"


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


def _auth_env_ok(container: dict) -> None:
    env = {e["name"]: e for e in container.get("env") or []}
    assert env["RAY_AUTH_MODE"] == {"name": "RAY_AUTH_MODE", "value": "token"}, container["name"]
    token = env["RAY_AUTH_TOKEN"]
    assert "value" not in token, f"{container['name']}: the token belongs in the Secret"
    assert token["valueFrom"]["secretKeyRef"] == {"name": TOKEN_SECRET, "key": "auth_token"}


def test_rayjob_turns_token_auth_on_from_a_secret(rayjob):
    spec = rayjob["spec"]
    cluster = spec["rayClusterSpec"]
    # KubeRay (v1.6+) injects the Secret's token into every Ray container and the submitter,
    # and reads it to poll the job's status over the dashboard API.
    assert cluster["authOptions"] == {"mode": "token", "secretName": TOKEN_SECRET}
    containers = _containers(cluster["headGroupSpec"]["template"])
    for group in cluster["workerGroupSpecs"]:
        containers += _containers(group["template"])
    assert spec["submissionMode"] == "K8sJobMode"  # the submitter template applies to it
    submitter = spec["submitterPodTemplate"]["spec"]
    assert submitter["restartPolicy"] == "Never"
    containers.append(submitter["containers"][0])
    for c in containers:
        _auth_env_ok(c)
    images = {c["image"] for c in containers}
    assert len(images) == 1, f"the submitter runs the cluster's image: {images}"


def test_rayjob_dashboard_is_not_exposed_beyond_the_cluster(rayjob):
    cluster = rayjob["spec"]["rayClusterSpec"]
    head = cluster["headGroupSpec"]
    # The dashboard binds the pod's address (the submitter Job and the KubeRay operator reach
    # the job API through the head Service), but nothing publishes it: the Service stays
    # ClusterIP, no Ingress, no host port or host network; `kubectl port-forward` reaches it.
    assert head.get("serviceType", "ClusterIP") == "ClusterIP"
    assert not head.get("enableIngress", False)
    assert "headService" not in head
    templates = [head["template"], rayjob["spec"]["submitterPodTemplate"]]
    templates += [g["template"] for g in cluster["workerGroupSpecs"]]
    for template in templates:
        assert not template["spec"].get("hostNetwork", False)
        for c in _containers(template):
            assert all("hostPort" not in p for p in c.get("ports", [])), c["name"]
    assert "kubectl port-forward" in RAYJOB_YAML.read_text()


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
