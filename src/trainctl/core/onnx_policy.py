"""ONNX export: the choices and checks that need no paddle (`trainctl export --format onnx`, docs/deploy.md).

- which formats and opsets `trainctl export` accepts, and whether paddle2onnx/onnxruntime are installed
  (found without importing them);
- the paddle/paddle2onnx pairs measured to convert, for `trainctl doctor`;
- the rewrite of a new-IR program (model.json) that paddle2onnx 2.1.0 reads right (`retype_float_arrays`);
- the comparison of two engines' detections that decides whether an ONNX file is good (`compare_rows`).

Why the rewrite (measured 2026-12-02, docs/deploy.md): paddle 3.3.1 writes model.json with
`base_code.version` 4 and stores the float elements of array attributes (e.g. the `scale` of
nearest_interp, [2.0, 2.0]) as `0.a_f64`; paddle 3.2.1 wrote version 3 and `0.a_f32`.
paddle2onnx 2.1.0's PIR parser requires FloatAttribute elements there and fails with "the 0th
elementwise MUST be ir::FloatAttribute". Retyping those elements to `0.a_f32` in a copy of the
program makes it convert; the same for leaky_relu's scalar `negative_slope`, which paddle2onnx otherwise
reads wrong, silently (see `retype_float_arrays`). Keyed on the case it was measured on: only files that
say version 4.
"""

from __future__ import annotations

import importlib.util
import math

from trainctl.errors import UserError

FORMATS = ("paddle", "onnx")
ENGINES = ("paddle", "onnxruntime")
# paddle2onnx 2.1.0: "The Opset Version must be between 7 and 21"
OPSET_MIN, OPSET_MAX = 7, 21
DEFAULT_OPSET = 16  # measured: YOLOv3 (trainctl) and PP-YOLOE+ (develop) convert and agree at 16
ONNX_FILE = "model.onnx"
CHECK_FILE = "onnx_check.json"  # beside model.onnx: what the last check compared and found
SCORE_TOL = 1e-3
# The check compares the detections scoring at least this. Below it, the NMS in the ONNX graph (paddle2onnx's
# rendering of multiclass_nms3) can keep another box of a near-tied pair than Paddle's (measured on an untrained
# PP-YOLOE+: rows scoring 0.01-0.03, boxes overlapping at IoU 0.6-0.7, near the NMS threshold of 0.7;
# every row from 0.03 up matched).
CHECK_THRESHOLD = 0.05
IOU_MIN = 0.99
INSTALL_HINT = "pip install 'trainctl[onnx]' (paddle2onnx, onnxruntime)"

# (paddle version, paddle2onnx version, what was measured): docs/deploy.md
KNOWN_GOOD = (
    ("3.3.1", "2.1.0", "converts with trainctl's rewrite of model.json (base_code version 4); checked against Paddle Inference"),
)
# the model.json versions whose f64 array elements paddle2onnx 2.1.0 rejects (written by paddle 3.3.1)
RETYPE_PROGRAM_VERSIONS = (4,)
# (op, attribute) pairs whose value is a float in the op's definition but that paddle 3.3.1 wrote as f64
FLOAT_SCALAR_ATTRS = {("leaky_relu", "negative_slope")}


def check_format(fmt: str) -> str:
    if fmt not in FORMATS:
        raise UserError(f"--format {fmt!r} is not one of {', '.join(FORMATS)}",
                        hint="paddle: Paddle Inference files; onnx: also model.onnx (checked with ONNX Runtime)")
    return fmt


def check_opset(opset: int | None) -> int:
    if opset is None:
        return DEFAULT_OPSET
    if not OPSET_MIN <= opset <= OPSET_MAX:
        raise UserError(f"--opset {opset} is outside {OPSET_MIN}..{OPSET_MAX} (what paddle2onnx converts to)",
                        hint=f"leave it out for {DEFAULT_OPSET}")
    return opset


def check_threshold(value: float | None) -> float:
    if value is None:
        return CHECK_THRESHOLD
    if not 0.0 <= value < 1.0:
        raise UserError(f"--check-threshold {value} is not in [0, 1)")
    return value


def check_engine(engine: str) -> str:
    if engine not in ENGINES:
        raise UserError(f"--engine {engine!r} is not one of {', '.join(ENGINES)}")
    return engine


def missing_packages(names=("paddle2onnx", "onnxruntime")) -> list[str]:
    """Which of the packages are not importable here (looked up, not imported)."""
    return [n for n in names if importlib.util.find_spec(n) is None]


def require_packages(names=("paddle2onnx", "onnxruntime"), what: str = "--format onnx") -> None:
    missing = missing_packages(names)
    if missing:
        raise UserError(f"{what} needs {' and '.join(missing)}, which {'is' if len(missing) == 1 else 'are'} not installed",
                        hint=INSTALL_HINT)


def pair_status(paddle_version: str | None, p2o_version: str | None) -> str:
    """One line for `trainctl doctor`: is this paddle/paddle2onnx pair one measured to work?"""
    if not paddle_version or not p2o_version:
        return "not installed"
    for paddle_v, p2o_v, note in KNOWN_GOOD:
        if paddle_v == paddle_version and p2o_v == p2o_version:
            return f"known to work: {note}"
    return "not checked here (trainctl still checks every converted file against Paddle Inference)"


