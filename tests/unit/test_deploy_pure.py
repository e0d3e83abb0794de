"""The pure halves of deployment: predictor configuration per device/run mode, slicing, COCO results, drawing order."""

from __future__ import annotations

import json

import numpy as np
import pytest

from trainctl.errors import UserError
from trainctl.runner import coco_results, slicing
from trainctl.runner import predictor_config as pc

GPU_TRT = {"cuda": True, "gpus": 2, "xpu": False, "custom": [], "tensorrt": True}
CPU_ONLY = {"cuda": False, "gpus": 0, "xpu": False, "custom": [], "tensorrt": False}


class RecordingConfig:
    """Stands in for paddle.inference.Config where paddle's CPU build raises (GPU, TensorRT): records the calls."""

    def __init__(self):
        self.calls = []

    def __getattr__(self, name):
        return lambda *args, **kwargs: self.calls.append((name, args, kwargs))


class Precision:
    Float32, Half, Int8 = "P.Float32", "P.Half", "P.Int8"


def _applied(options, model_dir="/m", shape_file_exists=False):
    config = RecordingConfig()
    pc.apply_calls(config, pc.predictor_calls(options, model_dir, shape_file_exists), Precision)
    return config.calls


def _call(calls, name):
    found = [c for c in calls if c[0] == name]
    assert len(found) == 1, (name, calls)
    return found[0]


def test_cpu_mode_threads_onednn_and_no_tensorrt():
    calls = _applied(pc.PredictorOptions(device="cpu", threads=3, onednn=False))
    names = [c[0] for c in calls]
    assert names[:3] == ["disable_gpu", "set_cpu_math_library_num_threads", "disable_onednn"]
    assert _call(calls, "set_cpu_math_library_num_threads")[1] == (3,)
    assert not any("tensorrt" in n or "gpu" in n and n != "disable_gpu" for n in names)
    assert names[-3:] == ["disable_glog_info", "enable_memory_optim", "switch_use_feed_fetch_ops"]


@pytest.mark.parametrize("mode, precision, calib", [("trt_fp32", "P.Float32", False), ("trt_fp16", "P.Half", False),
                                                    ("trt_int8", "P.Int8", True)])
def test_tensorrt_modes_engine_precision_and_calibration(mode, precision, calib):
    calls = _applied(pc.PredictorOptions(device="gpu:1", run_mode=mode, batch_size=4, min_subgraph_size=5))
    assert _call(calls, "enable_use_gpu")[1] == (pc.GPU_MEMORY_MB, 1)
    engine = _call(calls, "enable_tensorrt_engine")[2]
    assert engine == {"workspace_size": (1 << 25) * 4, "max_batch_size": 4, "min_subgraph_size": 5, "precision_mode": precision,
                      "use_static": False, "use_calib_mode": calib}
    assert [c[0] for c in calls].index("enable_use_gpu") < [c[0] for c in calls].index("enable_tensorrt_engine")


def test_int8_without_calibration_for_a_quantized_model():
    calls = _applied(pc.PredictorOptions(device="gpu", run_mode="trt_int8", trt_calib=False))
    assert _call(calls, "enable_tensorrt_engine")[2]["use_calib_mode"] is False


def test_dynamic_shapes_collected_once_then_reused(tmp_path):
    collect = _applied(pc.PredictorOptions(device="gpu", run_mode="trt_fp16", collect_trt_shapes=True), str(tmp_path))
    assert _call(collect, "collect_shape_range_info")[1] == (str(tmp_path / pc.SHAPE_FILE),)
    assert not [c for c in collect if c[0] == "enable_tuned_tensorrt_dynamic_shape"]
    none_yet = pc.predictor_calls(pc.PredictorOptions(device="gpu", run_mode="trt_fp16"), str(tmp_path))
    assert not [c for c in none_yet if "shape" in c[0]]  # no file yet: static shapes
    (tmp_path / pc.SHAPE_FILE).write_text("collected")
    reuse = pc.predictor_calls(pc.PredictorOptions(device="gpu", run_mode="trt_fp16"), str(tmp_path))
    assert [c for c in reuse if "shape" in c[0]] == [("enable_tuned_tensorrt_dynamic_shape", (str(tmp_path / pc.SHAPE_FILE), True), {})]


