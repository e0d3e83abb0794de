"""LR scaling follows a batch_size changed with -o: the reference is the config files' batch (pure, no paddle)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from trainctl.config import resolve
from trainctl.launch import lr

READER = """\
TrainReader:
  batch_size: 8
  shuffle: true
"""

OPTIMIZER = """\
epoch: 12
LearningRate:
  base_lr: 0.01
  schedulers:
  - !PiecewiseDecay
    gamma: 0.1
    milestones: [8, 11]
  - !LinearWarmup
    start_factor: 0.1
    steps: 100
"""


@pytest.fixture
def layered(tmp_path: Path) -> Path:
    """top.yml -> _readers/reader.yml (batch 8) and _optimizers/opt.yml (base_lr 0.01, warmup 100 steps)."""
    (tmp_path / "_readers").mkdir()
    (tmp_path / "_optimizers").mkdir()
    (tmp_path / "_readers" / "reader.yml").write_text(READER)
    (tmp_path / "_optimizers" / "opt.yml").write_text(OPTIMIZER)
    top = tmp_path / "top.yml"
    top.write_text("_BASE_: ['_readers/reader.yml', '_optimizers/opt.yml']\nuse_gpu: false\n")
    return top


def report_for(config: Path, overrides=(), world=1, mode="linear", ref_gpus=8):
    rc = resolve(config, overrides=list(overrides))
    return rc, lr.compute_for(rc, world, mode, ref_gpus)


def test_override_to_batch_4_on_one_device_scales_by_4_over_64(layered):
    rc, report = report_for(layered, ["TrainReader.batch_size=4"])
    assert (report.ref_per_device_batch, report.per_device_batch) == (8, 4)
    assert (report.ref_batch, report.actual_batch) == (64, 4)
    assert report.factor == pytest.approx(4 / 64) and report.rule_factor == pytest.approx(4 / 64)
    assert report.scaled_lr == pytest.approx(0.01 * 4 / 64)
    assert report.ref_per_device_batch_source == "_readers/reader.yml"
    assert report.per_device_batch_source == "-o TrainReader.batch_size=4"
    # warmup: 100 steps × 64 images = 6400 images = 1600 steps of 4
    assert (report.warmup_steps_before, report.warmup_steps_after) == (100, 1600)
    text = "\n".join(report.lines())
    assert "8 GPUs × 8 images = 64  (batch_size of the config files: _readers/reader.yml)" in text
    assert "1 process × 4 images = 4  (batch_size from -o TrainReader.batch_size=4)" in text
    assert "0.0625 = 4/64" in text and "100 -> 1600" in text


def test_without_override_scales_by_8_over_64(layered):
    _, report = report_for(layered)
    assert (report.ref_batch, report.actual_batch) == (64, 8)
    assert report.factor == pytest.approx(8 / 64)
    assert report.warmup_steps_after == 800
    assert report.per_device_batch_source == report.ref_per_device_batch_source == "_readers/reader.yml"


def test_sqrt_mode_uses_both_batches_and_warmup_follows_images(layered):
    _, report = report_for(layered, ["TrainReader.batch_size=4"], mode="sqrt")
    assert report.factor == pytest.approx(math.sqrt(4 / 64)) == pytest.approx(0.25)
    assert report.scaled_lr == pytest.approx(0.0025)
    assert report.warmup_steps_after == 1600  # images decide warmup, not the LR factor
    assert "0.25 = √(4/64)" in "\n".join(report.lines())


def test_bigger_batch_on_fewer_devices_can_match_the_reference(layered):
    _, report = report_for(layered, ["TrainReader.batch_size=16"], world=4)
    assert (report.ref_batch, report.actual_batch, report.factor) == (64, 64, 1.0)
    assert report.warmup_steps_after == 100
    assert any("equals the reference" in note for note in report.notes)
    calls = []
    lr.apply(report, lambda *args: calls.append(args))
    assert calls == []


def test_warmup_steps_on_several_devices_with_override(layered):
    _, report = report_for(layered, ["TrainReader.batch_size=2"], world=2, ref_gpus=4)
    # reference 4 × 8 = 32, actual 2 × 2 = 4: factor 1/8, warmup × 8
    assert (report.ref_batch, report.actual_batch) == (32, 4)
    assert report.factor == pytest.approx(1 / 8) and report.warmup_steps_after == 800


def test_apply_writes_the_scaled_values_with_provenance(layered):
    rc, report = report_for(layered, ["TrainReader.batch_size=4"])
    lr.apply(report, lambda key, value, source: rc.set(key, value, source=source))
    assert rc.get("LearningRate.base_lr") == pytest.approx(0.01 * 4 / 64)
    assert rc.get("LearningRate.schedulers.1.steps") == 1600
    assert rc.source_of("LearningRate.base_lr").startswith("trainctl: lr scaling")
    assert rc.get("TrainReader.batch_size") == 4  # the run's batch itself is left as the user set it


def test_explicit_base_lr_is_used_as_given_and_warmup_still_scales(layered):
    rc, report = report_for(layered, ["TrainReader.batch_size=4", "LearningRate.base_lr=0.002"])
    assert report.factor == 1.0 and report.scaled_lr == pytest.approx(0.002)
    assert report.rule_factor == pytest.approx(4 / 64) and report.base_lr_scaled is False
    assert report.base_lr_source == "-o LearningRate.base_lr=0.002"
    assert report.warmup_steps_after == 1600
    text = "\n".join(report.lines())
    assert "base_lr used as given" in text and "-o LearningRate.base_lr=0.002" in text
    lr.apply(report, lambda key, value, source: rc.set(key, value, source=source))
    assert rc.get("LearningRate.base_lr") == 0.002
    assert rc.source_of("LearningRate.base_lr") == "-o LearningRate.base_lr=0.002"
    assert rc.get("LearningRate.schedulers.1.steps") == 1600


def test_explicit_warmup_steps_are_kept(layered):
    rc, report = report_for(layered, ["TrainReader.batch_size=4", "LearningRate.schedulers.1.steps=40"])
    assert (report.warmup_steps_before, report.warmup_steps_after) == (40, 40)
    assert report.factor == pytest.approx(4 / 64)  # base_lr still follows the rule
    assert "40 (used as given: -o LearningRate.schedulers.1.steps=40)" in "\n".join(report.lines())
    lr.apply(report, lambda key, value, source: rc.set(key, value, source=source))
    assert rc.source_of("LearningRate.schedulers.1.steps") == "-o LearningRate.schedulers.1.steps=40"


def test_lr_scale_none_changes_nothing(layered):
    _, report = report_for(layered, ["TrainReader.batch_size=4"], mode="none")
    assert report.factor == 1.0 and report.scaled_lr == pytest.approx(0.01)
    assert report.warmup_steps_after == 100 and report.base_lr_scaled is False
    assert (report.ref_batch, report.actual_batch) == (64, 4)  # still reported
    calls = []
    lr.apply(report, lambda *args: calls.append(args))
    assert calls == []


def test_config_files_without_batch_size_fall_back_to_the_runs_batch(tmp_path):
    (tmp_path / "opt.yml").write_text(OPTIMIZER)
    top = tmp_path / "top.yml"
    top.write_text("_BASE_: ['opt.yml']\nTrainReader:\n  shuffle: true\n")
    _, report = report_for(top, ["TrainReader.batch_size=4"], world=2)
    # today's rule: the run's batch on both sides, so only the device count matters
    assert (report.ref_per_device_batch, report.ref_batch, report.actual_batch) == (4, 32, 8)
    assert report.factor == pytest.approx(2 / 8)
    assert any("config files have no TrainReader.batch_size" in note for note in report.notes)


def test_non_integer_batch_size_in_the_files_is_named(layered):
    (layered.parent / "_readers" / "reader.yml").write_text("TrainReader:\n  batch_size: '8'\n")
    _, report = report_for(layered, ["TrainReader.batch_size=4"])
    assert report.ref_batch == 32 and report.factor == pytest.approx(4 / 32)
    assert any("non-integer '8'" in note for note in report.notes)


def test_override_that_replaces_the_whole_reader_still_finds_the_files_batch(layered):
    _, report = report_for(layered, ["TrainReader={batch_size: 2, shuffle: false}"])
    assert (report.ref_per_device_batch, report.per_device_batch) == (8, 2)
    assert report.factor == pytest.approx(2 / 64)


def test_top_file_batch_size_is_the_reference(layered):
    """A batch_size written in the config itself (not on the command line) is what the LR was tuned for."""
    layered.write_text(layered.read_text() + "TrainReader:\n  batch_size: 2\n")
    _, report = report_for(layered, world=1, ref_gpus=1)
    assert (report.ref_batch, report.actual_batch, report.factor) == (2, 2, 1.0)
    assert report.ref_per_device_batch_source == "top.yml"


def trainctl(*args, cwd):
    return subprocess.run([sys.executable, "-m", "trainctl", *args], capture_output=True, text=True, timeout=60, cwd=cwd)


OLD_JSON_FIELDS = {"mode", "ref_gpus", "ref_gpus_source", "per_device_batch", "world_size", "ref_batch", "actual_batch",
                   "factor", "base_lr", "scaled_lr", "warmup_steps_before", "warmup_steps_after", "warmup_epochs",
                   "warmup_path", "notes"}


def test_dry_run_json_keeps_old_fields_and_adds_both_batches(tmp_path):
    proc = trainctl("train", "-c", "roadsign.yml", "-o", "TrainReader.batch_size=4", "--gpus", "0,1",
                    "--dry-run=json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)["lr"]
    assert OLD_JSON_FIELDS <= set(data)
    files = resolve("roadsign.yml")
    file_batch = files.get("TrainReader.batch_size")
    assert data["per_device_batch"] == 4 and data["world_size"] == 2 and data["actual_batch"] == 8
    assert data["ref_per_device_batch"] == file_batch and data["ref_batch"] == 8 * file_batch
    assert data["factor"] == pytest.approx(8 / (8 * file_batch))
    assert data["scaled_lr"] == pytest.approx(files.get("LearningRate.base_lr") * data["factor"])
    assert data["per_device_batch_source"] == "-o TrainReader.batch_size=4"
    assert data["ref_per_device_batch_source"] == files.source_of("TrainReader.batch_size")


def test_dry_run_text_names_both_batches(tmp_path):
    proc = trainctl("train", "-c", "roadsign_cpu.yml", "-o", "TrainReader.batch_size=4", "--dry-run", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    block = proc.stdout.split("learning rate:\n", 1)[1].split("\n\n", 1)[0]
    assert "1 GPU × 2 images = 2  (batch_size of the config files: roadsign_cpu_smoke.yml)" in block
    assert "1 process × 4 images = 4  (batch_size from -o TrainReader.batch_size=4)" in block
    assert "0.0005 -> 0.001" in block and "10 -> 5" in block
