"""`trainctl export --format onnx`: model.onnx beside infer_cfg.yml, checked against Paddle Inference.

Conversion (docs/deploy.md, "ONNX"), measured with paddle 3.3.1, paddle2onnx 2.1.0, onnxruntime 1.32:
1. an old-IR export (model.pdmodel, trainctl's YOLOv3 on paddledet 2.6) is translated to the new IR
   (paddle.pir.translate_to_pir) and saved as model.json in a temporary directory, as paddle2onnx's own
   Python front end does; a new-IR export (model.json) is read as it is;
2. the program is rewritten in a copy (`onnx_policy.retype_float_arrays`): paddle 3.3.1's f64 elements
   of array attributes, which paddle2onnx 2.1.0's parser rejects, become f32;
3. paddle2onnx's converter core (`paddle2onnx_cpp2py_export.export`) writes the ONNX bytes, which go to
   model.onnx atomically. Its Python `paddle2onnx.export` is not used: on a failure it calls sys.exit(-1),
   and when it saves a file it runs Polygraphy constant folding with POLYGRAPHY_AUTOINSTALL_DEPS=1, which
   pip-installs onnx_graphsurgeon and numpy 2.x into the running environment (measured: numpy 1.23.5 ->
   2.4.6, after which `import cv2` and every ppdet import fail).

The check runs model.onnx in ONNX Runtime and the Paddle model in Paddle Inference on the same
preprocessed images and compares every detection the model returns (onnx_policy.compare_rows).

Both run in a fresh `python -m trainctl.runner.onnx_export` process: `trainctl export` imports paddle
with FLAGS_enable_pir_api=0 (the YOLOv3 export shim, runner/compat/export_ir.py), and the translation to the new
IR needs the default IR.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from trainctl.core import onnx_policy
from trainctl.errors import RuntimeFailure, TrainctlError, UserError
from trainctl.fsutil import atomic_write_bytes, atomic_write_text

REJECTED_FILE = "model.onnx.rejected"  # where a model.onnx that failed its check goes
CHECK_IMAGES = 4  # sample images made for the check when --check-images is not given


def _program_file(model_dir: str, tmp: str) -> str:
    """model.json to convert: the directory's own, or one translated from its model.pdmodel into tmp."""
    json_file = os.path.join(model_dir, "model.json")
    if os.path.isfile(json_file):
        return json_file
    if not os.path.isfile(os.path.join(model_dir, "model.pdmodel")):
        raise UserError(f"{model_dir} is not an exported model (no model.pdmodel or model.json)")
    import paddle
    from paddle2onnx.convert import load_parameter, save_program

    exe = paddle.static.Executor(paddle.CPUPlace())
    with paddle.pir_utils.OldIrGuard():
        program, _, _ = paddle.static.load_inference_model(os.path.join(model_dir, "model"), exe)
    pir_program = paddle.pir.translate_to_pir(program.desc)
    load_parameter(pir_program)  # the parameters into the scope save_program writes them from
    save_program(pir_program, os.path.join(tmp, "model"))
    if not os.path.isfile(os.path.join(tmp, "model.json")):
        raise RuntimeFailure("translating model.pdmodel to the new IR wrote no model.json")
    return os.path.join(tmp, "model.json")


def convert(model_dir: str, opset: int) -> dict:
    """Write model_dir/model.onnx; returns what was done."""
    import paddle2onnx
    import paddle2onnx.paddle2onnx_cpp2py_export as core

    with tempfile.TemporaryDirectory(prefix="trainctl-onnx-") as tmp:
        program_file = _program_file(model_dir, tmp)
        params = os.path.join(os.path.dirname(program_file), "model.pdiparams")
        program = json.loads(Path(program_file).read_text())
        version = onnx_policy.program_version(program)
        retyped = onnx_policy.retype_float_arrays(program)
        if retyped:
            program_file = os.path.join(tmp, "model.retyped.json")
            Path(program_file).write_text(json.dumps(program, separators=(",", ":")))
        try:
            # (model, params, opset, auto_upgrade_opset, verbose, onnx_checker, experimental ops, optimize,
            #  custom ops, backend, calibration file, external file, fp16): paddle2onnx 2.1.0's convert.export
            data = core.export(program_file, params, opset, True, False, True, True, True, {}, "onnxruntime", "", "", False)
        except Exception as exc:
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise RuntimeFailure(f"paddle2onnx {paddle2onnx.__version__} could not convert {model_dir}: {first}",
                                 hint="docs/deploy.md lists the versions checked") from exc
    atomic_write_bytes(Path(model_dir) / onnx_policy.ONNX_FILE, data)
    return {"opset": opset, "program_version": version, "retyped_elements": retyped, "bytes": len(data),
            "paddle2onnx": paddle2onnx.__version__}


