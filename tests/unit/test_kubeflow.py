"""`--launcher kubeflow` and PaddleJob detection: the operator's variables -> node flags (no pods, no paddle)."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from trainctl.cli import main
from trainctl.cluster.kubeflow import apply_kubeflow, pod_index, placement_from_env
from trainctl.cluster.options import kubeflow_may_apply
from trainctl.errors import UserError
from trainctl.launch.plan import LaunchOptions

BASE = LaunchOptions(device="cpu", gpus=None, nproc=None, launcher="paddle", nnodes=1, node_rank=0, master=None,
                     host=None, ips=None)
# what the training operator sets (release-1.9 envvar.go) in PaddleJob "rs" with 3 Worker replicas
WORKER0 = {"PYTHONUNBUFFERED": "1", "PADDLE_JOB_ID": "rs", "PADDLE_NNODES": "3", "POD_IP_DUMMY": "10.4.0.7",
           "PADDLE_MASTER": "10.4.0.7:37777"}
WORKER2 = {"PYTHONUNBUFFERED": "1", "PADDLE_JOB_ID": "rs", "PADDLE_NNODES": "3", "PADDLE_MASTER": "rs-worker-0:37777"}
ADDRESSES = {"rs-worker-0": "10.4.0.7", "rs-worker-2": "10.4.1.9"}  # the cluster DNS and the pod's /etc/hosts


def resolve(name):
    try:
        return ADDRESSES[name]
    except KeyError:
        raise OSError(f"cannot resolve {name}") from None


def no_route(host):
    raise AssertionError("the route is the last resort")


def test_pod_index_only_for_the_jobs_workers():
    assert pod_index("rs", "rs-worker-12") == 12
    for name in ("rs-worker-", "rs-master-0", "rs2-worker-0", "rs-worker-1a", "x-rs-worker-1", "node7"):
        assert pod_index("rs", name) is None, name


def test_placement_of_each_worker():
    p0 = placement_from_env(WORKER0, "rs-worker-0")
    assert (p0.job, p0.index, p0.nnodes, p0.master, p0.pod_from) == ("rs", 0, 3, "10.4.0.7:37777", "the hostname")
    p2 = placement_from_env(WORKER2, "rs-worker-2")
    assert (p2.index, p2.master_host, p2.master_port) == (2, "rs-worker-0", 37777)
    # hostNetwork: the hostname is the node's; the pod name comes from the downward API
    p1 = placement_from_env(dict(WORKER2, TRAINCTL_POD_NAME="rs-worker-1"), "gpu-node-17")
    assert (p1.index, p1.pod, p1.pod_from) == (1, "rs-worker-1", "TRAINCTL_POD_NAME")


@pytest.mark.parametrize("env, hostname, words", [
    ({k: v for k, v in WORKER2.items() if k != "PADDLE_NNODES"}, "rs-worker-2", ["PADDLE_NNODES is not set"]),
    (dict(WORKER2, PADDLE_TRAINER_NUM="1"), "rs-worker-2", ["parameter-server mode", "only Worker replicas"]),
    (dict(WORKER2, PADDLE_NNODES="two"), "rs-worker-2", ["PADDLE_NNODES='two'"]),
    (dict(WORKER2, PADDLE_MASTER="rs-worker-0"), "rs-worker-2", ["PADDLE_MASTER", "HOST:PORT"]),
    (WORKER2, "gpu-node-17", ["'gpu-node-17' (the hostname) is not rs-worker-<index>", "TRAINCTL_POD_NAME"]),
    (WORKER2, "rs-worker-3", ["index 3", "PADDLE_NNODES=3"]),
])
def test_placement_errors_name_the_variable_and_the_fix(env, hostname, words):
    with pytest.raises(UserError) as info:
        placement_from_env(env, hostname)
    line = info.value.one_line()
    assert "; " in line
    for word in words:
        assert word in line


def test_apply_fills_the_node_flags_and_keeps_the_variables():
    kwargs = apply_kubeflow(replace(BASE, launcher="kubeflow"), env=WORKER2, hostname="rs-worker-2", resolve=resolve,
                            route=no_route)
    assert {k: getattr(kwargs, k) for k in ("launcher", "nnodes", "node_rank", "master", "host")} == {
        "launcher": "paddle", "nnodes": 3, "node_rank": 2, "master": "10.4.0.7:37777", "host": "10.4.1.9"}
    assert kwargs.keep_env == ("PADDLE_JOB_ID", "PADDLE_MASTER", "PADDLE_NNODES")
    placement = kwargs.placement
    assert placement["kind"] == "kubeflow" and placement["index"] == 2 and placement["paddle_master"] == "rs-worker-0:37777"
    assert dict(placement["rows"])["this pod"].startswith("--host 10.4.1.9 (from the pod name rs-worker-2")
    # worker 0: its own address is the master's
    kwargs = apply_kubeflow(replace(BASE, launcher="kubeflow"), env=WORKER0, hostname="rs-worker-0", resolve=resolve,
                            route=no_route)
    assert (kwargs.node_rank, kwargs.master, kwargs.host) == (0, "10.4.0.7:37777", "10.4.0.7")
    # the downward API's pod IP wins; an unresolvable master name is passed on (paddle launch waits for it)
    env = dict(WORKER2, PADDLE_MASTER="late-dns:37777", TRAINCTL_POD_IP="10.4.9.9")
    env["PADDLE_JOB_ID"] = "rs"
    kwargs = apply_kubeflow(replace(BASE, launcher="kubeflow"), env=env, hostname="rs-worker-2", resolve=resolve,
                            route=no_route)
    assert (kwargs.master, kwargs.host) == ("late-dns:37777", "10.4.9.9")
    assert "not resolvable yet" in dict(kwargs.placement["rows"])["master"]


def test_apply_falls_back_to_the_route_to_the_master():
    kwargs = apply_kubeflow(replace(BASE, launcher="kubeflow"), env=dict(WORKER2, TRAINCTL_POD_NAME="rs-worker-1"),
                            hostname="gpu-node-17", resolve=resolve, route=lambda host: "10.4.3.3")
    assert kwargs.host == "10.4.3.3" and kwargs.node_rank == 1


def test_detection_and_its_opt_outs():
    detected = apply_kubeflow(BASE, env=WORKER2, hostname="rs-worker-2", resolve=resolve, route=no_route,
                              launcher_given=False)
    assert detected.nnodes == 3 and "detected from" in detected.placement["title"]
    # --launcher given (e.g. paddle) or node flags given: the user decides, nothing changes
    assert apply_kubeflow(BASE, env=WORKER2, hostname="rs-worker-2", launcher_given=True) == BASE
    by_hand = replace(BASE, nnodes=2, master="10.9.9.9:1")
    assert apply_kubeflow(by_hand, env=WORKER2, hostname="rs-worker-2", launcher_given=False) == by_hand
    # detected but not placeable: an error (training alone would be worse), with the opt-out
    with pytest.raises(UserError) as info:
        apply_kubeflow(BASE, env=WORKER2, hostname="laptop", launcher_given=False)
    assert "--launcher paddle to ignore them" in info.value.one_line()
    with pytest.raises(UserError, match="drop --nnodes"):
        apply_kubeflow(replace(BASE, launcher="kubeflow", nnodes=2), env=WORKER2, hostname="rs-worker-2")
    with pytest.raises(UserError, match="PADDLE_JOB_ID PADDLE_MASTER PADDLE_NNODES are not set"):
        apply_kubeflow(replace(BASE, launcher="kubeflow"), env={}, hostname="rs-worker-2")


@pytest.mark.parametrize("kwargs", [BASE, replace(BASE, launcher="fleetrun"), replace(BASE, launcher="slurm"),
                                    replace(BASE, nnodes=2, master="1.2.3.4:5")])
@pytest.mark.parametrize("env", [{}, {"PADDLE_MASTER": "1.2.3.4:5", "PADDLE_NNODES": "2"},
                                 {"PADDLE_JOB_ID": "x", "PADDLE_TRAINER_ID": "1"}])
def test_skipping_the_kubeflow_layer_is_exactly_its_no_op(kwargs, env):
    """`kubeflow_may_apply` False (the CLI then skips the import) only where apply_kubeflow changes nothing."""
    assert not kubeflow_may_apply(kwargs, env)
    assert apply_kubeflow(kwargs, env=env, hostname="rs-worker-0", launcher_given=False) == kwargs


def run(capsys, *argv):
    with pytest.raises(SystemExit) as exit_info:
        main(list(argv))
    out, err = capsys.readouterr()
    return exit_info.value.code, out, err


@pytest.fixture
def pod_env(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    for key, value in dict(WORKER2, TRAINCTL_POD_NAME="rs-worker-2", TRAINCTL_POD_IP="10.4.1.9").items():
        monkeypatch.setenv(key, value)


@pytest.mark.parametrize("command", ["train", "eval"])
def test_dry_run_shows_the_mapping(capsys, pod_env, command):
    code, out, err = run(capsys, command, "-c", "roadsign.yml", "--launcher", "kubeflow", "--dry-run")
    assert code == 0, err
    assert "Kubeflow PaddleJob rs, --launcher kubeflow:" in out
    assert "rs-worker-2 (TRAINCTL_POD_NAME): node rank 2 of 3" in out
    assert "--master rs-worker-0:37777 --nnodes 3 --rank 2 --host 10.4.1.9" in out
    assert "removed from the environment" not in out  # the operator's variables are this run's input
    assert "PaddleJob rs: pod rs-worker-2 is node 2 of 3" in err


def test_dry_run_json_and_detection(capsys, pod_env):
    code, out, err = run(capsys, "train", "-c", "roadsign.yml", "--dry-run=json")  # no --launcher: detected
    assert code == 0, err
    plan = json.loads(out)
    assert (plan["nnodes"], plan["node_rank"]) == (3, 2)
    placement = plan["placement"]
    assert placement["kind"] == "kubeflow" and placement["pod"] == "rs-worker-2" and placement["host"] == "10.4.1.9"
    assert placement["kept"] == ["PADDLE_JOB_ID", "PADDLE_MASTER", "PADDLE_NNODES"]
    local = [n for n in plan["nodes"] if n["local"]][0]
    assert not set(placement["kept"]) & set(local["unset"])


def test_stale_paddlejob_variables_outside_kubeflow_mode_name_the_case_and_the_flag(capsys, pod_env):
    code, out, err = run(capsys, "train", "-c", "roadsign.yml", "--launcher", "paddle", "--dry-run")
    assert code == 0, err
    assert "Kubeflow PaddleJob rs" not in out and "nodes       1" in out
    removed = out.split("removed from the environment")[1].splitlines()[1].split()
    assert {"PADDLE_JOB_ID", "PADDLE_MASTER", "PADDLE_NNODES"} <= set(removed)
    warning = [line for line in out.splitlines() if line.startswith("warning: removed PADDLE_JOB_ID")]
    assert warning and "Kubeflow PaddleJob" in warning[0] and "--launcher kubeflow" in warning[0]


def test_a_one_pod_job_removes_the_variables_without_the_warning(capsys, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    for key, value in {"PADDLE_JOB_ID": "solo", "PADDLE_NNODES": "1", "PADDLE_MASTER": "10.4.0.7:37777",
                       "TRAINCTL_POD_NAME": "solo-worker-0"}.items():
        monkeypatch.setenv(key, value)
    code, out, err = run(capsys, "train", "-c", "roadsign.yml", "--device", "cpu", "--nproc", "2", "--dry-run=json")
    assert code == 0, err
    plan = json.loads(out)
    assert plan["nnodes"] == 1 and plan["placement"]["index"] == 0 and plan["placement"]["kept"] == []
    local = [n for n in plan["nodes"] if n["local"]][0]
    assert {"PADDLE_JOB_ID", "PADDLE_MASTER", "PADDLE_NNODES"} <= set(local["unset"])  # paddle launch: own master
    assert not any("PaddleJob" in w for w in plan["warnings"])


def test_kubeflow_and_a_hostfile_are_two_ways(capsys, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    code, out, err = run(capsys, "train", "-c", "roadsign.yml", "--hosts", "10.0.0.1,10.0.0.2", "--launcher",
                         "kubeflow", "--dry-run")
    assert code == 2 and "--launcher kubeflow and --hostfile/--hosts are two ways" in err
