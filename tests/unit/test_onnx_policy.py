"""The paddle-free half of ONNX export: flags, the model.json rewrite, the comparison of two engines' detections,
and the bad-input exits of `trainctl export --format onnx` / `infer --engine onnxruntime` (before paddle)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from trainctl.core import onnx_policy as op
from trainctl.errors import UserError


def test_format_and_opset():
    assert op.check_format("onnx") == "onnx"
    with pytest.raises(UserError, match="--format 'tflite' is not one of paddle, onnx"):
        op.check_format("tflite")
    assert op.check_opset(None) == op.DEFAULT_OPSET
    assert op.check_opset(11) == 11
    for bad in (3, 6, 22):
        with pytest.raises(UserError, match=f"--opset {bad} is outside 7..21"):
            op.check_opset(bad)


def test_pair_status():
    assert op.pair_status("3.3.1", "2.1.0").startswith("known to work")
    assert op.pair_status("3.2.1", "2.1.0").startswith("not checked")
    assert op.pair_status("3.3.1", None) == "not installed"


def _program(version, attrs):
    return {"base_code": {"magic": "pir", "version": version},
            "program": {"regions": [{"blocks": [{"ops": [{"#": name, "A": a} for name, a in attrs]}]}]}}


def _f64_array():
    return {"AT": {"#": "0.a_array", "D": [{"#": "0.a_f64", "D": 2.0}, {"#": "0.a_f64", "D": 2.0}]}, "N": "scale"}


def test_retype_arrays_and_leaky_relu_only():
    prog = _program(4, [("1.nearest_interp", [_f64_array()]),
                        ("1.leaky_relu", [{"AT": {"#": "0.a_f64", "D": 0.1}, "N": "negative_slope"}]),
                        ("1.full", [{"AT": {"#": "0.a_f64", "D": 1.0}, "N": "value"}])])
    assert op.retype_float_arrays(prog) == 3
    ops = prog["program"]["regions"][0]["blocks"][0]["ops"]
    assert [e["#"] for e in ops[0]["A"][0]["AT"]["D"]] == ["0.a_f32", "0.a_f32"]
    assert ops[0]["A"][0]["AT"]["D"][0]["D"] == 2.0  # the value is kept
    assert ops[1]["A"][0]["AT"]["#"] == "0.a_f32"
    assert ops[2]["A"][0]["AT"]["#"] == "0.a_f64"  # full's value is a double by definition


def test_retype_keyed_on_the_measured_version():
    prog = _program(3, [("1.nearest_interp", [_f64_array()])])
    assert op.retype_float_arrays(prog) == 0
    assert prog["program"]["regions"][0]["blocks"][0]["ops"][0]["A"][0]["AT"]["D"][0]["#"] == "0.a_f64"


ROW = [1, 0.8, 10.0, 10.0, 50.0, 60.0]


def test_compare_agreeing_rows():
    ref = {"a.png": [ROW, [0, 0.3, 5, 5, 20, 20]], "b.png": []}
    cand = {"a.png": [[0, 0.3004, 5, 5, 20, 20.05], [1, 0.8, 10.0, 10.0, 50.0, 60.0]], "b.png": []}
    r = op.compare_rows(ref, cand)
    assert r["ok"] and r["matched"] == 2 and r["compared"] == 2
    assert r["max_score_diff"] == pytest.approx(0.0004)
    assert 0.99 < r["min_iou"] < 1.0


@pytest.mark.parametrize("cand_row, words", [
    ([1, 0.8015, 10, 10, 50, 60], "ONNX Runtime nearest: score 0.8015"),  # score off by 1.5e-3
    ([2, 0.8, 10, 10, 50, 60], "has no box of that class"),  # another class
    ([1, 0.8, 12, 10, 50, 60], "(IoU 0.950)"),  # box moved
])
def test_compare_names_the_difference(cand_row, words):
    r = op.compare_rows({"a.png": [ROW]}, {"a.png": [cand_row]})
    assert not r["ok"]
    assert r["difference"].startswith("a.png: Paddle Inference found class 1 score 0.8000 box [10.0, 10.0, 50.0, 60.0]")
    assert words in r["difference"]


def test_compare_extra_candidate_and_threshold_edge():
    r = op.compare_rows({"a.png": [ROW]}, {"a.png": [ROW, [3, 0.5, 0, 0, 9, 9]]})
    assert not r["ok"] and "ONNX Runtime found class 3 score 0.5000" in r["difference"]
    # a row at the threshold's edge may be missing on the other side; placeholder rows (class -1) are ignored
    r = op.compare_rows({"a.png": [ROW, [0, 0.1004, 1, 1, 5, 5]]}, {"a.png": [ROW, [-1, 0.0, 0, 0, 0, 0]]}, threshold=0.1)
    assert r["ok"] and r["matched"] == 1


def _cli(args, hide=()):
    code = ("import sys\n" + "".join(f"sys.modules[{m!r}] = None\n" for m in hide)
            + "from trainctl.cli import main\nsys.argv = ['trainctl'] + sys.argv[1:]\nmain()")
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("args, hide, message", [
    (["--format", "tflite"], (), "trainctl: error: --format 'tflite' is not one of paddle, onnx"),
    (["--format", "onnx", "--opset", "3"], (), "trainctl: error: --opset 3 is outside 7..21"),
    (["--format", "onnx"], ("onnxruntime",), "trainctl: error: --format onnx needs onnxruntime, which is not installed"),
    (["--format", "onnx"], ("paddle2onnx", "onnxruntime"), "needs paddle2onnx and onnxruntime, which are not installed"),
    (["--opset", "12"], (), "trainctl: error: --opset applies to --format onnx only"),
    (["--format", "onnx", "--check-threshold", "2"], (), "trainctl: error: --check-threshold 2.0 is not in [0, 1)"),
])
def test_export_bad_input_one_line_exit_2(tmp_path, args, hide, message):
    proc = _cli(["export", "-c", "roadsign_cpu_smoke.yml", "--weights", str(tmp_path / "w"), *args], hide)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], proc.stderr


def test_infer_engine_onnxruntime_needs_model_onnx(tmp_path):
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "infer_cfg.yml").write_text("Preprocess: []\n")
    (tmp_path / "a.png").write_bytes(b"")
    proc = _cli(["infer", "--model-dir", str(tmp_path / "model"), "--img", str(tmp_path / "a.png"), "--engine", "onnxruntime"])
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and f"--engine onnxruntime: {tmp_path / 'model'} has no model.onnx" in lines[0]
