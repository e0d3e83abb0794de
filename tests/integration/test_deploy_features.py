"""Sliced inference, COCO results scored by `trainctl eval --json-eval`, and deployment input errors, on CPU.

The smoke model is trained for five iterations: its boxes do not match the
ground truth (IoU 0 on the sample images), so sliced inference is checked
against what the same model finds in each small scene on its own (the objects
"at the model's input size"), not against the annotations.
"""

from __future__ import annotations

import json
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

pytestmark = [pytest.mark.paddle, pytest.mark.slow]

SCENE = 224  # the smoke model's input size (TestReader Resize 224x224)
GRID = 3


def _iou(a, b):
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - ix * iy
    return ix * iy / union if union > 0 else 0.0


@pytest.fixture(scope="module")
def composed(smoke_run, tmp_path_factory):
    """GRID x GRID sample scenes, each resized to SCENE x SCENE, side by side in one large image; also as single files."""
    import cv2
    import numpy as np

    images = sorted((smoke_run.workdir / "dataset" / "roadsign_voc" / "images").glob("*.png"))[: GRID * GRID]
    tmp = tmp_path_factory.mktemp("sliced")
    (tmp / "scenes").mkdir()
    big = np.zeros((GRID * SCENE, GRID * SCENE, 3), dtype=np.uint8)
    cells = {}
    for i, path in enumerate(images):
        scene = cv2.resize(cv2.imread(str(path)), (SCENE, SCENE))
        name = f"cell{i}.png"
        cv2.imwrite(str(tmp / "scenes" / name), scene)
        x0, y0 = (i % GRID) * SCENE, (i // GRID) * SCENE
        big[y0:y0 + SCENE, x0:x0 + SCENE] = scene
        cells[str(tmp / "scenes" / name)] = (x0, y0)
    cv2.imwrite(str(tmp / "big.png"), big)
    return tmp, cells


def _detections(ptools, cwd, model, args, out):
    proc = ptools.run_cli(["infer", "--model-dir", str(model), "--threshold", "0.1", "--no-save-images", "--output", str(out), *args], cwd)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads((out / "detections.json").read_text())["detections"]


def test_sliced_inference_finds_what_each_scene_shows_and_whole_image_misses(exported_model, composed, ptools, smoke_run, tmp_path):
    tmp, cells = composed
    per_scene = _detections(ptools, smoke_run.workdir, exported_model, ["--dir", str(tmp / "scenes")], tmp_path / "scenes")
    expected = [(d["class_id"], d["score"], [v + off for v, off in zip(d["box"], cells[d["file"]] * 2)]) for d in per_scene]
    assert expected, "the model finds nothing in the scenes at threshold 0.1"
    sliced = _detections(ptools, smoke_run.workdir, exported_model,
                         ["--img", str(tmp / "big.png"), "--slice", f"{SCENE}x{SCENE}", "--overlap", "0", "--combine", "concat",
                          "--batch-size", "3"], tmp_path / "sliced")
    whole = _detections(ptools, smoke_run.workdir, exported_model, ["--img", str(tmp / "big.png")], tmp_path / "whole")

    # tiles == scenes: the sliced boxes are each scene's boxes, moved to the scene's place in the large image
    assert len(sliced) == len(expected)
    unused = list(sliced)
    for cls, score, box in expected:
        twin = [d for d in unused if d["class_id"] == cls and abs(d["score"] - score) < 1e-4
                and max(abs(a - b) for a, b in zip(d["box"], box)) < 1e-2]
        assert twin, (cls, score, box)
        unused.remove(twin[0])

    def found(dets):
        return sum(any(d["class_id"] == cls and _iou(d["box"], box) >= 0.5 for d in dets) for cls, _, box in expected)

    # at the model's input size the whole 672 px image shrinks every object 3x: it finds fewer of them
    assert found(sliced) == len(expected) > found(whole)


def test_sliced_nms_merges_overlapping_tiles(exported_model, composed, ptools, smoke_run, tmp_path):
    tmp, _ = composed
    args = ["--img", str(tmp / "big.png"), "--slice", "320x320", "--overlap", "0.2", "--batch-size", "3"]  # 9 tiles
    concat = _detections(ptools, smoke_run.workdir, exported_model, [*args, "--combine", "concat"], tmp_path / "concat")
    merged = _detections(ptools, smoke_run.workdir, exported_model, [*args, "--combine", "nms"], tmp_path / "nms")
    assert 0 < len(merged) < len(concat)
    for d in merged:  # every kept box is one of the tiles' boxes, inside the image, and no same-class pair overlaps > 0.6
        assert any(c["class_id"] == d["class_id"] and c["score"] == d["score"] and c["box"] == d["box"] for c in concat)
        assert 0 <= d["box"][0] <= d["box"][2] <= GRID * SCENE and 0 <= d["box"][1] <= d["box"][3] <= GRID * SCENE
    for i, a in enumerate(merged):
        for b in merged[i + 1:]:
            assert a["class_id"] != b["class_id"] or _iou(a["box"], b["box"]) <= 0.6 + 1e-6


def _pseudo_labelled(voc: Path, images: Path, detections: list[dict], out: Path) -> None:
    """A VOC eval set of `images` whose annotations are, per image, the model's best box of at least 2x2 px plus the
    image's first true object: the smoke model finds nothing true (mAP 0 on the real labels, a trivial equality), so
    the set is made where its mAP is neither 0 nor 100."""
    from trainctl.data.sample import _annotation_xml

    labels = (voc / "label_list.txt").read_text().split()
    (out / "annotations").mkdir(parents=True)
    shutil.copytree(images, out / "images")
    shutil.copy(voc / "label_list.txt", out)
    lines = []
    for image in sorted(images.iterdir()):
        truth = ET.parse(voc / "annotations" / f"{image.stem}.xml").getroot()
        first = truth.find("object")
        box = first.find("bndbox")
        objects = [(first.find("name").text, tuple(int(float(box.find(k).text)) for k in ("xmin", "ymin", "xmax", "ymax")))]
        mine = [d for d in detections if Path(d["file"]).name == image.name
                and d["box"][2] - d["box"][0] >= 2 and d["box"][3] - d["box"][1] >= 2]
        if mine:
            best = max(mine, key=lambda d: d["score"])
            objects.append((labels[best["class_id"]], tuple(int(round(v)) for v in best["box"])))
        size = truth.find("size")
        (out / "annotations" / f"{image.stem}.xml").write_text(
            _annotation_xml(image.name, int(size.find("width").text), int(size.find("height").text), objects))
        lines.append(f"images/{image.name} annotations/{image.stem}.xml")
    (out / "valid.txt").write_text("\n".join(lines) + "\n")


def test_coco_results_scored_by_eval_equal_direct_eval(smoke_run, ptools, tmp_path):
    """infer --save-results on the eval images (threshold 0: every box, as eval sees them) -> eval --json-eval == eval --weights."""
    work = smoke_run.workdir
    voc = work / "dataset" / "roadsign_voc"
    images = tmp_path / "eval-images"
    images.mkdir()
    for line in (voc / "valid.txt").read_text().split("\n"):
        if line.strip():
            shutil.copy(voc / line.split()[0], images)
    proc = ptools.run_cli(["infer", "-c", "roadsign_cpu_smoke.yml", "--weights", str(smoke_run.final), "--dir", str(images),
                           "--threshold", "0", "--save-results", "--no-save-images", "--output", str(tmp_path / "out")], work)
    assert proc.returncode == 0, proc.stderr[-3000:]
    bbox = tmp_path / "out" / "bbox.json"
    entries = json.loads(bbox.read_text())
    assert entries and set(entries[0]) == {"image_id", "category_id", "file_name", "bbox", "score"}
    detections = json.loads((tmp_path / "out" / "detections.json").read_text())["detections"]
    _pseudo_labelled(voc, images, detections, tmp_path / "pseudo")
    dataset = [f"EvalDataset.dataset_dir={tmp_path / 'pseudo'}"]
    direct = ptools.run_cli(["eval", "-c", "roadsign_cpu_smoke.yml", "--weights", str(smoke_run.final), "--output", str(tmp_path / "ev"),
                             "-o", *dataset], work)
    assert direct.returncode == 0, direct.stderr[-3000:]
    scored = ptools.run_cli(["eval", "-c", "roadsign_cpu_smoke.yml", "--json-eval", str(bbox), "-o", *dataset], work)
    assert scored.returncode == 0, scored.stderr[-3000:]
    direct_map = json.loads((tmp_path / "ev" / "eval.json").read_text())["results"]["bbox"]
    assert 0.05 < direct_map < 0.95, direct_map  # neither nothing nor everything found
    line = [x for x in scored.stdout.splitlines() if x.startswith("eval done:")][0]
    assert f"{100 * direct_map:.2f}% (bbox)" in line, (direct_map, line)
    assert f"on {len(list(images.iterdir()))} images" in line


def test_json_eval_scores_coco_with_pycocotools(smoke_run, ptools, tmp_path):
    """The COCO metric path of --json-eval: the sample eval set as a COCO file; its own boxes as results score 100 %."""
    import trainctl

    voc = smoke_run.workdir / "dataset" / "roadsign_voc"
    labels = (voc / "label_list.txt").read_text().split()
    images, annotations = [], []
    for n, line in enumerate(x for x in (voc / "valid.txt").read_text().split("\n") if x.strip()):
        image, xml = line.split()
        root = ET.parse(voc / xml).getroot()
        images.append({"id": n + 1, "file_name": Path(image).name, "width": int(root.find("size/width").text),
                       "height": int(root.find("size/height").text)})
        for obj in root.findall("object"):
            x1, y1, x2, y2 = (float(obj.find(f"bndbox/{k}").text) for k in ("xmin", "ymin", "xmax", "ymax"))
            annotations.append({"id": len(annotations) + 1, "image_id": n + 1, "category_id": labels.index(obj.find("name").text) + 1,
                                "bbox": [x1, y1, x2 - x1, y2 - y1], "area": (x2 - x1) * (y2 - y1), "iscrowd": 0})
    anno = tmp_path / "coco_valid.json"
    anno.write_text(json.dumps({"images": images, "annotations": annotations,
                                "categories": [{"id": i + 1, "name": name} for i, name in enumerate(labels)]}))
    results = tmp_path / "bbox.json"
    results.write_text(json.dumps([{"image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"], "score": 1.0}
                                   for a in annotations]))
    base = Path(trainctl.__file__).parent / "configs" / "roadsign_cpu_smoke.yml"
    config = tmp_path / "coco_smoke.yml"
    config.write_text(f"_BASE_: ['{base}']\nmetric: COCO\nEvalDataset: !COCODataSet\n  dataset_dir: {voc}\n"
                      f"  image_dir: images\n  anno_path: {anno}\n")
    proc = ptools.run_cli(["eval", "-c", str(config), "--json-eval", str(results)], smoke_run.workdir)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"eval done: COCO mAP 100.00% (bbox) on {len(images)} images" in proc.stdout, proc.stdout


