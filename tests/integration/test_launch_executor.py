"""The local executor with real processes but stand-in workers (no paddle).

The stand-ins behave like the pieces they replace: a "launcher" that starts
its workers in sessions of their own (as paddle launch does with os.setsid),
so a process-group kill cannot reach them; the executor must still leave no
process behind.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from trainctl.core import hostinfo
from trainctl.launch import executor, netpresets
from trainctl.launch.devices import DeviceEnv, PaddleBuild
from trainctl.launch.plan import LaunchOptions, PlanContext, build_plan

FAKE_LAUNCHER = textwrap.dedent("""
    import os, subprocess, sys, time
    log_dir = sys.argv[1]
    os.makedirs(log_dir, exist_ok=True)
    kids = []
    for rank in range(2):
        log = open(os.path.join(log_dir, f"workerlog.{rank}"), "w")
        kids.append(subprocess.Popen([sys.executable, "-c",
            f"import time\\nprint('worker {rank} up', flush=True)\\ntime.sleep(600)"],
            stdout=log, stderr=log, start_new_session=True, env=dict(os.environ, PADDLE_LOCAL_RANK=str(rank))))
    print("launcher pid", os.getpid(), "workers", " ".join(str(k.pid) for k in kids), flush=True)
    mode = sys.argv[2]
    if mode == "fail-rank-1":
        time.sleep(1)
        with open(os.path.join(log_dir, "workerlog.1"), "a") as f:
            f.write("Traceback (most recent call last):\\nRuntimeError: rank 1 exploded\\n")
        print(f"Container rank 1 status failed cmd ['python'] code 1 log {log_dir}/workerlog.1", flush=True)
        sys.exit(1)   # exits without stopping its workers: they are orphans now
    if mode == "race":
        # rank 1 dies first; rank 0 follows a second later, and the launcher (like paddle's,
        # which names the first failed worker in rank order) reports only rank 0
        time.sleep(1.5)
        kids[1].kill(); kids[1].wait()
        time.sleep(1.0)
        kids[0].terminate(); kids[0].wait()
        print(f"Container rank 0 status failed cmd ['python'] code -15 log {log_dir}/workerlog.0", flush=True)
        sys.exit(1)
    time.sleep(600)