def test_xpu_npu_calls():
    assert _call(_applied(pc.PredictorOptions(device="xpu:2")), "set_xpu_device_id")[1] == (2,)
    assert _call(_applied(pc.PredictorOptions(device="npu:1")), "enable_custom_device")[1] == ("npu", 1)


def test_older_paddle_onednn_names_fall_back_to_mkldnn():
    class Old:
        def __init__(self):
            self.called = []

        def enable_mkldnn(self):
            self.called.append("enable_mkldnn")

    old = Old()
    pc.apply_calls(old, [("enable_onednn", (), {})])
    assert old.called == ["enable_mkldnn"]


@pytest.mark.parametrize("options, caps, message", [
    (pc.PredictorOptions(device="gpu"), CPU_ONLY, "built without CUDA"),
    (pc.PredictorOptions(device="gpu:2"), GPU_TRT, "paddle sees 2 GPU(s)"),
    (pc.PredictorOptions(device="cpu", run_mode="trt_fp16"), GPU_TRT, "needs --device gpu"),
    (pc.PredictorOptions(device="gpu", run_mode="trt_fp32"), dict(GPU_TRT, tensorrt=False), "built without TensorRT"),
    (pc.PredictorOptions(device="xpu"), CPU_ONLY, "without XPU"),
    (pc.PredictorOptions(device="npu"), CPU_ONLY, "no 'npu' custom device"),
    (pc.PredictorOptions(device="cpu", collect_trt_shapes=True), CPU_ONLY, "for the TensorRT run modes"),
    (pc.PredictorOptions(device="tpu"), CPU_ONLY, "is not a device"),
    (pc.PredictorOptions(device="cpu:1"), CPU_ONLY, "is not a device"),
])
def test_what_paddle_cannot_do_is_exit_2(options, caps, message):
    with pytest.raises(UserError, match=message.replace("(", r"\(").replace(")", r"\)")) as err:
        pc.check_options(options, caps)
    assert err.value.exit_code == 2


def test_good_options_pass():
    pc.check_options(pc.PredictorOptions(device="gpu:1", run_mode="trt_int8", collect_trt_shapes=True), GPU_TRT)
    pc.check_options(pc.PredictorOptions(device="CPU"), CPU_ONLY)


# ------------------------------------------------------------------ slicing


def test_parse_slice():
    assert slicing.parse_slice("640x480") == (640, 480)
    assert slicing.parse_slice("320") == (320, 320)
    for bad in ("x", "10x10", "640x480x3", "axb"):
        with pytest.raises(UserError):
            slicing.parse_slice(bad)


def test_tiles_cover_the_image_with_the_overlap_and_end_at_the_border():
    tiles = slicing.tile_windows(1000, 500, 400, 300, 0.25)
    xs = sorted({t[0] for t in tiles})
    ys = sorted({t[1] for t in tiles})
    assert xs == [0, 300, 600] and ys == [0, 200]  # step 300 (x), 225 -> last row moved back to 500 - 300
    assert all(t[2] - t[0] == 400 and t[3] - t[1] == 300 for t in tiles)
    covered = np.zeros((500, 1000), bool)
    for x0, y0, x1, y1 in tiles:
        covered[y0:y1, x0:x1] = True
    assert covered.all()
    assert slicing.tile_windows(100, 80, 400, 300, 0.25) == [(0, 0, 100, 80)]  # smaller than a tile: one
    with pytest.raises(UserError):
        slicing.tile_windows(100, 100, 50, 50, 1.0)


