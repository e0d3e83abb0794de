"""`trainctl runs` on fixture run directories: status, epochs, best metric, liveness from /proc.

Run records are written with the launcher's own RunRecord and checkpoint
indexes with the runner's own index functions, so the fixtures have the shape
the producers write.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from trainctl import runs
from trainctl.cli import cli
from trainctl.errors import UserError
from trainctl.runner.checkpoint import record_eval, write_index
from trainctl.runrecord import RunRecord

NOW = dt.datetime(2026, 11, 23, 12, 0, 0, tzinfo=dt.timezone.utc)


def plan(task="train", kind="cpu", ids=(), world_size=1, nnodes=1, node_rank=0, config="roadsign.yml"):
    """The keys of launch.plan.Plan.to_dict that a run record carries."""
    return {"task": task, "config_name": config, "run_dir": "unused", "launcher": "direct",
            "device": {"kind": kind, "ids": list(ids), "nproc_per_node": max(1, len(ids))},
            "nnodes": nnodes, "node_rank": node_rank, "world_size": world_size, "nodes": []}


def make_run(run_dir: Path, status="done", exit_code=0, start="2026-11-23T10:00:00+00:00",
             end="2026-11-23T10:42:05+00:00", epochs=12, hostname="thishost", pid=None, **plan_kwargs) -> Path:
    run_dir.mkdir(parents=True, exist_ok=True)
    record = RunRecord(run_dir, ["trainctl", "train", "-c", "roadsign.yml"], plan(**plan_kwargs),
                       extra={"config": "/somewhere/configs/roadsign.yml", "overrides": []})
    record.data.update(hostname=hostname, start_time=start)
    if pid is not None:  # the launcher pid run.json records (default: this process)
        record.data["pid"] = pid
    record.start()
    if status != "running":
        record.finish(exit_code, status)
        record.data["end_time"] = end
        record.write()
    (run_dir / "config.yml").write_text(f"epoch: {epochs}\nLearningRate:\n  schedulers:\n  - !PiecewiseDecay\n    gamma: 0.1\n")
    return run_dir


def add_checkpoint(run_dir: Path, name: str, epoch: int, size=64, index: list | None = None) -> dict:
    """Files of a complete checkpoint; returns the index entry."""
    files = {}
    for suffix in (".pdparams", ".pdopt"):
        (run_dir / f"{name}{suffix}").write_bytes(b"x" * size)
        files[suffix] = size
    entry = {"name": name, "epoch": epoch, "time": 1000.0 + epoch, "files": files}
    if index is not None:
        index.append(entry)
    return entry


def write_checkpoints(run_dir: Path, entries: list, best=None) -> None:
    write_index(run_dir, {"checkpoints": entries, "evals": [], "best": best})


# ------------------------------------------------------------------ reading one run


def test_done_run_with_index(tmp_path):
    run = make_run(tmp_path / "output" / "bs8", kind="gpu", ids=[0, 1], world_size=2)
    entries: list = []
    for epoch in (1, 2, 3):
        add_checkpoint(run, str(epoch - 1), epoch, index=entries)
    write_checkpoints(run, entries)
    record_eval(run, 1, {"bbox": 0.41})
    record_eval(run, 2, {"bbox": 0.58}, best_name="best_model")
    record_eval(run, 3, {"bbox": 0.55})

    info = runs.read_run(run, proc_root=str(tmp_path / "noproc"), hostname="thishost", now=NOW)
    assert info.status == "done" and info.status_note is None and info.exit_code == 0
    assert info.task == "train" and info.config == "roadsign.yml"
    assert (info.device, info.device_ids, info.world_size) == ("gpu", [0, 1], 2)
    assert runs.format_devices(info) == "gpu 0,1 x2"
    assert info.duration_s == 42 * 60 + 5 and runs.format_duration(info.duration_s) == "42m05s"
    assert (info.epochs_done, info.epochs_total, info.final) == (3, 12, False)
    assert info.checkpoints == ["0", "1", "2"] and info.checkpoint_source == "checkpoints.json"
    assert info.best == {"metric": "bbox", "value": 0.58, "epoch": 2, "model": "best_model", "source": "checkpoints.json"}
    assert runs.format_best(info) == "bbox 58.00% @2" and runs.format_epochs(info) == "3/12"
    assert info.vdl_dir is None


def test_best_from_evals_without_best_model(tmp_path):
    run = make_run(tmp_path / "r")
    write_checkpoints(run, [add_checkpoint(run, "0", 1)])
    record_eval(run, 1, {"bbox": 0.2})
    record_eval(run, 2, {"bbox": 0.7})
    record_eval(run, 3, {"bbox": 0.6})
    best = runs.read_run(run, hostname="thishost").best
    assert (best["metric"], best["value"], best["epoch"]) == ("bbox", 0.7, 2)


def test_truncated_and_planted_checkpoints_do_not_count(tmp_path):
    run = make_run(tmp_path / "r", epochs=5)
    entries: list = []
    add_checkpoint(run, "0", 1, index=entries)
    add_checkpoint(run, "1", 2, index=entries)
    (run / "1.pdparams").write_bytes(b"x" * 10)  # truncated after the index recorded 64 bytes
    add_checkpoint(run, "4", 5)  # planted: files there, never in the index
    (run / "model_final.pdparams").write_bytes(b"x" * 64)  # planted too
    write_checkpoints(run, entries)
    info = runs.read_run(run, hostname="thishost")
    assert info.checkpoints == ["0"] and info.epochs_done == 1 and info.final is False


def test_best_model_copy_is_not_progress(tmp_path):
    run = make_run(tmp_path / "r", epochs=4)
    entries = [add_checkpoint(run, "0", 1), add_checkpoint(run, "best_model", 3)]
    write_checkpoints(run, entries, best={"name": "best_model", "epoch": 3, "results": {"bbox": 0.5}})
    info = runs.read_run(run, hostname="thishost")
    assert info.epochs_done == 1 and info.checkpoints == ["0"]
    assert info.best["epoch"] == 3 and info.best["value"] == 0.5


def test_files_without_index(tmp_path):
    """A run dir without checkpoints.json (PaddleDetection's own tools): count non-empty files."""
    run = make_run(tmp_path / "r", epochs=12)
    (run / "0.pdparams").write_bytes(b"x")
    (run / "1.pdparams").write_bytes(b"x")
    (run / "2.pdparams").write_bytes(b"")  # empty: a save that never completed
    (run / ".3.pdparams.77.tmp").write_bytes(b"x")  # a temporary name
    info = runs.read_run(run, hostname="thishost")
    assert (info.epochs_done, info.checkpoints, info.checkpoint_source) == (2, ["0", "1"], "files")
    (run / "model_final.pdparams").write_bytes(b"x")
    info = runs.read_run(run, hostname="thishost")
    assert info.epochs_done == 12 and info.final and info.checkpoints[-1] == "model_final"
    assert runs.format_epochs(info) == "12/12"


def test_model_final_in_index(tmp_path):
    run = make_run(tmp_path / "r", epochs=2)
    write_checkpoints(run, [add_checkpoint(run, "0", 1), add_checkpoint(run, "model_final", 2)])
    info = runs.read_run(run, hostname="thishost")
    assert (info.epochs_done, info.final) == (2, True)


def test_failed_and_interrupted_records(tmp_path):
    failed = make_run(tmp_path / "f", status="failed", exit_code=1)
    stopped = make_run(tmp_path / "i", status="interrupted", exit_code=130)
    assert (runs.read_run(failed).status, runs.read_run(failed).exit_code) == ("failed", 1)
    assert runs.read_run(stopped).status == "interrupted"


# ------------------------------------------------------------------ liveness


def fake_process(proc_root: Path, pid: int, argv: list[str], cwd: Path, state="S") -> None:
    d = proc_root / str(pid)
    d.mkdir(parents=True)
    (d / "cmdline").write_bytes(b"\0".join(a.encode() for a in argv) + b"\0")
    (d / "stat").write_text(f"{pid} (python) {state} 1 {pid} {pid} 0 -1\n")
    os.symlink(cwd, d / "cwd")


def test_running_record_without_process_is_interrupted(tmp_path):
    run = make_run(tmp_path / "output" / "r", status="running")
    proc = tmp_path / "proc"
    fake_process(proc, 50, ["python", "-m", "trainctl.runner.worker", "--job", "output/other/job.json"], tmp_path)
    info = runs.read_run(run, proc_root=str(proc), hostname="thishost", now=NOW)
    assert info.status == "interrupted" and info.recorded_status == "running"
    assert "no launcher or worker process" in info.status_note
    assert info.duration_s is None  # no end time, no log: unknown
    (run / "logs").mkdir()
    (run / "logs" / "workerlog.0").write_text("epoch 1\n")
    last = dt.datetime(2026, 11, 23, 10, 14, 3, tzinfo=dt.timezone.utc).timestamp()
    os.utime(run / "logs" / "workerlog.0", (last, last))
    info = runs.read_run(run, proc_root=str(proc), hostname="thishost", now=NOW)
    assert info.duration_s == 14 * 60 + 3 and info.duration_estimated  # up to the last line it logged
    assert runs.table_rows([info])[0][6] == "~14m03s"
    assert any("no launcher or worker process" in line for line in runs.notes([info]))


def test_running_record_with_worker_process(tmp_path):
    run = make_run(tmp_path / "output" / "r", status="running", start="2026-11-23T11:30:00+00:00")
    proc = tmp_path / "proc"
    # relative --job resolved against the process's cwd, as the launcher starts workers
    fake_process(proc, 51, ["/opt/tcenv/bin/python", "-m", "trainctl.runner.worker", "--job", "output/r/job.json"], tmp_path)
    assert runs.run_processes(run, str(proc)) == [51]
    info = runs.read_run(run, proc_root=str(proc), hostname="thishost", now=NOW)
    assert info.status == "running" and info.status_note is None
    assert info.duration_s == 30 * 60


def test_zombie_worker_is_not_alive(tmp_path):
    run = make_run(tmp_path / "output" / "r", status="running")
    proc = tmp_path / "proc"
    fake_process(proc, 52, ["python", "-m", "trainctl.runner.worker", "--job", str(run / "job.json")], Path("/"), state="Z")
    assert runs.run_processes(run, str(proc)) == []
    assert runs.read_run(run, proc_root=str(proc), hostname="thishost").status == "interrupted"


def test_paddle_launch_process_counts(tmp_path):
    run = make_run(tmp_path / "output" / "r", status="running")
    proc = tmp_path / "proc"
    fake_process(proc, 60, ["python", "-m", "paddle.distributed.launch", "--nproc_per_node", "2", "python", "-m",
                            "trainctl.runner.worker", "--job", str(run / "job.json")], Path("/"))
    assert runs.read_run(run, proc_root=str(proc), hostname="thishost").status == "running"


def test_recorded_pid_is_used_when_present(tmp_path):
    run = make_run(tmp_path / "r", status="running", pid=77)
    proc = tmp_path / "proc"
    assert runs.read_run(run, proc_root=str(proc), hostname="thishost").status == "interrupted"
    fake_process(proc, 77, ["python", "trainctl", "train"], Path("/"))
    assert runs.read_run(run, proc_root=str(proc), hostname="thishost").status == "running"


def test_a_reused_pid_of_another_program_is_not_the_run(tmp_path):
    run = make_run(tmp_path / "r", status="running", pid=78)
    proc = tmp_path / "proc"
    fake_process(proc, 78, ["/usr/sbin/nginx", "-g", "daemon off;"], Path("/"))
    assert runs.read_run(run, proc_root=str(proc), hostname="thishost").status == "interrupted"


def test_run_record_holds_the_launcher_pid(tmp_path):
    import os

    from trainctl.runrecord import RunRecord

    record = RunRecord(tmp_path, ["trainctl", "train"], {"task": "train", "nodes": []})
    record.start()
    assert json.loads((tmp_path / "run.json").read_text())["pid"] == os.getpid()


def test_running_on_another_host_is_not_judged(tmp_path):
    run = make_run(tmp_path / "r", status="running", hostname="node7")
    info = runs.read_run(run, proc_root=str(tmp_path / "noproc"), hostname="thishost", now=NOW)
    assert info.status == "running" and "node7" in info.status_note


def test_real_process_on_this_host(tmp_path):
    """The liveness probe on the real /proc: a process that runs this run's job file."""
    run = make_run(tmp_path / "output" / "r", status="running", hostname=socket.gethostname())
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", "-m", "trainctl.runner.worker",
                              "--job", "output/r/job.json"], cwd=tmp_path)
    try:
        # Popen returns while execve is still setting up the new image; /proc/PID/cmdline is empty until then
        deadline = time.monotonic() + 30
        while not Path(f"/proc/{child.pid}/cmdline").read_bytes() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert runs.read_run(run).status == "running"
    finally:
        child.kill()
        child.wait()
    assert runs.read_run(run).status == "interrupted"


