"""`trainctl infer`'s pure parts: batch stacking and padding, splitting outputs per image, result writing (no paddle)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from trainctl import fsutil
from trainctl.errors import RuntimeFailure
from trainctl.runner import predict


def feed(h: int, w: int, fill: float, scale: float = 1.0) -> dict:
    return {"image": np.full((1, 3, h, w), fill, np.float32), "im_shape": np.array([[h, w]], np.float32),
            "scale_factor": np.array([[scale, scale]], np.float32)}


def test_same_shapes_stack_without_padding():
    feeds = [feed(8, 8, i, scale=i + 1) for i in range(4)]
    out = predict.stack_batch(feeds)
    assert out["image"].shape == (4, 3, 8, 8) and out["image"].dtype == np.float32
    assert [float(out["image"][i].mean()) for i in range(4)] == [0, 1, 2, 3]
    assert out["im_shape"].tolist() == [[8, 8]] * 4
    assert out["scale_factor"][:, 0].tolist() == [1, 2, 3, 4]
    assert predict.stack_batch(feeds[:1]) is feeds[0]


def test_different_shapes_pad_bottom_right_to_the_largest_h_and_w():
    tall, wide = feed(10, 4, 1.0, 0.5), feed(6, 12, 2.0, 0.25)
    out = predict.stack_batch([tall, wide])
    assert out["image"].shape == (2, 3, 10, 12)  # largest H of one image, largest W of the other
    assert (out["image"][0, :, :10, :4] == 1).all() and not out["image"][0, :, :, 4:].any()
    assert (out["image"][1, :, :6, :12] == 2).all() and not out["image"][1, :, 6:, :].any()
    # each image keeps its own size and scale: boxes map back to its own original pixels
    assert out["im_shape"].tolist() == [[10, 4], [6, 12]]
    assert out["scale_factor"].tolist() == [[0.5, 0.5], [0.25, 0.25]]


def test_keep_ratio_preprocessing_then_stacking():
    """Two photos of other aspect ratios through a keep_ratio Resize: one batch, padded, sizes per image."""
    pre = predict.Preprocessor([
        {"type": "Resize", "target_size": [64, 96], "keep_ratio": True, "interp": 1},
        {"type": "NormalizeImage", "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5], "is_scale": True},
        {"type": "Permute"},
    ])
    rng = np.random.default_rng(0)
    landscape = rng.integers(0, 255, (100, 200, 3), dtype=np.uint8)
    portrait = rng.integers(0, 255, (120, 60, 3), dtype=np.uint8)
    a, b = pre(landscape), pre(portrait)
    assert a["image"].shape[2:] != b["image"].shape[2:]
    out = predict.stack_batch([a, b])
    h = max(a["image"].shape[2], b["image"].shape[2])
    w = max(a["image"].shape[3], b["image"].shape[3])
    assert out["image"].shape == (2, 3, h, w)
    for i, single in enumerate((a, b)):
        _, _, sh, sw = single["image"].shape
        np.testing.assert_array_equal(out["image"][i, :, :sh, :sw], single["image"][0])
        assert out["im_shape"][i].tolist() == single["im_shape"][0].tolist() == [sh, sw]
        np.testing.assert_array_equal(out["scale_factor"][i], single["scale_factor"][0])


def rows(*classes_scores):
    return np.array([[c, s, 1, 2, 3, 4] for c, s in classes_scores], np.float32).reshape(-1, 6)


def test_split_rows_by_bbox_num_keeps_order_and_empty_images():
    out = rows((0, 0.9), (1, 0.8), (2, 0.7), (3, 0.6))
    parts = predict.split_rows(out, np.array([2, 0, 1, 1], np.int32), 4)
    assert [p[:, 0].tolist() for p in parts] == [[0, 1], [], [2], [3]]


def test_split_rows_of_one_image_and_of_an_empty_batch():
    assert predict.split_rows(rows((0, 0.9), (1, 0.5)), [2], 1)[0].shape == (2, 6)
    # nothing found in the whole batch: one placeholder row (class -1) and one count
    parts = predict.split_rows(rows((-1, 0.0)), [1], 3)
    assert len(parts) == 3 and all(len(p) == 0 for p in parts)


def test_split_rows_rejects_outputs_that_do_not_fit_the_batch():
    with pytest.raises(RuntimeFailure, match="box counts for 1 images in a batch of 2"):
        predict.split_rows(rows((0, 0.9)), [1], 2)
    with pytest.raises(RuntimeFailure, match="reported 3 boxes but returned 2"):
        predict.split_rows(rows((0, 0.9), (1, 0.9)), [1, 2], 2)


def test_split_then_filter_gives_each_image_its_own_detections():
    out = rows((0, 0.9), (1, 0.2), (3, 0.7))
    parts = predict.split_rows(out, [1, 2], 2)
    dets = [predict.rows_to_detections(f, p, ["a", "b", "c", "d"], 0.5) for f, p in zip(("x.png", "y.png"), parts)]
    assert [(d.file, d.name) for d in dets[0]] == [("x.png", "a")]
    assert [(d.file, d.name) for d in dets[1]] == [("y.png", "d")]  # b is below the threshold


def test_batches_of():
    assert predict.batches_of(list("abcde"), 2) == [["a", "b"], ["c", "d"], ["e"]]
    assert predict.batches_of(list("ab"), 4) == [["a", "b"]]
    assert predict.batches_of(list("ab"), 8) == [["a", "b"]]


@pytest.fixture
def fsyncs(monkeypatch):
    """Every path fsynced through fsutil (files and directories)."""
    seen = []
    real = os.fsync

    def spy(fd):
        seen.append(os.readlink(f"/proc/self/fd/{fd}"))
        return real(fd)

    monkeypatch.setattr(fsutil.os, "fsync", spy)
    return seen


def png(path, h=20, w=30):
    import cv2

    cv2.imwrite(str(path), np.full((h, w, 3), 128, np.uint8))
    return str(path)


def test_writer_saves_annotated_images_without_fsync_and_json_with_it(tmp_path, fsyncs):
    src = png(tmp_path / "in.png")
    writer = predict.ResultWriter(str(tmp_path / "out"))
    det = predict.Detection(src, 1, "b", 0.9, [2.0, 2.0, 20.0, 15.0])
    writer.image(src, [det])
    annotated = tmp_path / "out" / "in.png"
    assert annotated.stat().st_size > 0 and fsyncs == []
    import cv2

    assert (cv2.imread(str(annotated)) != 128).any()  # the box was drawn
    path = writer.finish("test", [src], [det], ["a", "b"], 0.5)
    assert str(tmp_path / "out") in fsyncs  # directory of detections.json
    assert any(p.startswith(str(tmp_path / "out" / ".detections.json.")) for p in fsyncs)
    assert sorted(os.listdir(tmp_path / "out")) == ["detections.json", "in.png"]  # no temporaries left
    assert json.loads(open(path).read())["detections"][0]["class"] == "b"


def test_no_save_images_writes_only_detections_json(tmp_path):
    src = png(tmp_path / "in.png")
    writer = predict.ResultWriter(str(tmp_path / "out"), save_images=False)
    writer.image(src, [predict.Detection(src, 0, "a", 0.9, [1, 1, 5, 5])])
    writer.finish("test", [src], [], ["a"], 0.5)
    assert os.listdir(tmp_path / "out") == ["detections.json"]


def test_atomic_write_bytes_fsync_false_is_still_atomic(tmp_path, fsyncs):
    target = tmp_path / "a.png"
    fsutil.atomic_write_bytes(target, b"old", fsync=False)
    fsutil.atomic_write_bytes(target, b"new", fsync=False)
    assert target.read_bytes() == b"new" and os.listdir(tmp_path) == ["a.png"] and fsyncs == []
    fsutil.atomic_write_bytes(target, b"synced")
    assert len(fsyncs) == 2  # the default still syncs the file and its directory


def test_predict_module_imports_no_paddle():
    code = ("import sys\nimport trainctl.runner.predict, trainctl.runner.session, trainctl.runner.benchmark\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('paddle', 'ppdet')))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def test_runs_for_shapes_pads_or_groups_by_shape():
    same, a, b = (1, 3, 8, 8), (1, 3, 10, 4), (1, 3, 6, 12)
    assert predict.runs_for_shapes([same, same, same], pad=False) == [[0, 1, 2]]
    assert predict.runs_for_shapes([a, b, a], pad=True) == [[0, 1, 2]]  # one padded run
    assert predict.runs_for_shapes([a, b, a, b], pad=False) == [[0, 2], [1, 3]]  # no padding: one run per shape


def test_flat_config_and_weights_shared_by_export_and_infer(tmp_path, monkeypatch):
    """One helper for both commands: the flat config, --weights or the config's `weights`, the same errors."""
    from trainctl.errors import UserError

    monkeypatch.chdir(tmp_path)  # the config's relative `weights` must not exist here
    flat_dir = tmp_path / "flat"  # not the cwd: a flat roadsign_cpu_smoke.yml there would shadow the bundled name
    flat_dir.mkdir()
    from trainctl.runner.session import flat_config_and_weights

    for purpose in ("for inference", "to export"):
        with pytest.raises(UserError, match=f"^no weights {purpose}$") as exc:
            flat_config_and_weights("roadsign_cpu_smoke.yml", ["weights="], None, flat_dir, purpose)
        assert exc.value.hint == "pass --weights PATH (e.g. output/<config>/model_final)"
    with pytest.raises(UserError, match="weights file not found"):
        flat_config_and_weights("roadsign_cpu_smoke.yml", [], None, flat_dir, "to export")  # the config's own weights
    (tmp_path / "w.pdparams").write_bytes(b"x")
    flat, rc, weights = flat_config_and_weights("roadsign_cpu_smoke.yml", [], str(tmp_path / "w"), flat_dir, "to export")
    assert weights.startswith(str(tmp_path / "w")) and rc.name == "roadsign_cpu_smoke"
    assert os.path.isfile(flat) and "TestReader" in open(flat).read()