def test_tile_rows_move_to_image_pixels_and_nms_keeps_the_best_per_class():
    tile_a = [[0, 0.9, 10, 10, 50, 50], [1, 0.8, 10, 10, 50, 50]]
    tile_b = [[0, 0.7, 0, 12, 40, 52], [-1, 0, 0, 0, 0, 0]]  # the same object seen from the tile at x=10; a "nothing" row
    windows = [(0, 0, 100, 100), (10, 0, 110, 100)]
    concat = slicing.merge_tiles([tile_a, tile_b], windows, "concat")
    assert concat.tolist() == [[0, pytest.approx(0.9), 10, 10, 50, 50], [1, pytest.approx(0.8), 10, 10, 50, 50],
                               [0, pytest.approx(0.7), 10, 12, 50, 52]]
    merged = slicing.merge_tiles([tile_a, tile_b], windows, "nms")
    assert [(int(r[0]), round(float(r[1]), 2)) for r in merged] == [(0, 0.9), (1, 0.8)]  # other class kept
    far = slicing.merge_tiles([tile_a, [[0, 0.7, 60, 60, 90, 90]]], windows, "nms")
    assert len(far) == 3
    with pytest.raises(UserError):
        slicing.merge_tiles([tile_a], windows[:1], "wbf")


# ------------------------------------------------------------------ COCO results


def _coco(tmp_path):
    path = tmp_path / "instances.json"
    path.write_text(json.dumps({"images": [{"id": 42, "file_name": "sub/a.png"}, {"id": 7, "file_name": "b.png"}],
                                "categories": [{"id": 3, "name": "stop"}, {"id": 1, "name": "speedlimit"}]}))
    return str(path)


def test_image_ids_from_annotations_numbers_or_positions(tmp_path):
    ann = _coco(tmp_path)
    assert coco_results.image_ids(["/x/a.png", "/y/b.png"], ann) == {"/x/a.png": 42, "/y/b.png": 7}
    with pytest.raises(UserError, match="c.png is not in"):
        coco_results.image_ids(["/x/c.png"], ann)
    assert coco_results.image_ids(["/d/000000397133.jpg", "/d/000000000139.jpg"]) == {"/d/000000397133.jpg": 397133,
                                                                                      "/d/000000000139.jpg": 139}
    assert coco_results.image_ids(["/d/road1.png", "/d/road0.png"]) == {"/d/road1.png": 0, "/d/road0.png": 1}
    assert coco_results.category_ids(["speedlimit", "stop"], ann) == [1, 3]
    assert coco_results.category_ids(["speedlimit", "stop"]) == [0, 1]
    with pytest.raises(UserError, match="'crosswalk' is not a category"):
        coco_results.category_ids(["crosswalk"], ann)


def test_to_coco_boxes_are_xywh_and_read_back_per_record():
    dets = [{"file": "/d/b.png", "class_id": 1, "class": "stop", "score": 0.5, "box": [10.0, 20.0, 30.0, 60.0]}]
    entries = coco_results.to_coco(dets, {"/d/b.png": 7}, [1, 3])
    assert entries == [{"image_id": 7, "category_id": 3, "file_name": "b.png", "bbox": [10.0, 20.0, 20.0, 40.0], "score": 0.5}]
    records = [{"im_file": "/data/a.png"}, {"im_file": "/data/b.png"}]
    rows = coco_results.rows_per_image(entries, records, [1, 3])
    assert rows[0].shape == (0, 6) and rows[1].tolist() == [[1, 0.5, 10, 20, 30, 60]]
    other = coco_results.rows_per_image([dict(entries[0], file_name="train7.png", image_id=0)], records, [1, 3])
    assert [len(r) for r in other] == [0, 0]  # not an eval image: not scored, whatever its image_id
    by_position = coco_results.rows_per_image([dict(entries[0], file_name=None, image_id=0)], records, [1, 3])
    assert by_position[0].tolist() == [[1, 0.5, 10, 20, 30, 60]]
    with pytest.raises(UserError, match="category_id 9"):
        coco_results.rows_per_image([dict(entries[0], category_id=9)], records, [1, 3])


def test_results_file_must_be_coco_results(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"images": []}))
    with pytest.raises(UserError, match="not in the COCO results format"):
        coco_results.load_results(str(bad))
    with pytest.raises(UserError, match="cannot read results file"):
        coco_results.load_results(str(tmp_path / "missing.json"))


# ------------------------------------------------------------------ drawing, export input, CLI overrides


def test_highest_score_is_drawn_last_so_on_top():
    from trainctl.runner.results import Detection, draw_order

    dets = [Detection("f", c, str(c), s, [0, 0, 10, 10]) for c, s in ((0, 0.9), (1, 0.3), (2, 0.6), (3, 0.1))]
    assert [d.score for d in draw_order(dets)] == [0.1, 0.3, 0.6, 0.9]


