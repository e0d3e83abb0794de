"""`trainctl infer`: detect objects with trained weights (dynamic graph) or an exported model."""

from __future__ import annotations

import click

from trainctl import output
from trainctl.cli.train import PPDET_HELP


@click.command("infer", context_settings={"max_content_width": 100})
@click.option("-c", "--config", help="Config file or bundled config name (dynamic-graph inference).")
@click.option("--weights", metavar="W", help="Weights for -c (default: the config's `weights`).")
@click.option("--model-dir", metavar="DIR", help="An exported model (trainctl export): runs Paddle Inference.")
@click.option("--img", metavar="FILE", help="One image.")
@click.option("--dir", "directory", metavar="DIR", help="A directory of images (.jpg, .jpeg, .png, .bmp).")
@click.option("--threshold", type=float, default=0.5, show_default=True, help="Keep detections with at least this score.")
@click.option("--output", "output_dir", metavar="DIR", help="Where annotated images and detections.json go (default output/infer).")
@click.option("--batch-size", type=click.IntRange(min=1),
              help="Images per predictor run with --model-dir, TestReader batch size with -c (default 1).")
@click.option("--save-images/--no-save-images", default=True,
              help="Write annotated copies of the images (default) or only detections.json.")
@click.option("--threads", type=click.IntRange(min=1), help="CPU threads for Paddle Inference (default: all usable CPUs).")
@click.option("--onednn/--no-onednn", default=True,
              help="oneDNN (MKLDNN) kernels for Paddle Inference on CPU (default on; --no-onednn if one misbehaves).")
@click.option("-o", "--override", "overrides", multiple=True, metavar="KEY=VALUE", help="Override a config value (with -c).")
@click.option("--ppdet", metavar="DIR", help="With -c: " + PPDET_HELP)
# --- deployment benchmark (trainctl.runner.benchmark, docs/runs.md)
@click.option("--benchmark", is_flag=True, help="With --model-dir: time preprocess/inference/postprocess per image "
              "(TIPC-style report); writes no images.")
@click.option("--warmup", type=click.IntRange(min=0), help="Untimed batches before timing, for --benchmark (default 2).")
@click.option("--repeats", type=click.IntRange(min=1), help="Timed passes over the images, for --benchmark (default 3).")
@click.option("--json", "as_json", is_flag=True, help="Print the --benchmark report as JSON.")
# --- end deployment benchmark
def infer(config, weights, model_dir, img, directory, threshold, output_dir, batch_size, save_images, threads, onednn,
          overrides, ppdet, benchmark, warmup, repeats, as_json) -> None:
    """Detect objects in images; write annotated images and detections.json.

    \b
    Examples:
      trainctl infer -c roadsign_cpu_smoke.yml --weights output/roadsign_cpu_smoke/model_final --img road554.png
      trainctl infer --model-dir output_inference/roadsign_cpu_smoke --dir dataset/roadsign_voc/images
      trainctl infer --model-dir deploy/roadsign --img a.png --threshold 0.3 --output results/ --threads 4
    \b
    Fastest on a directory (4 images per run, only detections.json):
      trainctl infer --model-dir deploy/roadsign --dir images/ --batch-size 4 --no-save-images
    \b
    Deployment benchmark (ms per image per stage, images/s, memory; docs/runs.md):
      trainctl infer --model-dir deploy/roadsign --dir images/ --benchmark --batch-size 2 --threads 2 --json
    """
    from trainctl.runner.benchmark import from_cli

    if from_cli(config, model_dir, img, directory, threshold, threads, benchmark, batch_size, warmup, repeats, as_json,
                onednn=onednn):
        return
    if config:  # dynamic graph: ppdet chosen by the rule (--model-dir needs paddle only)
        from trainctl.runner.session import use_ppdet

        use_ppdet(ppdet)
    from trainctl.runner.predict import run_infer

    result = run_infer(config, list(overrides), weights, model_dir, img, directory, threshold, output_dir, threads,
                       batch_size=batch_size or 1, save_images=save_images, onednn=onednn)
    output.echo(f"{result['detections']} detections in {result['images']} images "
                f"({result['seconds']:.1f} s); results in {result['json']}")
