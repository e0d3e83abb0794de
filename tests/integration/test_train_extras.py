"""tools/train.py's flags through `trainctl train`, with real paddle and ppdet on CPU (issue 23):
--to-static (trains and resumes), --fleet with 2 processes, --profile (its files and its summary
line), and the CPU refusal of the mixed precision flags. Each run is 2 iterations of the smoke config."""

from __future__ import annotations

import json

import pytest

pytestmark = [pytest.mark.paddle, pytest.mark.slow]

TINY = ["-o", "trainctl.max_iters=2", "-o", "log_iter=1", "--lr-scale", "none"]


def _train(ptools, workdir, run_dir, *flags):
    return ptools.run_cli(["train", "-c", "roadsign_cpu_smoke.yml", *TINY, "--output", str(run_dir), *flags], workdir)


def test_to_static_trains_and_resumes(sample_dataset, ptools, tmp_path):
    run_dir = tmp_path / "static"
    proc = _train(ptools, sample_dataset, run_dir, "--to-static")
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    assert "Successfully to apply @to_static" in out  # ppdet's Trainer converted the model
    assert json.loads((run_dir / "run.json").read_text())["plan"]["train_extras"]["config_keys"] == {"to_static": True}
    assert (run_dir / "model_final.pdparams").exists()
    proc = _train(ptools, sample_dataset, run_dir, "--to-static", "-o", "epoch=2", "-r", str(run_dir / "model_final"))
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    assert f"resumed from {run_dir / 'model_final'} at epoch 1" in out and "Successfully to apply @to_static" in out
    assert "train done: epochs 1..2" in out


def test_fleet_with_two_processes(sample_dataset, ptools, tmp_path):
    run_dir = tmp_path / "fleet"
    proc = _train(ptools, sample_dataset, run_dir, "--fleet", "--nproc", "2")
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    logs = "".join(p.read_text() for p in sorted((run_dir / "logs").rglob("workerlog.*")))
    assert "rank 0 of 2" in logs and "rank 1 of 2" in logs
    assert logs.count("train done") == 2 and (run_dir / "model_final.pdparams").exists()
    assert json.loads((run_dir / "run.json").read_text())["plan"]["train_extras"]["fleet"] is True


def test_profile_writes_its_files_and_prints_the_summary(sample_dataset, ptools, tmp_path):
    run_dir = tmp_path / "prof"
    proc = _train(ptools, sample_dataset, run_dir, "-o", "trainctl.max_iters=4",
                  "--profiler-options", "batch_range=[1,3];timer_only=False")
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    line = next(l for l in out.splitlines() if "profile: 2 iterations" in l)
    for part in ("data", "forward", "backward", "optimizer", "other"):
        assert f"{part} " in line and "%" in line
    summary = (run_dir / "profile" / "summary.txt").read_text()
    assert summary.startswith("2 iterations") and "Operator Summary" in summary  # paddle's own tables
    steps = json.loads((run_dir / "profile" / "steps.json").read_text())
    assert [s["iteration"] for s in steps] == [1, 2] and all(s["forward"] > 0 and s["optimizer"] > 0 for s in steps)
    assert (run_dir / "profile" / "trace.json").stat().st_size > 1000


def test_amp_level_refused_on_cpu_and_plain_amp_warns(sample_dataset, ptools, tmp_path):
    proc = _train(ptools, sample_dataset, tmp_path / "amp", "--amp-dtype", "bfloat16")
    assert proc.returncode == 2
    assert ptools.error_lines(proc.stderr) == [line for line in proc.stderr.strip().splitlines()]
    assert "mixed precision needs a GPU" in proc.stderr and not (tmp_path / "amp").exists()