@pytest.mark.parametrize("value, ok", [([3, 608, 608], True), ([3, -1, -1], True), (None, True), ([3, 224], False),
                                       ([1, 3, 320, 320], True), ([-1, 3, -1, -1], True), ([0, 3, 320, 320], False),
                                       ([1, 1, 3, 320, 320], False), ([1, 0, 320, 320], False),
                                       ([3, 0, 224], False), ("3,224,224", False), ([3.0, 224, 224], False), ([True, 1, 1], False)])
def test_export_image_shape_is_c_h_w_or_n_c_h_w(value, ok):
    from trainctl.runner.export import check_image_shape

    if ok:
        check_image_shape(value)
    else:
        with pytest.raises(UserError, match=r"image_shape .* export needs \[C, H, W\] or \[N, C, H, W\]"):
            check_image_shape(value)


@pytest.mark.parametrize("command", ["infer", "export"])
def test_infer_and_export_take_ppdet_style_overrides(command, tmp_path, capsys):
    """`-o a=1 b=2` reaches the config (an unknown key is named by the resolver), a stray word is exit 2."""
    from trainctl.cli import main

    (tmp_path / "x.png").write_bytes(b"")
    base = [command, "-c", "roadsign_cpu_smoke.yml", "--weights", str(tmp_path / "none")]
    base += ["--img", str(tmp_path / "x.png")] if command == "infer" else []
    for extra, expected in ((["no_such_key_here=1"], "no_such_key_here"), (["stray"], "unexpected argument 'stray'")):
        with pytest.raises(SystemExit) as exit_:
            main([*base, "-o", "use_gpu=false", *extra])
        err = capsys.readouterr().err
        assert exit_.value.code == 2 and expected in err, err


@pytest.mark.parametrize("deploy, model_dir, img, message", [
    ({"slice": "100x100"}, None, "a.png", "--slice works on an exported model"),
    ({"run_mode": "trt_fp16"}, None, "a.png", "--run-mode works on an exported model"),
    ({"device": "npu"}, None, "a.png", "--device xpu/npu works on an exported model"),
    ({"video": "v.mp4"}, "m", "a.png", "give exactly one of"),
    ({}, "m", None, "give exactly one of"),
    ({"slice": "100x100", "overlap": 1.5}, "m", "a.png", "--overlap 1.5 is not in"),
    ({"slice": "100x100", "combine": "wbf"}, "m", "a.png", "--combine 'wbf'"),
    ({"video": "missing.mp4"}, "m", None, "video not found"),
    ({"camera": 0, "slice": "200x200"}, "m", None, "--slice works on images"),
    ({"device": "gpu:x"}, "m", "a.png", "is not a device"),
    ({"camera": 0, "save_results": True}, "m", None, "--save-results works on images"),
])
def test_deploy_inputs_checked_before_paddle(deploy, model_dir, img, message, tmp_path, monkeypatch):
    from trainctl.runner.predict import DeployOptions, check_deploy_inputs

    monkeypatch.chdir(tmp_path)
    with pytest.raises(UserError, match=message.replace("(", r"\(")):
        check_deploy_inputs(DeployOptions(**deploy), model_dir, img, None)


def test_deploy_inputs_kinds_and_given_flags(tmp_path):
    from trainctl.runner.predict import DeployOptions, check_deploy_inputs

    (tmp_path / "v.mp4").write_bytes(b"")
    assert check_deploy_inputs(DeployOptions(video=str(tmp_path / "v.mp4")), "m", None, None) == "video"
    assert check_deploy_inputs(DeployOptions(camera=0), "m", None, None) == "video"
    assert check_deploy_inputs(DeployOptions(slice="64x64", device="cpu"), "m", None, "d") == "images"
    assert check_deploy_inputs(DeployOptions(device="gpu:1"), None, "a.png", None) == "images"  # -c takes cpu/gpu
    assert DeployOptions().given() == []
    assert DeployOptions(video="v", overlap=0.5).given() == ["--overlap", "--video"]


