"""`trainctl infer`: detect objects with trained weights (dynamic graph) or an exported model."""

from __future__ import annotations

import click

from trainctl import output


@click.command("infer", context_settings={"max_content_width": 100})
@click.option("-c", "--config", help="Config file or bundled config name (dynamic-graph inference).")
@click.option("--weights", metavar="W", help="Weights for -c (default: the config's `weights`).")
@click.option("--model-dir", metavar="DIR", help="An exported model (trainctl export): runs Paddle Inference.")
@click.option("--img", metavar="FILE", help="One image.")
@click.option("--dir", "directory", metavar="DIR", help="A directory of images (.jpg, .jpeg, .png, .bmp).")
@click.option("--threshold", type=float, default=0.5, show_default=True, help="Keep detections with at least this score.")
@click.option("--output", "output_dir", metavar="DIR", help="Where annotated images and detections.json go (default output/infer).")
@click.option("--threads", type=click.IntRange(min=1), default=2, show_default=True, help="CPU threads for Paddle Inference.")
@click.option("-o", "--override", "overrides", multiple=True, metavar="KEY=VALUE", help="Override a config value (with -c).")
def infer(config, weights, model_dir, img, directory, threshold, output_dir, threads, overrides) -> None:
    """Detect objects in images; write annotated images and detections.json.

    \b
    Examples:
      trainctl infer -c roadsign_cpu_smoke.yml --weights output/roadsign_cpu_smoke/model_final --img road554.png
      trainctl infer --model-dir output_inference/roadsign_cpu_smoke --dir dataset/roadsign_voc/images
      trainctl infer --model-dir deploy/roadsign --img a.png --threshold 0.3 --output results/ --threads 4
    """
    from trainctl.runner.predict import run_infer

    result = run_infer(config, list(overrides), weights, model_dir, img, directory, threshold, output_dir, threads)
    output.echo(f"{result['detections']} detections in {result['images']} images "
                f"({result['seconds']:.1f} s); results in {result['json']}")