def check(model_dir: str, images: list[str], threads: int | None = None, threshold: float = onnx_policy.CHECK_THRESHOLD) -> dict:
    """Paddle Inference and ONNX Runtime on the same images; the rows each returns scoring at least threshold, compared."""
    from trainctl.runner import onnx_predictor

    reference = onnx_predictor.paddle_model(model_dir, threads=threads)
    candidate = onnx_predictor.OnnxModel(model_dir, threads=threads)
    ref_rows, cand_rows = {}, {}
    for path in images:
        rgb = reference.read_rgb(path)
        name = os.path.basename(path)
        ref_rows[name] = reference.rows_for([rgb])[0]
        cand_rows[name] = candidate.rows_for([rgb])[0]
        if not onnx_policy.finite_rows(cand_rows[name]):
            return {"ok": False, "images": len(images), "compared": 0, "matched": 0, "max_score_diff": None, "min_iou": None,
                    "difference": f"{name}: ONNX Runtime returned non-finite values (NaN or inf)"}
    result = onnx_policy.compare_rows(ref_rows, cand_rows, threshold=threshold)
    result.update(images=len(images), threshold=threshold)
    if result["ok"] and result["compared"] == 0:
        result.update(ok=False, difference=f"Paddle Inference found nothing scoring {threshold} or more in the {len(images)} check "
                      "images, so nothing was compared (give --check-images DIR with images this model detects on, a lower "
                      "--check-threshold, or --no-check)")
    return result


def _check_images_arg(directory: str | None, tmp: str) -> list[str]:
    """The check's images: those of `directory` (`trainctl export` makes sample images when the user
    gave no --check-images: cli/export.py, since data/ is not the runner's to import)."""
    if directory is None:
        raise UserError("the ONNX check needs images", hint="pass --check-images DIR, or --no-check")
    from trainctl.runner.predict import list_images

    return [os.path.abspath(p) for p in list_images(None, directory)]


def convert_and_check(model_dir: str, opset: int, check_images: str | None, run_check: bool, threads: int | None = None,
                      threshold: float = onnx_policy.CHECK_THRESHOLD) -> dict:
    """In this process (which must not have imported paddle with FLAGS_enable_pir_api=0)."""
    with tempfile.TemporaryDirectory(prefix="trainctl-onnx-check-") as tmp:
        images = _check_images_arg(check_images, tmp) if run_check else []
        result = convert(model_dir, opset)
        if run_check:
            result["check"] = check(model_dir, images, threads, threshold)
            atomic_write_text(Path(model_dir) / onnx_policy.CHECK_FILE, json.dumps(
                {k: result[k] for k in ("opset", "paddle2onnx", "retyped_elements")} | {"check": result["check"]}, indent=2) + "\n")
            if not result["check"]["ok"]:  # a file that disagrees is not left where `infer --engine onnxruntime` looks
                os.replace(Path(model_dir) / onnx_policy.ONNX_FILE, Path(model_dir) / REJECTED_FILE)
    return result


def check_existing(model_dir: str, check_images: str | None, threads: int | None = None,
                   threshold: float = onnx_policy.CHECK_THRESHOLD) -> dict:
    """The check alone, on the model.onnx already in model_dir (nothing is written)."""
    from trainctl.runner import onnx_predictor

    onnx_predictor.require_onnx(model_dir)
    with tempfile.TemporaryDirectory(prefix="trainctl-onnx-check-") as tmp:
        return {"check": check(model_dir, _check_images_arg(check_images, tmp), threads, threshold)}


def child_env() -> dict:
    """The environment for the conversion process: the old-IR export flag (runner/compat/export_ir.py) left out."""
    from trainctl.runner import compat

    env = dict(os.environ)
    for key in compat.OLD_IR_ENV:
        env.pop(key, None)
    env.setdefault("GLOG_minloglevel", "2")
    env["POLYGRAPHY_AUTOINSTALL_DEPS"] = "0"  # never pip-install at run time (see the module docstring)
    return env


