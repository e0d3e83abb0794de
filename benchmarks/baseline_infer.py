"""Baseline for the inference case: a bare Paddle Inference loop on an exported model.

The practical limit on this CPU: one predictor (oneDNN on, 2 threads by
default), and for each image only what the model needs: read it, resize,
normalize, transpose, run. No drawing, no result files inside the timed loop.
The preprocessing follows the model's infer_cfg.yml (Resize, NormalizeImage,
Permute), written here independently of trainctl's so that comparing the two
outputs also checks trainctl's preprocessing.

Prints one JSON line with the loop time; with --rows FILE also writes every
output row per image (after timing) for the detection comparison; --sweep
times several thread / oneDNN / batch settings in one process.

    python benchmarks/baseline_infer.py --model-dir M --dir IMAGES [--threads 2] [--no-onednn] [--batch 1]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import cv2
import numpy as np
import yaml
from paddle import inference

SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")


def list_images(directory: str, limit: int | None) -> list[str]:
    names = sorted(n for n in os.listdir(directory) if n.lower().endswith(SUFFIXES))
    return [os.path.join(directory, n) for n in names[:limit]]


class Prep:
    """infer_cfg.yml's Preprocess for the YOLOv3 export: Resize (no keep_ratio), NormalizeImage, Permute."""

    def __init__(self, ops: list[dict]):
        self.size = None
        self.interp = cv2.INTER_LINEAR
        self.scale, self.mean, self.std = True, None, None
        for op in ops:
            kind = op["type"]
            if kind == "Resize":
                if op.get("keep_ratio"):
                    raise SystemExit("baseline: Resize keep_ratio is not needed for this model")
                h, w = op["target_size"] if isinstance(op["target_size"], list) else [op["target_size"]] * 2
                self.size, self.interp = (int(h), int(w)), int(op.get("interp", 1))
            elif kind == "NormalizeImage":
                self.scale = bool(op.get("is_scale", True))
                self.mean = np.asarray(op["mean"], dtype=np.float32).reshape(1, 1, 3)
                self.std = np.asarray(op["std"], dtype=np.float32).reshape(1, 1, 3)
            elif kind != "Permute":
                raise SystemExit(f"baseline: unexpected preprocessing step {kind}")

    def __call__(self, bgr: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        h0, w0 = rgb.shape[:2]
        h, w = self.size
        im = cv2.resize(rgb, (w, h), interpolation=self.interp).astype(np.float32)
        if self.scale:
            im *= 1.0 / 255.0
        im = (im - self.mean) / self.std
        chw = np.ascontiguousarray(im.transpose(2, 0, 1))
        return chw, np.array([h, w], np.float32), np.array([h / h0, w / w0], np.float32)


def make_predictor(model_dir: str, threads: int, onednn: bool):
    config = inference.Config(os.path.join(model_dir, "model.pdmodel"), os.path.join(model_dir, "model.pdiparams"))
    config.disable_gpu()
    config.set_cpu_math_library_num_threads(threads)
    if onednn:
        (getattr(config, "enable_onednn", None) or config.enable_mkldnn)()
    else:
        (getattr(config, "disable_onednn", None) or config.disable_mkldnn)()
    config.disable_glog_info()
    config.enable_memory_optim()
    config.switch_use_feed_fetch_ops(False)
    return inference.create_predictor(config)


def run_loop(predictor, prep: Prep, images: list[str], batch: int) -> tuple[float, dict[str, list[list[float]]]]:
    """Read, preprocess and predict every image; return (seconds, rows per image)."""
    inputs = {n: predictor.get_input_handle(n) for n in predictor.get_input_names()}
    outputs = predictor.get_output_names()
    rows: dict[str, list[list[float]]] = {}
    start = time.perf_counter()
    for i in range(0, len(images), batch):
        chunk = images[i : i + batch]
        prepared = [prep(cv2.imread(path, cv2.IMREAD_COLOR)) for path in chunk]
        feed = {
            "image": np.stack([p[0] for p in prepared]),
            "im_shape": np.stack([p[1] for p in prepared]),
            "scale_factor": np.stack([p[2] for p in prepared]),
        }
        for name, handle in inputs.items():
            handle.reshape(feed[name].shape)
            handle.copy_from_cpu(feed[name])
        predictor.run()
        boxes = predictor.get_output_handle(outputs[0]).copy_to_cpu()
        counts = predictor.get_output_handle(outputs[1]).copy_to_cpu()
        offset = 0
        for path, n in zip(chunk, counts):
            rows[os.path.basename(path)] = boxes[offset : offset + int(n)].tolist()
            offset += int(n)
    return time.perf_counter() - start, rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", required=True)
    parser.add_argument("--dir", required=True, help="directory of images")
    parser.add_argument("--limit", type=int, help="use the first N images (sorted by name)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--no-onednn", action="store_true")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--rows", help="write {image name: [[class, score, x1, y1, x2, y2], ...]} here")
    parser.add_argument("--sweep", action="store_true", help="time threads 1/2 x oneDNN off/on x batch 1/4")
    args = parser.parse_args(argv)

    with open(os.path.join(args.model_dir, "infer_cfg.yml")) as f:
        prep = Prep(yaml.safe_load(f)["Preprocess"])
    images = list_images(args.dir, args.limit)
    if args.sweep:
        results = []
        for threads in (1, 2):
            for onednn in (False, True):
                for batch in (1, 4):
                    predictor = make_predictor(args.model_dir, threads, onednn)
                    run_loop(predictor, prep, images[: max(batch, 2)], batch)  # warm-up: first runs build kernels
                    seconds, _ = run_loop(predictor, prep, images, batch)
                    results.append({"threads": threads, "onednn": onednn, "batch": batch,
                                    "images": len(images), "seconds": seconds, "images_per_s": len(images) / seconds})
        print(json.dumps({"sweep": results}))
        return 0

    t0 = time.perf_counter()
    predictor = make_predictor(args.model_dir, args.threads, not args.no_onednn)
    setup = time.perf_counter() - t0
    seconds, rows = run_loop(predictor, prep, images, args.batch)
    print(json.dumps({"images": len(images), "threads": args.threads, "onednn": not args.no_onednn, "batch": args.batch,
                      "setup_seconds": setup, "loop_seconds": seconds, "images_per_s": len(images) / seconds}))
    if args.rows:
        with open(args.rows, "w") as f:
            json.dump(rows, f)
    return 0


if __name__ == "__main__":
    sys.exit(main())
