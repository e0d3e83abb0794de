"""Interrupted training: SIGKILL during epoch 2, then --resume auto picks the last complete checkpoint.

Runs with --keep 1 too: the resumed run saves epoch 2's checkpoint and drops epoch 1's.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

pytestmark = pytest.mark.paddle


def _index(run_dir):
    try:
        return json.loads((run_dir / "checkpoints.json").read_text())
    except (FileNotFoundError, ValueError):
        return {"checkpoints": []}


def test_sigkill_in_epoch_2_then_resume_auto(sample_dataset, ptools, tmp_path):
    run_dir = tmp_path / "run"
    job = ptools.write_run(sample_dataset, run_dir, "train", ["epoch=3", "log_iter=1"], seed=0, keep_checkpoints=1)
    log = open(tmp_path / "first.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "trainctl.runner.worker", "--job", str(job)], cwd=sample_dataset, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 600
        while not any(e["name"] == "0" for e in _index(run_dir)["checkpoints"]):
            assert proc.poll() is None, (tmp_path / "first.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "epoch 1 never finished"
            time.sleep(0.2)
        while "Epoch: [1]" not in (tmp_path / "first.log").read_text():  # epoch 2 is running
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.1)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
        log.close()
    names = [e["name"] for e in _index(run_dir)["checkpoints"]]
    assert names == ["0"], f"the kill came too late: {names}"
    # what a kill in the middle of saving epoch 2 would leave: files under final names, truncated
    (run_dir / "1.pdparams").write_bytes(b"\x80\x04truncated")
    (run_dir / "1.pdopt").write_bytes(b"")

    ptools.write_run(sample_dataset, run_dir, "train", ["epoch=3", "log_iter=1"], seed=0, keep_checkpoints=1, resume="auto")
    second = ptools.run_worker(job, sample_dataset)
    out = second.stdout + second.stderr
    assert second.returncode == 0, out[-3000:]
    assert f"resumed from {run_dir / '0'} at epoch 1" in out
    assert "Epoch: [1]" in out and "Epoch: [2]" in out and "Epoch: [0]" not in out  # continued with epochs 2 and 3
    checkpoints = {e["name"]: e for e in _index(run_dir)["checkpoints"]}
    assert sorted(checkpoints) == ["1", "model_final"]  # --keep 1 dropped epoch 1's checkpoint
    assert checkpoints["model_final"]["epoch"] == 3 and checkpoints["1"]["epoch"] == 2
    assert not (run_dir / "0.pdparams").exists() and not (run_dir / "0.pdopt").exists()
    # the epoch-2 save replaced the planted files by complete ones
    assert (run_dir / "1.pdparams").stat().st_size == checkpoints["1"]["files"][".pdparams"] > 1_000_000
    assert "train done: epochs 1..3" in out.strip().splitlines()[-1]


def test_resume_from_a_missing_checkpoint_is_exit_2(sample_dataset, ptools, tmp_path):
    job = ptools.write_run(sample_dataset, tmp_path / "run", "train", resume=str(tmp_path / "nothing"))
    proc = ptools.run_worker(job, sample_dataset)
    assert proc.returncode == 2
    errors = ptools.error_lines(proc.stderr)
    assert len(errors) == 1 and "checkpoint file not found" in errors[0]