@pytest.mark.parametrize("args, expected", [
    (["export", "-c", "roadsign_cpu_smoke.yml", "-o", "use_gpu=false", "TestReader.inputs_def.image_shape=[3,224]"],
     "TestReader.inputs_def.image_shape is [3, 224]; export needs [C, H, W] or [N, C, H, W]"),
    (["export", "-c", "roadsign_cpu_smoke.yml", "--device", "gpu"], "--device gpu: the installed paddle is built without CUDA"),
    (["infer", "-c", "roadsign_cpu_smoke.yml", "--img", "{img}", "--device", "gpu:0"],
     "--device gpu: the installed paddle is built without CUDA"),
    (["infer", "--model-dir", "{model}", "--img", "{img}", "--run-mode", "trt_int8"], "--run-mode trt_int8 runs on TensorRT, which needs --device gpu"),
    (["infer", "--model-dir", "{model}", "--camera", "7"], "cannot open camera 7"),
    (["infer", "-c", "roadsign_cpu_smoke.yml", "--img", "{img}", "--video", "x.mp4"], "give exactly one of --img FILE, --dir DIR, --video FILE and --camera ID"),
    (["eval", "-c", "roadsign_cpu_smoke.yml", "--json-eval", "{img}"], "cannot read results file"),
])
def test_bad_deploy_input_is_one_line_exit_2(args, expected, exported_model, smoke_run, ptools):
    weights = ["--weights", str(smoke_run.final)] if "-c" in args and "--json-eval" not in args else []
    args = [a.format(model=exported_model, img=ptools.road554) for a in args] + weights
    proc = ptools.run_cli(args, smoke_run.workdir)
    assert proc.returncode == 2, proc.stderr[-2000:]
    errors = ptools.error_lines(proc.stderr)
    assert len(errors) == 1 and expected in errors[0], proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr


