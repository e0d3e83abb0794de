"""A synthetic road-sign dataset in PaddleDetection's VOC layout (or COCO, `write_coco_sample`), made offline.

The layout is that of PaddleDetection's roadsign_voc set:

    images/road0.png ...          RGB PNG images
    annotations/road0.xml ...     Pascal VOC XML, one <object> per sign
    train.txt, valid.txt          "images/road0.png annotations/road0.xml" per line
    label_list.txt                speedlimit, crosswalk, trafficlight, stop

Each class has its own shape and colours (so a detector can learn something
in a few epochs), drawn on a varied background of sky, road and clutter.
Pure Python (zlib + struct for PNG, random.Random for layout): the same seed
gives the same bytes, and nothing here needs paddle or numpy.
"""

from __future__ import annotations

import math
import random
import struct
import zlib
from dataclasses import asdict, dataclass, field
from pathlib import Path

from trainctl.fsutil import atomic_write_text

CLASSES = ("speedlimit", "crosswalk", "trafficlight", "stop")

Color = tuple[int, int, int]


@dataclass
class SampleSummary:
    out_dir: str
    images: int
    train: int
    valid: int
    objects: int
    classes: list[str] = field(default_factory=lambda: list(CLASSES))
    objects_per_class: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


# ---------------------------------------------------------------- raster ----


class Canvas:
    """An RGB image as a list of bytearray rows; shapes are filled row by row."""

    def __init__(self, width: int, height: int, color: Color = (0, 0, 0)):
        self.width = width
        self.height = height
        self.rows = [bytearray(bytes(color) * width) for _ in range(height)]

    def hspan(self, y: int, x0: int, x1: int, color: Color) -> None:
        """Fill pixels x0..x1-1 of row y (clipped to the canvas)."""
        if y < 0 or y >= self.height:
            return
        x0 = max(0, x0)
        x1 = min(self.width, x1)
        if x1 > x0:
            self.rows[y][x0 * 3 : x1 * 3] = bytes(color) * (x1 - x0)

    def rect(self, x0: int, y0: int, x1: int, y1: int, color: Color) -> None:
        for y in range(max(0, y0), min(self.height, y1)):
            self.hspan(y, x0, x1, color)

    def circle(self, cx: float, cy: float, r: float, color: Color) -> None:
        for y in range(int(cy - r), int(cy + r) + 1):
            dy = y + 0.5 - cy
            if abs(dy) > r:
                continue
            half = math.sqrt(r * r - dy * dy)
            self.hspan(y, int(round(cx - half)), int(round(cx + half)), color)

    def polygon(self, points: list[tuple[float, float]], color: Color) -> None:
        """Fill a convex polygon by scanlines."""
        ys = [p[1] for p in points]
        n = len(points)
        for y in range(int(min(ys)), int(max(ys)) + 1):
            yc = y + 0.5
            xs = []
            for i in range(n):
                (xa, ya), (xb, yb) = points[i], points[(i + 1) % n]
                if (ya <= yc < yb) or (yb <= yc < ya):
                    xs.append(xa + (yc - ya) * (xb - xa) / (yb - ya))
            if len(xs) >= 2:
                self.hspan(y, int(round(min(xs))), int(round(max(xs))), color)

    def png(self) -> bytes:
        raw = b"".join(b"\x00" + bytes(row) for row in self.rows)

        def chunk(kind: bytes, data: bytes) -> bytes:
            return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

        header = struct.pack(">IIBBBBB", self.width, self.height, 8, 2, 0, 0, 0)  # 8-bit RGB
        return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b"")


# ------------------------------------------------------------- drawing ----


def _jitter(rng: random.Random, color: Color, amount: int) -> Color:
    return tuple(max(0, min(255, c + rng.randint(-amount, amount))) for c in color)  # type: ignore[return-value]


