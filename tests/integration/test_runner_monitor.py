"""VisualDL scalars, the live progress line and --keep, on one short real training."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

pytestmark = pytest.mark.paddle

READ_SCALARS = r"""
import json, os, sys
from visualdl import LogReader
logdir = sys.argv[1]
files = [os.path.join(logdir, f) for f in os.listdir(logdir) if f.startswith("vdlrecords")]
reader = LogReader(file_path=files[0])
tags = reader.get_tags()["scalar"]
print(json.dumps({tag: [[r.id, r.value] for r in reader.get_data("scalar", tag)] for tag in tags}))
"""


@pytest.fixture(scope="module")
def monitored_run(sample_dataset, ptools, tmp_path_factory):
    """3 epochs of 2 iterations (batch 5), eval each epoch, VisualDL on, live line forced, keep 1."""
    run_dir = tmp_path_factory.mktemp("monitored") / "run"
    job = ptools.write_run(sample_dataset, run_dir, "train", ["epoch=3", "TrainReader.batch_size=5"],
                           eval_during_train=True, vdl=True, progress="tty", keep_checkpoints=1, seed=0)
    # bytes, not text: universal newlines would turn the live line's \r into \n
    raw = subprocess.run([sys.executable, "-m", "trainctl.runner.worker", "--job", str(job)], cwd=sample_dataset,
                         capture_output=True, timeout=900)
    proc = subprocess.CompletedProcess(raw.args, raw.returncode, raw.stdout.decode(), raw.stderr.decode())
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    return run_dir, proc


def test_vdl_scalars_read_back_with_visualdl(monitored_run):
    run_dir, _ = monitored_run
    proc = subprocess.run([sys.executable, "-c", READ_SCALARS, str(run_dir / "vdl")], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    scalars = json.loads(proc.stdout.strip().splitlines()[-1])
    for tag in ("train/loss", "train/loss_obj", "train/loss_cls", "train/loss_xy", "train/loss_wh", "train/lr", "train/ips"):
        assert [step for step, _ in scalars[tag]] == list(range(6)), tag  # 3 epochs x 2 iterations
    assert all(v > 0 for _, v in scalars["train/loss"])
    lrs = [v for _, v in scalars["train/lr"]]
    assert 0 < lrs[0] < lrs[-1] <= 0.001 + 1e-9  # linear warmup towards base_lr
    assert all(0.01 < v < 1000 for _, v in scalars["train/ips"])
    assert [step for step, _ in scalars["eval/bbox_mAP"]] == [1, 2, 3]
    assert all(0.0 <= v <= 100.0 for _, v in scalars["eval/bbox_mAP"])


def test_live_progress_line_replaces_ppdet_lines(monitored_run):
    _, proc = monitored_run
    err = proc.stderr
    assert "\repoch 1/3  iter 1/2  loss " in err and "\repoch 3/3  iter 2/2  loss " in err
    assert "img/s  ETA 0:" in err
    assert "Epoch: [" not in proc.stdout + err  # ppdet's per-iteration lines are off in tty mode
    assert "mAP(0.50, integral)" in proc.stdout + err  # eval results still show


def test_keep_1_leaves_one_epoch_checkpoint_plus_final_and_best(monitored_run):
    run_dir, _ = monitored_run
    index = json.loads((run_dir / "checkpoints.json").read_text())
    names = sorted(e["name"] for e in index["checkpoints"])
    assert names == ["1", "best_model", "model_final"]
    assert not (run_dir / "0.pdparams").exists() and not (run_dir / "0.pdopt").exists()
    assert (run_dir / "1.pdparams").is_file() and (run_dir / "model_final.pdopt").is_file()
    assert [e["epoch"] for e in index["evals"]] == [1, 2, 3]
    assert index["best"]["name"] == "best_model"
