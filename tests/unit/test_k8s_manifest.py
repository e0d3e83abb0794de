"""`trainctl k8s-manifest`: every manifest validated against the PaddleJob CRD and Kubernetes' own schema.

How (CRD openAPIV3Schema with jsonschema, strict; the pod template with kubernetes-validate for
Kubernetes 1.31 and the newest): tests/k8s_schema.py.
"""

from __future__ import annotations

import copy
import os
import shutil
import stat
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

import k8s_schema
from trainctl.cli import main

IMAGE = "registry.example.com/team/trainctl:0.1.0"


@pytest.fixture(scope="module")
def crd_validator():
    return k8s_schema.crd_validator()


def validate(job: dict, crd_validator) -> None:
    k8s_schema.validate(job, crd_validator)


def run(capsys, *argv):
    with pytest.raises(SystemExit) as exit_info:
        main(list(argv))
    out, err = capsys.readouterr()
    return exit_info.value.code, out, err


def manifest(capsys, *args) -> tuple[dict, str, str]:
    code, out, err = run(capsys, "k8s-manifest", *args)
    assert code == 0, err
    return yaml.safe_load(out), out, err


def container_of(job: dict) -> dict:
    (container,) = job["spec"]["paddleReplicaSpecs"]["Worker"]["template"]["spec"]["containers"]
    return container