""")


def make_plan(tmp_path: Path, mode: str):
    ctx = PlanContext(
        device_env=DeviceEnv(paddle=PaddleBuild(True, "3.3.1"), cpus=2),
        host_facts=netpresets.HostFacts(interfaces=[hostinfo.Interface("eth0", "up", False)], default_iface="eth0"),
        environ={}, python=sys.executable, cwd=str(tmp_path), free_port=lambda: 45000,
    )
    plan = build_plan(LaunchOptions(nproc=2), task="train", run_dir="run", ctx=ctx)
    script = tmp_path / "fake_launcher.py"
    script.write_text(FAKE_LAUNCHER)
    plan.local_node.argv = [sys.executable, str(script), plan.local_node.log_dir, mode]
    return plan


def live(pids):
    alive = []
    for pid in pids:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0]
        except OSError:
            continue
        if state not in ("Z", "X"):
            alive.append(pid)
    return alive


def worker_pids(tmp_path: Path) -> list[int]:
    text = (tmp_path / "run" / "logs" / "launcher.log").read_text()
    line = next(l for l in text.splitlines() if l.startswith("launcher pid"))
    return [int(p) for p in line.split("workers")[1].split()]


class Sink:
    def __init__(self):
        self.data = b""

    def write(self, b):
        self.data += b

    def flush(self):
        pass


def test_failed_rank_is_named_and_orphans_are_killed(tmp_path):
    plan = make_plan(tmp_path, "fail-rank-1")
    sink = Sink()
    result = executor.run_node(plan, sink=sink)
    assert result.status == "failed" and result.exit_code == 1
    assert (result.failed_rank, result.failed_local_rank, result.failed_code) == (1, 1, 1)
    assert result.failed_log == "run/logs/workerlog.1"
    assert result.log_tail[-1] == "RuntimeError: rank 1 exploded"
    message = executor.describe_failure(result, plan)
    assert "worker rank 1" in message and "exit code 1" in message and "workerlog.1" in message
    pids = worker_pids(tmp_path)
    assert sorted(result.leftovers_killed) == sorted(pids)
    assert live(pids) == []
    assert b"launcher pid" in sink.data  # the launcher's output was streamed


def test_the_killed_worker_is_blamed_not_the_rank_the_launcher_reported(tmp_path):
    """Rank 1 is SIGKILLed (its launcher reaps it at once, so its status may not be seen), rank 0 is
    then stopped with SIGTERM and is the only rank the launcher reports: the evidence (rank 0 was
    stopped, rank 1 ended silently) names rank 1."""
    plan = make_plan(tmp_path, "race")
    result = executor.run_node(plan, sink=Sink())
    assert result.status == "failed"
    assert result.failed_rank == 1 and result.failed_code in (-9, None)
    assert not result.root_cause.ambiguous and result.root_cause.by_rank(0).kind == "stopped"
    message = executor.describe_failure(result, plan)
    assert message.startswith("worker rank 1 (node 0, local rank 1) ")
    assert "then rank 0 stopped by the launcher or trainctl (SIGTERM)" in message
    assert result.failed_log == "run/logs/workerlog.1" and result.log_tail == ["worker 1 up"]


def test_sigterm_stops_launcher_and_workers(tmp_path):
    plan = make_plan(tmp_path, "hang")
    results = {}

    def stop_soon():
        log = tmp_path / "run" / "logs" / "launcher.log"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if log.exists() and "launcher pid" in log.read_text():
                break
            time.sleep(0.1)
        results["pids"] = worker_pids(tmp_path)
        os.kill(os.getpid(), signal.SIGTERM)  # as `kill <trainctl pid>` would

    threading.Thread(target=stop_soon, daemon=True).start()
    result = executor.run_node(plan, sink=Sink(), grace=3)
    assert result.status == "interrupted" and result.signal == signal.SIGTERM and result.exit_code == 143
    assert live(results["pids"]) == []
    assert executor.describe_failure(result, plan) == "interrupted by SIGTERM; all workers stopped"


def test_direct_worker_exit_code_and_log(tmp_path):
    ctx = PlanContext(
        device_env=DeviceEnv(paddle=PaddleBuild(True, "3.3.1"), cpus=2),
        host_facts=netpresets.HostFacts(), environ={"PADDLE_TRAINER_ID": "5"}, python=sys.executable,
        cwd=str(tmp_path))
    plan = build_plan(LaunchOptions(), task="train", run_dir="run", ctx=ctx)
    assert plan.launcher == "direct"
    plan.local_node.argv = [sys.executable, "-c",
                            "import os, sys; print('stale', os.environ.get('PADDLE_TRAINER_ID')); "
                            "print('unbuffered', os.environ.get('PYTHONUNBUFFERED')); sys.exit(3)"]
    sink = Sink()
    result = executor.run_node(plan, environ={"PADDLE_TRAINER_ID": "5", "PATH": os.environ["PATH"]}, sink=sink)
    assert result.exit_code == 3 and result.failed_rank == 0
    assert b"stale None" in sink.data and b"unbuffered 1" in sink.data  # stale variable removed, plan env applied
    log = (tmp_path / "run" / "logs" / "workerlog.0").read_text()
    assert "stale None" in log


def test_processes_with_marker_ignores_others(tmp_path):
    env = dict(os.environ, **{executor.RUN_ID_VAR: "test-marker-123"})
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], env=env)
    try:
        assert executor.processes_with_marker("test-marker-123") == [child.pid]
        assert executor.processes_with_marker("other-marker") == []
        assert executor.kill_leftovers("test-marker-123", grace=2) == [child.pid]
        assert live([child.pid]) == []  # (reaped by kill_leftovers, so Popen cannot see the status)
    finally:
        if child.poll() is None:
            child.kill()
