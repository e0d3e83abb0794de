"""`trainctl infer` both ways (dynamic graph, exported model) on real images, with the same results."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.paddle

LABELS = ["speedlimit", "crosswalk", "trafficlight", "stop"]


def _infer(ptools, cwd, args, out):
    proc = ptools.run_cli(["infer", *args, "--output", str(out)], cwd)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "results in" in proc.stdout
    assert "Unable to use numba" not in proc.stdout + proc.stderr  # ppdet's PP-Tracking notice is dropped
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


@pytest.fixture(scope="module")
def two_images_dir(images, tmp_path_factory):
    """The synthetic image and the real photo, as a --dir."""
    directory = tmp_path_factory.mktemp("two_images")
    for image in images:
        (directory / image.rsplit("/", 1)[-1]).write_bytes(open(image, "rb").read())
    return directory


@pytest.fixture(scope="module")
def dynamic_two(smoke_run, two_images_dir, ptools, tmp_path_factory):
    """The dynamic graph on two_images_dir at threshold 0.05 (batch 1), once for the tests below."""
    out = tmp_path_factory.mktemp("dyn")
    args = ["-c", "roadsign_cpu_smoke.yml", "--weights", str(smoke_run.final), "--dir", str(two_images_dir), "--threshold", "0.05"]
    return _infer(ptools, smoke_run.workdir, args, out), out


def test_exported_matches_dynamic_within_tolerance(smoke_run, exported_model, two_images_dir, dynamic_two, ptools, tmp_path):
    """Both paths on a synthetic image and a real photo (--dir); low threshold so the 1-epoch model has boxes."""
    in_dir = sorted(str(p) for p in two_images_dir.iterdir())
    dyn, dyn_out = dynamic_two
    exp = _infer(ptools, smoke_run.workdir, ["--model-dir", str(exported_model), "--threads", "2", "--dir", str(two_images_dir),
                                            "--threshold", "0.05"], tmp_path / "exp")
    _check_outputs(dyn, dyn_out, in_dir)
    _check_outputs(exp, tmp_path / "exp", in_dir)
    for image in in_dir:  # both images have boxes to compare
        assert len([d for d in dyn["detections"] if d["file"] == image]) >= 5, image
    assert_same_detections(dyn["detections"], exp["detections"], top_k=20)


def _key(d):
    return (d["file"], d["class_id"], round(d["score"], 3), tuple(round(v) for v in d["box"]))


def assert_equal_detections(a, b, score_tol=1e-4, box_tol=0.01):
    """The same detections in the same order, up to float noise."""
    assert len(a) == len(b) > 0, (len(a), len(b))
    a, b = sorted(a, key=_key), sorted(b, key=_key)
    for x, y in zip(a, b):
        assert (x["file"], x["class_id"]) == (y["file"], y["class_id"]), (x, y)
        assert abs(x["score"] - y["score"]) <= score_tol and max(abs(u - v) for u, v in zip(x["box"], y["box"])) <= box_tol, (x, y)


def test_exported_batch_4_equals_batch_1_and_no_save_images(smoke_run, exported_model, ptools, tmp_path):
    """13 images (12 synthetic + the real photo; batches of 4, 4, 4, 1): one predictor run per batch gives
    the detections of one run per image. --no-save-images writes detections.json and nothing else."""
    (tmp_path / "imgs").mkdir()
    for p in sorted((smoke_run.workdir / "dataset" / "roadsign_voc" / "images").iterdir()):
        (tmp_path / "imgs" / p.name).write_bytes(p.read_bytes())
    (tmp_path / "imgs" / "road554.png").write_bytes(ptools.road554.read_bytes())
    args = ["--model-dir", str(exported_model), "--dir", str(tmp_path / "imgs"), "--threshold", "0.05"]
    one = _infer(ptools, smoke_run.workdir, [*args, "--batch-size", "1"], tmp_path / "b1")
    four = _infer(ptools, smoke_run.workdir, [*args, "--batch-size", "4", "--no-save-images"], tmp_path / "b4")
    assert len(one["images"]) == 13 and four["images"] == one["images"]
    assert len({d["file"] for d in one["detections"]}) >= 10  # most images have boxes, so the split is exercised
    assert_equal_detections(one["detections"], four["detections"])
    assert sorted(p.name for p in (tmp_path / "b1").iterdir()) == sorted(["detections.json", *(p.name for p in (tmp_path / "imgs").iterdir())])
    assert [p.name for p in (tmp_path / "b4").iterdir()] == ["detections.json"]


def test_keep_ratio_batches_of_mixed_sizes_equal_single_images(smoke_run, exported_model, ptools, tmp_path):
    """A keep_ratio Resize (+ PadStride) variant of the exported model on photos of four aspect ratios:
    --batch-size 4 gives what --batch-size 1 gives (arch YOLO: no padding across shapes, see predict.py)."""
    import cv2
    import yaml

    model = tmp_path / "model"
    model.mkdir()
    for name in ("model.pdmodel", "model.pdiparams"):
        (model / name).write_bytes((exported_model / name).read_bytes())
    cfg = yaml.safe_load((exported_model / "infer_cfg.yml").read_text())
    resize = next(op for op in cfg["Preprocess"] if op["type"] == "Resize")
    resize.update(keep_ratio=True, target_size=[224, 320])
    cfg["Preprocess"].append({"type": "PadStride", "stride": 32})
    (model / "infer_cfg.yml").write_text(yaml.safe_dump(cfg))
    photo = cv2.imread(str(ptools.road554))
    h, w = photo.shape[:2]
    (tmp_path / "imgs").mkdir()
    for name, im in {"full": photo, "left": photo[:, : w // 2], "top": photo[: h // 2], "wide": cv2.resize(photo, (2 * w, h))}.items():
        cv2.imwrite(str(tmp_path / "imgs" / f"{name}.png"), im)
    args = ["--model-dir", str(model), "--dir", str(tmp_path / "imgs"), "--threshold", "0.05", "--no-save-images"]
    one = _infer(ptools, smoke_run.workdir, [*args, "--batch-size", "1"], tmp_path / "b1")
    four = _infer(ptools, smoke_run.workdir, [*args, "--batch-size", "4"], tmp_path / "b4")
    assert_equal_detections(one["detections"], four["detections"])
    for d in one["detections"]:  # boxes in each photo's own pixels
        im = cv2.imread(d["file"])
        assert -1 <= d["box"][0] <= d["box"][2] <= im.shape[1] + 1 and -1 <= d["box"][1] <= d["box"][3] <= im.shape[0] + 1, d


def test_dynamic_batch_size_2_equals_batch_1(smoke_run, two_images_dir, dynamic_two, ptools, tmp_path):
    """-c with --batch-size 2 sets TestReader.batch_size: both images in one forward pass, same detections."""
    args = ["-c", "roadsign_cpu_smoke.yml", "--weights", str(smoke_run.final), "--dir", str(two_images_dir),
            "--threshold", "0.05", "--batch-size", "2"]
    two = _infer(ptools, smoke_run.workdir, args, tmp_path / "dyn2")
    assert_equal_detections(dynamic_two[0]["detections"], two["detections"], score_tol=1e-3, box_tol=0.05)


def test_no_onednn_runs_and_the_benchmark_says_so(smoke_run, exported_model, two_images_dir, ptools, tmp_path):
    """--no-onednn switches oneDNN off (the benchmark report reads it back from the predictor's config);
    the detections stay those of the default (oneDNN on) within float tolerance."""
    args = ["--model-dir", str(exported_model), "--dir", str(two_images_dir), "--threshold", "0.05", "--no-save-images"]
    on = _infer(ptools, smoke_run.workdir, args, tmp_path / "on")
    off = _infer(ptools, smoke_run.workdir, [*args, "--no-onednn"], tmp_path / "off")
    assert_equal_detections(on["detections"], off["detections"], score_tol=1e-3, box_tol=0.05)
    reports = {}
    for flag in ("--onednn", "--no-onednn"):
        proc = ptools.run_cli(["infer", "--model-dir", str(exported_model), "--img", str(ptools.road554), "--benchmark",
                               "--warmup", "0", "--repeats", "1", "--json", flag], smoke_run.workdir)
        assert proc.returncode == 0, proc.stderr[-3000:]
        reports[flag] = json.loads(proc.stdout)["environment"]
    assert reports["--onednn"]["mkldnn"] is True and "enabled by trainctl" in reports["--onednn"]["mkldnn_source"]
    assert reports["--no-onednn"]["mkldnn"] is False and "--no-onednn" in reports["--no-onednn"]["mkldnn_source"]
    # --threads defaults to the CPUs this process may use
    assert reports["--onednn"]["cpu_threads"] == len(os.sched_getaffinity(0))


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
