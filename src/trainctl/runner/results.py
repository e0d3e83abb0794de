"""Detections and what `trainctl infer` writes: one Detection per box, the annotated images
(drawing), `detections.json` and COCO bbox.json (runner/predict.py produces the detections).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from trainctl.fsutil import atomic_write_bytes, atomic_write_text


RESULT_FILE = "detections.json"


@dataclass
class Detection:
    file: str
    class_id: int
    name: str
    score: float
    box: list[float]

    def to_json(self) -> dict:
        d = asdict(self)
        d["class"] = d.pop("name")
        return d


def rows_to_detections(file: str, rows, labels: list[str], threshold: float) -> list[Detection]:
    out = []
    for row in rows:
        cls, score = int(row[0]), float(row[1])
        if cls < 0 or score < threshold:
            continue
        name = labels[cls] if cls < len(labels) else str(cls)
        out.append(Detection(file, cls, name, round(score, 6), [round(float(v), 4) for v in row[2:6]]))
    out.sort(key=lambda d: -d.score)
    return out


def draw_detections(bgr, detections: list[Detection]) -> None:
    """Boxes and "class score" labels drawn into a BGR image, in place; the highest score last, so on top."""
    import cv2

    for d in draw_order(detections):
        x1, y1, x2, y2 = (int(round(v)) for v in d.box)
        color = _color(d.class_id)
        cv2.rectangle(bgr, (x1, y1), (x2, y2), color, 2)
        text = f"{d.name} {d.score:.2f}"
        (tw, th), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, 0.4, 1)
        ty = max(th + 2, y1)
        cv2.rectangle(bgr, (x1, ty - th - 3), (x1 + tw + 2, ty), color, -1)
        cv2.putText(bgr, text, (x1 + 1, ty - 2), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 255), 1, cv2.LINE_AA)


def draw_order(detections: list[Detection]) -> list[Detection]:
    """Lowest score first: where boxes overlap, the best one is drawn over the others."""
    return sorted(detections, key=lambda d: d.score)


def _color(class_id: int) -> tuple[int, int, int]:
    palette = [(56, 56, 255), (151, 157, 255), (31, 112, 255), (29, 178, 255), (49, 210, 207), (10, 249, 72), (23, 204, 146), (134, 219, 61)]
    return palette[class_id % len(palette)]


class ResultWriter:
    """Writes an annotated copy of each image as soon as its detections are known, and detections.json last.

    The annotated images are derived output (detections.json plus the input
    reproduce them), so each is renamed into place atomically but not fsynced;
    detections.json is the result and gets the full fsync. With
    save_images=False only detections.json is written.
    """

    def __init__(self, output_dir: str, save_images: bool = True):
        self.out = Path(output_dir)
        self.out.mkdir(parents=True, exist_ok=True)
        self.save_images = save_images

    def image(self, path: str, detections: list[Detection], bgr=None) -> None:
        """Annotate `path` (its decoded BGR pixels when the caller still has them; drawn on in place)."""
        if not self.save_images:
            return
        import cv2

        if bgr is None:
            bgr = cv2.imread(path, cv2.IMREAD_COLOR)
            if bgr is None:
                return
        draw_detections(bgr, detections)
        ok, encoded = cv2.imencode(Path(path).suffix or ".png", bgr)
        if ok:
            atomic_write_bytes(self.out / Path(path).name, encoded.tobytes(), fsync=False)

    def finish(self, source: str, images: list[str], detections: list[Detection], labels: list[str], threshold: float) -> str:
        """Write detections.json; returns its path."""
        result = {
            "source": source,
            "threshold": threshold,
            "labels": labels,
            "images": images,
            "detections": [d.to_json() for d in detections],
        }
        path = self.out / RESULT_FILE
        atomic_write_text(path, json.dumps(result, indent=2) + "\n")
        return str(path)


def write_coco_results(output_dir: str, images: list[str], detections: list[Detection], labels: list[str],
                       annotation_file: str | None) -> str:
    """bbox.json (COCO results format, runner/coco_results.py) beside detections.json; returns its path."""
    from trainctl.runner import coco_results

    entries = coco_results.to_coco([d.to_json() for d in detections], coco_results.image_ids(images, annotation_file),
                                   coco_results.category_ids(labels, annotation_file))
    path = Path(output_dir) / coco_results.RESULTS_FILE
    atomic_write_text(path, json.dumps(entries) + "\n")
    return str(path)
