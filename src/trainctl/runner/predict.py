"""Detect objects in images, two ways with one output format.

- dynamic graph: ppdet's model built from the config, weights loaded, images
  read and preprocessed by ppdet's own TestReader;
- exported model: Paddle Inference on model.pdmodel/model.pdiparams, with the
  preprocessing that infer_cfg.yml lists (implemented here; the deployment
  path must not need ppdet).

Both give rows [class, score, x1, y1, x2, y2] in original-image pixels; both
write annotated images and `detections.json`:

    {"source": ..., "threshold": 0.5, "labels": [...], "images": [...],
     "detections": [{"file": ..., "class_id": 0, "class": "stop", "score": 0.9,
                     "box": [x1, y1, x2, y2]}, ...]}
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from trainctl.errors import UserError
from trainctl.fsutil import atomic_write_bytes, atomic_write_text

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")
RESULT_FILE = "detections.json"


@dataclass
class Detection:
    file: str
    class_id: int
    name: str
    score: float
    box: list[float]

    def to_json(self) -> dict:
        d = asdict(self)
        d["class"] = d.pop("name")
        return d


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


def rows_to_detections(file: str, rows, labels: list[str], threshold: float) -> list[Detection]:
    out = []
    for row in rows:
        cls, score = int(row[0]), float(row[1])
        if cls < 0 or score < threshold:
            continue
        name = labels[cls] if cls < len(labels) else str(cls)
        out.append(Detection(file, cls, name, round(score, 6), [round(float(v), 3) for v in row[2:6]]))
    out.sort(key=lambda d: -d.score)
    return out


def write_results(source: str, images: list[str], detections: list[Detection], labels: list[str], threshold: float, output_dir: str) -> str:
    """Annotated copies of the images plus detections.json in output_dir; returns the JSON path."""
    import cv2

    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    by_file: dict[str, list[Detection]] = {}
    for d in detections:
        by_file.setdefault(d.file, []).append(d)
    for image in images:
        im = cv2.imread(image)
        if im is None:
            continue
        for d in by_file.get(image, []):
            x1, y1, x2, y2 = (int(round(v)) for v in d.box)
            color = _color(d.class_id)
            cv2.rectangle(im, (x1, y1), (x2, y2), color, 2)
            text = f"{d.name} {d.score:.2f}"
            (tw, th), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, 0.4, 1)
            ty = max(th + 2, y1)
            cv2.rectangle(im, (x1, ty - th - 3), (x1 + tw + 2, ty), color, -1)
            cv2.putText(im, text, (x1 + 1, ty - 2), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 255), 1, cv2.LINE_AA)
        ok, encoded = cv2.imencode(Path(image).suffix or ".png", im)
        if ok:
            atomic_write_bytes(out / Path(image).name, encoded.tobytes())
    result = {
        "source": source,
        "threshold": threshold,
        "labels": labels,
        "images": images,
        "detections": [d.to_json() for d in detections],
    }
    path = out / RESULT_FILE
    atomic_write_text(path, json.dumps(result, indent=2) + "\n")
    return str(path)


def _color(class_id: int) -> tuple[int, int, int]:
    palette = [(56, 56, 255), (151, 157, 255), (31, 112, 255), (29, 178, 255), (49, 210, 207), (10, 249, 72), (23, 204, 146), (134, 219, 61)]
    return palette[class_id % len(palette)]


# --------------------------------------------------------- dynamic graph ----


def predict_dynamic(flat_config: str, weights: str | None, images: list[str], threshold: float) -> tuple[list[Detection], list[str]]:
    from trainctl.runner import session
    from trainctl.weights import resolve_weights

    cfg = session.load_flat_config(flat_config)
    weights = weights or cfg.get("weights")
    if not weights:
        raise UserError("no weights for inference", hint="pass --weights PATH (e.g. output/<config>/model_final)")
    weights = resolve_weights(weights, "weights")
    session.setup_device(cfg, "auto")
    label_file = session.ensure_test_labels(cfg, weights)
    labels = session.read_label_list(label_file)

    import paddle
    from ppdet.core.workspace import create
    from ppdet.engine import Trainer

    trainer = Trainer(cfg, mode="test")
    session.load_weights_strict(trainer.model, weights, cfg.architecture)
    trainer.dataset.set_images(images)
    loader = create("TestReader")(trainer.dataset, 0)
    imid2path = trainer.dataset.get_imid2path()
    trainer.model.eval()
    detections: list[Detection] = []
    with paddle.no_grad():
        for data in loader:
            outs = trainer.model(data)
            bbox = outs["bbox"].numpy()
            counts = outs["bbox_num"].numpy()
            ids = data["im_id"].numpy().reshape(-1)
            start = 0
            for im_id, n in zip(ids, counts):
                detections += rows_to_detections(imid2path[int(im_id)], bbox[start : start + int(n)], labels, threshold)
                start += int(n)
    return detections, labels


# --------------------------------------------------------- exported model ----


def load_infer_cfg(model_dir: str) -> dict:
    import yaml

    for name in ("model.pdmodel", "model.pdiparams", "infer_cfg.yml"):
        if not os.path.isfile(os.path.join(model_dir, name)):
            raise UserError(f"{model_dir} is not an exported model (no {name})", hint="make one with `trainctl export -c CFG --weights W --output DIR`")
    with open(os.path.join(model_dir, "infer_cfg.yml")) as f:
        return yaml.safe_load(f)


class Preprocessor:
    """The Preprocess list of infer_cfg.yml: image (RGB HWC uint8) -> model inputs."""

    SUPPORTED = ("Resize", "NormalizeImage", "Permute", "PadStride")

    def __init__(self, ops: list[dict]):
        for op in ops:
            if op.get("type") not in self.SUPPORTED:
                raise UserError(f"unsupported preprocessing step {op.get('type')!r} in infer_cfg.yml", hint=f"supported: {', '.join(self.SUPPORTED)}")
        self.ops = ops

    def __call__(self, rgb):
        import cv2
        import numpy as np

        im = rgb
        im_shape = np.array(im.shape[:2], dtype=np.float32)
        scale = np.array([1.0, 1.0], dtype=np.float32)  # (y, x)
        for op in self.ops:
            kind = op["type"]
            if kind == "Resize":
                target = op["target_size"]
                target = [target, target] if isinstance(target, int) else list(target)
                h, w = im.shape[:2]
                if op.get("keep_ratio", False):
                    s = min(min(target) / min(h, w), max(target) / max(h, w))
                    sy = sx = s
                    new_h, new_w = s * h, s * w
                else:
                    new_h, new_w = target
                    sy, sx = new_h / h, new_w / w
                im = cv2.resize(im, None, None, fx=sx, fy=sy, interpolation=int(op.get("interp", 1))).astype(np.float32)
                im_shape = np.array([new_h, new_w], dtype=np.float32)
                scale = np.array([scale[0] * sy, scale[1] * sx], dtype=np.float32)
            elif kind == "NormalizeImage":
                im = im.astype(np.float32)
                if op.get("is_scale", True):
                    im *= 1.0 / 255.0
                if op.get("norm_type", "mean_std") == "mean_std":
                    im -= np.array(op["mean"])[None, None, :]
                    im /= np.array(op["std"])[None, None, :]
            elif kind == "Permute":
                im = im.transpose((2, 0, 1))
            elif kind == "PadStride":
                stride = int(op.get("stride", 0))
                if stride > 0:
                    c, h, w = im.shape
                    ph, pw = -(-h // stride) * stride, -(-w // stride) * stride
                    padded = np.zeros((c, ph, pw), dtype=np.float32)
                    padded[:, :h, :w] = im
                    im = padded
        return {"image": np.ascontiguousarray(im[None].astype(np.float32)), "im_shape": im_shape[None], "scale_factor": scale[None]}


class ExportedModel:
    """Paddle Inference predictor over an exported model directory."""

    def __init__(self, model_dir: str, threads: int = 2, use_gpu: bool = False):
        self.model_dir = model_dir
        self.infer_cfg = load_infer_cfg(model_dir)
        self.labels = [str(x) for x in self.infer_cfg.get("label_list", [])]
        self.preprocess = Preprocessor(self.infer_cfg.get("Preprocess", []))
        from paddle import inference

        config = inference.Config(os.path.join(model_dir, "model.pdmodel"), os.path.join(model_dir, "model.pdiparams"))
        if use_gpu:
            config.enable_use_gpu(200, 0)
        else:
            config.disable_gpu()
            config.set_cpu_math_library_num_threads(max(1, threads))
        config.disable_glog_info()
        config.enable_memory_optim()
        config.switch_use_feed_fetch_ops(False)
        self.predictor = inference.create_predictor(config)

    @staticmethod
    def read_rgb(path: str):
        import cv2

        im = cv2.imread(path, cv2.IMREAD_COLOR)
        if im is None:
            raise UserError(f"cannot read image {path}")
        return cv2.cvtColor(im, cv2.COLOR_BGR2RGB)

    def run(self, inputs: dict):
        """Run on preprocessed inputs; return (rows [class, score, x1, y1, x2, y2], counts)."""
        for name in self.predictor.get_input_names():
            handle = self.predictor.get_input_handle(name)
            handle.reshape(inputs[name].shape)
            handle.copy_from_cpu(inputs[name])
        self.predictor.run()
        names = self.predictor.get_output_names()
        rows = self.predictor.get_output_handle(names[0]).copy_to_cpu()
        counts = self.predictor.get_output_handle(names[1]).copy_to_cpu() if len(names) > 1 else [len(rows)]
        return rows, counts

    def detect(self, path: str, threshold: float) -> list[Detection]:
        rows, counts = self.run(self.preprocess(self.read_rgb(path)))
        return rows_to_detections(path, rows[: int(counts[0])], self.labels, threshold)


def predict_exported(model_dir: str, images: list[str], threshold: float, threads: int = 2) -> tuple[list[Detection], list[str]]:
    from trainctl.runner import session

    use_gpu = session.cuda_available()
    model = ExportedModel(model_dir, threads=threads, use_gpu=use_gpu)
    detections: list[Detection] = []
    for path in images:
        detections += model.detect(path, threshold)
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
    threads: int = 2,
) -> dict:
    """`trainctl infer`: check the inputs (before paddle), then run one of the two paths."""
    import tempfile

    from trainctl.runner import session
    from trainctl.weights import resolve_weights

    if bool(config) == bool(model_dir):
        raise UserError("give either -c CONFIG (with --weights) or --model-dir EXPORTED", hint="see `trainctl infer --help`")
    if not 0.0 <= threshold <= 1.0:
        raise UserError(f"--threshold {threshold} is not between 0 and 1")
    images = [os.path.abspath(p) for p in list_images(img, directory)]
    if model_dir:
        load_infer_cfg(model_dir)  # a clear error for a wrong directory
        return infer(images, output_dir or os.path.join("output", "infer"), threshold, model_dir=model_dir, threads=threads)
    with tempfile.TemporaryDirectory(prefix="trainctl-infer-") as tmp:
        flat, rc = session.write_flat_config(config, overrides, tmp)
        weights = weights or rc.get("weights")
        if not weights:
            raise UserError("no weights for inference", hint="pass --weights PATH (e.g. output/<config>/model_final)")
        weights = resolve_weights(weights, "weights")
        return infer(images, output_dir or os.path.join("output", "infer"), threshold, flat_config=flat, weights=weights)


def infer(
    images: list[str],
    output_dir: str,
    threshold: float = 0.5,
    flat_config: str | None = None,
    weights: str | None = None,
    model_dir: str | None = None,
    threads: int = 2,
) -> dict:
    """Run one of the two paths and write the results; returns a summary."""
    from trainctl.runner.compat import quiet_ppdet_warnings

    quiet_ppdet_warnings()
    start = time.perf_counter()
    if model_dir:
        detections, labels = predict_exported(model_dir, images, threshold, threads)
        source = f"exported model {model_dir}"
    else:
        detections, labels = predict_dynamic(flat_config, weights, images, threshold)
        source = f"dynamic graph, weights {weights or 'from config'}"
    json_path = write_results(source, images, detections, labels, threshold, output_dir)
    return {"images": len(images), "detections": len(detections), "json": json_path, "output": output_dir, "seconds": time.perf_counter() - start}