# ------------------------------------------------------------------ finding runs


def test_list_runs_nested_eval_and_node_records(tmp_path):
    out = tmp_path / "output"
    make_run(out / "bs8", start="2026-11-23T09:00:00+00:00")
    ev = make_run(out / "bs8" / "eval", task="eval", start="2026-11-23T11:00:00+00:00",
                  end="2026-11-23T11:01:00+00:00")
    (ev / "eval.json").write_text(json.dumps({"task": "eval", "weights": "output/bs8/model_final.pdparams",
                                              "metric": "VOC", "results": {"bbox": 0.61}, "images": 8}))
    node = out / "bs16"
    make_run(node, start="2026-11-23T10:00:00+00:00", node_rank=1, nnodes=2, world_size=16, kind="gpu", ids=range(8))
    assert not (node / "run.json").exists() and (node / "run.node1.json").exists()
    (out / "bs8" / "vdl").mkdir()
    (out / "bs8" / "logs").mkdir()
    make_run(out / "bs8" / "logs" / "hidden")  # logs/ is never scanned
    (out / "notarun").mkdir()

    found = runs.list_runs([str(out)], hostname="thishost")
    assert [Path(r.run_dir).relative_to(out).as_posix() for r in found] == ["bs8", "bs16", "bs8/eval"]  # by start time
    bs8, bs16, evalrun = found
    assert bs8.vdl_dir and bs16.record_file == "run.node1.json"
    assert runs.format_devices(bs16) == "gpu 0,1,2,3,4,5,6,7 x16 (2 nodes)"
    assert evalrun.task == "eval" and evalrun.best["value"] == 0.61 and evalrun.best["source"] == "eval.json"
    assert runs.format_epochs(evalrun) == "-"
    # the same run named twice is listed once
    assert len(runs.list_runs([str(out / "bs8"), str(out)], hostname="thishost")) == 3


