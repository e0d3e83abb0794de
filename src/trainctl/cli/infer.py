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
@click.option("--onednn/--no-onednn", default=None,
              help="oneDNN (MKLDNN) kernels for Paddle Inference on CPU (default: on for model.pdmodel, off for "
                   "model.json, where paddle 3.3's oneDNN passes fail; --no-onednn if one misbehaves).")
@click.option("-o", "--override", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override a config value (with -c; `-o a=1 b=2` as in train).")
@click.option("--ppdet", metavar="DIR", help="With -c: " + PPDET_HELP)
# --- deployment (runner/predictor_config.py, slicing.py, video.py, coco_results.py; docs/deploy.md)
@click.option("--device", metavar="DEV", help="cpu, gpu, gpu:N; with --model-dir also xpu[:N], npu[:N] (default: gpu if usable, else cpu).")
@click.option("--run-mode", type=click.Choice(["paddle", "trt_fp32", "trt_fp16", "trt_int8"]), default="paddle",
              show_default=True, help="Paddle Inference alone, or with TensorRT at this precision (GPU).")
@click.option("--min-subgraph-size", type=click.IntRange(min=1), default=3, show_default=True,
              help="TensorRT: smallest subgraph handed to TensorRT.")
@click.option("--trt-calib/--no-trt-calib", default=True,
              help="trt_int8: calibrate on the inputs (default), or --no-trt-calib for an already quantized model.")
@click.option("--collect-trt-shapes", is_flag=True,
              help="TensorRT: record the dynamic input shapes into shape_range_info.pbtxt next to the model; later runs use it.")
@click.option("--engine", type=click.Choice(["paddle", "onnxruntime"]), default="paddle", show_default=True,
              help="With --model-dir: Paddle Inference, or ONNX Runtime on the model.onnx `export --format onnx` wrote.")
@click.option("--video", metavar="FILE", help="A video file: writes <name>.mp4 (boxes drawn) and <name>.jsonl (per frame).")
@click.option("--camera", type=click.IntRange(min=0), metavar="ID", help="A camera (/dev/videoID); Ctrl-C or --max-frames ends it.")
@click.option("--max-frames", type=click.IntRange(min=1), help="Stop a --video/--camera after this many frames.")
@click.option("--slice", "slice_size", metavar="WxH", help="Sliced inference: cut each image into WxH tiles (small objects in large images).")
@click.option("--overlap", type=float, default=0.25, show_default=True, help="--slice: overlap of neighbouring tiles (ratio).")
@click.option("--combine", type=click.Choice(["nms", "concat"]), default="nms", show_default=True,
              help="--slice: merge the tiles' boxes by per-class NMS, or keep them all.")
@click.option("--save-results", is_flag=True, help="Also write bbox.json (COCO results format; score it with trainctl eval --json-eval).")
@click.option("--coco-annotations", metavar="FILE", help="--save-results: take image and category ids from this COCO annotation file.")
# --- end deployment
# --- deployment benchmark (trainctl.runner.benchmark, docs/runs.md)
@click.option("--benchmark", is_flag=True, help="With --model-dir: time preprocess/inference/postprocess per image "
              "(TIPC-style report); writes no images.")
@click.option("--warmup", type=click.IntRange(min=0), help="Untimed batches before timing, for --benchmark (default 2).")
@click.option("--repeats", type=click.IntRange(min=1), help="Timed passes over the images, for --benchmark (default 3).")
@click.option("--json", "as_json", is_flag=True, help="Print the --benchmark report as JSON.")
# --- end deployment benchmark
@click.argument("extra_overrides", nargs=-1, metavar="")
def infer(config, weights, model_dir, img, directory, threshold, output_dir, batch_size, save_images, threads, onednn,
          overrides, extra_overrides, ppdet, benchmark, warmup, repeats, as_json, **deploy_flags) -> None:
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
    Video or camera, GPU with TensorRT, sliced inference, COCO results (docs/deploy.md):
      trainctl infer --model-dir deploy/roadsign --video street.mp4 --batch-size 4
      trainctl infer --model-dir deploy/roadsign --img big.png --device gpu:0 --run-mode trt_fp16
      trainctl infer --model-dir deploy/roadsign --img aerial.png --slice 640x640 --overlap 0.25
      trainctl infer --model-dir deploy/roadsign --dir val/ --threshold 0 --save-results
    \b
    Deployment benchmark (ms per image per stage, images/s, memory; docs/runs.md):
      trainctl infer --model-dir deploy/roadsign --dir images/ --benchmark --batch-size 2 --threads 2 --json
    """
    from trainctl.runner.benchmark import from_cli
    from trainctl.runner.predict import DeployOptions

    deploy_flags["slice"] = deploy_flags.pop("slice_size")
    deploy = DeployOptions(**deploy_flags)
    if benchmark and deploy.given():
        from trainctl.errors import UserError

        given = deploy.given()
        verb = "do" if len(given) > 1 else "does"
        raise UserError(f"{', '.join(given)} {verb} not apply to --benchmark", hint="--benchmark times CPU images; drop them")
    if from_cli(config, model_dir, img, directory, threshold, threads, benchmark, batch_size, warmup, repeats, as_json,
                onednn=onednn):
        return
    from trainctl.cli.train import ppdet_style_overrides

    if config:  # dynamic graph: ppdet chosen by the rule (--model-dir needs paddle only)
        from trainctl.runner.session import use_ppdet

        use_ppdet(ppdet)
    from trainctl.runner.predict import run_infer

    overrides = ppdet_style_overrides(overrides, extra_overrides)
    result = run_infer(config, overrides, weights, model_dir, img, directory, threshold, output_dir, threads,
                       batch_size=batch_size or 1, save_images=save_images, onednn=onednn, deploy=deploy)
    if "frames" in result:
        output.echo(f"{result['detections']} detections in {result['frames']} frames ({result['fps']:.2f} frames/s); "
                    f"video {result['video']}, per-frame detections {result['jsonl']}")
        return
    output.echo(f"{result['detections']} detections in {result['images']} images "
                f"({result['seconds']:.1f} s); results in {result['json']}")
    if "coco" in result:
        output.echo(f"COCO results in {result['coco']}")
