"""`trainctl data sample --format coco` and `--sample-data` on a COCO config (no paddle)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from trainctl.data.sample import CLASSES, write_coco_sample, write_sample_dataset


def test_coco_sample_has_the_voc_sample_boxes_in_ppdet_coco_layout(tmp_path):
    voc = write_sample_dataset(tmp_path / "voc", images=10, seed=4)
    coco = write_coco_sample(tmp_path / "coco", images=10, seed=4)
    assert (coco.train, coco.valid, coco.objects) == (voc.train, voc.valid, voc.objects)
    train = json.loads((tmp_path / "coco/annotations/instances_train2017.json").read_text())
    valid = json.loads((tmp_path / "coco/annotations/instances_val2017.json").read_text())
    assert [c["name"] for c in train["categories"]] == list(CLASSES)
    assert [c["id"] for c in train["categories"]] == [1, 2, 3, 4]
    assert len(train["images"]) == voc.train and len(valid["images"]) == voc.valid
    for doc, folder in ((train, "train2017"), (valid, "val2017")):
        for image in doc["images"]:
            assert (tmp_path / "coco" / folder / image["file_name"]).is_file()
    # the same picture and box as the VOC sample: road0's first box
    xml = (tmp_path / "voc/annotations/road0.xml").read_text()
    x1 = int(xml.split("<xmin>")[1].split("<")[0])
    y2 = int(xml.split("<ymax>")[1].split("<")[0])
    first = next(a for a in train["annotations"] if a["image_id"] == 1)
    assert first["bbox"][0] == x1 and first["bbox"][1] + first["bbox"][3] == y2
    assert first["area"] == first["bbox"][2] * first["bbox"][3] and first["iscrowd"] == 0
    assert len(first["segmentation"][0]) == 8  # a polygon: Mask R-CNN configs read the same file
    assert (tmp_path / "coco/train2017/road0.png").read_bytes() == (tmp_path / "voc/images/road0.png").read_bytes()


def test_coco_sample_passes_trainctl_data_check_on_a_coco_config(tmp_path):
    from trainctl.config import resolve
    from trainctl.data.check import check_config

    write_coco_sample(tmp_path / "dataset/coco", images=6, seed=1)
    cfg = tmp_path / "coco.yml"
    cfg.write_text(
        "metric: COCO\nnum_classes: 4\n"
        f"TrainDataset: {{name: COCODataSet, image_dir: train2017, anno_path: annotations/instances_train2017.json, dataset_dir: {tmp_path}/dataset/coco}}\n"
        f"EvalDataset: {{name: COCODataSet, image_dir: val2017, anno_path: annotations/instances_val2017.json, dataset_dir: {tmp_path}/dataset/coco}}\n")
    report = check_config(resolve(str(cfg)))
    assert report.errors == 0, [f.message for ds in report.datasets for f in ds.findings]
    assert [ds.classes for ds in report.datasets] == [list(CLASSES), list(CLASSES)]


def test_cli_format_coco_default_dir(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "trainctl", "data", "sample", "--format", "coco", "--images", "5"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "to dataset/coco" in proc.stdout
    assert Path(tmp_path / "dataset/coco/annotations/instances_val2017.json").is_file()


def test_sample_data_writes_coco_for_a_coco_config_with_its_paths(tmp_path):
    """--sample-data on a COCO config: one COCO sample with the config's own image dirs and JSON names."""
    cfg = tmp_path / "coco.yml"
    cfg.write_text(
        "metric: COCO\nnum_classes: 4\narchitecture: YOLOv3\n"
        "TrainDataset: {name: COCODataSet, image_dir: imgs/tr, anno_path: ann/train.json, dataset_dir: data/c}\n"
        "EvalDataset: {name: COCODataSet, image_dir: imgs/va, anno_path: ann/val.json, dataset_dir: data/c}\n")
    from trainctl.config import resolve
    from trainctl.launch import flow
    from trainctl.launch.plan import Plan

    import os

    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        plan = Plan.__new__(Plan)
        plan.warnings = []
        flow._write_sample_data(resolve(str(cfg)), ("train", "eval"), plan, dry=True)
        assert plan.warnings == ["--sample-data: would write the COCO sample dataset to data/c"]
        flow._write_sample_data(resolve(str(cfg)), ("train", "eval"), plan, dry=False)
    finally:
        os.chdir(cwd)
    train = json.loads((tmp_path / "data/c/ann/train.json").read_text())
    assert (tmp_path / "data/c/imgs/tr" / train["images"][0]["file_name"]).is_file()
    assert json.loads((tmp_path / "data/c/ann/val.json").read_text())["images"]
