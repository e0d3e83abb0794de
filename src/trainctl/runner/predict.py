"""Detect objects in images, two ways with one output format.

- dynamic graph: ppdet's model built from the config, weights loaded, images
  read and preprocessed by ppdet's own TestReader;
- exported model: Paddle Inference on model.pdmodel/model.pdiparams, with the
  preprocessing that infer_cfg.yml lists (implemented here; the deployment
  path must not need ppdet).

Both give rows [class, score, x1, y1, x2, y2] in original-image pixels; both
write `detections.json` and (unless --no-save-images) annotated images:

    {"source": ..., "threshold": 0.5, "labels": [...], "images": [...],
     "detections": [{"file": ..., "class_id": 0, "class": "stop", "score": 0.9,
                     "box": [x1, y1, x2, y2]}, ...]}

Batches (--batch-size N): the exported path stacks N preprocessed images into
one predictor run (`stack_batch`, zero-padding to the batch's largest H and W,
as PaddleDetection's deploy code does) and splits the output rows per image by
the model's bbox_num (`split_rows`); the dynamic path sets TestReader.batch_size.
Padding is harmless for heads that decode boxes in pixels, but YOLOv3's
yolo_box decodes relative to the input grid, so a padded image's boxes would
be stretched (measured: x scaled by padded/true width); for arch YOLO, images
of different shapes in one batch run as separate same-shape runs instead.

This module is the predictor (both paths, the deploy flags, the `infer` entry);
the exported model's preprocessing and the batching are runner/preprocess.py, the
detections, drawing and the result files runner/results.py.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

from trainctl.core.hostinfo import cpu_count
from trainctl.errors import RuntimeFailure, UserError
from trainctl.runner.predictor_config import PredictorOptions, apply_calls, predictor_calls
from trainctl.runner.preprocess import Preprocessor, batches_of, load_infer_cfg, runs_for_shapes, split_rows, stack_batch
from trainctl.runner.results import Detection, ResultWriter, rows_to_detections, write_coco_results


IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")
GRID_RELATIVE_ARCHS = ("YOLO",)  # infer_cfg.yml `arch` values whose boxes padding would stretch


def list_images(img: str | None, directory: str | None) -> list[str]:
    if bool(img) == bool(directory):
        raise UserError("give exactly one of --img FILE and --dir DIR")
    if img:
        if not os.path.isfile(img):
            raise UserError(f"image not found: {img}", hint="check the path given to --img")
        return [img]
    if not os.path.isdir(directory):
        raise UserError(f"image directory not found: {directory}", hint="check the path given to --dir")
    found = sorted(str(p) for p in Path(directory).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not found:
        raise UserError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {directory}")
    return found


# --------------------------------------------------------- dynamic graph ----


def predict_dynamic(flat_config: str, weights: str, images: list[str], threshold: float,
                    batch_size: int = 1, device: str | None = None) -> tuple[list[Detection], list[str]]:
    """`weights` as session.flat_config_and_weights resolved them (run_infer does that before paddle).

    `device`: None (GPU when usable, else CPU), cpu, gpu or gpu:N, checked against what paddle can use."""
    from trainctl.runner import compat, predictor_config, session

    cfg = session.load_flat_config(flat_config)
    if device:
        predictor_config.check_options(PredictorOptions(device=device), predictor_config.paddle_caps())
    kind, index = predictor_config.parse_device(device or "cpu")
    session.setup_device(cfg, kind if device else "auto")
    if device and kind == "gpu" and index:
        import paddle

        paddle.set_device(f"gpu:{index}")
    label_file = session.ensure_test_labels(cfg, weights)
    labels = session.read_label_list(label_file)

    import paddle
    from ppdet.core.workspace import create
    from ppdet.engine import Trainer

    trainer = Trainer(cfg, mode="test")
    session.load_weights_strict(trainer.model, weights, cfg.architecture)
    compat.set_test_images(trainer.dataset, images)  # PaddleDetection 2.7+ would read a VOC label list as COCO json
    cfg["TestReader"]["batch_size"] = batch_size  # create() reads it from the global config
    loader = create("TestReader")(trainer.dataset, 0)
    imid2path = trainer.dataset.get_imid2path()
    trainer.model.eval()
    detections: list[Detection] = []
    with paddle.no_grad():
        for data in loader:
            outs = trainer.model(data)
            ids = data["im_id"].numpy().reshape(-1)
            per_image = split_rows(outs["bbox"].numpy(), outs["bbox_num"].numpy().reshape(-1), len(ids))
            for im_id, rows in zip(ids, per_image):
                detections += rows_to_detections(imid2path[int(im_id)], rows, labels, threshold)
    return detections, labels


class ExportedModel:
    """Paddle Inference predictor over an exported model directory.

    On CPU, oneDNN is set explicitly (on unless onednn=False) rather than left
    to paddle's default, and threads default to every CPU this process may use.
    """

    def __init__(self, model_dir: str, threads: int | None = None, use_gpu: bool = False, onednn: bool = True,
                 options: PredictorOptions | None = None):
        self.model_dir = model_dir
        self.infer_cfg = load_infer_cfg(model_dir)
        self.labels = [str(x) for x in self.infer_cfg.get("label_list", [])]
        self.preprocess = Preprocessor(self.infer_cfg.get("Preprocess", []))
        self.threads = max(1, threads or cpu_count())
        if options is None:
            options = PredictorOptions(device="gpu" if use_gpu else "cpu", threads=self.threads, onednn=onednn)
        self.options = options
        self.onednn_requested = options.onednn and options.device == "cpu"
        # YOLOv3-family heads (arch YOLO, the yolo_box op) decode boxes relative to the
        # input's grid, so zero padding stretches them; pixel-based heads ignore padding
        self.pads_safely = self.infer_cfg.get("arch") not in GRID_RELATIVE_ARCHS
        from paddle import inference

        from trainctl.core.model_files import graph_file

        config = inference.Config(graph_file(model_dir), os.path.join(model_dir, "model.pdiparams"))
        apply_calls(config, predictor_calls(options, model_dir), inference.PrecisionType)
        self.config = config
        self.predictor = inference.create_predictor(config)
        self._inputs = {name: self.predictor.get_input_handle(name) for name in self.predictor.get_input_names()}
        self._outputs = [self.predictor.get_output_handle(name) for name in self.predictor.get_output_names()]

    def onednn_enabled(self) -> bool:
        """What the predictor's config says (not what was asked for)."""
        query = getattr(self.config, "onednn_enabled", None) or self.config.mkldnn_enabled
        return bool(query())

    @staticmethod
    def read_bgr(path: str):
        import cv2

        im = cv2.imread(path, cv2.IMREAD_COLOR)
        if im is None:
            raise UserError(f"cannot read image {path}", hint="the file is damaged or not an image")
        return im

    @staticmethod
    def read_rgb(path: str):
        import cv2

        return cv2.cvtColor(ExportedModel.read_bgr(path), cv2.COLOR_BGR2RGB)

    def run(self, inputs: dict):
        """Run on preprocessed inputs; return (rows [class, score, x1, y1, x2, y2], counts per image)."""
        for name, handle in self._inputs.items():
            handle.reshape(inputs[name].shape)
            handle.copy_from_cpu(inputs[name])
        try:
            self.predictor.run()
        except Exception as exc:  # paddle raises ValueError/RuntimeError with a C++ trace
            from trainctl.errors import exception_line

            first = exception_line(exc).split(": ", 1)[-1]  # paddle's meaningful line (the last of "In user code: ...")
            raise RuntimeFailure(
                f"Paddle Inference failed on input {list(inputs['image'].shape)}: {first}",
                hint="check the Preprocess steps in infer_cfg.yml (e.g. PadStride for keep_ratio Resize); "
                "try --batch-size 1 or --no-onednn",
            ) from exc
        rows = self._outputs[0].copy_to_cpu()
        counts = self._outputs[1].copy_to_cpu().reshape(-1) if len(self._outputs) > 1 else [len(rows)]
        return rows, counts

    def rows_for(self, rgbs: list) -> list:
        """Model rows per RGB image, all of them in as few predictor runs as shapes allow (one batch)."""
        feeds = [self.preprocess(rgb) for rgb in rgbs]
        per_image: list = [None] * len(rgbs)
        for run in runs_for_shapes([f["image"].shape for f in feeds], self.pads_safely):
            rows, counts = self.run(stack_batch([feeds[i] for i in run]))
            for i, image_rows in zip(run, split_rows(rows, counts, len(run))):
                per_image[i] = image_rows
        return per_image

    def detect_arrays(self, names: list[str], bgrs: list, threshold: float) -> list[list[Detection]]:
        """Detections per decoded BGR image (one batch); `names` label them."""
        import cv2

        rows = self.rows_for([cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB) for bgr in bgrs])
        return [rows_to_detections(n, r, self.labels, threshold) for n, r in zip(names, rows)]

    def detect_batch(self, paths: list[str], threshold: float) -> list[tuple[str, object, list[Detection]]]:
        """One predictor run over the images; per image (path, its decoded BGR pixels, detections)."""
        bgrs = [self.read_bgr(p) for p in paths]
        return list(zip(paths, bgrs, self.detect_arrays(paths, bgrs, threshold)))

    def detect_sliced(self, path: str, threshold: float, tile: tuple[int, int], overlap: float, combine: str,
                      batch_size: int = 1) -> tuple[object, list[Detection], int]:
        """Sliced inference on one image (runner/slicing.py): (its BGR pixels, merged detections, tiles)."""
        import cv2

        from trainctl.runner import slicing

        bgr = self.read_bgr(path)
        rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        windows = slicing.tile_windows(rgb.shape[1], rgb.shape[0], tile[0], tile[1], overlap)
        per_tile: list = []
        for group in batches_of(windows, batch_size):
            per_tile += self.rows_for([rgb[y0:y1, x0:x1] for x0, y0, x1, y1 in group])
        merged = slicing.merge_tiles(per_tile, windows, combine)
        return bgr, rows_to_detections(path, merged, self.labels, threshold), len(windows)

    def detect(self, path: str, threshold: float) -> list[Detection]:
        return self.detect_batch([path], threshold)[0][2]


