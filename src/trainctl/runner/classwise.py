"""`trainctl eval --classwise`: AP per class and precision-recall curves, for VOC and COCO metrics.

Read from the evaluation ppdet has just done (a Trainer callback, before ppdet
resets its metrics), with ppdet's own definitions:

- VOC (ppdet.metrics.map_utils.DetectionMAP): each class's detections, sorted by
  score, give cumulative precision and recall; AP is the 11-point or the integral
  ("integral": the sum of precision x recall step) form of the config's map_type.
  mAP is the mean over the classes that have ground truth, a class without any
  detection counting 0: so the per-class APs here average to the reported mAP
  exactly. (ppdet's own classwise table names classes by position among those
  with detections, which mislabels them when a class has none; not reused.)
- COCO (pycocotools COCOeval on the bbox.json ppdet wrote): AP of a class is the
  mean of its precision over IoU 0.50:0.95 and the 101 recall points (all areas,
  100 detections), and the overall AP is the same mean over all classes; its PR
  curve is the one at IoU 0.50.

Results go to <run_dir>/classwise.json and one PNG per class in <run_dir>/pr_curves/.
"""

from __future__ import annotations

import json
import math
import os
import re

from trainctl.fsutil import atomic_write_bytes, atomic_write_text

CLASSWISE_FILE = "classwise.json"
CURVES_DIR = "pr_curves"


def voc_class_ap(score_pos: list, gt_count: int, map_type: str) -> tuple[float, list[float], list[float]]:
    """(AP, precision, recall) of one class from its [score, is_true_positive] pairs (DetectionMAP's rules)."""
    tp = fp = 0
    precision, recall = [], []
    for _score, pos in sorted(score_pos, key=lambda item: item[0], reverse=True):
        tp += int(pos)
        fp += 1 - int(pos)
        precision.append(tp / (tp + fp))
        recall.append(tp / gt_count)
    if not precision:
        return 0.0, [], []
    if map_type == "11point":
        ap = 0.0
        for level in range(11):
            candidates = [p for p, r in zip(precision, recall) if r >= level / 10.0]
            ap += max(candidates) if candidates else 0.0
        return ap / 11.0, precision, recall
    ap, previous = 0.0, 0.0
    for p, r in zip(precision, recall):
        if abs(r - previous) > 1e-6:
            ap += p * abs(r - previous)
            previous = r
    return ap, precision, recall


def voc_classwise(detection_map) -> list[dict]:
    """Per class with ground truth: AP, ground-truth count, detections, precision and recall."""
    names = list(detection_map.classes)
    rows = []
    for index, (score_pos, count) in enumerate(zip(detection_map.class_score_poss, detection_map.class_gt_counts)):
        if count == 0:
            continue
        ap, precision, recall = voc_class_ap(score_pos, count, detection_map.map_type)
        rows.append({"class": names[index] if index < len(names) else str(index), "ap": ap, "gt": int(count),
                     "detections": len(score_pos), "precision": precision, "recall": recall})
    return rows


def coco_classwise(anno_file: str, bbox_json: str) -> list[dict]:
    """Per category: AP@[.50:.95], AP@.50 and the PR curve at IoU .50, from pycocotools."""
    import contextlib
    import io

    import numpy as np
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints its progress
        gt = COCO(anno_file)
        results = json.load(open(bbox_json))
        if not results:
            return [{"class": gt.loadCats(c)[0]["name"], "ap": 0.0, "ap50": 0.0, "gt": len(gt.getAnnIds(catIds=[c])),
                     "detections": 0, "precision": [], "recall": []} for c in gt.getCatIds()]
        coco_eval = COCOeval(gt, gt.loadRes(bbox_json), "bbox")
        coco_eval.evaluate()
        coco_eval.accumulate()
    precisions = coco_eval.eval["precision"]  # (iou, recall, class, area, max dets)
    recall_points = [float(r) for r in coco_eval.params.recThrs]
    rows = []
    for index, cat_id in enumerate(int(c) for c in coco_eval.params.catIds):  # loadCats wants a plain int
        block = precisions[:, :, index, 0, -1]
        valid = block[block > -1]
        at50 = precisions[0, :, index, 0, -1]
        at50_valid = at50[at50 > -1]
        rows.append({"class": gt.loadCats(cat_id)[0]["name"], "ap": float(np.mean(valid)) if valid.size else float("nan"),
                     "ap50": float(np.mean(at50_valid)) if at50_valid.size else float("nan"),
                     "gt": len(gt.getAnnIds(catIds=[cat_id])), "detections": sum(1 for r in results if r.get("category_id") == cat_id),
                     "precision": [max(0.0, float(p)) for p in at50], "recall": recall_points})
    return rows


