"""Export weights to a Paddle Inference model: the graph (model.json under paddle 3's new IR,
model.pdmodel under the old one), model.pdiparams, infer_cfg.yml.

The export runs as the loaded ppdet's own tools/export_model.py does on this paddle: `Trainer.export`
with paddle's default IR (paddle 3: PIR, model.json) and `to_static(full_graph=True)`. The version
shims it needs are keyed in runner/compat/export_ir.py on what the loaded ppdet does (`pir_static_ops`:
paddledet 2.6.0's NMS ops, which had no new-IR branch). No global IR switch is set: the old-IR
switch trainctl used to set for every export broke every family but YOLOv3 (measured 2026-12-02).
YOLOv3 alone exports in the old IR (model.pdmodel), the case measured to need it
(`compat.old_ir_reason`: its new-IR model segfaults in Paddle Inference with oneDNN); the flag is
set before paddle is imported, or the export runs in a child process when paddle already runs the
other IR (library use, tests).

ppdet's Trainer.export writes into <dir>/<config file name>/; here it exports into a temporary
directory beside the output and the files are renamed into place, so an interrupted export leaves
no half-written model.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from trainctl.errors import RuntimeFailure, TrainctlError, UserError

GRAPH_FILES = ("model.json", "model.pdmodel")  # new IR (paddle 3), old IR
EXPORTED_FILES = ("model.pdiparams", "infer_cfg.yml")  # beside one graph file


def check_image_shape(value) -> None:
    """TestReader.inputs_def.image_shape, when set, is [C, H, W] or [N, C, H, W] (PicoDet's configs:
    [1, 3, 320, 320]; N is the exported batch size, -1 for any), H and W may be -1 (any size)."""
    if value is None:
        return
    ints = isinstance(value, (list, tuple)) and all(isinstance(v, int) and not isinstance(v, bool) for v in value)
    ok = ints and len(value) in (3, 4)
    if ok:
        if len(value) == 4 and (value[0] == 0 or value[0] < -1):
            ok = False
        chw = value[-3:]
        if chw[0] < 1 or any(v == 0 or v < -1 for v in chw[1:]):
            ok = False
    if not ok:
        raise UserError(f"TestReader.inputs_def.image_shape is {value!r}; export needs [C, H, W] or [N, C, H, W]",
                        hint="e.g. -o TestReader.inputs_def.image_shape=[3,608,608] (H and W may be -1 for any size)")


def export_model(flat_config: str, weights: str | None, output_dir: str, device: str = "cpu",
                 old_ir: bool = False) -> dict:
    """Export in the IR asked for (`compat.old_ir_reason`): here when this process's paddle is (or
    can still be put) in that IR, else in a child process. paddle reads FLAGS_enable_pir_api only
    when it is imported (measured with 3.3.1: `paddle.set_flags` afterwards is too late)."""
    from trainctl.runner import compat

    compat.export_env()
    if not compat.paddle_imported():
        if old_ir:
            os.environ.update(compat.OLD_IR_ENV)
        else:
            os.environ.pop("FLAGS_enable_pir_api", None)
        return _export_here(flat_config, weights, output_dir, device)
    if compat.pir_active() == (not old_ir):
        return _export_here(flat_config, weights, output_dir, device)
    return _export_in_subprocess(flat_config, weights, output_dir, device, old_ir)


def _export_in_subprocess(flat_config: str, weights: str | None, output_dir: str, device: str, old_ir: bool) -> dict:
    from trainctl.core import ppdet_source
    from trainctl.runner import compat, session

    env = dict(os.environ)
    env.pop("FLAGS_enable_pir_api", None)
    if old_ir:
        env.update(compat.OLD_IR_ENV)
    src = session.chosen_ppdet()
    with tempfile.TemporaryDirectory() as tmp:
        result_file = os.path.join(tmp, "result.json")
        cmd = [sys.executable, "-m", "trainctl.runner.export", "--config", flat_config, "--output", output_dir,
               "--result", result_file, "--device", device]
        if weights:
            cmd += ["--weights", weights]
        if src is not None:  # the child imports the same ppdet as this process chose
            env.update(ppdet_source.worker_env(src, os.environ))
            cmd += ["--ppdet-source", json.dumps(src.to_dict())]
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if proc.returncode == 0:
            return json.loads(Path(result_file).read_text())
        last = (proc.stderr.strip().splitlines() or ["export failed"])[-1]
        if proc.returncode == 2:
            raise UserError(last.replace("trainctl: error: ", "", 1))
        raise RuntimeFailure(f"export failed: {last.replace('trainctl: error: ', '', 1)}")


def _set_export_device(cfg, device: str) -> None:
    """Where the weights are loaded for tracing: cpu (default), or the device --device names (checked first)."""
    from trainctl.runner import predictor_config, session

    kind, index = predictor_config.parse_device(device)
    predictor_config.check_options(predictor_config.PredictorOptions(device=device), predictor_config.paddle_caps())
    session.setup_device(cfg, "cpu")  # the config's use_* flags off, sync_bn -> bn
    if kind != "cpu":
        import paddle

        cfg["use_gpu"] = kind == "gpu"
        paddle.set_device(f"{kind}:{index}")


def _export_here(flat_config: str, weights: str | None, output_dir: str, device: str = "cpu") -> dict:
    from trainctl.runner import compat, session

    cfg = session.load_flat_config(flat_config)
    weights = weights or cfg.get("weights")
    if not weights:
        raise UserError("no weights to export", hint="pass --weights PATH (e.g. output/<config>/model_final)")
    from trainctl.weights import resolve_weights

    weights = resolve_weights(weights, "weights")
    _set_export_device(cfg, device)  # export traces the graph; CPU unless --device says otherwise
    if cfg.get("norm_type") == "sync_bn":
        cfg["norm_type"] = "bn"
    labels = session.ensure_test_labels(cfg, weights)
    if labels is None:
        raise UserError(
            "no label list found for the exported model's class names",
            hint="run from the directory that holds the dataset, or put label_list.txt next to the weights",
        )

    from ppdet.engine import Trainer

    trainer = Trainer(cfg, mode="test")
    session.load_weights_strict(trainer.model, weights, cfg.architecture)
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".export.", dir=out))
    try:
        compat.pir_static_ops()
        compat.ppdet26_training_shims()  # the same forward code is traced (R-CNN's 0-D counts)
        with compat.to_static_full_graph():
            trainer.export(str(staging))
        produced = [p for p in staging.rglob("*") if p.is_file()]
        names = {p.name for p in produced}
        graph = [n for n in GRAPH_FILES if n in names]
        missing = [n for n in EXPORTED_FILES if n not in names] + ([] if graph else [" or ".join(GRAPH_FILES)])
        if missing:
            raise RuntimeFailure(f"export wrote no {', '.join(missing)}")
        for stale in GRAPH_FILES:  # a graph file of the other IR left by an earlier export would be ambiguous
            if stale not in names and (out / stale).exists():
                (out / stale).unlink()
        # weights and graph first, infer_cfg.yml last: a directory with infer_cfg.yml is complete
        for p in sorted(produced, key=lambda p: p.name == "infer_cfg.yml"):
            os.replace(p, out / p.name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return {"output": str(out), "weights": weights, "files": [graph[0], *EXPORTED_FILES], "labels": labels}


def run_export(config: str, overrides: list[str] | tuple[str, ...], weights: str | None, output_dir: str | None,
               device: str = "cpu", ppdet: str | None = None) -> dict:
    """`trainctl export`: resolve the config, check the inputs and weights (before paddle), export with
    the ppdet the rule chooses (`--ppdet DIR`, see core/ppdet_source.py)."""
    from trainctl.runner import compat, predictor_config, session

    compat.export_env()  # first: nothing below may import paddle before this
    session.use_ppdet(ppdet)
    predictor_config.parse_device(device)
    if device != "cpu":  # what this paddle can use, before the config and weights are loaded
        predictor_config.check_options(predictor_config.PredictorOptions(device=device), predictor_config.paddle_caps())
    with tempfile.TemporaryDirectory(prefix="trainctl-export-") as tmp:
        flat, rc, weights = session.flat_config_and_weights(config, overrides, weights, tmp, "to export")
        check_image_shape(rc.get("TestReader.inputs_def.image_shape", None))
        src = session.chosen_ppdet()
        if src is not None:
            compat.check_export_supported(src.package_dir, rc.get("architecture", None), src.short())
        output_dir = output_dir or os.path.join("output_inference", rc.name)
        from trainctl.fsutil import ensure_writable_dir

        ensure_writable_dir(output_dir, "--output")
        return export_model(flat, weights, output_dir, device, old_ir=compat.old_ir_reason(rc.data) is not None)


def main(argv: list[str] | None = None) -> int:
    """The child-process entry (see the module docstring)."""
    from trainctl import output
    from trainctl.runner import compat

    compat.export_env()
    parser = argparse.ArgumentParser(prog="python -m trainctl.runner.export")
    parser.add_argument("--config", required=True)
    parser.add_argument("--weights")
    parser.add_argument("--output", required=True)
    parser.add_argument("--result")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--ppdet-source", help="JSON of the PpdetSource the parent chose")
    args = parser.parse_args(argv)
    try:
        if args.ppdet_source:
            from trainctl.core.ppdet_source import PpdetSource
            from trainctl.runner import session

            session.use_source(PpdetSource.from_dict(json.loads(args.ppdet_source)))
        result = _export_here(args.config, args.weights, args.output, args.device)
    except TrainctlError as exc:
        output.error(exc.one_line())
        return exc.exit_code
    if args.result:
        Path(args.result).write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