def _background(canvas: Canvas, rng: random.Random) -> None:
    """Sky gradient, a horizon, a grey road, and random clutter (buildings, trees)."""
    w, h = canvas.width, canvas.height
    horizon = int(h * rng.uniform(0.35, 0.6))
    top = _jitter(rng, (120, 160, 210), 40)
    bottom = _jitter(rng, (200, 210, 220), 30)
    for y in range(horizon):
        t = y / max(1, horizon - 1)
        canvas.hspan(y, 0, w, tuple(int(a + (b - a) * t) for a, b in zip(top, bottom)))  # type: ignore[arg-type]
    ground = _jitter(rng, (90, 110, 70), 30)
    for y in range(horizon, h):
        canvas.hspan(y, 0, w, _jitter(rng, ground, 4))
    # clutter above the horizon: buildings and trees in muted colours
    for _ in range(rng.randint(3, 8)):
        bw, bh = rng.randint(15, 70), rng.randint(15, horizon)
        x0 = rng.randint(-10, w - 5)
        color = _jitter(rng, rng.choice([(110, 100, 95), (150, 140, 120), (60, 90, 50), (170, 170, 160)]), 20)
        if rng.random() < 0.5:
            canvas.rect(x0, horizon - bh, x0 + bw, horizon, color)
        else:
            canvas.circle(x0 + bw / 2, horizon - bw / 2, bw / 2, color)
    # the road: a trapezoid from the horizon to the bottom edge
    cx = w * rng.uniform(0.3, 0.7)
    top_half, bottom_half = w * rng.uniform(0.03, 0.08), w * rng.uniform(0.3, 0.55)
    road = _jitter(rng, (85, 85, 90), 15)
    canvas.polygon([(cx - top_half, horizon), (cx + top_half, horizon), (cx + bottom_half, h), (cx - bottom_half, h)], road)
    for k in range(6):  # dashed centre line
        t0, t1 = k / 6 + 0.02, k / 6 + 0.09
        y0, y1 = horizon + (h - horizon) * t0, horizon + (h - horizon) * t1
        half = 1 + 3 * t1
        canvas.polygon([(cx - half, y0), (cx + half, y0), (cx + half, y1), (cx - half, y1)], (230, 230, 220))