class FakeCapture:
    """A camera-like stream for runner/video.py: n frames, then end; reports no fps and no frame count."""

    def __init__(self, n):
        self.n, self.read_count = n, 0

    def read(self):
        if self.read_count >= self.n:
            return False, None
        self.read_count += 1
        return True, np.full((4, 6, 3), self.read_count, np.uint8)

    def get(self, prop):
        import cv2

        return {cv2.CAP_PROP_FRAME_WIDTH: 6, cv2.CAP_PROP_FRAME_HEIGHT: 4}.get(prop, 0)


def test_video_frames_batched_until_the_end_or_max_frames():
    from trainctl.runner import video

    batches = list(video.read_frames(FakeCapture(7), 3, None))
    assert [len(b) for b in batches] == [3, 3, 1] and batches[2][0][0, 0, 0] == 7
    capture = FakeCapture(100)
    assert [len(b) for b in video.read_frames(capture, 4, 6)] == [4, 2] and capture.read_count == 6
    assert video.stream_facts(FakeCapture(1)) == {"fps": video.DEFAULT_CAMERA_FPS, "width": 6, "height": 4, "frames": None}
    assert video.output_name(None, 2) == "camera2" and video.output_name("/v/street.mp4", None) == "street"


def test_frame_line_is_one_json_object_without_the_file():
    from trainctl.runner import video
    from trainctl.runner.predict import Detection

    line = json.loads(video.frame_line(3, [Detection("cam#3", 1, "stop", 0.5, [1.0, 2.0, 3.0, 4.0])]))
    assert line == {"frame": 3, "detections": [{"class_id": 1, "class": "stop", "score": 0.5, "box": [1.0, 2.0, 3.0, 4.0]}]}


def test_new_ir_model_gets_the_new_executor_and_onednn_off_by_default(tmp_path):
    """paddle 3.3.1, measured: a model.json needs enable_new_executor for enable_memory_optim, and its
    oneDNN passes fail on the doubles paddle 3.3.1 saves; model.pdmodel keeps the old calls."""
    from trainctl.runner import predictor_config as pc

    new, old = tmp_path / "new", tmp_path / "old"
    new.mkdir(), old.mkdir()
    (new / "model.json").write_text("{}")
    (old / "model.pdmodel").write_bytes(b"")
    auto = pc.PredictorOptions(device="cpu", threads=2, onednn=None)
    new_calls = [c[0] for c in pc.predictor_calls(auto, str(new))]
    old_calls = [c[0] for c in pc.predictor_calls(auto, str(old))]
    assert new_calls[0] == "enable_new_executor" and "disable_onednn" in new_calls
    assert "enable_new_executor" not in old_calls and "enable_onednn" in old_calls
    asked = [c[0] for c in pc.predictor_calls(pc.PredictorOptions(device="cpu", threads=2, onednn=True), str(new))]
    assert "enable_onednn" in asked


def test_pad_and_letterbox_steps_as_deploy_defines_them():
    """YOLOX's infer_cfg.yml: keep_ratio Resize then Pad to the square size with 114 grey."""
    import numpy as np

    from trainctl.runner.predict import Preprocessor

    rgb = np.full((240, 320, 3), 200, dtype=np.uint8)
    pre = Preprocessor([{"type": "Resize", "target_size": [128, 128], "keep_ratio": True, "interp": 1},
                        {"type": "Pad", "size": [128, 128], "fill_value": [114.0, 114.0, 114.0]},
                        {"type": "Permute"}])
    feed = pre(rgb)
    assert feed["image"].shape == (1, 3, 128, 128)
    assert feed["image"][0, :, 0, 0].tolist() == [200.0] * 3 and feed["image"][0, :, 127, 0].tolist() == [114.0] * 3
    assert np.allclose(feed["scale_factor"][0], [0.4, 0.4])
    box = Preprocessor([{"type": "LetterBoxResize", "target_size": [128, 128]}, {"type": "Permute"}])(rgb)
    assert box["image"].shape == (1, 3, 128, 128) and box["image"][0, 0, 0, 0] == 128.0  # 127.5 on uint8, as deploy pads
    assert np.allclose(box["scale_factor"][0], [0.4, 0.4]) and box["im_shape"][0].tolist() == [96.0, 128.0]
