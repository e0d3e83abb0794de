"""Detections as COCO results (bbox.json), and scoring such a file (`trainctl eval --json-eval`).

bbox.json is the COCO results format pycocotools' loadRes reads:
[{"image_id", "category_id", "bbox": [x, y, w, h], "score"}], plus "file_name"
(as PaddleDetection's deploy/python/infer.py writes it; pycocotools ignores it).

Image ids: from a COCO annotation file (--coco-annotations: its images'
file_name -> id, category ids by the label's name), else from the file names
when every name is a number (COCO's 000000397133.jpg -> 397133), else the
image's position in the sorted input list (0, 1, ...; PaddleDetection's
deploy code does the same); category ids are then the class index.

Scoring (`score_results`): with the config's metric. COCO: pycocotools on the
config's EvalDataset annotation file. VOC: ppdet's VOCMetric, built as ppdet's
Trainer builds it for eval, fed the file's boxes per eval image (matched by
file_name, else by image_id as the eval image's position) against the
dataset's ground truth, so the mAP equals a direct `trainctl eval` of
the same detections.
"""

from __future__ import annotations

import json
import os

from trainctl.errors import UserError

RESULTS_FILE = "bbox.json"


def annotation_ids(annotation_file: str) -> tuple[dict[str, int], dict[str, int]]:
    """(file name -> image id, category name -> category id) from a COCO annotation file."""
    try:
        with open(annotation_file, encoding="utf-8") as f:
            doc = json.load(f)
        images = {os.path.basename(im["file_name"]): int(im["id"]) for im in doc["images"]}
        categories = {str(c["name"]): int(c["id"]) for c in doc.get("categories", [])}
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise UserError(f"cannot read COCO annotation file {annotation_file}: {type(exc).__name__}: {exc}",
                        hint="--coco-annotations takes a COCO instances JSON (images with id and file_name)") from exc
    return images, categories


def image_ids(images: list[str], annotation_file: str | None = None) -> dict[str, int]:
    """Image path -> COCO image id (see the module docstring)."""
    if annotation_file:
        by_name, _ = annotation_ids(annotation_file)
        missing = [p for p in images if os.path.basename(p) not in by_name]
        if missing:
            raise UserError(f"{os.path.basename(missing[0])} is not in {annotation_file} ({len(missing)} image(s) missing)",
                            hint="give the annotation file of these images, or leave out --coco-annotations")
        return {p: by_name[os.path.basename(p)] for p in images}
    stems = [os.path.splitext(os.path.basename(p))[0] for p in images]
    if stems and all(s.isdigit() for s in stems) and len(set(stems)) == len(stems):
        return {p: int(s) for p, s in zip(images, stems)}
    return {p: i for i, p in enumerate(images)}


def category_ids(labels: list[str], annotation_file: str | None = None) -> list[int]:
    """Class index -> COCO category id: the annotation file's id for the label's name, else the index."""
    if not annotation_file:
        return list(range(len(labels)))
    _, by_name = annotation_ids(annotation_file)
    missing = [name for name in labels if name not in by_name]
    if missing:
        raise UserError(f"label {missing[0]!r} is not a category in {annotation_file}",
                        hint="the annotation file must name the model's classes (infer_cfg.yml label_list)")
    return [by_name[name] for name in labels]


def to_coco(detections: list[dict], ids: dict[str, int], cat_ids: list[int]) -> list[dict]:
    """detections.json entries -> COCO results entries ([x1, y1, x2, y2] -> [x, y, w, h])."""
    out = []
    for d in detections:
        x1, y1, x2, y2 = d["box"]
        out.append({"image_id": ids[d["file"]], "category_id": cat_ids[d["class_id"]],
                    "file_name": os.path.basename(d["file"]),
                    "bbox": [round(x1, 3), round(y1, 3), round(x2 - x1, 3), round(y2 - y1, 3)], "score": d["score"]})
    return out