def test_unreadable_record_is_listed_with_a_problem(tmp_path):
    run = tmp_path / "r"
    run.mkdir()
    (run / "run.json").write_text("{ not json")
    info = runs.read_run(run)
    assert info.status == "unknown" and info.problems and "run.json" in info.problems[0]


def test_missing_dir_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="no such directory"):
        runs.list_runs([str(tmp_path / "nope")])
    with pytest.raises(UserError, match="not a run directory"):
        runs.read_run(tmp_path)


@pytest.mark.parametrize("seconds,text", [(None, "-"), (0, "0s"), (59.4, "59s"), (61, "1m01s"), (3600, "1h00m"),
                                          (3 * 86400 + 7200, "3d02h")])
def test_format_duration(seconds, text):
    assert runs.format_duration(seconds) == text


# ------------------------------------------------------------------ the command


def test_cli_table_and_json(tmp_path, monkeypatch):
    out = tmp_path / "output"
    run = make_run(out / "bs8", kind="gpu", ids=[0], world_size=1)
    write_checkpoints(run, [add_checkpoint(run, "0", 1)], best={"name": "best_model", "epoch": 1, "results": {"bbox": 0.25}})
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli, ["runs"])  # default: ./output
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].split()[:3] == ["RUN", "TASK", "STATUS"]
    row = lines[2].split()
    assert row[:4] == ["output/bs8", "train", "done", "roadsign.yml"]
    assert "1/12" in row and "25.00%" in row

    result = CliRunner().invoke(cli, ["runs", "output", "--json"])
    data = json.loads(result.output)
    assert len(data) == 1 and data[0]["status"] == "done" and data[0]["best"]["value"] == 0.25
    assert data[0]["epochs_done"] == 1 and data[0]["run_dir"] == "output/bs8"


