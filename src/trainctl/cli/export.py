"""`trainctl export`: weights -> a Paddle Inference model (model.pdmodel, model.pdiparams, infer_cfg.yml)."""

from __future__ import annotations

import tempfile
from pathlib import Path

import click

from trainctl import output
from trainctl.cli.train import PPDET_HELP


@click.command("export", context_settings={"max_content_width": 100})
@click.option("-c", "--config", required=True, help="Config file, or the name of a bundled config.")
@click.option("--weights", metavar="W", help="Weights to export (default: the config's `weights`).")
@click.option("--output", "output_dir", metavar="DIR", help="Directory for the model (default output_inference/<config name>).")
@click.option("-o", "--override", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override a config value (repeatable; `-o a=1 b=2` as in train).")
@click.option("--device", default="cpu", show_default=True, metavar="DEV",
              help="Where the weights are loaded for tracing: cpu, gpu, gpu:N, xpu[:N], npu[:N].")
@click.option("--ppdet", metavar="DIR", help=PPDET_HELP)
# --- ONNX (runner/onnx_export.py, docs/deploy.md)
@click.option("--format", "fmt", default="paddle", show_default=True, metavar="FMT",
              help="paddle: Paddle Inference files; onnx: also model.onnx, checked against Paddle Inference.")
@click.option("--opset", type=int, metavar="N", help="--format onnx: the ONNX opset (7-21, default 16).")
@click.option("--check-images", metavar="DIR", help="--format onnx: images for the check (default: 4 sample images).")
@click.option("--check-threshold", type=float, metavar="T",
              help="--format onnx: compare the detections scoring at least T (default 0.05).")
@click.option("--no-check", is_flag=True, help="--format onnx: skip comparing ONNX Runtime with Paddle Inference.")
# --- end ONNX
@click.argument("extra_overrides", nargs=-1, metavar="")
def export(config, weights, output_dir, overrides, extra_overrides, device, ppdet, fmt, opset, check_images, check_threshold,
           no_check) -> None:
    """Export trained weights for deployment with Paddle Inference.

    Works with paddle 3.x out of the box (see docs/deploy.md for the shim).

    \b
    Examples:
      trainctl export -c roadsign_cpu_smoke.yml --weights output/roadsign_cpu_smoke/model_final
      trainctl export -c roadsign.yml --weights output/roadsign/best_model --output deploy/roadsign
      trainctl infer --model-dir deploy/roadsign --img road554.png
      trainctl export -c roadsign.yml --weights output/roadsign/best_model --output deploy/roadsign --format onnx
    """
    from trainctl.core import onnx_policy
    from trainctl.runner import onnx_export
    from trainctl.runner.compat import export_env

    opset = onnx_export.check_inputs(fmt, opset, check_images, not no_check, check_threshold)  # before paddle

    export_env()  # must precede the first `import paddle` in this process
    from trainctl.cli.train import ppdet_style_overrides
    from trainctl.runner.export import run_export

    result = run_export(config, ppdet_style_overrides(overrides, extra_overrides), weights, output_dir, device,
                        ppdet=ppdet)
    output.echo(f"exported {result['weights']} to {result['output']} ({', '.join(result['files'])})")
    if fmt == "onnx":
        threshold = onnx_policy.check_threshold(check_threshold)
        with tempfile.TemporaryDirectory(prefix="trainctl-onnx-check-") as tmp:
            if check_images is None and not no_check:  # the built-in sample images
                from trainctl.data.sample import write_sample_dataset

                write_sample_dataset(Path(tmp), images=onnx_export.CHECK_IMAGES, seed=0)
                check_images = str(Path(tmp) / "images")
            summary = onnx_export.export_onnx(result["output"], opset, check_images, not no_check, threshold=threshold)
        output.echo(onnx_export.summary_line(summary))
