"""doctor for real: on this machine (paddle installed, --check runs paddle) and with paddle hidden."""

from __future__ import annotations

import importlib.metadata as md
import json
import os
import subprocess
import sys
from pathlib import Path

import click
import pytest
import yaml

SRC = str(Path(__file__).resolve().parents[2] / "src")

# Every field `doctor --json` promises (tools and bug reports rely on them).
TOP_FIELDS = {"trainctl", "platform", "python", "paddle", "packages", "compatibility", "libstdcxx",
              "cuda_visible_devices", "host", "check", "items", "status"}
PADDLE_FIELDS = {"installed", "distribution", "version", "commit", "cuda_build", "cuda", "cudnn", "nccl", "nccl_code",
                 "location"}
PACKAGE_KEYS = {"paddledet", "numpy", "opencv", "scikit_learn", "pycocotools", "visualdl", "nvidia_nccl_wheel"}
HOST_FIELDS = {"gpus", "interfaces", "default_route_interface", "ib_ports", "gpudirect_module", "net_auto", "errors"}
CHECK_FIELDS = {"ran", "ok", "returncode", "stage", "device", "result", "error", "compiled_with_cuda", "cuda", "cudnn"}
ITEM_FIELDS = {"section", "name", "value", "status", "hint"}


def run_doctor(*args: str, env: dict | None = None, python_flags: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *python_flags, "-m", "trainctl", "doctor", *args], capture_output=True,
                          text=True, timeout=600, env=env)


@pytest.fixture(scope="module")
def doctor_check_json():
    proc = run_doctor("--json", "--check")
    return proc, json.loads(proc.stdout)


@pytest.mark.paddle
def test_doctor_check_runs_paddle_and_json_has_every_field(doctor_check_json):
    proc, report = doctor_check_json
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert TOP_FIELDS <= report.keys()
    assert PADDLE_FIELDS <= report["paddle"].keys()
    assert PACKAGE_KEYS <= report["packages"].keys()
    assert HOST_FIELDS <= report["host"].keys()
    assert CHECK_FIELDS <= report["check"].keys()
    assert all(ITEM_FIELDS == set(item) for item in report["items"])
    # facts agree with what is installed
    assert report["paddle"]["version"] == md.version("paddlepaddle")
    assert report["packages"]["paddledet"]["version"] == md.version("paddledet")
    assert report["packages"]["numpy"]["version"] == md.version("numpy")
    assert report["python"]["version"] == ".".join(map(str, sys.version_info[:3]))
    assert report["compatibility"]["verdict"] in ("shims", "ok")
    # the real computation ran in a child process, on the CPU here (no GPU on this machine)
    check = report["check"]
    assert check["ok"] and check["returncode"] == 0 and check["result"] == 54.0
    assert check["device"] == ("cpu" if not report["host"]["gpus"] else "gpu:0")
    # what paddle says about its build, imported, agrees with what doctor read without importing it
    assert check["compiled_with_cuda"] == report["paddle"]["cuda_build"]
    assert (check["cuda"] if check["cuda"] not in ("False", "None", "0") else None) == report["paddle"]["cuda"]
    assert report["status"] in ("ok", "warn")
    if not report["host"]["gpus"]:  # a multi-node job on a CPU-only host runs over gloo
        assert report["host"]["net_auto"]["preset"] == "gloo"


@pytest.mark.paddle
def test_doctor_table_and_report_blocks():
    table = run_doctor()
    assert table.returncode == 0, table.stderr
    assert f"{md.version('paddlepaddle')} (paddlepaddle)" in table.stdout
    for section in ("python", "paddle", "libraries", "gpus", "network"):
        assert f"\n{section} " in table.stdout
    report = run_doctor("--report")
    assert report.returncode == 0
    assert f"- paddle version: {md.version('paddlepaddle')}" in report.stdout
    assert f"- paddledet version: {md.version('paddledet')}" in report.stdout
    assert "- doctor problems: none" in report.stdout


def test_doctor_without_paddle_says_how_to_install(tmp_path):
    """A python that cannot see site-packages: only click and PyYAML are put back on the path."""
    shim = tmp_path / "site"
    shim.mkdir()
    for module in (click, yaml):
        pkg = Path(module.__file__).parent
        os.symlink(pkg, shim / pkg.name)
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONPATH": f"{shim}:{SRC}", "LANG": "C.UTF-8"}
    proc = run_doctor("--json", "--check", env=env, python_flags=("-S",))
    assert proc.returncode == 1, proc.stderr
    report = json.loads(proc.stdout)
    assert report["paddle"]["installed"] is False
    assert report["packages"]["paddledet"]["version"] is None
    assert report["check"] == {"ran": False, "ok": False, "error": "paddle is not installed"}
    paddle_item = next(i for i in report["items"] if i["name"] == "paddle")
    assert paddle_item["status"] == "fail" and "pip install 'trainctl[cpu]'" in paddle_item["hint"]
    assert "paddlepaddle-gpu" in paddle_item["hint"]
    human = run_doctor(env=env, python_flags=("-S",))
    assert human.returncode == 1
    assert "not installed" in human.stdout and "hint: paddle: CPU: pip install 'trainctl[cpu]'" in human.stdout