@dataclass
class DeployOptions:
    """The deployment flags of `trainctl infer --model-dir` (docs/deploy.md)."""

    device: str | None = None  # None: gpu when paddle has a usable one, else cpu
    run_mode: str = "paddle"
    min_subgraph_size: int = 3
    trt_calib: bool = True
    collect_trt_shapes: bool = False
    slice: str | None = None  # WxH
    overlap: float = 0.25
    combine: str = "nms"
    save_results: bool = False
    coco_annotations: str | None = None
    video: str | None = None
    camera: int | None = None
    max_frames: int | None = None
    engine: str = "paddle"  # or onnxruntime (model.onnx; runner/onnx_predictor.py)

    def given(self) -> list[str]:
        """The flags (--video, --slice, ...) set to something other than their default."""
        from dataclasses import fields

        return [f"--{f.name.replace('_', '-')}" for f in fields(self) if getattr(self, f.name) != f.default]

    def predictor_options(self, threads: int, onednn: bool, batch_size: int, caps: dict | None = None) -> PredictorOptions:
        """Checked against what this paddle can do (`caps`: predictor_config.paddle_caps())."""
        from trainctl.runner import predictor_config

        caps = caps if caps is not None else predictor_config.paddle_caps()
        device = (self.device or ("gpu" if caps.get("cuda") and caps.get("gpus") else "cpu")).lower()
        options = PredictorOptions(device=device,
                                   run_mode=self.run_mode, threads=threads, onednn=onednn, batch_size=batch_size,
                                   min_subgraph_size=self.min_subgraph_size, trt_calib=self.trt_calib,
                                   collect_trt_shapes=self.collect_trt_shapes)
        predictor_config.check_options(options, caps)
        return options


