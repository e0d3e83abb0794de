from __future__ import annotations

import json
import shlex

import pytest
from launch_helpers import PY, context, cpu_env, cuda_env, facts, plan

from trainctl.errors import UserError
from trainctl.launch.plan import format_plan, parse_master

WORKER = [PY, "-m", "trainctl.runner.worker", "--job", "output/roadsign/job.json"]
LAUNCH = [PY, "-m", "paddle.distributed.launch"]


def test_one_gpu_runs_the_worker_directly():
    p = plan(gpus="3")
    node = p.local_node
    assert p.launcher == "direct" and p.world_size == 1
    assert node.argv == WORKER
    assert node.env["CUDA_VISIBLE_DEVICES"] == "3" and "OMP_NUM_THREADS" not in node.env
    assert node.cwd == "/home/user/project" and node.log_dir == "output/roadsign/logs"


def test_one_gpu_index_maps_through_cuda_visible_devices():
    p = plan(context(cuda_env(8, visible="4,6")), gpus="1")
    assert p.local_node.env["CUDA_VISIBLE_DEVICES"] == "6"


def test_two_gpus_use_paddle_launch_on_a_free_local_port():
    node = plan(gpus="0,1").local_node
    assert node.argv == LAUNCH + ["--master", "127.0.0.1:45678", "--devices", "0,1",
                                  "--log_dir", "output/roadsign/logs"] + WORKER
    assert node.env["OMP_NUM_THREADS"] == "32"  # 64 CPUs // 2 workers


def test_eight_gpus():
    p = plan(gpus="0,1,2,3,4,5,6,7")
    assert p.world_size == 8 and len(p.nodes) == 1
    argv = p.local_node.argv
    assert argv[argv.index("--devices") + 1] == "0,1,2,3,4,5,6,7"
    assert p.local_node.env["OMP_NUM_THREADS"] == "8"
    assert "CUDA_VISIBLE_DEVICES" not in p.local_node.env  # launch's --devices index into it


def test_cpu_processes():
    p = plan(context(cpu_env(cpus=2)), nproc=2)
    node = p.local_node
    assert p.device.kind == "cpu" and p.world_size == 2 and p.net.name == "gloo"
    assert node.argv == LAUNCH + ["--master", "127.0.0.1:45678", "--nproc_per_node", "2",
                                  "--log_dir", "output/roadsign/logs"] + WORKER
    assert node.env["OMP_NUM_THREADS"] == "1"
    assert "max(1, 2 // 2) = 1" in p.omp_rule


def test_user_omp_setting_wins():
    p = plan(context(environ={"OMP_NUM_THREADS": "7"}), gpus="0,1")
    assert "OMP_NUM_THREADS" not in p.local_node.env and "kept" in p.omp_rule
    p = plan(gpus="0,1", env=("OMP_NUM_THREADS=3",))
    assert p.local_node.env["OMP_NUM_THREADS"] == "3"


@pytest.mark.parametrize("rank", [0, 1])
def test_two_nodes(rank):
    ctx = context(host_facts=facts("ib_peermem"), local=("10.0.0.1",) if rank == 0 else ("10.0.0.2",))
    p = plan(ctx, gpus="0,1,2,3", nnodes=2, node_rank=rank, master="10.0.0.1:8090", net="rdma")
    assert p.world_size == 8 and [n.rank for n in p.nodes] == [0, 1]
    me = p.local_node
    assert me.rank == rank
    host = "10.0.0.1" if rank == 0 else "10.0.0.2"  # rank 0 announces the master address; others the route source
    assert me.argv == LAUNCH + ["--master", "10.0.0.1:8090", "--nnodes", "2", "--rank", str(rank), "--host", host,
                                "--devices", "0,1,2,3", "--log_dir", f"output/roadsign/logs/node{rank}"] + WORKER
    assert me.env["NCCL_IB_HCA"] == "mlx5_0:1,mlx5_1:1" and me.env["NCCL_NET_GDR_LEVEL"] == "0"
    other = p.nodes[1 - rank]
    assert other.argv[other.argv.index("--rank") + 1] == str(1 - rank)


def test_four_nodes_commands_differ_only_in_rank_and_host():
    p = plan(context(local=("10.0.0.1",)), gpus="0,1", nnodes=4, node_rank=0, master="10.0.0.1:8090", net="tcp")
    assert p.world_size == 8 and len(p.nodes) == 4
    for node in p.nodes:
        argv = node.argv
        assert argv[argv.index("--rank") + 1] == str(node.rank)
        assert argv[argv.index("--nnodes") + 1] == "4"
        assert node.env["NCCL_IB_DISABLE"] == "1" and node.env["NCCL_SOCKET_IFNAME"] == "eth0"
    assert p.nodes[0].host == "10.0.0.1" and all(n.host is None for n in p.nodes[1:])
    assert sum(n.local for n in p.nodes) == 1


def test_fleetrun():
    node = plan(gpus="0,1", launcher="fleetrun").local_node
    assert node.argv[:1] == ["/opt/py/bin/fleetrun"]
    assert node.argv[1:] == ["--master", "127.0.0.1:45678", "--devices", "0,1",
                             "--log_dir", "output/roadsign/logs"] + WORKER


def test_legacy_ips_mode():
    p = plan(context(local=("10.0.0.2",)), gpus="0,1", ips="10.0.0.1,10.0.0.2")
    assert p.nnodes == 2 and p.node_rank == 1
    argv = p.local_node.argv
    assert argv[3:7] == ["--ips", "10.0.0.1,10.0.0.2", "--host", "10.0.0.2"] and "--master" not in argv
    with pytest.raises(UserError, match="none of --ips"):
        plan(context(local=("10.9.9.9",)), gpus="0,1", ips="10.0.0.1,10.0.0.2")
    with pytest.raises(UserError, match="give one"):
        plan(gpus="0", ips="10.0.0.1,10.0.0.2", master="10.0.0.1:1")


