"""`trainctl sweep` and `trainctl runs compare` on real (tiny) trainings: a 2x2 sweep run two at a time,
a sequential sweep interrupted and finished by a rerun, and the comparison's table, plot and JSON."""

from __future__ import annotations

import json
import os
import signal
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import pytest
from sigutil import default_sigint

pytestmark = [pytest.mark.paddle, pytest.mark.slow]

# one iteration per epoch (3 training images, batch 2, drop_last), two epochs, evaluation after each
TINY = ["-o", "epoch=2", "-o", "TrainReader.batch_size=2", "-o", "snapshot_epoch=1", "--eval", "--lr-scale", "none"]
VARY = ["--vary", "LearningRate.base_lr=0.0005,0.001", "--vary", "YOLOv3Loss.ignore_thresh=0.6,0.7"]


@pytest.fixture(scope="module")
def tiny_work(tmp_path_factory) -> Path:
    from trainctl.data.sample import write_sample_dataset

    work = tmp_path_factory.mktemp("sweep")
    write_sample_dataset(work / "dataset" / "roadsign_voc", images=4, seed=2, valid_every=4)  # 3 train, 1 valid
    return work


@pytest.fixture(scope="module")
def sweep_2x2(tiny_work, ptools) -> tuple[Path, subprocess.CompletedProcess]:
    proc = ptools.run_cli(["sweep", "-c", "roadsign_cpu_smoke.yml", *VARY, *TINY, "--parallel", "2", "--output", "sw"], tiny_work)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    return tiny_work / "sw", proc