def check_deploy_inputs(deploy: DeployOptions, model_dir: str | None, img: str | None, directory: str | None) -> str:
    """What the deployment flags ask for, checked before paddle: 'video', 'images'."""
    from trainctl.runner import predictor_config, slicing

    media = [x for x in (img, directory, deploy.video) if x] + ([deploy.camera] if deploy.camera is not None else [])
    if len(media) != 1:
        raise UserError("give exactly one of --img FILE, --dir DIR, --video FILE and --camera ID")
    needs_model = {"--video": deploy.video, "--camera": deploy.camera is not None, "--slice": deploy.slice,
                   "--device xpu/npu": deploy.device and predictor_config.parse_device(deploy.device)[0] in ("xpu", "npu"),
                   "--run-mode": deploy.run_mode != "paddle",
                   "--collect-trt-shapes": deploy.collect_trt_shapes}
    used = [flag for flag, on in needs_model.items() if on]
    if used and not model_dir:
        raise UserError(f"{used[0]} works on an exported model (--model-dir)",
                        hint="export first: trainctl export -c CFG --weights W --output DIR")
    if deploy.device:
        predictor_config.parse_device(deploy.device)
    if deploy.run_mode not in predictor_config.RUN_MODES:
        raise UserError(f"--run-mode {deploy.run_mode!r} is not one of {', '.join(predictor_config.RUN_MODES)}")
    if deploy.slice:
        slicing.parse_slice(deploy.slice)
        slicing.tile_windows(1, 1, 16, 16, deploy.overlap)  # checks --overlap
        if deploy.combine not in slicing.COMBINE_METHODS:
            raise UserError(f"--combine {deploy.combine!r} is not one of {', '.join(slicing.COMBINE_METHODS)}")
        if deploy.video or deploy.camera is not None:
            raise UserError("--slice works on images (--img, --dir), not on video")
    if (deploy.save_results or deploy.coco_annotations) and (deploy.video or deploy.camera is not None):
        raise UserError("--save-results works on images (--img, --dir); a video's detections are in its .jsonl")
    if deploy.video and not os.path.isfile(deploy.video):
        raise UserError(f"video not found: {deploy.video}", hint="check the path given to --video")
    if deploy.coco_annotations and not os.path.isfile(deploy.coco_annotations):
        raise UserError(f"COCO annotation file not found: {deploy.coco_annotations}")
    if deploy.max_frames is not None and deploy.max_frames < 1:
        raise UserError(f"--max-frames must be at least 1 (got {deploy.max_frames})")
    from trainctl.runner.onnx_predictor import check_engine_inputs

    check_engine_inputs(deploy.engine, model_dir, deploy.device, deploy.run_mode)
    return "video" if deploy.video or deploy.camera is not None else "images"