def load_results(path: str) -> list[dict]:
    try:
        with open(path, encoding="utf-8") as f:
            doc = json.load(f)
    except (OSError, ValueError) as exc:
        raise UserError(f"cannot read results file {path}: {exc}", hint="--json-eval takes a bbox.json (trainctl infer --save-results)") from exc
    if not isinstance(doc, list) or any(not isinstance(r, dict) or not {"image_id", "category_id", "bbox", "score"} <= set(r) for r in doc):
        raise UserError(f"{path} is not in the COCO results format",
                        hint="a JSON list of {image_id, category_id, bbox [x, y, w, h], score}")
    return doc


def rows_per_image(results: list[dict], records: list[dict], cat_ids: list[int]) -> list:
    """Per eval record (in order), rows [class, score, x1, y1, x2, y2] from COCO results entries.

    An entry belongs to a record by file_name when it has one (entries of other images are left out), else by
    image_id == record's position."""
    import numpy as np

    index = {cid: i for i, cid in enumerate(cat_ids)}
    by_name = {os.path.basename(str(r.get("im_file", ""))): i for i, r in enumerate(records)}
    rows: list[list] = [[] for _ in records]
    for entry in results:
        if entry.get("file_name"):  # an image outside the eval set (e.g. a whole directory was inferred): not scored
            i = by_name.get(os.path.basename(str(entry["file_name"])))
        else:
            i = int(entry["image_id"])
            i = i if 0 <= i < len(records) else None
        if i is None:
            continue
        cls = index.get(int(entry["category_id"]))
        if cls is None:
            raise UserError(f"category_id {entry['category_id']} is not one of the config's classes {cat_ids}")
        x, y, w, h = (float(v) for v in entry["bbox"])
        rows[i].append([cls, float(entry["score"]), x, y, x + w, y + h])
    return [np.array(r, dtype=np.float32).reshape(-1, 6) for r in rows]


def score_results(flat_config: str, results_file: str) -> dict:
    """mAP of a bbox.json on the config's eval dataset, with the config's metric (imports paddle/ppdet)."""
    results = load_results(results_file)
    from trainctl.runner import session
    from trainctl.runner.compat import quiet_ppdet_warnings, trainer_metrics

    quiet_ppdet_warnings()
    cfg = session.load_flat_config(flat_config)
    session.setup_device(cfg, "cpu")
    session.check_datasets(cfg, ["EvalDataset"])
    metric = cfg.get("metric", "COCO")
    if metric not in ("COCO", "VOC"):
        raise UserError(f"--json-eval scores COCO and VOC metrics, not {metric}")
    import numpy as np
    from ppdet.engine import Trainer

    trainer = Trainer(cfg, mode="eval")  # the dataset and metric exactly as a direct eval builds them
    if metric == "COCO":
        from ppdet.metrics.coco_utils import cocoapi_eval

        stats = cocoapi_eval(results_file, "bbox", anno_file=trainer.dataset.get_anno())
        return {"metric": "COCO", "results": {"bbox": float(stats[0])}, "images": len(trainer.dataset.roidbs), "entries": len(results)}
    voc = trainer_metrics(trainer)[0]
    records = trainer.dataset.roidbs
    cat_ids = list(range(int(cfg["num_classes"])))
    for record, rows in zip(records, rows_per_image(results, records, cat_ids)):
        inputs = {"gt_bbox": [record["gt_bbox"]], "gt_class": [record["gt_class"]],
                  "difficult": [record.get("difficult", np.zeros_like(record["gt_class"]))],
                  "scale_factor": np.ones((1, 2), dtype=np.float32)}
        if not len(rows):
            rows = np.array([[-1, 0, 0, 0, 0, 0]], dtype=np.float32)  # the model's "nothing found" row
        voc.update(inputs, {"bbox": rows, "bbox_num": np.array([len(rows)])})
    voc.accumulate()
    return {"metric": "VOC", "results": {"bbox": float(voc.get_results()["bbox"][0])}, "images": len(records), "entries": len(results)}


def json_eval(config: str, overrides: list[str], results_file: str) -> dict:
    """`trainctl eval --json-eval FILE`: resolve the config (no weights needed), score the file."""
    import tempfile

    from trainctl.runner import session

    load_results(results_file)  # a clear error before paddle
    with tempfile.TemporaryDirectory(prefix="trainctl-jsoneval-") as tmp:
        flat, _ = session.write_flat_config(config, overrides, tmp)
        return score_results(flat, results_file)
