"""The exported model's preprocessing, as infer_cfg.yml lists it (implemented here: the deployment
path must not need ppdet), and batching (numpy only): stacking preprocessed images into one
predictor run and splitting the output rows per image (runner/predict.py runs them).
"""

from __future__ import annotations

import os

from trainctl.errors import RuntimeFailure, UserError


# --------------------------------------------------------- batches (numpy only) ----


def batches_of(items: list, size: int) -> list[list]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def stack_batch(inputs: list[dict]) -> dict:
    """One predictor feed from single-image feeds (each with a leading batch axis of 1).

    Images of different sizes (keep_ratio Resize) are zero-padded at the bottom
    and right to the batch's largest H and W, as PaddleDetection's deploy code
    pads; im_shape and scale_factor stay per image, so boxes still map back to
    each original image.
    """
    import numpy as np

    if len(inputs) == 1:
        return inputs[0]
    images = [x["image"] for x in inputs]
    if len({im.shape[1:] for im in images}) == 1:
        batch = np.concatenate(images, axis=0)
    else:
        h = max(im.shape[2] for im in images)
        w = max(im.shape[3] for im in images)
        batch = np.zeros((len(images), images[0].shape[1], h, w), dtype=images[0].dtype)
        for i, im in enumerate(images):
            batch[i, :, : im.shape[2], : im.shape[3]] = im[0]
    out = {"image": batch}
    for key in inputs[0]:
        if key != "image":
            out[key] = np.concatenate([x[key] for x in inputs], axis=0)
    return out


def runs_for_shapes(shapes: list[tuple], pad: bool) -> list[list[int]]:
    """Which images (indices) go into one predictor run: all of them, or, when
    padding would change the result and the shapes differ, one run per shape."""
    if pad or len(set(shapes)) <= 1:
        return [list(range(len(shapes)))]
    groups: dict[tuple, list[int]] = {}
    for i, shape in enumerate(shapes):
        groups.setdefault(tuple(shape), []).append(i)
    return list(groups.values())


def split_rows(rows, counts, n_images: int) -> list:
    """The output rows of one batch, per image: bbox_num[i] consecutive rows belong to image i.

    A batch where nothing was found may come back as one placeholder row of
    class -1 with a single count; that is no detection for any image.
    """
    counts = [int(c) for c in counts]
    if len(counts) == n_images:
        if sum(counts) > len(rows):
            raise RuntimeFailure(f"the model reported {sum(counts)} boxes but returned {len(rows)}")
        out, start = [], 0
        for n in counts:
            out.append(rows[start : start + n])
            start += n
        return out
    if n_images == 1:
        return [rows[: sum(counts)]]
    if all(int(row[0]) < 0 for row in rows):
        return [rows[:0] for _ in range(n_images)]
    raise RuntimeFailure(
        f"the model returned box counts for {len(counts)} images in a batch of {n_images}",
        hint="this model does not batch; run with --batch-size 1",
    )


# --------------------------------------------------------- exported model ----


def load_infer_cfg(model_dir: str) -> dict:
    import yaml

    from trainctl.core.model_files import missing_files

    for name in missing_files(model_dir)[:1]:  # model.json (paddle 3) or model.pdmodel, model.pdiparams, infer_cfg.yml
        raise UserError(f"{model_dir} is not an exported model (no {name})", hint="make one with `trainctl export -c CFG --weights W --output DIR`")
    with open(os.path.join(model_dir, "infer_cfg.yml")) as f:
        return yaml.safe_load(f)


class Preprocessor:
    """The Preprocess list of infer_cfg.yml: image (RGB HWC uint8) -> model inputs."""

    SUPPORTED = ("Resize", "NormalizeImage", "Permute", "PadStride", "Pad", "LetterBoxResize")  # the last: preprocess_ops

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
            elif kind in ("Pad", "LetterBoxResize"):
                from trainctl.runner import preprocess_ops

                im, im_shape, scale = preprocess_ops.OPS[kind](op, im, im_shape, scale)
            elif kind == "PadStride":
                stride = int(op.get("stride", 0))
                if stride > 0:
                    c, h, w = im.shape
                    ph, pw = -(-h // stride) * stride, -(-w // stride) * stride
                    padded = np.zeros((c, ph, pw), dtype=np.float32)
                    padded[:, :h, :w] = im
                    im = padded
        return {"image": np.ascontiguousarray(im[None].astype(np.float32)), "im_shape": im_shape[None], "scale_factor": scale[None]}
