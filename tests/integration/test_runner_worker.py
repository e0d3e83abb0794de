"""The worker process with real paddle and ppdet: train, eval, and its user errors."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

pytestmark = pytest.mark.paddle


def test_smoke_training_writes_complete_checkpoints(smoke_run):
    run_dir = smoke_run.run_dir
    for name in ("model_final.pdparams", "model_final.pdopt", "best_model.pdparams"):
        assert (run_dir / name).stat().st_size > 1_000_000, name
    assert not [p.name for p in run_dir.iterdir() if p.name.endswith(".tmp")]
    index = json.loads((run_dir / "checkpoints.json").read_text())
    final = next(e for e in index["checkpoints"] if e["name"] == "model_final")
    assert final["epoch"] == 1
    assert final["files"][".pdparams"] == (run_dir / "model_final.pdparams").stat().st_size
    assert index["evals"] and 0.0 <= index["evals"][0]["results"]["bbox"] <= 1.0  # a fraction, as ppdet returns it
    assert (run_dir / "label_list.txt").read_text().split() == ["speedlimit", "crosswalk", "trafficlight", "stop"]
    last = smoke_run.log.strip().splitlines()[-1]
    assert "train done" in last and "model_final.pdparams" in last
    # use_gpu=true in the config, no CUDA here: the worker said it runs on CPU
    assert "device cpu" in smoke_run.log


def test_eval_prints_map_and_writes_eval_json(smoke_run, ptools, tmp_path):
    run_dir = tmp_path / "eval"
    job = ptools.write_run(smoke_run.workdir, run_dir, "eval", weights=str(smoke_run.final))
    proc = ptools.run_worker(job, smoke_run.workdir)
    assert proc.returncode == 0, proc.stderr[-3000:]
    log = proc.stdout + proc.stderr
    assert "mAP(0.50, integral)" in log  # ppdet's own VOC metric line
    record = json.loads((run_dir / "eval.json").read_text())
    assert record["metric"] == "VOC" and record["images"] == 2
    bbox = record["results"]["bbox"]
    assert isinstance(bbox, float) and 0.0 <= bbox <= 1.0  # a fraction, as ppdet returns it
    assert record["weights"].endswith("model_final.pdparams")
    last = log.strip().splitlines()[-1]
    assert f"eval done: VOC mAP {100 * bbox:.2f}% (bbox) on 2 images" in last


def test_missing_weights_exit_2_with_one_line(smoke_run, ptools, tmp_path):
    job = ptools.write_run(smoke_run.workdir, tmp_path / "run", "eval", weights=str(tmp_path / "no_such_model"))
    proc = ptools.run_worker(job, smoke_run.workdir)
    assert proc.returncode == 2
    errors = ptools.error_lines(proc.stderr)
    assert len(errors) == 1 and "no_such_model.pdparams" in errors[0]
    assert "Traceback" not in proc.stderr


def test_weights_of_another_model_exit_2(smoke_run, ptools, tmp_path):
    other = tmp_path / "other.pdparams"
    subprocess.run(
        [sys.executable, "-c", "import sys, numpy, paddle; paddle.save({'fc.weight': numpy.zeros((4, 4), 'float32')}, sys.argv[1])", str(other)],
        check=True,
        capture_output=True,
    )
    job = ptools.write_run(smoke_run.workdir, tmp_path / "run", "eval", weights=str(other))
    proc = ptools.run_worker(job, smoke_run.workdir)
    assert proc.returncode == 2
    errors = ptools.error_lines(proc.stderr)
    assert len(errors) == 1 and "do not fit" in errors[0] and "YOLOv3" in errors[0]
    assert "Traceback" not in proc.stderr


def test_missing_dataset_exit_2_names_the_sample_command(ptools, tmp_path):
    job = ptools.write_run(tmp_path, tmp_path / "run", "train")
    proc = ptools.run_worker(job, tmp_path)  # tmp_path has no dataset/roadsign_voc
    assert proc.returncode == 2
    errors = ptools.error_lines(proc.stderr)
    assert len(errors) == 1
    assert "dataset/roadsign_voc" in errors[0] and "trainctl data sample --out dataset/roadsign_voc" in errors[0]


def test_finetune_weights_skip_and_list_parameters_that_do_not_fit(smoke_run, ptools, tmp_path):
    """--weights with another num_classes: the heads' shapes differ, are skipped and named; the rest loads."""
    job = ptools.write_run(smoke_run.workdir, tmp_path / "run", "train", ["num_classes=5", "TrainReader.batch_size=5"],
                           weights=str(smoke_run.final), seed=0)
    proc = ptools.run_worker(job, smoke_run.workdir)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-3000:]
    line = next(line for line in log.splitlines() if "fine-tuning from" in line)
    assert str(smoke_run.final) + ".pdparams" in line
    assert "skipped 6 parameters that do not fit" in line  # weight and bias of the three yolo_output convs
    assert "yolo_head.yolo_output.0.weight" in line
    assert (tmp_path / "run" / "model_final.pdparams").is_file()
