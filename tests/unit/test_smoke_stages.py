"""`trainctl smoke` without paddle: sizes, bandwidth formulas, transport parsing, warnings,
the stage commands (what each stage forwards, per placement), and the printed report."""

from __future__ import annotations

import json
import shlex
import sys

import pytest

from launch_helpers import cli_run
from trainctl.errors import UserError
from trainctl.core import hostinfo
from trainctl.launch.netpresets import HostFacts
from trainctl.smoke import comm, report
from trainctl.smoke.stages import Flags, Layout, SmokeOptions, Stage, plan_stages


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch):
    import os

    for key in list(os.environ):
        if key.startswith(("NCCL_", "GLOO_", "SLURM_", "PADDLE_")):
            monkeypatch.delenv(key)


run = cli_run  # (exit code, stdout, stderr) of `trainctl ARGV` run in this process


# ------------------------------------------------------------------ sizes and formulas


def test_sizes_double_from_min_to_max_like_nccl_tests():
    assert comm.parse_sizes("8K..256M") == [8192 << i for i in range(16)]
    assert comm.parse_sizes("1M,8K,1M") == [8192, 1 << 20]
    assert comm.parse_sizes("100") == [100] and comm.parse_sizes("10") == [8]  # whole float32 elements
    assert [comm.human_size(s) for s in (8192, 1 << 20, 256 << 20, 1 << 30, 100)] == [
        "8 KB", "1 MB", "256 MB", "1 GB", "100 B"]


@pytest.mark.parametrize("bad", ["8X", "..", "1M..8K", "2", "", "K"])
def test_bad_sizes_are_one_line_user_errors(bad):
    with pytest.raises(UserError) as info:
        comm.parse_sizes(bad)
    assert "--comm-sizes" in info.value.one_line()


def test_bus_bandwidth_is_nccl_tests_all_reduce_factor():
    assert comm.bus_bandwidth(10.0, 2) == pytest.approx(10.0)  # 2(n-1)/n = 1
    assert comm.bus_bandwidth(10.0, 8) == pytest.approx(17.5)  # 2*7/8
    assert comm.bus_bandwidth(10.0, 1) == 0.0


# ------------------------------------------------------------------ transport and warnings

NCCL_IB = """\
node1:123:130 [0] NCCL INFO NET/IB : Using [0]mlx5_0:1/IB [1]mlx5_1:1/IB ; OOB ib0:10.0.0.1<0>
node1:123:130 [0] NCCL INFO Using network IB
node1:123:131 [0] NCCL INFO Channel 00/0 : 1[0] -> 0[0] [receive] via NET/IB/0/GDRDMA
node1:123:131 [0] NCCL INFO Channel 00/0 : 0[0] -> 1[1] via P2P/IPC
node1:123:131 [0] NCCL INFO Channel 01/0 : 0[0] -> 1[1] via P2P/IPC
"""
NCCL_SOCKET = """\
node1:123:130 [0] NCCL INFO NET/Socket : Using [0]eth0:10.0.0.1<0>
node1:123:130 [0] NCCL INFO Using network Socket
node1:123:131 [0] NCCL INFO Channel 00/0 : 1[0] -> 0[0] [receive] via NET/Socket/0
"""


def test_nccl_transport_lines():
    ib = comm.nccl_transport(NCCL_IB.splitlines())
    assert (ib.network, ib.devices, ib.gdrdma) == ("IB", "[0]mlx5_0:1/IB [1]mlx5_1:1/IB", True)
    assert ib.paths == ["NET/IB/0/GDRDMA", "P2P/IPC"]
    sock = comm.nccl_transport(NCCL_SOCKET.splitlines())
    assert (sock.network, sock.devices, sock.gdrdma) == ("Socket", "[0]eth0:10.0.0.1<0>", False)
    assert "NET/Socket" in sock.describe()
    assert "no NCCL_DEBUG" in comm.nccl_transport(["plain log line"]).describe()


def test_gloo_transport_names_the_interface():
    assert comm.gloo_transport({"GLOO_SOCKET_IFNAME": "eth1"}).describe().startswith("gloo over TCP (eth1;")
    assert "unset" in comm.gloo_transport({}).describe()


def _facts(rate="100 Gb/sec (4X EDR)", speed=25000):
    return HostFacts(
        interfaces=[hostinfo.Interface("eth0", "up", False, 1500, speed)], default_iface="eth0",
        ib_ports=[hostinfo.IBPort("mlx5_0", 1, "ACTIVE", "InfiniBand", rate)])