def _draw_sign(canvas: Canvas, rng: random.Random, cls: str, x0: int, y0: int, size: int) -> tuple[int, int, int, int]:
    """Draw one sign with its top-left corner at (x0, y0); return its box (x1, y1, x2, y2)."""
    s = size
    cx, cy = x0 + s / 2, y0 + s / 2
    if cls == "speedlimit":  # white disc, thick red ring, two dark "digits"
        canvas.circle(cx, cy, s / 2, _jitter(rng, (210, 30, 35), 15))
        canvas.circle(cx, cy, s * 0.36, (245, 245, 245))
        dw, dh = max(2, int(s * 0.12)), max(3, int(s * 0.3))
        for dx in (-0.15, 0.05):
            canvas.rect(int(cx + dx * s), int(cy - dh / 2), int(cx + dx * s) + dw, int(cy + dh / 2), (20, 20, 20))
        box = (x0, y0, x0 + s, y0 + s)
    elif cls == "crosswalk":  # blue square, white triangle, black stripes
        canvas.rect(x0, y0, x0 + s, y0 + s, _jitter(rng, (25, 80, 190), 15))
        m = s * 0.12
        canvas.polygon([(cx, y0 + m), (x0 + s - m, y0 + s - m), (x0 + m, y0 + s - m)], (250, 250, 250))
        for k in range(3):
            yy = int(y0 + s * (0.62 + 0.09 * k))
            canvas.rect(int(cx - s * 0.18), yy, int(cx + s * 0.18), yy + max(1, int(s * 0.04)), (20, 20, 20))
        box = (x0, y0, x0 + s, y0 + s)
    elif cls == "trafficlight":  # tall dark housing, red/yellow/green lamps
        wdt = max(6, int(s * 0.42))
        lx0 = int(cx - wdt / 2)
        canvas.rect(lx0, y0, lx0 + wdt, y0 + s, _jitter(rng, (30, 30, 30), 8))
        lit = rng.randrange(3)
        for k, lamp in enumerate([(230, 40, 30), (240, 200, 30), (40, 200, 70)]):
            color = lamp if k == lit else tuple(c // 3 for c in lamp)
            canvas.circle(cx, y0 + s * (0.18 + 0.32 * k), wdt * 0.34, color)  # type: ignore[arg-type]
        box = (lx0, y0, lx0 + wdt, y0 + s)
    elif cls == "stop":  # red octagon with a white band
        r = s / 2
        pts = [(cx + r * math.cos(math.pi / 8 + k * math.pi / 4), cy + r * math.sin(math.pi / 8 + k * math.pi / 4)) for k in range(8)]
        canvas.polygon(pts, _jitter(rng, (200, 20, 25), 10))
        canvas.rect(int(cx - r * 0.6), int(cy - r * 0.15), int(cx + r * 0.6), int(cy + r * 0.15), (250, 250, 250))
        box = (int(min(p[0] for p in pts)), int(min(p[1] for p in pts)), int(round(max(p[0] for p in pts))), int(round(max(p[1] for p in pts))))
    else:
        raise ValueError(f"unknown class {cls}")
    bx0, by0, bx1, by1 = box
    return max(0, bx0), max(0, by0), min(canvas.width - 1, bx1), min(canvas.height - 1, by1)


def _overlaps(a: tuple[int, int, int, int], b: tuple[int, int, int, int], margin: int = 4) -> bool:
    return not (a[2] + margin <= b[0] or b[2] + margin <= a[0] or a[3] + margin <= b[1] or b[3] + margin <= a[1])


def _annotation_xml(filename: str, width: int, height: int, objects: list[tuple[str, tuple[int, int, int, int]]]) -> str:
    parts = [
        "<annotation>",
        "  <folder>images</folder>",
        f"  <filename>{filename}</filename>",
        f"  <size><width>{width}</width><height>{height}</height><depth>3</depth></size>",
        "  <segmented>0</segmented>",
    ]
    for name, (x1, y1, x2, y2) in objects:
        parts += [
            "  <object>",
            f"    <name>{name}</name>",
            "    <pose>Unspecified</pose>",
            "    <truncated>0</truncated>",
            "    <difficult>0</difficult>",
            f"    <bndbox><xmin>{x1}</xmin><ymin>{y1}</ymin><xmax>{x2}</xmax><ymax>{y2}</ymax></bndbox>",
            "  </object>",
        ]
    parts.append("</annotation>")
    return "\n".join(parts) + "\n"


def render_image(rng: random.Random, width: int, height: int, sign_size: tuple[float, float] = (1 / 8, 1 / 3),
                 max_signs: int = 3) -> tuple[Canvas, list[tuple[str, tuple[int, int, int, int]]]]:
    """One scene: background plus 1..max_signs non-overlapping signs on poles.

    sign_size: the smallest and largest sign side as fractions of the image's shorter side."""
    canvas = Canvas(width, height)
    _background(canvas, rng)
    objects: list[tuple[str, tuple[int, int, int, int]]] = []
    placed: list[tuple[int, int, int, int]] = []
    short = min(width, height)
    plan: list[tuple[str, int, int, int]] = []
    lo, hi = max(16, int(short * sign_size[0])), max(20, int(short * sign_size[1]))
    for _ in range(rng.randint(1, max_signs)):
        cls = rng.choice(CLASSES)
        for _attempt in range(20):
            size = rng.randint(lo, max(lo, hi))
            x0 = rng.randint(2, width - size - 2)
            y0 = rng.randint(2, max(2, height - size - 12))
            candidate = (x0, y0, x0 + size, y0 + size)
            if not any(_overlaps(candidate, p) for p in placed):
                placed.append(candidate)
                plan.append((cls, x0, y0, size))
                break
    # poles first, so that no pole is drawn over a sign
    for _cls, x0, y0, size in plan:
        pole_w = max(2, size // 10)
        canvas.rect(int(x0 + size / 2 - pole_w / 2), y0 + size, int(x0 + size / 2 + pole_w / 2), height, (120, 120, 125))
    for cls, x0, y0, size in plan:
        objects.append((cls, _draw_sign(canvas, rng, cls, x0, y0, size)))
    return canvas, objects


def _scenes(images: int, seed: int, width: int, height: int, valid_every: int, sign_size: tuple[float, float],
            max_signs: int):
    """(name, canvas, objects, is_valid) for each image, in order: the one sequence both layouts write,
    so the same seed gives the same pictures and boxes in VOC and in COCO."""
    rng = random.Random(seed)
    for i in range(images):
        canvas, objects = render_image(rng, width, height, sign_size, max_signs)
        yield f"road{i}", canvas, objects, i % valid_every == valid_every - 1


def write_sample_dataset(
    out_dir: str | Path,
    images: int = 40,
    seed: int = 0,
    width: int = 320,
    height: int = 240,
    valid_every: int = 5,
    sign_size: tuple[float, float] = (1 / 8, 1 / 3),
    max_signs: int = 3,
) -> SampleSummary:
    """Write the synthetic dataset into out_dir; every `valid_every`-th image goes to valid.txt.

    The lists (train.txt, valid.txt, label_list.txt) are written last and
    atomically, so an interrupted run never leaves a dataset that looks complete.
    """
    if images < 2:
        raise ValueError("the sample needs at least 2 images (one for train, one for valid)")
    out = Path(out_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "annotations").mkdir(parents=True, exist_ok=True)
    train_lines: list[str] = []
    valid_lines: list[str] = []
    per_class = {c: 0 for c in CLASSES}
    for name, canvas, objects, is_valid in _scenes(images, seed, width, height, valid_every, sign_size, max_signs):
        (out / "images" / f"{name}.png").write_bytes(canvas.png())
        (out / "annotations" / f"{name}.xml").write_text(_annotation_xml(f"{name}.png", width, height, objects))
        for cls, _ in objects:
            per_class[cls] += 1
        line = f"images/{name}.png annotations/{name}.xml"
        (valid_lines if is_valid else train_lines).append(line)
    atomic_write_text(out / "label_list.txt", "\n".join(CLASSES) + "\n")
    atomic_write_text(out / "valid.txt", "\n".join(valid_lines) + "\n")
    atomic_write_text(out / "train.txt", "\n".join(train_lines) + "\n")
    return SampleSummary(
        out_dir=str(out),
        images=images,
        train=len(train_lines),
        valid=len(valid_lines),
        objects=sum(per_class.values()),
        objects_per_class=per_class,
    )


# PaddleDetection's COCO configs (configs/datasets/coco_detection.yml, coco_instance.yml) read
# dataset/coco/{train2017,val2017} and annotations/instances_{train,val}2017.json
COCO_TRAIN = ("train2017", "annotations/instances_train2017.json")
COCO_VALID = ("val2017", "annotations/instances_val2017.json")


def coco_document(records: list[tuple[str, list[tuple[str, tuple[int, int, int, int]]]]], width: int, height: int) -> dict:
    """A COCO instances document for (file name, objects) records: category ids 1..4 in CLASSES order,
    bbox [x, y, w, h] with w = x2 - x1 (ppdet's COCODataSet adds it back), and each box also as a
    one-polygon segmentation (the sign's bounding rectangle) so instance-segmentation configs
    (Mask R-CNN) read the same file."""
    doc: dict = {"images": [], "annotations": [],
                 "categories": [{"id": k + 1, "name": c, "supercategory": "sign"} for k, c in enumerate(CLASSES)]}
    ann_id = 0
    for image_id, (file_name, objects) in enumerate(records, start=1):
        doc["images"].append({"id": image_id, "file_name": file_name, "width": width, "height": height})
        for cls, (x1, y1, x2, y2) in objects:
            ann_id += 1
            w, h = x2 - x1, y2 - y1
            doc["annotations"].append({
                "id": ann_id, "image_id": image_id, "category_id": CLASSES.index(cls) + 1,
                "bbox": [x1, y1, w, h], "area": w * h, "iscrowd": 0,
                "segmentation": [[x1, y1, x2, y1, x2, y2, x1, y2]],
            })
    return doc


def write_coco_sample(
    out_dir: str | Path,
    images: int = 40,
    seed: int = 0,
    width: int = 320,
    height: int = 240,
    valid_every: int = 5,
    sign_size: tuple[float, float] = (1 / 8, 1 / 3),
    max_signs: int = 3,
    train: tuple[str, str] = COCO_TRAIN,
    valid: tuple[str, str] = COCO_VALID,
) -> SampleSummary:
    """The same images and boxes as write_sample_dataset, in COCO layout: train images in
    out_dir/train[0] listed by out_dir/train[1] (JSON), valid images in valid[0] listed by valid[1].
    The defaults are PaddleDetection's COCO paths, so its COCO configs read it with only
    num_classes changed (4). When train and valid name the same JSON, it lists every image.
    The JSON files are written last and atomically."""
    import json

    if images < 2:
        raise ValueError("the sample needs at least 2 images (one for train, one for valid)")
    out = Path(out_dir)
    same = tuple(train) == tuple(valid)
    sets: dict[tuple[str, str], list] = {tuple(train): [], tuple(valid): []}
    per_class = {c: 0 for c in CLASSES}
    counts = {"train": 0, "valid": 0}
    for name, canvas, objects, is_valid in _scenes(images, seed, width, height, valid_every, sign_size, max_signs):
        image_dir, _ = valid if is_valid else train
        (out / image_dir).mkdir(parents=True, exist_ok=True)
        (out / image_dir / f"{name}.png").write_bytes(canvas.png())
        sets[tuple(valid) if is_valid else tuple(train)].append((f"{name}.png", objects))
        counts["valid" if is_valid else "train"] += 1
        for cls, _ in objects:
            per_class[cls] += 1
    for (image_dir, anno), records in sets.items():
        (out / anno).parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out / anno, json.dumps(coco_document(records, width, height)) + "\n")
    return SampleSummary(
        out_dir=str(out),
        images=images,
        train=counts["train"] + (counts["valid"] if same else 0),
        valid=counts["valid"] + (counts["train"] if same else 0),
        objects=sum(per_class.values()),
        objects_per_class=per_class,
    )