# ------------------------------------------------------------ the model.json rewrite ----


def program_version(program: dict) -> int | None:
    base = program.get("base_code") if isinstance(program, dict) else None
    return base.get("version") if isinstance(base, dict) else None


def retype_float_arrays(program: dict) -> int:
    """In place, for paddle2onnx 2.1.0: f64 attribute values paddle 3.3.1 wrote where the op's attribute is a
    float become f32; returns how many. Two kinds, both measured:

    - the elements of `0.a_array` attributes (nearest_interp's `scale`): unconverted, paddle2onnx fails
      ("the 0th elementwise MUST be ir::FloatAttribute");
    - the scalar attributes in FLOAT_SCALAR_ATTRS (leaky_relu's `negative_slope`, written as f64 in a
      program translated from model.pdmodel): unconverted, paddle2onnx converts but reads the value wrong,
      and the ONNX file's detections differ from Paddle Inference's (YOLOv3: no detection matched;
      retyped: all 51 matched, scores within 1e-7).

    Scalars that are doubles in the op's definition (full's `value`) stay. Only for the program versions
    measured (RETYPE_PROGRAM_VERSIONS); other files are left alone (0).
    """
    if program_version(program) not in RETYPE_PROGRAM_VERSIONS:
        return 0
    count = 0
    stack = [program]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            if node.get("#") == "0.a_array" and isinstance(node.get("D"), list):
                for element in node["D"]:
                    if isinstance(element, dict) and element.get("#") == "0.a_f64":
                        element["#"] = "0.a_f32"
                        count += 1
            op = node.get("#")
            if isinstance(op, str) and isinstance(node.get("A"), list):
                for attr in node["A"]:
                    value = attr.get("AT") if isinstance(attr, dict) else None
                    if (isinstance(value, dict) and value.get("#") == "0.a_f64"
                            and (op.split(".", 1)[-1], attr.get("N")) in FLOAT_SCALAR_ATTRS):
                        value["#"] = "0.a_f32"
                        count += 1
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return count


# ------------------------------------------------------------ comparing two engines ----


def iou(a, b) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    if union <= 0:
        return 1.0 if list(a) == list(b) else 0.0
    return inter / union


def _valid(rows, threshold: float) -> list[list[float]]:
    out = [[float(v) for v in row[:6]] for row in rows if int(row[0]) >= 0 and float(row[1]) >= threshold]
    return sorted(out, key=lambda r: -r[1])


def compare_rows(reference: dict, candidate: dict, threshold: float = 0.0, score_tol: float = SCORE_TOL,
                 iou_min: float = IOU_MIN, names: tuple[str, str] = ("Paddle Inference", "ONNX Runtime")) -> dict:
    """Match detections per image ({image: rows [class, score, x1, y1, x2, y2]}) of two engines.

    Each reference row must have a candidate row of the same class, score within score_tol and
    IoU >= iou_min (greedy, best score first), and every candidate row must be matched. A row whose
    score is within score_tol of `threshold` may be missing on the other side (it is at the edge).
    Returns {"ok", "compared", "matched", "max_score_diff", "min_iou", "difference"}: difference is
    one line naming the first disagreement (None when ok).
    """
    matched, max_diff, min_iou, difference = 0, 0.0, 1.0, None
    compared = 0
    for image in reference:
        ref, cand = _valid(reference[image], threshold), _valid(candidate.get(image, []), threshold)
        compared += len(ref)
        used = [False] * len(cand)
        for r in ref:
            best, best_key = None, None
            for j, c in enumerate(cand):
                if used[j] or int(c[0]) != int(r[0]) or abs(c[1] - r[1]) > score_tol:
                    continue
                overlap = iou(r[2:6], c[2:6])
                if overlap >= iou_min and (best_key is None or overlap > best_key):
                    best, best_key = j, overlap
            if best is None:
                if r[1] - threshold <= score_tol:
                    continue
                if difference is None:
                    near = _nearest(r, cand)
                    difference = (f"{image}: {names[0]} found class {int(r[0])} score {r[1]:.4f} box {_box(r)}; "
                                  f"{names[1]} {near}")
                continue
            used[best] = True
            matched += 1
            max_diff = max(max_diff, abs(cand[best][1] - r[1]))
            min_iou = min(min_iou, best_key)
        for j, c in enumerate(cand):
            if not used[j] and c[1] - threshold > score_tol and difference is None:
                difference = (f"{image}: {names[1]} found class {int(c[0])} score {c[1]:.4f} box {_box(c)} "
                              f"that {names[0]} did not")
    return {"ok": difference is None, "compared": compared, "matched": matched, "max_score_diff": max_diff,
            "min_iou": min_iou if matched else None, "difference": difference}


def _box(row) -> str:
    return "[" + ", ".join(f"{v:.1f}" for v in row[2:6]) + "]"


def _nearest(r, cand) -> str:
    same = [c for c in cand if int(c[0]) == int(r[0])]
    if not same:
        return "has no box of that class"
    c = max(same, key=lambda c: iou(r[2:6], c[2:6]))
    return f"nearest: score {c[1]:.4f} box {_box(c)} (IoU {iou(r[2:6], c[2:6]):.3f})"


def finite_rows(rows) -> bool:
    return all(math.isfinite(float(v)) for row in rows for v in row[:6])