def _results(peak):
    return [{"bytes": 8192, "busbw_gbps": peak / 100}, {"bytes": 1 << 28, "busbw_gbps": peak}]


def test_expected_link_from_the_preset_and_sys():
    ib = comm.expected_link("rdma", {"NCCL_IB_HCA": "mlx5_0:1"}, _facts(), nnodes=2)
    assert ib.name == "InfiniBand mlx5_0:1 100 Gb/s" and ib.gbytes_per_s == pytest.approx(12.5)
    eth = comm.expected_link("tcp", {"NCCL_SOCKET_IFNAME": "eth0"}, _facts(), nnodes=2)
    assert eth.name == "eth0 25000 Mb/s" and eth.gbytes_per_s == pytest.approx(3.125)
    assert comm.expected_link("rdma", {}, _facts(), nnodes=1) is None  # one node: no network link
    assert comm.expected_link("tcp", {}, _facts(speed=None), nnodes=2) is None  # speed unknown (virtual link)


def test_sockets_speed_with_rdma_preset_warns_twice():
    link = comm.expected_link("rdma", {}, _facts(), nnodes=2)
    transport = comm.nccl_transport(NCCL_SOCKET.splitlines())
    warnings = comm.judge(_results(1.1), transport, "rdma", link)
    assert len(warnings) == 2
    assert "NCCL uses sockets (NET/Socket) although --net rdma" in warnings[0]
    assert "far below the InfiniBand mlx5_0:1 100 Gb/s link" in warnings[1] and "fell back to sockets" in warnings[1]


def test_healthy_figures_do_not_warn_and_gpudirect_needs_gdrdma():
    link = comm.expected_link("rdma", {}, _facts(), nnodes=2)
    assert comm.judge(_results(11.0), comm.nccl_transport(NCCL_IB.splitlines()), "rdma", link) == []
    no_gdr = comm.nccl_transport(NCCL_IB.replace("/GDRDMA", "").splitlines())
    warnings = comm.judge(_results(11.0), no_gdr, "gpudirect", link)
    assert len(warnings) == 1 and "GDRDMA" in warnings[0]


def test_probe_launch_options_take_the_next_port_and_nccl_debug():
    from trainctl.launch.plan import LaunchOptions

    base = LaunchOptions(nnodes=2, master="10.0.0.1:8090")
    assert comm.comm_launch_options(base, "cpu").master == "10.0.0.1:8091"
    assert comm.comm_launch_options(base, "gpu").nccl_debug is True
    single = LaunchOptions(nproc=2)
    assert comm.comm_launch_options(single, "cpu") == single


def test_probe_table_and_report():
    results = [{"bytes": 8192, "count": 2048, "iters": 20, "time_us": 100.0, "algbw_gbps": 0.08192,
                "busbw_gbps": 0.08192, "correct": True},
               {"bytes": 1 << 20, "count": 262144, "iters": 20, "time_us": 500.0, "algbw_gbps": 2.097,
                "busbw_gbps": 2.097, "correct": False}]
    text = comm.format_report({"world_size": 2, "placement": "1 node x 2 CPU processes", "results": results,
                               "transport": {"text": "gloo over TCP (eth0; GLOO_SOCKET_IFNAME)"},
                               "link": None, "warnings": ["slow"]})
    lines = text.splitlines()
    assert lines[0].startswith("all-reduce (sum, float32) over 2 ranks (1 node x 2 CPU processes); gloo")
    assert lines[2].split()[:2] == ["size", "count"]
    assert lines[4].split() == ["8", "KB", "2048", "20", "100.0", "0.082", "0.082", "ok"]
    assert lines[5].split()[-1] == "WRONG" and lines[-1] == "warning: slow"


# ------------------------------------------------------------------ stages


def _stages(flags=Flags(["--nproc", "2"], ["--nproc", "2"]), world=2, device="cpu", rank=0, nnodes=1, **kw):
    sopts = SmokeOptions(config="roadsign_cpu_smoke.yml", overrides=["use_gpu=false"], iters=3, **kw)
    layout = Layout.make(None, "roadsign_cpu_smoke", rank, nnodes)
    return plan_stages(sopts, layout, flags, world, device, {"CUDA_VISIBLE_DEVICES": "3"})


