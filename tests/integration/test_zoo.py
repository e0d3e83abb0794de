"""The model-family matrix: PaddleDetection's own configs through trainctl's lite chain.

For each (family, source): train 2 iterations at 128 px on one shared COCO sample
(`trainctl data sample --format coco`), eval, export (paddle 3's new IR: model.json),
`infer --model-dir` on the export. Sources: the paddledet 2.6.0 wheel (with develop's config
files) and the develop checkout (`TRAINCTL_PPDET`). The cases here are those measured to pass the
whole chain; tests/zoo_chain.py runs any other (family, source) the same way.

`bash scripts/test.sh -m zoo` runs this file alone.
"""

from __future__ import annotations

import pytest

from zoo_chain import TREES, run_chain

pytestmark = [pytest.mark.paddle, pytest.mark.slow, pytest.mark.zoo]

if not TREES.is_dir():
    pytest.skip(f"the PaddleDetection trees are not here ({TREES})", allow_module_level=True)

CASES = [
    ("PP-YOLOE+", "develop"),  # new-IR export as develop's tools/export_model.py writes it
    ("PP-YOLOE+", "wheel"),  # the assigner shims (train) and the PIR NMS shim (export) of runner/compat.py
    ("YOLOv3", "wheel"),  # formerly the old-IR flag; now new IR with the PIR NMS shim
]


@pytest.fixture(scope="module")
def coco_work(tmp_path_factory):
    import subprocess
    import sys

    work = tmp_path_factory.mktemp("zoo")
    proc = subprocess.run([sys.executable, "-m", "trainctl", "data", "sample", "--format", "coco", "--images", "8",
                           "--out", "dataset/coco"], cwd=work, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return work


@pytest.mark.parametrize("family, source", CASES, ids=[f"{f}-{s}" for f, s in CASES])
def test_lite_chain(coco_work, family, source):
    result = run_chain(family, source, coco_work, iters=2)
    assert result.ok, result.to_dict()
    assert [s.name for s in result.stages] == ["train", "eval", "export", "infer"]
    model = coco_work / "output" / f"{source}-{result.config.rsplit('/', 1)[-1][:-4]}" / "model"
    assert (model / "model.json").is_file() and (model / "infer_cfg.yml").is_file()
    # detections.json written (2 iterations from scratch: PP-YOLOE+'s NMS score threshold may leave none)
    assert result.detections is not None
