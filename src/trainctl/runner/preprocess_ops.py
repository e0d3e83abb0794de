"""infer_cfg.yml preprocessing steps beyond Resize / NormalizeImage / Permute / PadStride
(those live in runner/predict.py's Preprocessor), as PaddleDetection's deploy/python/preprocess.py
defines them. Each step takes (op dict, image, im_shape, scale) and returns the three updated;
the image is HWC before Permute, CHW after.

- Pad (YOLOX's TestReader: after a keep_ratio Resize, to `size` [h, w] with `fill_value`, the image
  at the top-left corner; im_shape and scale_factor unchanged);
- LetterBoxResize (JDE-style: resize keeping the ratio into `target_size` and centre it on a
  127.5-grey border; deploy sets im_shape to the resized size and scale_factor to the ratio).
"""

from __future__ import annotations


def pad(op: dict, im, im_shape, scale):
    import numpy as np

    size = op.get("size")
    h, w = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
    im_h, im_w = im.shape[:2]
    if (im_h, im_w) == (h, w):
        return im.astype(np.float32), im_shape, scale
    fill = np.array(op.get("fill_value", [114.0, 114.0, 114.0]), dtype=np.float32)
    canvas = np.ones((max(h, im_h), max(w, im_w), im.shape[2]), dtype=np.float32) * fill
    canvas[:im_h, :im_w, :] = im.astype(np.float32)
    return canvas[:h, :w], im_shape, scale


def letterbox_resize(op: dict, im, im_shape, scale):
    import cv2
    import numpy as np

    target = op["target_size"]
    height, width = (target, target) if isinstance(target, int) else (int(target[0]), int(target[1]))
    h, w = im.shape[:2]
    ratio = min(height / h, width / w)
    new_w, new_h = round(w * ratio), round(h * ratio)
    padw, padh = (width - new_w) / 2, (height - new_h) / 2
    top, bottom = round(padh - 0.1), round(padh + 0.1)
    left, right = round(padw - 0.1), round(padw + 0.1)
    im = cv2.resize(im, (new_w, new_h), interpolation=cv2.INTER_AREA)
    im = cv2.copyMakeBorder(im, top, bottom, left, right, cv2.BORDER_CONSTANT, value=(127.5, 127.5, 127.5))
    return (im.astype(np.float32), np.array([new_h, new_w], dtype=np.float32),
            np.array([ratio, ratio], dtype=np.float32))


OPS = {"Pad": pad, "LetterBoxResize": letterbox_resize}