def _png_text(path: Path) -> dict[str, str]:
    """The tEXt chunks of a PNG (and a check that it is one)."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    chunks, pos = {}, 8
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        kind, body = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + length]
        assert struct.unpack(">I", data[pos + 8 + length:pos + 12 + length])[0] == zlib.crc32(kind + body) & 0xFFFFFFFF
        if kind == b"tEXt":
            key, _, value = body.partition(b"\0")
            chunks[key.decode()] = value.decode("latin-1")
        pos += 12 + length
    return chunks


def test_dry_run_lists_runs_and_overrides(tiny_work, ptools):
    proc = ptools.run_cli(["sweep", "-c", "roadsign_cpu_smoke.yml", *VARY, "--repeats", "2", "--seed", "5", "--dry-run", "--output", "dry"], tiny_work)
    assert proc.returncode == 0, proc.stderr
    lines = [line for line in proc.stdout.splitlines() if line.startswith("base_lr=")]
    assert len(lines) == 8  # 2 x 2 settings x 2 repeats
    assert "-o LearningRate.base_lr=0.0005 -o YOLOv3Loss.ignore_thresh=0.6" in lines[0]
    assert [line.split()[-2] for line in lines[:2]] == ["5", "6"]  # seeds S, S+1
    assert not (tiny_work / "dry").exists()


def test_sweep_2x2_runs_four_ordinary_runs(sweep_2x2):
    sweep_dir, proc = sweep_2x2
    listing = json.loads((sweep_dir / "sweep.json").read_text())
    assert len(listing["runs"]) == 4
    for run in listing["runs"]:
        record = json.loads((Path(sweep_dir.parent, run["run_dir"]) / "run.json").read_text())
        assert record["status"] == "done"
        assert record["seed"] == 0
        assert all(o in record["overrides"] for o in run["overrides"])  # the run's own record has its overrides
        assert (Path(sweep_dir.parent, run["run_dir"]) / "model_final.pdparams").is_file()
        log = (Path(sweep_dir.parent, run["run_dir"]) / "sweep.log").read_text()
        assert "\repoch" not in log  # side by side, output to a file: plain log lines
    assert "2 at a time" in proc.stderr


def test_compare_shows_exactly_the_two_varied_keys(sweep_2x2, tiny_work, ptools):
    sweep_dir, _ = sweep_2x2
    proc = ptools.run_cli(["runs", "compare", str(sweep_dir), "--json"], tiny_work)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["keys"] == ["LearningRate.base_lr", "YOLOv3Loss.ignore_thresh"]
    assert len(result["runs"]) == 4 and len(result["groups"]) == 4
    for run in result["runs"]:
        history = [json.loads(line) for line in (tiny_work / run["run_dir"] / "history.jsonl").read_text().splitlines()]
        assert [h["epoch"] for h in history] == [1, 2]
        assert run["final_loss"] == pytest.approx(history[-1]["loss"])
        index = json.loads((tiny_work / run["run_dir"] / "checkpoints.json").read_text())
        best = max(e["results"]["bbox"] for e in index["evals"])
        assert run["best"]["value"] == pytest.approx(best)
        assert run["best"]["epoch"] in (1, 2)
    text = ptools.run_cli(["runs", "compare", str(sweep_dir)], tiny_work)
    header = text.stdout.splitlines()[0].split()
    assert header[:3] == ["RUN", "LearningRate.base_lr", "YOLOv3Loss.ignore_thresh"]
    assert len(text.stdout.splitlines()) == 2 + 4


def test_compare_plot_has_one_curve_per_run(sweep_2x2, tiny_work, ptools):
    sweep_dir, _ = sweep_2x2
    proc = ptools.run_cli(["runs", "compare", str(sweep_dir), "--plot", "cmp.png"], tiny_work)
    assert proc.returncode == 0, proc.stderr
    meta = json.loads(_png_text(tiny_work / "cmp.png")["Description"])
    assert meta == {"trainctl_curves": 4, "runs": 4}


def test_compare_groups_repeats_as_mean_and_std(sweep_2x2, tiny_work, tmp_path, ptools):
    """Two runs of one setting (the same config, other seeds) make one row with mean ± std."""
    import shutil

    sweep_dir, _ = sweep_2x2
    runs = sorted(p for p in sweep_dir.iterdir() if p.is_dir())
    a, b = tmp_path / "a", tmp_path / "b"
    shutil.copytree(runs[0], a)
    shutil.copytree(runs[0], b)
    (b / "history.jsonl").write_text('{"epoch": 1, "step": 1, "loss": 10.0}\n{"epoch": 2, "step": 2, "loss": 20.0}\n')
    (a / "history.jsonl").write_text('{"epoch": 1, "step": 1, "loss": 10.0}\n{"epoch": 2, "step": 2, "loss": 10.0}\n')
    result = json.loads(ptools.run_cli(["runs", "compare", str(a), str(b), "--json"], tiny_work).stdout)
    assert result["keys"] == []
    (group,) = result["groups"]
    assert group["final_loss"]["mean"] == pytest.approx(15.0)
    assert group["final_loss"]["std"] == pytest.approx(7.0710678, rel=1e-5)  # sample standard deviation
    text = ptools.run_cli(["runs", "compare", str(a), str(b)], tiny_work).stdout
    assert "15.000 ± 7.071" in text


def test_interrupted_sweep_rerun_finishes_only_the_missing_runs(tiny_work, ptools):
    args = ["sweep", "-c", "roadsign_cpu_smoke.yml", "--vary", "LearningRate.base_lr=0.0005,0.001",
            "-o", "epoch=1", "-o", "TrainReader.batch_size=2", "--lr-scale", "none", "--output", "seq"]
    first = tiny_work / "seq" / "base_lr=0.0005"
    second = tiny_work / "seq" / "base_lr=0.001"
    proc = subprocess.Popen([sys.executable, "-m", "trainctl", *args], cwd=tiny_work, env=ptools.env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, start_new_session=True, preexec_fn=default_sigint)
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            if (second / "run.json").is_file():
                break
            time.sleep(0.2)
        assert (second / "run.json").is_file(), "the second run never started"
        time.sleep(1.0)
        os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C in the terminal: the whole process group
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 130, err.decode()[-2000:]
    assert b"\repoch" not in out and b"Epoch: [0] [0/1]" in out  # through a pipe: ppdet's plain lines, no live line
    done_record = json.loads((first / "run.json").read_text())
    assert done_record["status"] == "done"
    assert json.loads((second / "run.json").read_text())["status"] != "done"

    again = ptools.run_cli(args, tiny_work)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "2 runs, 1 to train (1 done earlier, skipped)" in again.stderr
    assert json.loads((first / "run.json").read_text())["start_time"] == done_record["start_time"]  # not run again
    assert json.loads((second / "run.json").read_text())["status"] == "done"
