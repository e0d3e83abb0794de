"""The pure parts of restarts, hang detection and mid-epoch checkpoints (no paddle)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from trainctl.launch import attempts, progress
from trainctl.launch.executor import ExecResult
from trainctl.runner import checkpoint


@pytest.mark.parametrize("text,seconds", [("90s", 90), ("30m", 1800), ("2h", 7200), ("45", 45), ("1.5m", 90),
                                          ("0", 0), ("off", 0), (" 10 s", 10)])
def test_parse_duration(text, seconds):
    assert progress.parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "ten", "5d", "-3s", "1m30s"])
def test_parse_duration_rejects(text):
    with pytest.raises(ValueError):
        progress.parse_duration(text)


def test_bad_hang_timeout_is_a_one_line_user_error(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "trainctl", "train", "-c", "roadsign_cpu_smoke.yml",
                           "--hang-timeout", "soon", "--dry-run"], capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "trainctl: error: --hang-timeout 'soon' is not a duration; use e.g. 90s, 30m, 2h, or 0 to turn it off"]


def _beat(it, t, phase="train", epoch=0):
    return {"rank": 0, "iter": it, "epoch": epoch, "phase": phase, "time": t}


def test_stalled_counts_from_the_first_iteration_and_not_during_eval():
    now = 1000.0
    assert not progress.stalled({0: None, 1: None}, now, 10)  # start-up: no iteration yet
    assert not progress.stalled({0: _beat(5, 995), 1: _beat(5, 985)}, now, 10)  # rank 0 progressed 5 s ago
    assert progress.stalled({0: _beat(5, 985), 1: _beat(5, 984)}, now, 10)
    assert not progress.stalled({0: _beat(5, 900, "epoch_end"), 1: _beat(5, 900)}, now, 10)  # checkpoint / eval
    assert not progress.stalled({0: _beat(5, 900, "save"), 1: _beat(5, 900)}, now, 10)
    assert not progress.stalled({0: _beat(5, 900)}, now, 0)  # off


def test_stopped_first_prefers_process_state_then_silence_then_iterations():
    records = {0: _beat(7, 1), 1: _beat(7, 1)}
    ranks, why = progress.stopped_first([0, 1], records, {0: "S", 1: "T"})
    assert ranks == [1] and "stopped (state T)" in why[1]
    ranks, why = progress.stopped_first([0, 1], records, {0: "D", 1: "S"})
    assert ranks == [0] and "state D" in why[0]
    ranks, why = progress.stopped_first([0, 1], records, {0: "S", 1: "R"}, answered={0: True, 1: False})
    assert ranks == [1] and "did not answer" in why[1]
    ranks, why = progress.stopped_first([0, 1, 2], {0: _beat(7, 1), 1: _beat(6, 1), 2: _beat(7, 1)},
                                        {0: "S", 1: "S", 2: "S"})
    assert ranks == [1] and "behind: last iteration 6, the others reached 7" in why[1]
    assert progress.stopped_first([0, 1], records, {0: "S", 1: "S"}, {0: True, 1: True}) == ([], {})


def test_innermost_frame_of_the_main_thread():
    dump = (
        "Thread 0x00007f01 (most recent call first):\n"
        '  File "/usr/lib/python3.11/threading.py", line 320 in wait\n'
        '  File "/usr/lib/python3.11/threading.py", line 1002 in _bootstrap\n'
        "\n"
        "Current thread 0x00007f00 (most recent call first):\n"
        '  File "/venv/site-packages/paddle/base/dygraph/tensor_patch_methods.py", line 370 in backward\n'
        '  File "/venv/site-packages/ppdet/engine/trainer.py", line 539 in train\n'
        '  File "/venv/site-packages/trainctl/runner/worker.py", line 120 in _train\n'
    )
    assert progress.innermost_frame(dump) == "tensor_patch_methods.py:370 in backward"
    assert progress.innermost_frame("") is None


def test_real_faulthandler_dump_is_parsed(tmp_path):
    """A real process with faulthandler on SIGUSR1 (as the worker registers it), signalled as the launcher does."""
    log = tmp_path / "log"
    code = ("import faulthandler, signal, sys, time\n"
            "faulthandler.register(signal.SIGUSR1, file=sys.stderr, all_threads=True, chain=False)\n"
            "def blocked_in_collective():\n    print('ready', flush=True)\n    time.sleep(30)\n"
            "blocked_in_collective()\n")
    with open(log, "wb") as f:
        proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=f)
        try:
            assert proc.stdout.readline().strip() == b"ready"
            time.sleep(0.2)  # into the sleep
            proc.send_signal(signal.SIGUSR1)
            deadline = time.monotonic() + 10
            while "most recent call first" not in log.read_text() and time.monotonic() < deadline:
                time.sleep(0.05)
            assert proc.poll() is None  # the dump does not stop it
        finally:
            proc.kill()
            proc.wait()
    assert progress.innermost_frame(log.read_text()) == "<string>:5 in blocked_in_collective"


def test_heartbeat_roundtrip_and_proc_state(tmp_path):
    path = progress.heartbeat_path(tmp_path, 3)
    path.parent.mkdir()
    progress.write_heartbeat(path, _beat(4, 12.5))
    assert progress.read_heartbeat(tmp_path, 3)["iter"] == 4
    assert progress.read_heartbeat(tmp_path, 2) is None
    progress.clear_heartbeats(tmp_path, range(4))
    assert not path.exists() and os.listdir(path.parent) == []
    state, ticks = progress.proc_state(os.getpid())
    assert state in ("R", "S") and ticks >= 0
    assert progress.proc_state(2 ** 22 + 12345) == (None, None)


def _entry(name, epoch, it=0, t=0.0):
    e = {"name": name, "epoch": epoch, "time": t, "files": {}}
    if it:
        e["iter"] = it
    return e


def test_mid_epoch_checkpoints_order_and_retention():
    entries = [_entry("0", 1, t=1), _entry("iter6", 1, 1, t=2), _entry("iter3", 0, 3, t=0.5),
               _entry("model_final", 2, t=5), _entry("best_model", 1, t=3), _entry("iter9", 1, 4, t=4)]
    order = [e["name"] for e in sorted(entries, key=checkpoint.position)]
    assert order == ["iter3", "0", "best_model", "iter6", "iter9", "model_final"]
    kept, dropped = checkpoint.rotate(entries, 2)
    assert sorted(e["name"] for e in dropped) == ["0", "iter3"]
    assert {e["name"] for e in kept} == {"iter6", "iter9", "model_final", "best_model"}
    assert not checkpoint.is_rotated({"name": "iterate"}) and checkpoint.is_rotated({"name": "iter12"})


def test_latest_checkpoint_takes_the_mid_epoch_one_after_its_epoch(tmp_path):
    for name in ("0", "iter6"):
        for suffix in (".pdparams", ".pdopt"):
            (tmp_path / (name + suffix)).write_bytes(b"x" * 4)
    files = {".pdparams": 4, ".pdopt": 4}
    checkpoint.write_index(tmp_path, {"checkpoints": [
        {"name": "iter6", "epoch": 1, "iter": 1, "global_iter": 6, "time": 1.0, "files": files},
        {"name": "0", "epoch": 1, "time": 2.0, "files": files}], "evals": [], "best": None})
    assert checkpoint.latest_checkpoint(tmp_path)["name"] == "iter6"
    assert checkpoint.find_entry(tmp_path, "iter6")["global_iter"] == 6
    assert checkpoint.find_entry(tmp_path, "nope") is None


def test_backoff_and_what_is_restarted():
    from trainctl.core.restart import backoff_seconds

    assert [backoff_seconds(n) for n in (1, 2, 3, 7, 20)] == [0, 1, 2, 32, 60]

    class _Plan:
        launcher = "paddle"

    crash = ExecResult(exit_code=1, status="failed", failed_rank=1, failed_code=-9)
    assert attempts.should_restart(crash, _Plan, 0, 1)
    assert not attempts.should_restart(crash, _Plan, 1, 1)  # budget spent
    assert not attempts.should_restart(ExecResult(exit_code=130, status="interrupted"), _Plan, 0, 3)
    user = ExecResult(exit_code=1, status="failed", failed_code=2, worker_error="bad annotation x.xml; fix it")
    assert not attempts.should_restart(user, _Plan, 0, 3)


def test_cause_line_from_the_log_tail():
    result = ExecResult(exit_code=1, status="failed", log_tail=[
        "Epoch: [1] [0/2] loss: 3.2", "terminate called after throwing an instance of 'gloo::IoException'", "  what(): x"])
    assert result.cause_line() == "terminate called after throwing an instance of 'gloo::IoException'"
    assert ExecResult(exit_code=1, status="failed", worker_error="disk full").cause_line() == "disk full"
    assert ExecResult(exit_code=1, status="failed", log_tail=["Epoch: [1]"]).cause_line() is None


def test_earlier_attempts_are_kept_and_an_unfinished_one_is_lost(tmp_path):
    record = tmp_path / "run.json"
    record.write_text(json.dumps({"attempts": [
        {"attempt": 1, "start_time": "a", "end_time": "b", "status": "failed"},
        {"attempt": 2, "start_time": "c", "resumed_from": {"name": "0"}}]}))
    earlier = attempts.earlier_attempts(record)
    assert [a["attempt"] for a in earlier] == [1, 2] and earlier[1]["status"] == "lost"
    assert attempts.earlier_attempts(tmp_path / "missing.json") == []


def test_archive_logs_moves_files_and_points_the_record_there(tmp_path):
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "workerlog.0").write_text("a")
    (logs / "launcher.log").write_text("b")
    entry = {"failure": {"log": "run/logs/workerlog.0"}}
    attempts.archive_logs(logs, 1, entry)
    assert sorted(p.name for p in (logs / "attempt1").iterdir()) == ["launcher.log", "workerlog.0"]
    assert entry["failure"]["log"] == "run/logs/attempt1/workerlog.0"
    assert sorted(p.name for p in logs.iterdir()) == ["attempt1"]


@pytest.mark.parametrize("how,expected", [("kill", -9), ("exit", 3)])
def test_exit_code_of_another_process_child_is_read_from_its_zombie(how, expected):
    """A worker is paddle launch's child, not ours: while it is a zombie, /proc still says how it ended."""
    from trainctl.launch import procwatch

    child = subprocess.Popen([sys.executable, "-c", "import time, sys; sys.exit(3) if sys.argv[1] == 'exit' "
                              "else time.sleep(30)", how])
    try:
        if how == "kill":
            child.send_signal(signal.SIGKILL)
        deadline = time.monotonic() + 10
        while progress.proc_state(child.pid)[0] != "Z" and time.monotonic() < deadline:
            time.sleep(0.02)
        assert procwatch.zombie_exit_code(child.pid) == expected
    finally:
        child.kill()
        child.wait()
    assert procwatch.zombie_exit_code(child.pid) is None  # reaped: gone
