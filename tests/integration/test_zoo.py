"""The model-family matrix: PaddleDetection's own configs through trainctl's lite chain.

For each (family, source): train 2 iterations at small input on one shared COCO sample
(`trainctl data sample --format coco`), eval, export (paddle 3's new IR: model.json),
`infer --model-dir` on the export. Sources: the paddledet 2.6.0 wheel (with develop's config
files, trainctl's shims in runner/compat/) and the develop checkout (`TRAINCTL_PPDET`).
The cases here are a CI-sized subset of those measured to pass (docs/models.md has all);
`python scripts/zoo_matrix.py run` runs every (family, source) the same way.

On RT-DETR (develop) also: the same detections as develop's own deploy/python/infer.py on the
trainctl export, and a model written by develop's tools/export_model.py from the same weights
runs in `trainctl infer --model-dir` with the same detections as trainctl's export.

`bash scripts/test.sh -m zoo` runs this file alone.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from zoo_chain import TREES, run_chain

pytestmark = [pytest.mark.paddle, pytest.mark.slow, pytest.mark.zoo]

if not TREES.is_dir():
    pytest.skip(f"the PaddleDetection trees are not here ({TREES})", allow_module_level=True)

HARNESS = Path(__file__).with_name("peer_deploy.py")
DEVELOP = TREES / "develop"
TOL = 1e-4

CASES = [  # CI-sized: every other measured (family, source) is in docs/models.md (scripts/zoo_matrix.py)
    ("PP-YOLOE+", "wheel"),  # the assigner shims (train) and the new-IR NMS shim (export) of runner/compat/
    ("YOLOX", "wheel"),  # infer_cfg.yml's Pad step (runner/preprocess_ops.py)
    ("SSDLite", "wheel"),  # the ssd_loss shim (train), prior_box's new-IR branch (export)
    ("GFL", "wheel"),  # the gfocal_loss shim
    ("PicoDet", "develop"),  # image_shape [1, 3, 320, 320] (4-D) accepted by export
    ("Faster R-CNN", "develop"),  # the R-CNN family exports from a checkout
    ("PicoDet", "release-2.7.1"),
]


@pytest.fixture(scope="module")
def coco_work(tmp_path_factory):
    work = tmp_path_factory.mktemp("zoo")
    proc = subprocess.run([sys.executable, "-m", "trainctl", "data", "sample", "--format", "coco", "--images", "8",
                           "--out", "dataset/coco"], cwd=work, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return work


def _model_dir(work: Path, source: str, config: str) -> Path:
    return work / "output" / f"{source}-{Path(config).stem}" / "model"


@pytest.mark.parametrize("family, source", CASES, ids=[f"{f}-{s}" for f, s in CASES])
def test_lite_chain(coco_work, family, source):
    result = run_chain(family, source, coco_work, iters=2)
    assert result.ok, result.to_dict()
    assert [s.name for s in result.stages] == ["train", "eval", "export", "infer"]
    model = _model_dir(coco_work, source, result.config)
    assert (model / "model.json").is_file() and (model / "infer_cfg.yml").is_file()  # the new IR (YOLOv3 alone: old)
    # detections.json written (2 iterations from scratch: an NMS score threshold may leave none)
    assert result.detections is not None


@pytest.fixture(scope="module")
def rtdetr(coco_work):
    result = run_chain("RT-DETR", "develop", coco_work, iters=2)
    assert result.ok, result.to_dict()
    return result


def _rows(path: Path) -> list[list[float]]:
    return [[d["class_id"], d["score"], *d["box"]] for d in json.loads(path.read_text())["detections"]]


def _assert_same(ours: list[list[float]], theirs: list[list[float]]) -> None:
    assert ours, "no detections to compare"
    assert len(ours) == len(theirs)
    for a, b in zip(sorted(ours, key=lambda r: -r[1]), sorted(theirs, key=lambda r: -r[1])):
        assert a[0] == b[0] and abs(a[1] - b[1]) <= TOL and all(abs(p - q) <= TOL * 10 for p, q in zip(a[2:], b[2:])), (a, b)


def test_rtdetr_nms_free_outputs_match_develops_deploy_infer(coco_work, rtdetr, tmp_path):
    """RT-DETR has no NMS: 300 rows per image, the same as develop's deploy/python/infer.py gives."""
    model = _model_dir(coco_work, "develop", rtdetr.config)
    work = tmp_path / "python"
    shutil.copytree(DEVELOP / "deploy" / "python", work)
    images = coco_work / "dataset" / "coco" / "val2017"
    proc = subprocess.run([sys.executable, str(HARNESS), str(model), "0.0", f"images:{images}"], cwd=work,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    peer = json.loads(next(line for line in proc.stdout.splitlines() if line.startswith("PEER-JSON "))[10:])["images"]
    theirs = [row for rows in peer.values() for row in rows]
    ours = _rows(model.parent / "infer" / "detections.json")
    assert rtdetr.detections == len(ours) == 300 * len(peer)  # threshold 0: every query's row
    # boxes: trainctl rounds to 4 decimals
    _assert_same(ours, [[r[0], round(r[1], 6), *[round(v, 4) for v in r[2:]]] for r in theirs])


def test_rtdetr_exported_by_develops_tools_export_model_runs_in_trainctl_infer(coco_work, rtdetr, tmp_path):
    run = _model_dir(coco_work, "develop", rtdetr.config).parent
    out = tmp_path / "export"
    env = dict(os.environ, OMP_NUM_THREADS="2")
    proc = subprocess.run([sys.executable, str(DEVELOP / "tools" / "export_model.py"), "-c", str(run / "train" / "config.yml"),
                           "-o", f"weights={run / 'train' / 'model_final'}", "use_gpu=false", "--output_dir", str(out)],
                          cwd=coco_work, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    model = out / "config"  # <output_dir>/<config file name>
    assert (model / "model.json").is_file() and not (model / "model.pdmodel").exists()
    proc = subprocess.run([sys.executable, "-m", "trainctl", "infer", "--model-dir", str(model), "--dir",
                           str(coco_work / "dataset" / "coco" / "val2017"), "--output", str(tmp_path / "infer"),
                           "--threshold", "0.0", "--no-save-images"], cwd=coco_work, env=env, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    _assert_same(_rows(tmp_path / "infer" / "detections.json"), _rows(run / "infer" / "detections.json"))
