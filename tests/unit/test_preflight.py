"""Preflight: the probe (run here through a real shell, as sshd would) and the verdicts (pure)."""

from __future__ import annotations

import json
import socket
import subprocess
import sys

import pytest

from trainctl.errors import RuntimeFailure, UserError
from trainctl.cluster.hostfile import parse_hostfile_text
from trainctl.cluster.preflight import (
    MARK,
    ProbeResult,
    evaluate,
    format_table,
    local_versions,
    probe_command,
    probe_payload,
    raise_for,
)
from trainctl.cluster.ssh import plan_fanout

PY = sys.executable


def _plan(workdir="/w", n=2):
    hosts = parse_hostfile_text("".join(f"10.0.0.{i + 1}\n" for i in range(n)), "hosts.txt")
    return plan_fanout(hosts, train_argv=["t"], workdir=str(workdir), python=PY)


def _run_probe(node, payload):
    out = subprocess.run(["sh", "-c", probe_command(node, PY, payload)], capture_output=True, text=True, timeout=60)
    return ProbeResult.parse(node, out.returncode, out.stdout, out.stderr)


def test_probe_runs_in_the_workdir_and_checks_data_and_port(tmp_path):
    work = tmp_path / "work dir; x"
    work.mkdir()
    node0 = _plan(work).nodes[0]
    busy = socket.socket()
    busy.bind(("", 0))
    busy.listen(1)
    port = busy.getsockname()[1]
    try:
        payload = probe_payload(0, config="roadsign_cpu_smoke.yml", overrides=["epoch=2"], tasks=["train"], port=port)
        result = _run_probe(node0, payload)
    finally:
        busy.close()
    assert result.returncode == 0, result.stderr
    data = result.data
    assert data["cwd"] == str(work)
    assert data["versions"] == local_versions()  # the same interpreter: the same packages
    assert data["config"].endswith("roadsign_cpu_smoke.yml")
    # the bundled config reads dataset/roadsign_voc relative to the workdir, which is empty here
    assert len(data["data_problems"]) == 1 and "dataset/roadsign_voc" in data["data_problems"][0]
    assert data["port_free"] is False

    checks = evaluate([result], local_versions(), port)
    assert checks[0].cells["config/data"] == "FAIL" and checks[0].cells["port"] == f"{port} busy"
    with pytest.raises(UserError) as exc:
        raise_for(checks)
    assert "10.0.0.1 r0:" in exc.value.message and "master port" in exc.value.message


def test_probe_with_a_sample_dataset_passes(tmp_path):
    from trainctl.data.sample import write_sample_dataset

    write_sample_dataset(str(tmp_path / "dataset" / "roadsign_voc"), images=4)
    node0 = _plan(tmp_path).nodes[0]
    result = _run_probe(node0, probe_payload(0, config="roadsign_cpu_smoke.yml", overrides=[], tasks=["train"],
                                             port=None))
    assert result.data["data_problems"] == [] and "port_free" not in result.data
    checks = evaluate([result], local_versions(), None)
    assert checks[0].cells["result"] == "ok"
    raise_for(checks)  # no problem, no exception


def test_probe_reports_config_errors(tmp_path):
    node0 = _plan(tmp_path).nodes[0]
    result = _run_probe(node0, probe_payload(0, config="nope.yml", overrides=[], tasks=["train"], port=None))
    checks = evaluate([result], local_versions(), None)
    assert "config not found: nope.yml" in checks[0].problems[0]


def _fake(node, versions=None, **extra):
    data = {"python": "/venv/bin/python", "cwd": node.workdir,
            "versions": versions or {"trainctl": "0.1.0", "paddle": "3.3.1", "paddledet": "2.6.0"}}
    data.update(extra)
    return ProbeResult.parse(node, 0, MARK + json.dumps(data) + "\n", "")


LOCAL = {"trainctl": "0.1.0", "paddle": None, "paddledet": None}  # a login node without paddle


def test_versions_must_agree():
    nodes = _plan(n=3).nodes
    results = [
        _fake(nodes[0]),
        _fake(nodes[1], versions={"trainctl": "0.1.0", "paddle": "3.2.0", "paddledet": "2.6.0"}),
        _fake(nodes[2], versions={"trainctl": "0.2.0", "paddle": "3.3.1", "paddledet": None}),
    ]
    checks = evaluate(results, LOCAL, None)
    assert checks[0].problems == []
    assert checks[1].problems == ["paddle 3.2.0 differs from 3.3.1 on the other hosts"]
    assert "paddledet is not installed for /venv/bin/python" in checks[2].problems
    assert "trainctl 0.2.0 differs from 0.1.0 on this machine" in checks[2].problems
    table = format_table(checks)
    assert "10.0.0.2 r1" in table and "3.2.0" in table and "missing" in table
    with pytest.raises(UserError) as exc:
        raise_for(checks)
    assert "10.0.0.1 r0" not in exc.value.message


def test_unreachable_and_missing_workdir():
    nodes = _plan(n=2).nodes
    results = [
        ProbeResult.parse(nodes[0], 255, "", "ssh: connect to host 10.0.0.1 port 22: No route to host\n"),
        ProbeResult.parse(nodes[1], 1, "", "sh: 1: cd: can't cd to /w\n"),
    ]
    checks = evaluate(results, LOCAL, 8090)
    assert checks[0].unreachable and "No route to host" in checks[0].problems[0]
    assert not checks[1].unreachable and "did not run (workdir /w" in checks[1].problems[0]
    assert checks[1].problems[0].endswith("sh: 1: cd: can't cd to /w")
    with pytest.raises(UserError):
        raise_for(checks)
    with pytest.raises(RuntimeFailure, match="not reachable by ssh"):
        raise_for(checks[:1])
    timeout = evaluate([ProbeResult(nodes[0], None)], LOCAL, None)
    assert timeout[0].problems == ["ssh timed out"]


def test_only_the_master_checks_the_port():
    assert probe_payload(0, config=None, overrides=[], tasks=[], port=8090)["port"] == 8090
    assert probe_payload(1, config=None, overrides=[], tasks=[], port=8090)["port"] is None
