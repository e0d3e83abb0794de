"""VisualDL scalars and the live progress line, on the session's smoke training (VisualDL on, tty mode)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

pytestmark = pytest.mark.paddle

ITERATIONS = 5  # 10 training images of the 12-image sample, batch 2

READ_SCALARS = r"""
import json, os, sys
from visualdl import LogReader
logdir = sys.argv[1]
files = [os.path.join(logdir, f) for f in os.listdir(logdir) if f.startswith("vdlrecords")]
reader = LogReader(file_path=files[0])
tags = reader.get_tags()["scalar"]
print(json.dumps({tag: [[r.id, r.value] for r in reader.get_data("scalar", tag)] for tag in tags}))
"""


def test_vdl_scalars_read_back_with_visualdl(smoke_run):
    proc = subprocess.run([sys.executable, "-c", READ_SCALARS, str(smoke_run.run_dir / "vdl")], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    scalars = json.loads(proc.stdout.strip().splitlines()[-1])
    for tag in ("train/loss", "train/loss_obj", "train/loss_cls", "train/loss_xy", "train/loss_wh", "train/lr", "train/ips"):
        assert [step for step, _ in scalars[tag]] == list(range(ITERATIONS)), tag
    assert all(v > 0 for _, v in scalars["train/loss"])
    lrs = [v for _, v in scalars["train/lr"]]
    assert 0 < lrs[0] < lrs[-1] <= 0.000125 + 1e-9  # linear warmup towards the fixture's base_lr
    assert all(0.01 < v < 1000 for _, v in scalars["train/ips"])
    assert [step for step, _ in scalars["eval/bbox_mAP"]] == [1]
    index = json.loads((smoke_run.run_dir / "checkpoints.json").read_text())
    assert scalars["eval/bbox_mAP"][0][1] == pytest.approx(index["evals"][0]["results"]["bbox"], abs=1e-6)


def test_live_progress_line_replaces_ppdet_lines(smoke_run):
    err = smoke_run.stderr
    for i in range(1, ITERATIONS + 1):
        assert f"\repoch 1/1  iter {i}/{ITERATIONS}  loss " in err
    assert "img/s  ETA 0:" in err
    assert "Epoch: [" not in smoke_run.log  # ppdet's per-iteration lines are off in tty mode
    assert "mAP(0.50, integral)" in smoke_run.log  # eval results still show