def _safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_") or "class"


def draw_curves(rows: list[dict], out_dir: str, title: str) -> list[str]:
    """One precision-recall PNG per class; returns the file paths."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    os.makedirs(out_dir, exist_ok=True)
    paths = []
    for row in rows:
        fig, ax = plt.subplots(figsize=(4.5, 4))
        if row["recall"]:
            ax.plot(row["recall"], row["precision"], color="tab:blue")
        ax.set(xlim=(0, 1.02), ylim=(0, 1.02), xlabel="recall", ylabel="precision",
               title=f"{row['class']}: AP {100 * row['ap']:.1f}% ({title})")
        ax.grid(alpha=0.3)
        fig.tight_layout()
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=80)
        plt.close(fig)
        path = os.path.join(out_dir, f"{_safe_name(row['class'])}.png")
        atomic_write_bytes(path, buffer.getvalue())
        paths.append(path)
    return paths


def table_lines(rows: list[dict], metric: str, overall: float | None) -> list[str]:
    from trainctl.output import table

    coco = metric == "COCO"
    headers = ["class", "AP %"] + (["AP50 %"] if coco else []) + ["ground truth", "detections"]
    body = [[r["class"], "-" if math.isnan(r["ap"]) else f"{100 * r['ap']:.2f}"]
            + ([f"{100 * r['ap50']:.2f}"] if coco else []) + [str(r["gt"]), str(r["detections"])] for r in rows]
    if overall is not None:
        body.append(["(mean)" if not coco else "(all)", f"{100 * overall:.2f}"] + ([""] if coco else []) + ["", ""])
    return table(body, headers=headers).splitlines()


def make_recorder(trainer, run_dir: str):
    """A ppdet Trainer callback that computes the per-class results at the end of the evaluation,
    while ppdet's metric still holds them (ppdet resets its metrics right after). ppdet is imported
    here only, so the functions above stay usable without it."""
    from ppdet.engine.callbacks import Callback
    from ppdet.metrics import COCOMetric, VOCMetric

    from trainctl.runner.compat import trainer_metrics

    class ClasswiseRecorder(Callback):
        def __init__(self):
            super().__init__(trainer)
            self.run_dir = run_dir
            self.rows: list[dict] = []
            self.metric = str(trainer.cfg.metric)

        def on_epoch_end(self, status):
            if status.get("mode") != "eval" or self.rows:
                return
            for metric in trainer_metrics(self.model):
                if isinstance(metric, VOCMetric):
                    self.rows = voc_classwise(metric.detection_map)
                elif isinstance(metric, COCOMetric):
                    self.rows = coco_classwise(metric.anno_file, os.path.join(metric.output_eval or ".", "bbox.json"))

        def save(self, overall: float | None) -> dict:
            """Write classwise.json and the PR curves; returns what the eval summary keeps."""
            kind = "IoU 0.5" if self.metric == "COCO" else f"VOC, {self.model.cfg.get('map_type', '11point')}"
            curves = draw_curves(self.rows, os.path.join(self.run_dir, CURVES_DIR), kind)
            data = {"metric": self.metric, "overall": overall, "classes": self.rows, "curves": curves}
            atomic_write_text(os.path.join(self.run_dir, CLASSWISE_FILE), json.dumps(data, indent=2) + "\n")
            return {"classes": [{k: r[k] for k in ("class", "ap", "gt", "detections")} for r in self.rows], "curves": curves}

    return ClasswiseRecorder()
