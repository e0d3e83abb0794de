"""Baseline for the inference case: ppdet's dynamic-graph predict.

What PaddleDetection's tools/infer.py does: import paddle and ppdet, load the
config, build ppdet's Trainer in test mode, load the weights and call
Trainer.predict, which reads the images through ppdet's TestReader, runs the
model eagerly and draws and saves every image.

Prints one JSON line with the predict time (after --warmup N untimed images);
with --rows FILE also writes the output rows per image (after timing).

    python benchmarks/baseline_dygraph.py -c RUN/config.yml --weights RUN/model_final --dir IMAGES --output OUT
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import paddle
import ppdet  # noqa: F401
from ppdet.core.workspace import load_config
from ppdet.engine import Trainer

SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")


def pillow_textsize_shim() -> None:
    """paddledet 2.6.0 draws labels with ImageDraw.textsize, which Pillow 10 removed;
    without this, Trainer.predict (and tools/infer.py) fails while drawing."""
    from PIL import ImageDraw

    if not hasattr(ImageDraw.ImageDraw, "textsize"):
        def textsize(self, text, font=None, *args, **kwargs):
            left, top, right, bottom = self.textbbox((0, 0), text, font=font)
            return right - left, bottom - top

        ImageDraw.ImageDraw.textsize = textsize


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-c", "--config", required=True)
    parser.add_argument("--weights", required=True)
    parser.add_argument("--dir", required=True)
    parser.add_argument("--limit", type=int)
    parser.add_argument("--output", required=True)
    parser.add_argument("--threshold", type=float, default=0.5)
    parser.add_argument("--rows", help="write {image name: [[class, score, x1, y1, x2, y2], ...]} here")
    parser.add_argument("--size", type=int, help="input size: set the TestReader's Resize to SIZE x SIZE")
    parser.add_argument("--warmup", type=int, default=0, help="predict the first N images once, untimed, first")
    parser.add_argument("--no-visualize", action="store_true",
                        help="skip drawing and saving annotated images (tools/infer.py always draws)")
    args = parser.parse_args(argv)
    pillow_textsize_shim()

    names = sorted(n for n in os.listdir(args.dir) if n.lower().endswith(SUFFIXES))[: args.limit]
    images = [os.path.join(args.dir, n) for n in names]
    cfg = load_config(args.config)
    cfg["use_gpu"] = False
    if args.size:
        for op in cfg["TestReader"]["sample_transforms"]:
            if "Resize" in op:
                op["Resize"]["target_size"] = [args.size, args.size]
        cfg["TestReader"]["inputs_def"]["image_shape"] = [3, args.size, args.size]
    paddle.set_device("cpu")
    trainer = Trainer(cfg, mode="test")
    trainer.load_weights(args.weights)
    if args.warmup:  # first calls build kernels and caches: not part of the steady rate
        trainer.predict(images[: args.warmup], draw_threshold=args.threshold, output_dir=args.output, save_results=False,
                        visualize=not args.no_visualize)
    start = time.perf_counter()
    results = trainer.predict(images, draw_threshold=args.threshold, output_dir=args.output, save_results=False,
                              visualize=not args.no_visualize)
    seconds = time.perf_counter() - start
    print(json.dumps({"images": len(images), "predict_seconds": seconds, "images_per_s": len(images) / seconds}))
    if args.rows:
        id_to_name = {int(i): os.path.basename(p) for i, p in trainer.dataset.get_imid2path().items()}
        rows: dict[str, list] = {}
        for outs in results:
            offset = 0
            for im_id, n in zip(outs["im_id"].reshape(-1), outs["bbox_num"]):
                rows[id_to_name[int(im_id)]] = outs["bbox"][offset : offset + int(n)].tolist()
                offset += int(n)
        with open(args.rows, "w") as f:
            json.dump(rows, f)
    return 0


if __name__ == "__main__":
    sys.exit(main())