def test_node_validation():
    with pytest.raises(UserError, match="needs --master"):
        plan(gpus="0", nnodes=2)
    with pytest.raises(UserError, match="not HOST:PORT"):
        plan(gpus="0", nnodes=2, master="10.0.0.1")
    with pytest.raises(UserError, match="out of range"):
        plan(gpus="0", nnodes=2, node_rank=2, master="10.0.0.1:8090")
    with pytest.raises(UserError, match="already in use"):
        plan(context(port_busy=True), gpus="0", nnodes=2, master="10.0.0.1:8090")
    with pytest.raises(UserError, match="not an address of this host"):
        plan(context(local=()), gpus="0", nnodes=2, master="10.0.0.1:8090")
    # the same problems of this host become warnings in a dry run
    p = plan(context(local=(), strict=False), gpus="0", nnodes=2, master="10.0.0.1:8090", net="tcp")
    assert any("not an address of this host" in w for w in p.warnings)


@pytest.mark.parametrize("text,expected", [("10.0.0.1:8090", ("10.0.0.1", 8090)), ("node0:1", ("node0", 1)),
                                           ("[fe80::1]:80", ("fe80::1", 80))])
def test_parse_master(text, expected):
    assert parse_master(text) == expected


@pytest.mark.parametrize("bad", ["10.0.0.1", "10.0.0.1:", ":80", "h:0", "h:70000", "h:x"])
def test_parse_master_bad(bad):
    with pytest.raises(UserError):
        parse_master(bad)


def test_stale_environment_is_removed_and_listed():
    environ = {"PADDLE_TRAINER_ID": "3", "PADDLE_MASTER": "1.2.3.4:1", "PADDLE_TRAINER_ENDPOINTS": "a:1,b:2",
               "POD_IP": "1.2.3.4", "FLAGS_selected_gpus": "5", "PATH": "/bin", "FLAGS_eager_delete": "1"}
    p = plan(context(environ=environ), gpus="0,1")
    node = p.local_node
    assert node.unset == ["FLAGS_selected_gpus", "PADDLE_MASTER", "PADDLE_TRAINER_ENDPOINTS",
                          "PADDLE_TRAINER_ID", "POD_IP"]
    assert shlex.split(node.shell_command())[:3] == ["env", "-u", "FLAGS_selected_gpus"]
    assert "removed from the environment" in format_plan(p)


def test_secrets_are_masked_in_output():
    p = plan(gpus="0,1", env=("HF_TOKEN=abc123", "MY_API_KEY=k", "WANDB_PASSWORD=p", "NCCL_P2P_DISABLE=1"))
    assert p.local_node.env["HF_TOKEN"] == "abc123"  # the workers get the real value
    text = format_plan(p)
    data = json.dumps(p.to_dict())
    for secret in ("abc123", "=k ", "WANDB_PASSWORD=p"):
        assert secret not in text and secret not in data
    assert "HF_TOKEN=***" in text and "NCCL_P2P_DISABLE=1" in text
    assert p.to_dict()["nodes"][0]["env"]["MY_API_KEY"] == "***"


def test_shell_command_is_quoted_and_round_trips():
    p = plan(gpus="0,1", env=("NCCL_SOCKET_IFNAME=^docker,lo", "ODD=a b'c"))
    node = p.local_node
    words = shlex.split(node.shell_command(mask=False))
    assert "NCCL_SOCKET_IFNAME=^docker,lo" in words and "ODD=a b'c" in words
    assert words[-len(node.argv):] == node.argv
    multi = node.shell_command(mask=False, multiline=True)
    assert multi.count("\\\n") == 2 and shlex.split(multi.replace("\\\n", " ")) == words


def test_done_when_plan(monkeypatch):
    """The issue's check: 2 nodes × 4 GPUs over RDMA, planned on a host with no GPU and no HCA."""
    ctx = context(cpu_env(), facts("no_hca"), strict=False, local=())
    p = plan(ctx, gpus="0,1,2,3", nnodes=2, node_rank=0, master="10.0.0.1:8090", net="rdma", hca="mlx5_0:1,mlx5_1:1")
    text = format_plan(p)
    node0 = shlex.split(p.nodes[0].shell_command())
    env_words = [w for w in node0 if "=" in w and not w.startswith("-")][:6]
    assert "NCCL_IB_HCA=mlx5_0:1,mlx5_1:1" in env_words and "NCCL_IB_DISABLE=0" in env_words
    launch_args = node0[node0.index("paddle.distributed.launch") + 1:node0.index("trainctl.runner.worker") - 2]
    assert launch_args == ["--master", "10.0.0.1:8090", "--nnodes", "2", "--rank", "0", "--host", "10.0.0.1",
                           "--devices", "0,1,2,3", "--log_dir", "output/roadsign/logs/node0"]
    assert "CPU-only build" in text and "warning:" in text  # planned anyway, with the reason shown
    assert "node 1" in text and "--rank 1" in text


def test_to_dict_is_json():
    p = plan(gpus="0,1")
    data = json.loads(json.dumps(p.to_dict()))
    assert data["launcher"] == "paddle" and data["world_size"] == 2
    assert data["nodes"][0]["argv"] == p.local_node.argv
    assert data["nodes"][0]["command"] == p.local_node.shell_command()