@pytest.fixture(autouse=True)
def _here(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("TRAINCTL_PRESETS", raising=False)


def test_the_validators_reject_what_the_cluster_would(crd_validator, capsys):
    """Control: both validations fail on manifests a cluster refuses (so passing means something)."""
    job, _, _ = manifest(capsys, "-c", "roadsign.yml", "--nodes", "2", "--gpus-per-node", "1", "--image", IMAGE)
    validate(job, crd_validator)
    bad = copy.deepcopy(job)
    bad["spec"]["paddleReplicaSpecs"]["Worker"]["replicas"] = "two"
    with pytest.raises(AssertionError, match="replicas"):
        validate(bad, crd_validator)
    bad = copy.deepcopy(job)
    bad["spec"]["paddleReplicaSpec"] = bad["spec"].pop("paddleReplicaSpecs")  # a typo in the PaddleJob's own fields
    with pytest.raises(AssertionError, match="paddleReplicaSpec"):
        validate(bad, crd_validator)
    bad = copy.deepcopy(job)
    container_of(bad)["volumeMount"] = []  # a typo the API server would drop or reject
    with pytest.raises(AssertionError, match="volumeMount"):
        validate(bad, crd_validator)
    bad = copy.deepcopy(job)
    container_of(bad)["ports"][0]["containerPort"] = "37777"
    pod_template = {"apiVersion": "v1", "kind": "PodTemplate", "metadata": {"name": "x"},
                    "template": bad["spec"]["paddleReplicaSpecs"]["Worker"]["template"]}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(pod_template, k8s_schema.K8S_VERSIONS[0], strict=True)


def test_gpu_job_with_volumes_overrides_and_train_flags(crd_validator, capsys):
    job, text, err = manifest(
        capsys, "-c", "roadsign.yml", "--nodes", "4", "--gpus-per-node", "8", "--image", IMAGE, "--name", "rs-big",
        "--namespace", "vision", "--data-pvc", "roadsign-data:/workspace/dataset", "--output-pvc", "out:/output",
        "-o", "epoch=3", "-o", "TrainReader.batch_size=4", "--env", "NCCL_DEBUG=WARN", "--", "--eval", "--keep", "3")
    validate(job, crd_validator)
    assert text.startswith("# PaddleJob rs-big: 4 pod(s) x 8 GPU(s)")
    assert job["metadata"] == {"name": "rs-big", "labels": {"app.kubernetes.io/managed-by": "trainctl"},
                               "namespace": "vision"}
    worker = job["spec"]["paddleReplicaSpecs"]["Worker"]
    assert (worker["replicas"], worker["restartPolicy"]) == (4, "OnFailure")
    assert list(job["spec"]["paddleReplicaSpecs"]) == ["Worker"]  # collective: no Master replica
    c = container_of(job)
    assert c["name"] == "paddle" and c["image"] == IMAGE and c["command"] == ["trainctl"]
    assert c["args"] == ["train", "--config", "roadsign.yml", "--launcher", "kubeflow", "--resume", "auto",
                         "--gpus", "0,1,2,3,4,5,6,7", "--output", "/output/rs-big", "--env", "NCCL_DEBUG=WARN",
                         "--override", "epoch=3", "--override", "TrainReader.batch_size=4", "--eval", "--keep", "3"]
    assert c["ports"] == [{"name": "master", "containerPort": 37777}]
    assert c["resources"] == {"limits": {"nvidia.com/gpu": 8}}
    assert "securityContext" not in c  # no RDMA, no IPC_LOCK
    mounts = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
    assert mounts == {"dshm": "/dev/shm", "data": "/workspace/dataset", "output": "/output"}
    volumes = {v["name"]: v for v in worker["template"]["spec"]["volumes"]}
    assert volumes["dshm"]["emptyDir"] == {"medium": "Memory"}
    assert volumes["data"]["persistentVolumeClaim"] == {"claimName": "roadsign-data"}
    env = {e["name"]: e for e in c["env"]}
    assert env["TRAINCTL_POD_NAME"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    assert env["TRAINCTL_POD_IP"]["valueFrom"] == {"fieldRef": {"fieldPath": "status.podIP"}}
    assert "--net auto: each pod chooses" in err  # auto is decided in the pods, said so
    assert not any(k.startswith(("NCCL_", "GLOO_")) for k in env)


def test_rdma_gets_the_device_plugin_resource_and_ipc_lock(crd_validator, capsys):
    job, _, _ = manifest(capsys, "-c", "roadsign.yml", "--nodes", "2", "--gpus-per-node", "4", "--image", IMAGE,
                         "--net", "rdma", "--rdma-resource", "rdma/hca_shared_devices_a=2", "--hca", "mlx5_0:1",
                         "--output-pvc", "out:/output")
    validate(job, crd_validator)
    c = container_of(job)
    assert c["resources"]["limits"] == {"nvidia.com/gpu": 4, "rdma/hca_shared_devices_a": 2}
    assert c["securityContext"] == {"capabilities": {"add": ["IPC_LOCK"]}}
    env = {e["name"]: e.get("value") for e in c["env"]}
    assert (env["NCCL_IB_DISABLE"], env["NCCL_NET_GDR_LEVEL"], env["NCCL_IB_HCA"]) == ("0", "0", "mlx5_0:1")
    assert c["args"][c["args"].index("--net"):c["args"].index("--net") + 4] == ["--net", "rdma", "--hca", "mlx5_0:1"]
    assert "hostNetwork" not in job["spec"]["paddleReplicaSpecs"]["Worker"]["template"]["spec"]


def test_gpudirect_on_the_host_network(crd_validator, capsys):
    job, _, err = manifest(capsys, "-c", "roadsign.yml", "--nodes", "2", "--gpus-per-node", "8", "--image", IMAGE,
                           "--net", "gpudirect", "--gdr-level", "SYS", "--host-network", "--output-pvc", "o:/o")
    validate(job, crd_validator)
    spec = job["spec"]["paddleReplicaSpecs"]["Worker"]["template"]["spec"]
    assert spec["hostNetwork"] is True and spec["dnsPolicy"] == "ClusterFirstWithHostNet"
    c = container_of(job)
    assert c["securityContext"]["capabilities"]["add"] == ["IPC_LOCK"]
    assert "--gdr-level" in c["args"] and {e["name"]: e.get("value") for e in c["env"]}["NCCL_NET_GDR_LEVEL"] == "SYS"
    assert "not /dev/infiniband" in err  # host network alone does not give the verbs devices
    job, _, err = manifest(capsys, "-c", "roadsign.yml", "--nodes", "2", "--gpus-per-node", "8", "--image", IMAGE,
                           "--net", "rdma", "--host-network", "--privileged", "--output-pvc", "o:/o")
    validate(job, crd_validator)
    assert container_of(job)["securityContext"]["privileged"] is True and "/dev/infiniband" not in err


def test_cpu_job_tcp_and_presets(crd_validator, capsys, tmp_path):
    job, _, err = manifest(capsys, "-c", "roadsign_cpu_smoke.yml", "--nodes", "2", "--gpus-per-node", "0",
                           "--image", IMAGE, "--net", "gloo", "--ifname", "eth0", "--port", "23456")
    validate(job, crd_validator)
    c = container_of(job)
    assert job["metadata"]["name"] == "trainctl-roadsign-cpu-smoke"  # from the config's name
    assert "resources" not in c and c["args"][7:9] == ["--device", "cpu"]
    assert c["ports"][0]["containerPort"] == 23456
    assert {e["name"]: e.get("value") for e in c["env"]}["GLOO_SOCKET_IFNAME"] == "eth0"
    assert "no --output-pvc" in err
    # a bundled named preset travels by name; a preset file of this machine by its base and --env values
    job, _, _ = manifest(capsys, "-c", "roadsign.yml", "--nodes", "2", "--gpus-per-node", "2", "--image", IMAGE,
                         "--net", "consumer-gpu")
    validate(job, crd_validator)
    assert "consumer-gpu" in container_of(job)["args"]
    (tmp_path / "site.yml").write_text("name: site\nbase: tcp\nenv:\n  NCCL_SOCKET_NTHREADS: 4\n")
    job, _, err = manifest(capsys, "-c", "roadsign.yml", "--nodes", "2", "--gpus-per-node", "2", "--image", IMAGE,
                           "--net", "site.yml", "--nccl-debug")
    validate(job, crd_validator)
    args = container_of(job)["args"]
    assert args[args.index("--net") + 1] == "tcp" and "NCCL_SOCKET_NTHREADS=4" in args and "--nccl-debug" in args
    env = {e["name"]: e.get("value") for e in container_of(job)["env"]}
    assert (env["NCCL_IB_DISABLE"], env["NCCL_SOCKET_NTHREADS"], env["NCCL_DEBUG"]) == ("1", "4", "INFO")



def test_scheduling_flags(crd_validator, capsys):
    """--node-selector, --toleration, --image-pull-secret, --cpu, --memory: in the pod template, valid for the CRD
    and Kubernetes; the schema itself refuses what these checks refuse (a quantity, a misspelt field)."""
    job, _, _ = manifest(
        capsys, "-c", "roadsign.yml", "--nodes", "2", "--gpus-per-node", "8", "--image", IMAGE, "--output-pvc", "o:/o",
        "--node-selector", "nvidia.com/gpu.product=NVIDIA-A100-SXM4-80GB", "--node-selector", "pool=train",
        "--toleration", "nvidia.com/gpu:NoSchedule", "--toleration", "dedicated=training:NoExecute",
        "--image-pull-secret", "registry-credentials", "--image-pull-secret", "mirror.creds",
        "--image-pull-secret", "registry-credentials", "--cpu", "7500m", "--memory", "64Gi")
    validate(job, crd_validator)
    spec = job["spec"]["paddleReplicaSpecs"]["Worker"]["template"]["spec"]
    assert spec["nodeSelector"] == {"nvidia.com/gpu.product": "NVIDIA-A100-SXM4-80GB", "pool": "train"}
    assert spec["tolerations"] == [
        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"},
        {"key": "dedicated", "operator": "Equal", "value": "training", "effect": "NoExecute"}]
    assert spec["imagePullSecrets"] == [{"name": "registry-credentials"}, {"name": "mirror.creds"}]  # once each
    assert container_of(job)["resources"] == {"limits": {"nvidia.com/gpu": 8, "cpu": "7500m", "memory": "64Gi"},
                                              "requests": {"cpu": "7500m", "memory": "64Gi"}}
    # CPU only: requests and limits without a GPU; no flag, no field
    job, _, _ = manifest(capsys, "-c", "roadsign_cpu_smoke.yml", "--nodes", "1", "--gpus-per-node", "0",
                         "--image", IMAGE, "--cpu", "2", "--memory", "1.5e9")
    validate(job, crd_validator)
    assert container_of(job)["resources"] == {"limits": {"cpu": "2", "memory": "1.5e9"},
                                              "requests": {"cpu": "2", "memory": "1.5e9"}}
    assert not {"nodeSelector", "tolerations", "imagePullSecrets"} & set(
        job["spec"]["paddleReplicaSpecs"]["Worker"]["template"]["spec"])
    # control: the schemas refuse a quantity the CRD's pattern does not match and a misspelt toleration field
    bad = copy.deepcopy(job)
    container_of(bad)["resources"]["requests"]["memory"] = "64 GB"
    with pytest.raises(AssertionError, match="memory"):
        validate(bad, crd_validator)
    bad = copy.deepcopy(job)
    bad["spec"]["paddleReplicaSpecs"]["Worker"]["template"]["spec"]["tolerations"] = [{"key": "a", "effects": "x"}]
    with pytest.raises(AssertionError, match="effects"):
        validate(bad, crd_validator)

@pytest.mark.parametrize("args, words", [
    (["--name", "Road_Sign"], ["not a valid PaddleJob name", "road-sign"]),
    (["--name", "9lives"], ["DNS-1035"]),
    (["--name", "a" * 60], ["too long", "63"]),
    (["--nodes", "0"], ["--nodes must be at least 1"]),
    (["--gpus-per-node", "-1"], ["0 or more"]),
    (["--net", "infiniband"], ["not a preset", "rdma"]),
    (["--namespace", "Team A"], ["not a valid namespace"]),
    (["--data-pvc", "data"], ["CLAIM:MOUNT"]),
    (["--data-pvc", "My_Data:/data"], ["PersistentVolumeClaim name"]),
    (["--output-pvc", "out:relative"], ["absolute"]),
    (["--net", "rdma"], ["RDMA devices", "--rdma-resource"]),
    (["--net", "rdma", "--rdma-resource", "hca shared"], ["extended resource name"]),
    (["--gpus-per-node", "0", "--net", "rdma", "--host-network"], ["CPU"]),
    (["--image", "has space"], ["image reference"]),
    (["-o", "TrainReader.batch_sise=4"], ["batch_size"]),
    (["--", "--nnodes", "2"], ["--nnodes is set by the manifest"]),
    (["--", "--evl"], ["--evl"]),
    (["-c", "roadsgn.yml"], ["roadsign.yml"]),
    (["--node-selector", "gpu"], ["is not KEY=VALUE"]),
    (["--node-selector", "bad key=x"], ["not a valid label key"]),
    (["--node-selector", "Example.com/gpu=x"], ["not a valid label key"]),
    (["--node-selector", "pool=" + "v" * 64], ["not a valid label value"]),
    (["--node-selector", "pool=a", "--node-selector", "pool=b"], ["given twice"]),
    (["--toleration", "gpu"], ["KEY[=VALUE]:EFFECT", "NoSchedule"]),
    (["--toleration", "gpu:Never"], ["NoExecute"]),
    (["--toleration", "=x:NoSchedule"], ["not a valid label key"]),
    (["--image-pull-secret", "My_Secret"], ["not a valid Secret name"]),
    (["--cpu", "eight"], ["not a Kubernetes quantity", "7500m"]),
    (["--cpu", "-2"], ["not a Kubernetes quantity"]),
    (["--cpu", "0"], ["less than 1m"]),
    (["--memory", "64"], ["64 bytes", "give a unit"]),
    (["--memory", "64 GB"], ["not a Kubernetes quantity"]),
])
def test_bad_input_is_exit_2_before_any_yaml(capsys, args, words):
    split = args.index("--") if "--" in args else len(args)
    base = {"-c": "roadsign.yml", "--nodes": "2", "--gpus-per-node": "1", "--image": IMAGE}
    argv = [w for flag, value in base.items() if flag not in args[:split] for w in (flag, value)] + args
    code, out, err = run(capsys, "k8s-manifest", *argv)
    assert code == 2, err
    assert out == ""  # nothing printed
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("trainctl: error: "), err
    for word in words:
        assert word in lines[0], lines[0]


def _fake_kubectl(directory: Path, script: str) -> None:
    path = directory / "kubectl"
    path.write_text("#!/bin/sh\n" + script)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)


def test_apply_pipes_the_manifest_to_kubectl(capsys, tmp_path, monkeypatch, crd_validator):
    """kubectl is a small script here (no cluster): it records its arguments and stdin."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    _fake_kubectl(bin_dir, f'echo "$@" > {tmp_path}/argv; cat > {tmp_path}/stdin; '
                           'echo "paddlejob.kubeflow.org/trainctl-roadsign created"\n')
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    args = ["-c", "roadsign.yml", "--nodes", "2", "--gpus-per-node", "1", "--image", IMAGE]
    code, out, err = run(capsys, "k8s-manifest", *args, "--apply")
    assert code == 0, err
    assert out.strip() == "paddlejob.kubeflow.org/trainctl-roadsign created"
    assert (tmp_path / "argv").read_text().split() == ["apply", "-f", "-"]
    printed, _, _ = manifest(capsys, *args)
    assert yaml.safe_load((tmp_path / "stdin").read_text()) == printed
    validate(printed, crd_validator)
    assert "kubectl logs -f trainctl-roadsign-worker-0" in err

    _fake_kubectl(bin_dir, 'echo "error: resource mapping not found for name: \\"x\\"" >&2\n'
                           'echo "ensure CRDs are installed first" >&2\nexit 1\n')
    code, out, err = run(capsys, "k8s-manifest", *args, "--apply")
    assert code == 1 and out == ""
    lines = [line for line in err.splitlines() if line.startswith("trainctl: error:")]
    assert lines == ['trainctl: error: kubectl apply failed: error: resource mapping not found for name: "x" '
                     'ensure CRDs are installed first; fix what kubectl says (context, namespace, the PaddleJob '
                     'CRD installed?) and rerun']


def test_apply_without_kubectl(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    code, out, err = run(capsys, "k8s-manifest", "-c", "roadsign.yml", "--nodes", "2", "--gpus-per-node", "1",
                         "--image", IMAGE, "--apply")
    assert code == 2 and out == "" and "kubectl, which is not on PATH" in err


def test_out_file(capsys, tmp_path, crd_validator):
    code, out, err = run(capsys, "k8s-manifest", "-c", "roadsign.yml", "--nodes", "2", "--gpus-per-node", "1",
                         "--image", IMAGE, "--out", "job.yaml")
    assert code == 0 and out == "" and "kubectl apply -f job.yaml" in err
    validate(yaml.safe_load((tmp_path / "job.yaml").read_text()), crd_validator)


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="needs kubectl")
def test_apply_with_the_real_kubectl_and_no_cluster(capsys, tmp_path, monkeypatch):
    """kubectl's own multi-line failure (no API server on a closed loopback port) becomes one line, exit 1."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    (tmp_path / "kubeconfig").write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "none",
        "clusters": [{"name": "none", "cluster": {"server": f"http://127.0.0.1:{port}"}}],
        "contexts": [{"name": "none", "context": {"cluster": "none", "user": "none"}}],
        "users": [{"name": "none", "user": {}}]}))
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "kubeconfig"))
    code, out, err = run(capsys, "k8s-manifest", "-c", "roadsign.yml", "--nodes", "2", "--gpus-per-node", "1",
                         "--image", IMAGE, "--apply")
    assert code == 1 and out == ""
    errors = [line for line in err.splitlines() if line.startswith("trainctl: error:")]
    assert len(errors) == 1 and "kubectl apply failed" in errors[0] and f"127.0.0.1:{port}" in errors[0], err
    assert "Traceback" not in err