def test_each_stage_runs_the_real_command_with_trains_flags():
    stages = {s.name: s for s in _stages(comm=True, sample_data=True)}
    assert list(stages) == ["comm", "train", "eval", "export", "infer-cpu"]
    train = stages["train"].argv
    assert train[:4] == [sys.executable, "-m", "trainctl", "train"]
    assert train[4:] == ["-c", "roadsign_cpu_smoke.yml", "-o", "use_gpu=false", "-o", "epoch=1", "-o",
                         "trainctl.max_iters=3", "--output", "output/smoke/roadsign_cpu_smoke/train", "--sample-data",
                         "--nproc", "2"]
    assert stages["eval"].argv[3:] == ["eval", "-c", "roadsign_cpu_smoke.yml", "-o", "use_gpu=false", "--weights",
                                       "output/smoke/roadsign_cpu_smoke/train/model_final", "--output",
                                       "output/smoke/roadsign_cpu_smoke/eval", "--nproc", "2"]
    assert "--nproc" not in stages["export"].argv
    assert stages["comm"].argv[3:6] == ["smoke", "--comm-only", "--json"] and stages["comm"].argv[-2:] == ["--nproc", "2"]
    infer = stages["infer-cpu"]
    assert "--benchmark" in infer.argv and "--json" in infer.argv and infer.env == {}
    assert infer.report == "output/smoke/roadsign_cpu_smoke/logs/infer-cpu.json"


def test_gpu_placement_benchmarks_on_cpu_and_on_the_gpu():
    stages = {s.name: s for s in _stages(device="gpu")}
    assert stages["infer-cpu"].env == {"CUDA_VISIBLE_DEVICES": ""}
    assert stages["infer-gpu"].env == {"CUDA_VISIBLE_DEVICES": "3"}
    assert stages["infer-gpu"].command.startswith("CUDA_VISIBLE_DEVICES=3 ")


def test_one_process_has_no_probe_and_other_nodes_leave_the_weights_to_node0():
    assert _stages(world=1, comm=True)[0].status == "n/a"
    node1 = {s.name: s for s in _stages(rank=1, nnodes=2, comm=True)}
    assert [n for n, s in node1.items() if s.status == "n/a"] == ["eval", "export", "infer-cpu"]
    assert node1["eval"].log == "output/smoke/roadsign_cpu_smoke/node1/logs/eval.log"
    assert node1["train"].argv[node1["train"].argv.index("--output") + 1] == "output/smoke/roadsign_cpu_smoke/train"
    assert [s.name for s in _stages(comm_only=True)] == ["comm"]


def _dry_run_json(capsys, *argv):
    code, out, err = run(capsys, "smoke", *argv, "--dry-run=json")
    assert code == 0, err
    return {s["name"]: s for s in json.loads(out)["stages"]}


