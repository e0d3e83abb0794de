"""Sliced inference geometry and merging (numpy only, no paddle).

A large image is cut into overlapping tiles of --slice WxH (the last row and
column of tiles are moved back to end at the image border, as sahi's
slice_image does, so every tile has the full size unless the image is smaller);
each tile is detected on its own, its boxes are shifted by the tile's origin,
and all tiles' boxes are merged: `nms` keeps, per class, the best of boxes that
overlap more than `iou` (PaddleDetection's deploy code does the same with its
multiclass_nms), `concat` keeps them all.
"""

from __future__ import annotations

from trainctl.errors import UserError

COMBINE_METHODS = ("nms", "concat")


def parse_slice(text: str) -> tuple[int, int]:
    """'640x480' -> (640, 480) (width, height); '640' -> (640, 640)."""
    parts = str(text).lower().replace("*", "x").split("x")
    try:
        values = [int(p) for p in parts]
    except ValueError:
        values = []
    if len(values) == 1:
        values *= 2
    if len(values) != 2 or min(values) < 16:
        raise UserError(f"--slice {text!r} is not WIDTHxHEIGHT", hint="e.g. --slice 640x640 (each at least 16 pixels)")
    return values[0], values[1]


def _starts(length: int, tile: int, step: int) -> list[int]:
    if length <= tile:
        return [0]
    starts = list(range(0, length - tile, step))
    starts.append(length - tile)
    return starts


def tile_windows(width: int, height: int, tile_w: int, tile_h: int, overlap: float) -> list[tuple[int, int, int, int]]:
    """Tiles (x0, y0, x1, y1) covering the image, neighbours overlapping by `overlap` of the tile size, row by row."""
    if not 0.0 <= overlap < 1.0:
        raise UserError(f"--overlap {overlap} is not in [0, 1)", hint="e.g. --overlap 0.25")
    step_x = max(1, int(round(tile_w * (1.0 - overlap))))
    step_y = max(1, int(round(tile_h * (1.0 - overlap))))
    return [(x, y, min(x + tile_w, width), min(y + tile_h, height))
            for y in _starts(height, tile_h, step_y) for x in _starts(width, tile_w, step_x)]


def shift_rows(rows, x0: float, y0: float):
    """Model rows [class, score, x1, y1, x2, y2] of a tile -> the same rows in the whole image's pixels."""
    import numpy as np

    out = np.array(rows, dtype=np.float32).reshape(-1, 6)
    out[:, [2, 4]] += x0
    out[:, [3, 5]] += y0
    return out


def iou_one_to_many(box, boxes):
    import numpy as np

    ix = np.clip(np.minimum(box[2], boxes[:, 2]) - np.maximum(box[0], boxes[:, 0]), 0, None)
    iy = np.clip(np.minimum(box[3], boxes[:, 3]) - np.maximum(box[1], boxes[:, 1]), 0, None)
    inter = ix * iy
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    union = area + areas - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def nms(rows, iou: float = 0.6):
    """Per-class greedy NMS over rows [class, score, x1, y1, x2, y2]; kept rows, best score first."""
    import numpy as np

    rows = np.asarray(rows, dtype=np.float32).reshape(-1, 6)
    rows = rows[rows[:, 0] >= 0]
    kept = []
    for cls in np.unique(rows[:, 0]):
        group = rows[rows[:, 0] == cls]
        group = group[np.argsort(-group[:, 1], kind="stable")]
        while len(group):
            best = group[0]
            kept.append(best)
            group = group[1:][iou_one_to_many(best[2:], group[1:, 2:]) <= iou]
    if not kept:
        return rows[:0]
    out = np.stack(kept)
    return out[np.argsort(-out[:, 1], kind="stable")]


def merge_tiles(per_tile_rows: list, windows: list[tuple[int, int, int, int]], combine: str = "nms", iou: float = 0.6):
    """Every tile's rows in image pixels, merged by `combine` (nms | concat)."""
    import numpy as np

    if combine not in COMBINE_METHODS:
        raise UserError(f"--combine {combine!r} is not one of {', '.join(COMBINE_METHODS)}")
    shifted = [shift_rows(rows, w[0], w[1]) for rows, w in zip(per_tile_rows, windows)]
    allrows = np.concatenate(shifted, axis=0) if shifted else np.zeros((0, 6), dtype=np.float32)
    allrows = allrows[allrows[:, 0] >= 0]
    return nms(allrows, iou) if combine == "nms" else allrows
