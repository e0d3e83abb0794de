"""data check against the real readers: ppdet's VOCDataSet and OpenCV agree with what the check says."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from trainctl.data.check import check_config, image_size
from trainctl.data.sample import write_sample_dataset

REFERENCE_IMAGES = Path(__file__).resolve().parents[3] / "shared" / "reference" / "images"

PPDET_SCRIPT = r"""
import json, sys
from ppdet.data.source.voc import VOCDataSet
out = {}
for name, root in json.loads(sys.argv[1]).items():
    ds = VOCDataSet(dataset_dir=root, anno_path="train.txt", label_list="label_list.txt",
                    data_fields=["image", "gt_bbox", "gt_class", "difficult"])
    try:
        ds.parse_dataset()
        out[name] = {"records": len(ds.roidbs), "boxes": int(sum(len(r["gt_bbox"]) for r in ds.roidbs))}
    except Exception as exc:
        out[name] = {"error": type(exc).__name__}
print("RESULT " + json.dumps(out))
"""


def config(root: Path) -> dict:
    return {"TrainDataset": {"name": "VOCDataSet", "dataset_dir": str(root), "anno_path": "train.txt",
                             "label_list": "label_list.txt"}}


@pytest.mark.paddle
def test_check_agrees_with_ppdet_voc_reader(tmp_path):
    clean = tmp_path / "clean"
    write_sample_dataset(clean, images=10, seed=5)
    broken = tmp_path / "unknown_label"
    shutil.copytree(clean, broken)
    xml = broken / (broken / "train.txt").read_text().split()[1]
    text = xml.read_text()
    start = text.index("<name>") + len("<name>")
    xml.write_text(text[:start] + "no_such_class" + text[text.index("</name>"):])

    ours_clean = check_config(config(clean), tasks=("train",))
    ours_broken = check_config(config(broken), tasks=("train",))
    assert ours_clean.ok
    assert "unknown-label" in {f.code for f in ours_broken.datasets[0].findings} and not ours_broken.ok

    proc = subprocess.run([sys.executable, "-c", PPDET_SCRIPT, json.dumps({"clean": str(clean), "broken": str(broken)})],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(next(ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT "))[7:])
    # ppdet reads the same images and boxes the check counted ...
    assert result["clean"] == {"records": ours_clean.datasets[0].entries, "boxes": ours_clean.datasets[0].objects}
    # ... and crashes on the label the check reports
    assert result["broken"] == {"error": "KeyError"}


@pytest.mark.paddle
def test_image_size_agrees_with_opencv(tmp_path):
    cv2 = pytest.importorskip("cv2")
    import numpy as np

    paths = sorted(REFERENCE_IMAGES.glob("*")) if REFERENCE_IMAGES.is_dir() else []
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 255, size=(31, 47, 3), dtype=np.uint8)
    for ext in (".jpg", ".png", ".bmp"):
        path = tmp_path / f"written{ext}"
        assert cv2.imwrite(str(path), pixels)
        paths.append(path)
    assert len(paths) >= 3
    for path in paths:
        img = cv2.imread(str(path))
        assert img is not None
        assert image_size(path)[:2] == (img.shape[1], img.shape[0]), path