def export_onnx(model_dir: str, opset: int, check_images: str | None = None, run_check: bool = True,
                threads: int | None = None, threshold: float = onnx_policy.CHECK_THRESHOLD) -> dict:
    """Convert and check in a fresh process; UserError (exit 2) / RuntimeFailure (exit 1) as it reports."""
    with tempfile.TemporaryDirectory(prefix="trainctl-onnx-") as tmp:
        result_file = os.path.join(tmp, "result.json")
        cmd = [sys.executable, "-m", "trainctl.runner.onnx_export", "--model-dir", model_dir, "--opset", str(opset),
               "--result", result_file, "--check-threshold", str(threshold)]
        if check_images:
            cmd += ["--check-images", check_images]
        if not run_check:
            cmd.append("--no-check")
        if threads:
            cmd += ["--threads", str(threads)]
        proc = subprocess.run(cmd, env=child_env(), capture_output=True, text=True)
        if proc.returncode == 0:
            return json.loads(Path(result_file).read_text())
        last = (proc.stderr.strip().splitlines() or ["ONNX export failed"])[-1].replace("trainctl: error: ", "", 1)
        if os.environ.get("TRAINCTL_DEBUG"):
            sys.stderr.write(proc.stdout[-4000:] + proc.stderr[-8000:])
        if proc.returncode == 2:
            raise UserError(last)
        raise RuntimeFailure(last)


def check_inputs(fmt: str, opset: int | None, check_images: str | None, run_check: bool,
                 threshold: float | None = None) -> int | None:
    """`trainctl export` flags, before paddle: the opset to use (None for --format paddle)."""
    onnx_policy.check_format(fmt)
    if fmt != "onnx":
        given = [flag for flag, on in (("--opset", opset is not None), ("--check-images", check_images),
                                       ("--no-check", not run_check), ("--check-threshold", threshold is not None)) if on]
        if given:
            raise UserError(f"{', '.join(given)} {'applies' if len(given) == 1 else 'apply'} to --format onnx only")
        return None
    opset = onnx_policy.check_opset(opset)
    onnx_policy.check_threshold(threshold)
    if check_images is not None and not os.path.isdir(check_images):
        raise UserError(f"--check-images: no directory {check_images}")
    onnx_policy.require_packages(("paddle2onnx", "onnxruntime") if run_check else ("paddle2onnx",))
    return opset


def summary_line(result: dict) -> str:
    c = result.get("check")
    if not c:
        return f"model.onnx written (opset {result['opset']}, not checked: --no-check)"
    return (f"model.onnx written (opset {result['opset']}) and checked: ONNX Runtime agrees with Paddle Inference "
            f"on {c['images']} images ({c['matched']} detections scoring {c['threshold']} or more matched, max score difference {c['max_score_diff']:.2g}, "
            f"min IoU {c['min_iou']:.4f})")


def main(argv: list[str] | None = None) -> int:
    from trainctl import output

    parser = argparse.ArgumentParser(prog="python -m trainctl.runner.onnx_export")
    parser.add_argument("--model-dir", required=True)
    parser.add_argument("--opset", type=int, default=onnx_policy.DEFAULT_OPSET)
    parser.add_argument("--check-images")
    parser.add_argument("--no-check", action="store_true")
    parser.add_argument("--threads", type=int)
    parser.add_argument("--check-threshold", type=float, default=onnx_policy.CHECK_THRESHOLD)
    parser.add_argument("--check-only", action="store_true", help="check the model.onnx in --model-dir; convert nothing")
    parser.add_argument("--result")
    args = parser.parse_args(argv)
    try:
        if args.check_only:
            result = check_existing(args.model_dir, args.check_images, args.threads, args.check_threshold)
        else:
            result = convert_and_check(args.model_dir, args.opset, args.check_images, not args.no_check, args.threads,
                                       args.check_threshold)
    except TrainctlError as exc:
        output.error(exc.one_line())
        return exc.exit_code
    if args.result:
        Path(args.result).write_text(json.dumps(result))
    if "check" in result and not result["check"]["ok"]:
        kept = "" if args.check_only else f" ({REJECTED_FILE} kept for inspection)"
        output.error(f"ONNX Runtime disagrees with Paddle Inference: {result['check']['difference']}{kept}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
