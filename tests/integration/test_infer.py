"""`trainctl infer` both ways (dynamic graph, exported model) on real images, with the same results."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

pytestmark = pytest.mark.paddle

LABELS = ["speedlimit", "crosswalk", "trafficlight", "stop"]


def _infer(ptools, cwd, args, out):
    proc = ptools.run_cli(["infer", *args, "--output", str(out)], cwd)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "results in" in proc.stdout
    return json.loads((out / "detections.json").read_text())


def _iou(a, b):
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else float(a == b)


def assert_same_detections(dynamic, exported, top_k=15, score_tol=0.02, min_iou=0.9):
    """Every one of the dynamic path's top-k detections has a twin in the exported path's results."""
    assert abs(len(dynamic) - len(exported)) <= 2 + len(dynamic) // 20, (len(dynamic), len(exported))
    for d in sorted(dynamic, key=lambda d: -d["score"])[:top_k]:
        twins = [e for e in exported if e["file"] == d["file"] and e["class_id"] == d["class_id"]
                 and abs(e["score"] - d["score"]) <= score_tol and _iou(e["box"], d["box"]) >= min_iou]
        assert twins, f"no exported twin for {d}"


@pytest.fixture(scope="session")
def images(smoke_run, ptools):
    return [str(smoke_run.workdir / "dataset" / "roadsign_voc" / "images" / "road4.png"), str(ptools.road554)]


def _check_outputs(result, out, images):
    assert result["images"] == images
    assert result["labels"] == LABELS
    for d in result["detections"]:
        assert set(d) == {"file", "class_id", "class", "score", "box"}
        assert d["file"] in images and d["class"] == LABELS[d["class_id"]]
        assert d["score"] >= result["threshold"] and len(d["box"]) == 4
    for image in images:
        annotated = out / image.rsplit("/", 1)[-1]
        assert annotated.stat().st_size > 1000, annotated


def test_exported_matches_dynamic_within_tolerance(smoke_run, exported_model, images, ptools, tmp_path):
    """Both paths on a synthetic image and a real photo (--dir); low threshold so the 1-epoch model has boxes."""
    (tmp_path / "imgs").mkdir()
    for image in images:
        (tmp_path / "imgs" / image.rsplit("/", 1)[-1]).write_bytes(open(image, "rb").read())
    in_dir = sorted(str(p) for p in (tmp_path / "imgs").iterdir())
    dir_args = ["--dir", str(tmp_path / "imgs"), "--threshold", "0.05"]
    dyn = _infer(ptools, smoke_run.workdir, ["-c", "roadsign_cpu_smoke.yml", "--weights", str(smoke_run.final), *dir_args], tmp_path / "dyn")
    exp = _infer(ptools, smoke_run.workdir, ["--model-dir", str(exported_model), "--threads", "2", *dir_args], tmp_path / "exp")
    _check_outputs(dyn, tmp_path / "dyn", in_dir)
    _check_outputs(exp, tmp_path / "exp", in_dir)
    for image in in_dir:  # both images have boxes to compare
        assert len([d for d in dyn["detections"] if d["file"] == image]) >= 5, image
    assert_same_detections(dyn["detections"], exp["detections"], top_k=20)


def test_infer_one_image_both_ways(smoke_run, exported_model, images, ptools, tmp_path):
    args = ["--img", images[0], "--threshold", "0.3"]
    dyn = _infer(ptools, smoke_run.workdir, ["-c", "roadsign_cpu_smoke.yml", "--weights", str(smoke_run.final), *args], tmp_path / "dyn")
    exp = _infer(ptools, smoke_run.workdir, ["--model-dir", str(exported_model), *args], tmp_path / "exp")
    _check_outputs(dyn, tmp_path / "dyn", images[:1])
    _check_outputs(exp, tmp_path / "exp", images[:1])
    assert dyn["threshold"] == exp["threshold"] == 0.3
    assert_same_detections(dyn["detections"], exp["detections"])


def test_infer_errors_are_one_line(smoke_run, ptools, tmp_path):
    cases = [
        (["infer", "--model-dir", str(tmp_path), "--img", str(ptools.road554)], "is not an exported model"),
        (["infer", "-c", "roadsign_cpu_smoke.yml", "--weights", str(tmp_path / "gone"), "--img", str(ptools.road554)], "weights file not found"),
        (["infer", "-c", "roadsign_cpu_smoke.yml", "--weights", str(smoke_run.final), "--img", str(tmp_path / "none.png")], "image not found"),
        (["infer", "--model-dir", str(tmp_path), "-c", "roadsign_cpu_smoke.yml", "--img", str(ptools.road554)], "either -c CONFIG"),
    ]
    for args, message in cases:
        proc = ptools.run_cli(args, smoke_run.workdir)
        assert proc.returncode == 2, (args, proc.stderr)
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("trainctl: error:") and message in lines[0], (args, lines)


PREPROCESS_BOTH_WAYS = r"""
import sys, json, numpy as np, yaml
from ppdet.data.transform import operators
from trainctl.runner.predict import Preprocessor, ExportedModel
model_dir, image = sys.argv[1], sys.argv[2]
cfg = yaml.safe_load(open(model_dir + "/infer_cfg.yml"))
ours = Preprocessor(cfg["Preprocess"])(ExportedModel.read_rgb(image))
sample = {"im_file": image}
sample = operators.Decode()(sample)
for op in cfg["Preprocess"]:
    args = {k: v for k, v in op.items() if k != "type"}
    sample = getattr(operators, op["type"])(**args)(sample)
diff = {k: float(np.abs(ours[k][0] - np.asarray(sample[k], dtype=np.float32)).max()) for k in ("image", "im_shape", "scale_factor")}
print(json.dumps({"diff": diff, "shape": list(ours["image"].shape)}))
"""


def test_exported_preprocessing_equals_ppdet_operators(exported_model, ptools, smoke_run):
    """trainctl's infer_cfg.yml preprocessing gives the arrays ppdet's own operators give."""
    proc = subprocess.run([sys.executable, "-c", PREPROCESS_BOTH_WAYS, str(exported_model), str(ptools.road554)],
                          cwd=smoke_run.workdir, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["shape"] == [1, 3, 224, 224]
    assert result["diff"]["image"] < 1e-4 and result["diff"]["im_shape"] == 0 and result["diff"]["scale_factor"] < 1e-6, result
