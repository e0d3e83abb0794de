"""Per-class AP (eval --classwise) without paddle: VOC's rules on hand-made detections, and COCO's
per-category APs averaging to COCOeval's overall AP (pycocotools, no ppdet)."""

from __future__ import annotations

import json
import types

import pytest

from trainctl.runner import classwise


def test_voc_integral_and_11point_ap():
    # 2 ground-truth boxes; detections by score: TP, FP, TP -> precision 1, 1/2, 2/3 at recall 1/2, 1/2, 1
    pairs = [[0.9, 1.0], [0.8, 0.0], [0.7, 1.0]]
    ap, precision, recall = classwise.voc_class_ap(pairs, 2, "integral")
    assert precision == [1.0, 0.5, pytest.approx(2 / 3)] and recall == [0.5, 0.5, 1.0]
    assert ap == pytest.approx(1.0 * 0.5 + (2 / 3) * 0.5)
    ap11, _, _ = classwise.voc_class_ap(pairs, 2, "11point")
    assert ap11 == pytest.approx((6 * 1.0 + 5 * (2 / 3)) / 11)  # recall 0..0.5: 1.0; 0.6..1.0: 2/3


def test_voc_rows_average_to_the_map_with_a_class_never_detected():
    state = types.SimpleNamespace(classes=["a", "b", "c"], map_type="integral",
                                  class_score_poss=[[[0.9, 1.0]], [], [[0.5, 0.0]]], class_gt_counts=[1, 2, 0])
    rows = classwise.voc_classwise(state)
    assert [r["class"] for r in rows] == ["a", "b"]  # c has no ground truth: not counted, as in DetectionMAP
    assert [r["ap"] for r in rows] == [1.0, 0.0]  # b has ground truth but no detection: AP 0, counted


def test_coco_per_category_aps_average_to_the_overall_ap(tmp_path):
    pytest.importorskip("pycocotools")
    import contextlib
    import io

    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    images = [{"id": i, "file_name": f"{i}.png", "width": 100, "height": 100} for i in (1, 2, 3)]
    boxes = {1: [(1, [10, 10, 30, 30]), (2, [50, 50, 40, 40])], 2: [(1, [5, 5, 20, 20])], 3: [(2, [20, 20, 50, 30])]}
    annotations = [{"id": n, "image_id": img, "category_id": cat, "bbox": box, "area": box[2] * box[3], "iscrowd": 0}
                   for n, (img, cat, box) in enumerate(((i, c, b) for i, items in boxes.items() for c, b in items), 1)]
    gt = {"images": images, "annotations": annotations, "categories": [{"id": 1, "name": "one"}, {"id": 2, "name": "two"}]}
    dets = [{"image_id": 1, "category_id": 1, "bbox": [11, 11, 30, 28], "score": 0.9},
            {"image_id": 1, "category_id": 2, "bbox": [52, 50, 40, 35], "score": 0.8},
            {"image_id": 2, "category_id": 1, "bbox": [30, 30, 20, 20], "score": 0.7},
            {"image_id": 3, "category_id": 2, "bbox": [22, 18, 48, 34], "score": 0.6},
            {"image_id": 3, "category_id": 1, "bbox": [20, 20, 50, 30], "score": 0.3}]
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    (tmp_path / "bbox.json").write_text(json.dumps(dets))
    rows = classwise.coco_classwise(str(tmp_path / "gt.json"), str(tmp_path / "bbox.json"))
    assert [r["class"] for r in rows] == ["one", "two"]
    assert [r["gt"] for r in rows] == [2, 2] and [r["detections"] for r in rows] == [3, 2]
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO(str(tmp_path / "gt.json"))
        ev = COCOeval(coco, coco.loadRes(str(tmp_path / "bbox.json")), "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    assert sum(r["ap"] for r in rows) / 2 == pytest.approx(ev.stats[0])
    assert len(rows[0]["precision"]) == len(rows[0]["recall"]) == 101


def test_table_has_a_row_per_class_and_the_mean():
    rows = [{"class": "a", "ap": 0.5, "gt": 3, "detections": 9}, {"class": "b", "ap": 0.25, "gt": 2, "detections": 4}]
    lines = classwise.table_lines(rows, "VOC", 0.375)
    assert [line.split()[0] for line in lines[2:]] == ["a", "b", "(mean)"]
    assert lines[-1].split()[1] == "37.50"