def test_cli_forwards_placement_to_train_and_probe_and_devices_to_eval(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    stages = _dry_run_json(capsys, "-c", "roadsign_cpu_smoke.yml", "--comm", "--comm-sizes", "8K..1M",
                           "--nnodes", "2", "--node-rank", "0", "--master", "127.0.0.1:8090", "--net", "tcp",
                           "--ifname", "lo", "--device", "cpu", "-o", "worker_num=0")
    node = ["--nnodes", "2", "--node-rank", "0", "--master", "127.0.0.1:8090"]
    for name in ("train", "comm"):
        argv = stages[name]["argv"]
        assert all(w in argv for w in node + ["--net", "tcp", "--ifname", "lo", "--device", "cpu"]), argv
    assert "8K..1M" in stages["comm"]["argv"]
    evaluation = stages["eval"]["argv"]
    assert "--nnodes" not in evaluation and "--master" not in evaluation
    assert evaluation[-6:] == ["--device", "cpu", "--net", "tcp", "--ifname", "lo"]
    assert ["-o", "worker_num=0"] == stages["export"]["argv"][6:8]


def test_cli_forwards_ppdet_to_every_stage_that_imports_ppdet(capsys, tmp_path, monkeypatch):
    """export runs ppdet in trainctl's own process: --ppdet must reach it as well as train and eval."""
    tree = tmp_path / "PaddleDetection"
    (tree / "ppdet").mkdir(parents=True)
    (tree / "ppdet" / "__init__.py").write_text("")
    (tree / "configs").mkdir()
    monkeypatch.chdir(tmp_path)
    stages = _dry_run_json(capsys, "-c", "roadsign_cpu_smoke.yml", "--device", "cpu", "--ppdet", str(tree))
    for name in ("train", "eval", "export"):
        argv = stages[name]["argv"]
        assert argv[argv.index("--ppdet") + 1] == str(tree), (name, argv)
    assert "--ppdet" not in stages["infer-cpu"]["argv"]  # an exported model needs paddle only


def test_cli_node1_dry_run_and_comm_only(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    stages = _dry_run_json(capsys, "-c", "roadsign_cpu_smoke.yml", "--nnodes", "2", "--node-rank", "1",
                           "--master", "10.9.9.9:8090", "--host", "127.0.0.1", "--device", "cpu", "--output", "s")
    assert stages["eval"]["status"] == "n/a" and stages["eval"]["log"] == "s/node1/logs/eval.log"
    code, out, _ = run(capsys, "smoke", "--comm-only", "--nproc", "2", "--device", "cpu", "--dry-run")
    assert code == 0 and not any(line.startswith("train:") for line in out.splitlines())
    assert "-m paddle.distributed.launch" in out and "trainctl.runner.worker --job output/smoke/probe/comm/job.json" in out


def test_cli_needs_a_config_unless_comm_only(capsys):
    code, _, err = run(capsys, "smoke", "--nproc", "2")
    assert code == 2 and "trainctl smoke needs -c CONFIG" in err and "--comm-only" in err


def test_hostfile_fans_the_smoke_itself_out(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, out, err = run(capsys, "smoke", "-c", "roadsign_cpu_smoke.yml", "--hosts", "10.0.0.1,10.0.0.2",
                         "--device", "cpu", "--comm", "--net", "tcp", "--dry-run=json")
    assert code == 0, err
    nodes = json.loads(out)["nodes"]
    for rank, node in enumerate(nodes):
        argv = node["argv"]
        assert argv[argv.index("trainctl") + 1] == "smoke" and "--comm" in argv
        assert argv[argv.index("--node-rank") + 1] == str(rank) and argv[argv.index("--nnodes") + 1] == "2"
        assert shlex.join(["--net", "tcp"]) in shlex.join(argv)


# ------------------------------------------------------------------ the printed report


def test_failure_shows_the_command_and_log_tail_and_later_stages_skipped():
    stages = [Stage("train", ["python", "-m", "trainctl", "train"], status="pass", seconds=3.0, detail="2 iterations"),
              Stage("export", ["python", "-m", "trainctl", "export"], log="logs/export.log", status="fail",
                    seconds=4.0, reason="exit 1: export failed: boom", tail=["Traceback", "IndexError: boom"]),
              Stage("infer-cpu", ["x"], status="skipped", reason="export failed")]
    env = {"os": "Linux", "python": "3.11", "trainctl": "0.1.0", "paddle": "3.3.1", "paddle_commit": "abc",
           "paddle_distribution": "paddlepaddle", "cuda": None, "paddledet": "2.6.0", "driver": None, "gpus": [],
           "cpu_model": "Xeon", "cpu_cores": 2, "device": "cpu (1 process per node)", "nnodes": 1, "world_size": 1,
           "network": "gloo", "omp_num_threads": None}
    text = report.format_text({"title": "trainctl smoke x", "environment": env, "performance": {"train": None, "infer": {}},
                               "files": {"json": "s.json", "text": "s.txt", "logs": "logs"}}, stages, None)
    lines = text.splitlines()
    assert [line.split()[:2] for line in lines[4:7]] == [["train", "pass"], ["export", "FAIL"], ["infer-cpu", "skipped"]]
    assert "export failed: exit 1: export failed: boom" in lines
    assert "  command: python -m trainctl export" in lines
    assert "  log: logs/export.log (last 2 lines)" in lines and "  | IndexError: boom" in lines
    assert "  paddle      3.3.1 (commit abc, paddlepaddle), CPU build" in lines


def test_nvidia_driver_version_from_proc(tmp_path):
    path = tmp_path / "version"
    path.write_text("NVRM version: NVIDIA UNIX x86_64 Kernel Module  535.104.05  Sat Aug 19 01:15:15 UTC 2023\n")
    assert report.nvidia_driver(str(path)) == "535.104.05"
    assert report.nvidia_driver(str(tmp_path / "missing")) is None