def test_cli_without_paddle_and_errors(tmp_path):
    """`trainctl runs` never imports paddle, and a missing dir is one line with exit code 2."""
    make_run(tmp_path / "output" / "r")
    blocker = ("import sys\n"
               "class B:\n"
               "    def find_spec(self, name, path=None, target=None):\n"
               "        if name.split('.')[0] in ('paddle', 'ppdet', 'visualdl'):\n"
               "            raise ImportError('blocked ' + name)\n"
               "sys.meta_path.insert(0, B())\n"
               "from trainctl.cli import main\n"
               "main(sys.argv[1:])\n")
    ok = subprocess.run([sys.executable, "-c", blocker, "runs"], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0, ok.stderr
    assert "output/r" in ok.stdout and "done" in ok.stdout
    bad = subprocess.run([sys.executable, "-c", blocker, "runs", "missing"], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2
    assert bad.stderr.strip().splitlines() == ["trainctl: error: no such directory: missing; "
                                               "pass a run directory or a directory that holds runs"]


# ------------------------------------------------------------------ compare


def test_compare_on_fixture_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    a = make_run(tmp_path / "out" / "a", epochs=4)
    b = make_run(tmp_path / "out" / "b", epochs=8)
    for run_dir, losses, evals in ((a, [5.0, 3.0, 2.0], [(2, 0.3), (4, 0.5)]), (b, [4.0, 1.0], [(4, 0.6), (8, 0.55)])):
        (run_dir / "history.jsonl").write_text("".join(json.dumps({"epoch": i // 2 + 1, "step": i + 1, "loss": v}) + "\n"
                                                       for i, v in enumerate(losses)))
        write_checkpoints(run_dir, [])
        for epoch, value in evals:
            record_eval(run_dir, epoch, {"bbox": value}, None)
    result = runs.compare_runs(["out"])
    assert result["keys"] == ["epoch"]  # the schedulers are the same in both configs
    by_dir = {r["run_dir"]: r for r in result["runs"]}
    assert by_dir["out/a"]["final_loss"] == 2.0 and by_dir["out/b"]["final_loss"] == 2.5  # mean of the last epoch
    assert by_dir["out/a"]["best"] == {"metric": "bbox", "value": 0.5, "epoch": 4}
    assert by_dir["out/b"]["best"] == {"metric": "bbox", "value": 0.6, "epoch": 4}
    result = CliRunner().invoke(cli, ["runs", "compare", "out"])
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[0].split()[:2] == ["RUN", "epoch"]


def test_compare_needs_two_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    make_run(tmp_path / "out" / "a")
    with pytest.raises(UserError, match="compare needs at least 2"):
        runs.compare_runs(["out"])
