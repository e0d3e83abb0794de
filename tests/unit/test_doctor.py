"""doctor without running paddle: compatibility table, version parsing, fixture /sys trees, crash handling."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
from click.testing import CliRunner

from trainctl import doctor
from trainctl.doctor import probes
from trainctl.cli import cli


@pytest.mark.parametrize(
    "paddle,ppdet,python,verdict",
    [
        ("3.3.1", "2.6.0", "3.11", "shims"),
        ("3.0.0", "2.6.0", "3.10", "shims"),
        ("2.6.2", "2.6.0", "3.11", "broken"),
        ("2.6.2", "2.6.0", "3.10", "ok"),  # the segfault was measured on 3.11 only
        ("2.3.2", "2.6.0", "3.10", "ok"),
        ("2.3.1", "2.6.0", "3.10", "unsupported"),
        ("2.2.2", "2.5.0", "3.9", "ok"),
        ("2.2.1", "2.4.1", "3.9", "unsupported"),
        ("2.2.0rc0", "2.3.0", "3.8", "ok"),
        ("2.1.2", "2.2.0", "3.8", "ok"),
        ("2.1.1", "2.2.0", "3.8", "unsupported"),
        ("2.0.1", "2.0.0", "3.8", "ok"),
        ("2.4.2", "0.0.0", "3.10", "ok"),  # PaddleDetection develop: paddle >= 2.3.2
        ("3.1.0", "2.5.0", "3.10", "untested"),
        ("3.2.0", "2.8.0", "3.10", "untested"),
        ("0.0.0", "2.6.0", "3.11", "untested"),  # paddle develop build
        (None, "2.6.0", "3.11", "unknown"),
        ("3.3.1", None, "3.11", "unknown"),
    ],
)
def test_compatibility_table(paddle, ppdet, python, verdict):
    result = doctor.compatibility(paddle, ppdet, python)
    assert result["verdict"] == verdict, result
    assert result["reason"]


def test_version_helpers():
    assert doctor.version_tuple("2.2.0rc0") == (2, 2, 0)
    assert doctor.version_tuple("3.3.1.post112") == (3, 3, 1)
    assert doctor.version_tuple("2.6.0") > doctor.version_tuple("2.2.0rc0")
    assert doctor.nccl_code_to_version("21805") == "2.18.5"
    assert doctor.nccl_code_to_version("2708") == "2.7.8"
    assert doctor.nccl_code_to_version("2.21.5") == "2.21.5"
    assert doctor.nccl_code_to_version(None) is None


def test_read_paddle_version_file_cuda_build(tmp_path):
    path = tmp_path / "version.py"
    path.write_text(
        "full_version = '2.6.2'\ncommit = 'abc123'\ncuda_version = '11.8'\ncudnn_version = '8.6.0'\n"
        "nccl_version = '21602'\nwith_mkl = 'ON'\ndef show():\n    pass\n"
    )
    consts = doctor.read_paddle_version_file(path)
    assert consts["full_version"] == "2.6.2" and consts["cuda_version"] == "11.8" and consts["commit"] == "abc123"
    assert probes._build_value(consts["cudnn_version"]) == "8.6.0"
    assert probes._build_value("False") is None and probes._build_value("0") is None
    assert doctor.read_paddle_version_file(tmp_path / "missing.py") == {}


def test_paddle_facts_match_installed_metadata():
    import importlib.metadata as md

    facts = doctor.paddle_facts()
    try:
        version = md.version("paddlepaddle")
    except md.PackageNotFoundError:
        pytest.skip("paddlepaddle (CPU) is not installed here")
    assert facts["installed"] and facts["version"] == version and facts["distribution"] == "paddlepaddle"
    assert facts["cuda_build"] is False and facts["cuda"] is None
    assert facts["commit"] and len(facts["commit"]) == 40


def test_libstdcxx_facts(tmp_path):
    (tmp_path / "libstdc++.so.6").write_bytes(b"\x00GLIBCXX_3.4.28\x00GLIBCXX_3.4.29\x00GLIBCXX_3.4\x00")
    facts = doctor.libstdcxx_facts({"LD_LIBRARY_PATH": str(tmp_path)})
    assert facts["newest_glibcxx"] == "3.4.29" and facts["has_3_4_30"] is False
    (tmp_path / "libstdc++.so.6").write_bytes(b"GLIBCXX_3.4.30\x00GLIBCXX_3.4.32\x00")
    assert doctor.libstdcxx_facts({"LD_LIBRARY_PATH": str(tmp_path)})["has_3_4_30"] is True


# -- fixture /sys trees -> the preset --net auto picks ------------------------


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text + "\n")


def make_sys_tree(root: Path, ports: list[tuple[str, int, str, str]], peermem: str | None) -> tuple[Path, Path]:
    """A /sys and /proc tree: eth0 up with the default route, lo, the given RDMA ports, a GPUDirect module."""
    sys_root, proc_root = root / "sys", root / "proc"
    for name, state, kind in (("eth0", "up", "1"), ("lo", "unknown", "772"), ("ib0", "up", "32")):
        write(sys_root / "class/net" / name / "operstate", state)
        write(sys_root / "class/net" / name / "type", kind)
    for hca, port, state, link_layer in ports:
        base = sys_root / "class/infiniband" / hca / "ports" / str(port)
        write(base / "state", state)
        write(base / "link_layer", link_layer)
        write(base / "rate", "100 Gb/sec (4X EDR)")
    if peermem == "nvidia_peermem":
        (sys_root / "module/nvidia_peermem").mkdir(parents=True)
    elif peermem == "nv_peer_mem":
        write(sys_root / "kernel/mm/memory_peers/nv_mem/version", "1.1-0")
    write(proc_root / "net/route",
          "Iface\tDestination\tGateway\tFlags\tRefCnt\tUse\tMetric\tMask\tMTU\tWindow\tIRTT\n"
          "eth0\t00000000\t0102A8C0\t0003\t0\t0\t100\t00000000\t0\t0\t0\n"
          "eth0\t0002A8C0\t00000000\t0001\t0\t0\t100\t00FFFFFF\t0\t0\t0")
    return sys_root, proc_root


IB_ACTIVE = ("mlx5_0", 1, "4: ACTIVE", "InfiniBand")
ROCE_ACTIVE = ("mlx5_1", 1, "4: ACTIVE", "Ethernet")
IB_DOWN = ("mlx5_0", 1, "1: DOWN", "InfiniBand")


@pytest.mark.parametrize(
    "ports,peermem,preset,port_text",
    [
        ([IB_ACTIVE], None, "rdma", "mlx5_0:1 ACTIVE InfiniBand"),
        ([IB_ACTIVE], "nvidia_peermem", "gpudirect", "mlx5_0:1 ACTIVE InfiniBand"),
        ([ROCE_ACTIVE], None, "rdma", "mlx5_1:1 ACTIVE RoCE"),
        ([ROCE_ACTIVE], "nv_peer_mem", "gpudirect", "mlx5_1:1 ACTIVE RoCE"),
        ([IB_DOWN], "nvidia_peermem", "tcp", "mlx5_0:1 DOWN InfiniBand"),
        ([], None, "tcp", "none"),
        ([], "nvidia_peermem", "tcp", "none"),
    ],
    ids=["ib", "ib-peermem", "roce", "roce-nv_peer_mem", "ib-down", "no-hca", "no-hca-peermem"],
)
def test_doctor_net_auto_from_fixture_sys(tmp_path, ports, peermem, preset, port_text):
    sys_root, proc_root = make_sys_tree(tmp_path, ports, peermem)
    result = CliRunner().invoke(cli, ["doctor", "--json", "--sys-root", str(sys_root), "--proc-root", str(proc_root)])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    report = json.loads(result.stdout)
    host = report["host"]
    assert host["errors"] == {}
    auto = host["net_auto"]
    assert auto["gpu_multi_node"]["preset"] == preset
    assert auto["gpu_single_node"]["preset"] == "nccl"
    assert host["default_route_interface"] == "eth0"
    assert host["gpudirect_module"] == peermem
    assert [i["name"] for i in host["interfaces"]] == ["eth0", "ib0", "lo"]
    rows = {i["name"]: i["value"] for i in report["items"]}
    assert rows["rdma ports"] == port_text
    # the human table shows the same choice
    table = CliRunner().invoke(cli, ["doctor", "--sys-root", str(sys_root), "--proc-root", str(proc_root)]).stdout
    assert f"{preset} for a multi-node GPU job" in table


# -- judging: red items and exit codes ----------------------------------------


def test_broken_pair_is_red_and_exits_1():
    report = doctor.collect()
    report["compatibility"] = doctor.compatibility("2.6.2", "2.6.0", "3.11")
    report["paddle"] = dict(report["paddle"], installed=True, version="2.6.2", distribution="paddlepaddle")
    report["packages"]["paddledet"] = dict(report["packages"]["paddledet"], version="2.6.0")
    items = doctor.judge(report)
    compat = next(i for i in items if i.name == "compatibility")
    assert compat.status == "fail" and "segfault" in compat.value
    report["items"] = [vars(i) for i in items]
    report["status"] = "fail"
    assert doctor.exit_code(report) == 1
    assert "compatibility: broken" in doctor.render_bug_report(report)


def fake_python(tmp_path: Path, body: str) -> str:
    path = tmp_path / "fakepython"
    path.write_text("#!/bin/sh\n" + body + "\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return str(path)


def test_check_reports_a_segfault(tmp_path):
    python = fake_python(tmp_path, 'echo "TRAINCTL_STAGE import ppdet"; kill -SEGV $$')
    result = doctor.run_paddle_check(python=python, timeout=30)
    assert result["crashed"] and not result["ok"] and result["returncode"] < 0
    assert result["error"] == "import ppdet crashed (SIGSEGV)"
    report = doctor.collect()
    report["check"] = result
    item = next(i for i in doctor.judge(report) if i.name == "paddle check")
    assert item.status == "fail" and "import crashed: see docs/troubleshooting.md" in item.hint


def test_check_reports_glibcxx_and_wrong_results(tmp_path):
    python = fake_python(tmp_path, "echo \"ImportError: /lib/libstdc++.so.6: version 'GLIBCXX_3.4.30' not found\" >&2; exit 1")
    result = doctor.run_paddle_check(python=python, timeout=30)
    assert not result["ok"] and result["glibcxx"] and "GLIBCXX_3.4.30" in result["error"]
    python = fake_python(tmp_path, 'echo \'TRAINCTL_RESULT {"device": "cpu", "result": 53.0}\'')
    result = doctor.run_paddle_check(python=python, timeout=30)
    assert not result["ok"] and "wrong result" in result["error"]
    python = fake_python(tmp_path, "sleep 20")
    result = doctor.run_paddle_check(python=python, timeout=1)
    assert not result["ok"] and "timed out" in result["error"]


def test_doctor_and_data_check_do_not_import_paddle():
    import subprocess
    import sys

    code = ("import sys, json; from trainctl import doctor; r = doctor.collect(); "
            "import trainctl.cli.doctor, trainctl.cli.data, trainctl.data.check, trainctl.data.voc, trainctl.data.coco; "
            "print(json.dumps(['paddle' in sys.modules, 'ppdet' in sys.modules]))")
    src = str(Path(__file__).resolve().parents[2] / "src")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                         env=dict(os.environ, PYTHONPATH=src), check=True).stdout
    assert json.loads(out.strip().splitlines()[-1]) == [False, False]


# -- the launch layer's shared fixture trees (tests/fixtures/sys), when present --

SHARED_FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


@pytest.mark.parametrize(
    "tree,preset,gpudirect",
    [
        ("ib_active", "rdma", None),
        ("ib_peermem", "gpudirect", "nvidia_peermem"),
        ("roce", "gpudirect", "nv_peer_mem"),
        ("ib_down", "tcp", None),
        ("no_hca", "tcp", None),
    ],
)
def test_doctor_net_auto_on_shared_fixture_trees(tree, preset, gpudirect):
    sys_root = SHARED_FIXTURES / "sys" / tree
    proc_root = SHARED_FIXTURES / "proc" / "route_eth0"
    if not sys_root.is_dir() or not proc_root.is_dir():
        pytest.skip(f"shared fixture tree {sys_root} not present")
    report = doctor.collect(sys_root=str(sys_root), proc_root=str(proc_root))
    host = report["host"]
    assert host["errors"] == {}
    assert host["net_auto"]["gpu_multi_node"]["preset"] == preset
    assert host["gpudirect_module"] == gpudirect
    assert host["default_route_interface"] == "eth0"
    active = [p for p in host["ib_ports"] if p["state"] == "ACTIVE"]
    if preset in ("rdma", "gpudirect"):
        names = ",".join(f"{p['hca']}:{p['port']}" for p in active)
        assert names and names in host["net_auto"]["gpu_multi_node"]["reason"]
    else:
        assert not active