def predict_exported(model_dir: str, images: list[str], threshold: float, threads: int | None = None, batch_size: int = 1,
                     onednn: bool = True, writer: ResultWriter | None = None,
                     deploy: DeployOptions | None = None) -> tuple[list[Detection], list[str]]:
    """Detections for every image, batch_size images (or tiles, with --slice) per predictor run; annotated images go
    to writer as they come."""
    from trainctl.runner import slicing

    deploy = deploy or DeployOptions()
    threads = max(1, threads or cpu_count())
    from trainctl.runner.onnx_predictor import exported_model

    model = exported_model(model_dir, deploy.engine, threads, lambda: ExportedModel(
        model_dir, threads=threads, options=deploy.predictor_options(threads, onednn, batch_size)))
    detections: list[Detection] = []
    if deploy.slice:
        tile = slicing.parse_slice(deploy.slice)
        for path in images:
            bgr, found, _ = model.detect_sliced(path, threshold, tile, deploy.overlap, deploy.combine, batch_size)
            detections += found
            if writer is not None:
                writer.image(path, found, bgr)
        return detections, model.labels
    for paths in batches_of(images, batch_size):
        for path, bgr, found in model.detect_batch(paths, threshold):
            detections += found
            if writer is not None:
                writer.image(path, found, bgr)
    return detections, model.labels