REAL_CONFIG_PROBE = r"""
import json, sys
from paddle import inference
from trainctl.runner import predictor_config as pc

model_dir = sys.argv[1]
out = {"missing": []}
for device in ("cpu", "gpu:1", "xpu", "npu"):
    for mode in pc.RUN_MODES:
        for collect in (False, True):
            for name, _, _ in pc.predictor_calls(pc.PredictorOptions(device=device, run_mode=mode, collect_trt_shapes=collect), model_dir):
                if not hasattr(inference.Config(), name):
                    out["missing"].append(name)
for onednn in (True, False):
    config = inference.Config()
    pc.apply_calls(config, pc.predictor_calls(pc.PredictorOptions(device="cpu", threads=3, onednn=onednn), model_dir),
                   inference.PrecisionType)
    out[f"cpu onednn={onednn}"] = [config.use_gpu(), config.onednn_enabled(), config.cpu_math_library_num_threads(),
                                   config.tensorrt_engine_enabled(), config.ir_optim()]
# the dynamic-shape calls of the TensorRT modes work on paddle's CPU build (the engine call itself raises there)
shape_calls = [c for c in pc.predictor_calls(pc.PredictorOptions(device="gpu", run_mode="trt_fp16", collect_trt_shapes=True), model_dir)
               if "shape" in c[0]]
config = inference.Config()
pc.apply_calls(config, shape_calls)
out["collect"] = [config.shape_range_info_collected(), config.shape_range_info_path()]
open(pc.shape_file(model_dir), "w").write("")
shape_calls = [c for c in pc.predictor_calls(pc.PredictorOptions(device="gpu", run_mode="trt_fp16"), model_dir) if "shape" in c[0]]
config = inference.Config()
pc.apply_calls(config, shape_calls)
out["reuse"] = [config.tuned_tensorrt_dynamic_shape(), config.trt_allow_build_at_runtime()]
print("PROBE " + json.dumps(out))
"""


def test_predictor_config_on_paddles_real_config_object(tmp_path):
    """Every call each device/mode makes exists on paddle.inference.Config; what paddle's CPU build can set, its getters show."""
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-c", REAL_CONFIG_PROBE, str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads([line for line in proc.stdout.splitlines() if line.startswith("PROBE ")][0][len("PROBE "):])
    assert out["missing"] == []
    assert out["cpu onednn=True"] == [False, True, 3, False, True]
    assert out["cpu onednn=False"] == [False, False, 3, False, True]
    assert out["collect"] == [True, str(tmp_path / "shape_range_info.pbtxt")]
    assert out["reuse"] == [True, True]