def run_infer(
    config: str | None,
    overrides: list[str] | tuple[str, ...],
    weights: str | None,
    model_dir: str | None,
    img: str | None,
    directory: str | None,
    threshold: float,
    output_dir: str | None,
    threads: int | None = None,
    batch_size: int = 1,
    save_images: bool = True,
    onednn: bool = True,
    deploy: DeployOptions | None = None,
) -> dict:
    """`trainctl infer`: check the inputs (before paddle), then run one of the two paths."""
    import tempfile

    from trainctl.fsutil import ensure_writable_dir
    from trainctl.runner import session

    deploy = deploy or DeployOptions()
    if bool(config) == bool(model_dir):
        raise UserError("give either -c CONFIG (with --weights) or --model-dir EXPORTED", hint="see `trainctl infer --help`")
    if not 0.0 <= threshold <= 1.0:
        raise UserError(f"--threshold {threshold} is not between 0 and 1")
    if batch_size < 1:
        raise UserError(f"--batch-size must be at least 1 (got {batch_size})")
    kind = check_deploy_inputs(deploy, model_dir, img, directory)
    output_dir = output_dir or os.path.join("output", "infer")
    if kind == "video":
        from trainctl.runner import video

        if deploy.engine == "paddle":  # onnxruntime: model.onnx and infer_cfg.yml, checked by check_deploy_inputs
            load_infer_cfg(model_dir)
        ensure_writable_dir(output_dir, "--output")
        return video.infer_video(model_dir, deploy, output_dir, threshold, threads, batch_size, onednn)
    images = [os.path.abspath(p) for p in list_images(img, directory)]
    if deploy.save_results and deploy.coco_annotations:
        from trainctl.runner import coco_results

        coco_results.image_ids(images, deploy.coco_annotations)  # every image in the file, before paddle
    options = {"threshold": threshold, "batch_size": batch_size, "save_images": save_images, "deploy": deploy}
    if model_dir:
        if deploy.engine == "paddle":  # onnxruntime: model.onnx and infer_cfg.yml, checked by check_deploy_inputs
            load_infer_cfg(model_dir)  # a clear error for a wrong directory
        ensure_writable_dir(output_dir, "--output")
        return infer(images, output_dir, model_dir=model_dir, threads=threads, onednn=onednn, **options)
    with tempfile.TemporaryDirectory(prefix="trainctl-infer-") as tmp:
        flat, _, weights = session.flat_config_and_weights(config, overrides, weights, tmp, "for inference")
        ensure_writable_dir(output_dir, "--output")
        return infer(images, output_dir, flat_config=flat, weights=weights, **options)


def infer(
    images: list[str],
    output_dir: str,
    threshold: float = 0.5,
    flat_config: str | None = None,
    weights: str | None = None,
    model_dir: str | None = None,
    threads: int | None = None,
    batch_size: int = 1,
    save_images: bool = True,
    onednn: bool = True,
    deploy: DeployOptions | None = None,
) -> dict:
    """Run one of the two paths and write the results; returns a summary."""
    from trainctl.runner.compat import quiet_ppdet_warnings

    deploy = deploy or DeployOptions()
    quiet_ppdet_warnings()
    start = time.perf_counter()
    writer = ResultWriter(output_dir, save_images)
    if model_dir:
        detections, labels = predict_exported(model_dir, images, threshold, threads, batch_size, onednn, writer, deploy)
        source = f"exported model {model_dir}" + (f" ({deploy.engine})" if deploy.engine != "paddle" else "")
    else:
        detections, labels = predict_dynamic(flat_config, weights, images, threshold, batch_size, deploy.device)
        source = f"dynamic graph, weights {weights}"
        by_file: dict[str, list[Detection]] = {}
        for d in detections:
            by_file.setdefault(d.file, []).append(d)
        for image in images:
            writer.image(image, by_file.get(image, []))
    json_path = writer.finish(source, images, detections, labels, threshold)
    summary = {"images": len(images), "detections": len(detections), "json": json_path, "output": output_dir,
               "seconds": time.perf_counter() - start, "saved_images": save_images}
    if deploy.save_results:
        summary["coco"] = write_coco_results(output_dir, images, detections, labels, deploy.coco_annotations)
    return summary
