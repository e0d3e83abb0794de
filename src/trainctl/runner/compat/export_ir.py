"""Export shims: the IR an export runs in, paddle's glog during it, the static ops and `to_static`
defaults paddledet 2.6.0's export needs under paddle 3, and the families refused before an export.

Nothing here imports paddle at import time: `export_env()` must run before the first `import paddle`
of the process.
"""

from __future__ import annotations

import contextlib
import os


# paddle 3.3.1's executor logs "New Executor is Running." at glog INFO level
# (program_interpreter.cc) once per export; glog reads GLOG_minloglevel when paddle
# initialises it on import. 1 = warnings and errors only. A user's own value wins.
EXPORT_QUIET_ENV = {"GLOG_minloglevel": "1"}


def export_env() -> dict[str, str]:
    """Quiet paddle's glog for an export; call before importing paddle. Returns what it set.

    No IR switch: the export runs in the IR paddle defaults to (paddle 3: the new IR, PIR,
    model.json), as the loaded ppdet's own tools/export_model.py does. The old-IR switch
    (`FLAGS_enable_pir_api=0`) that trainctl used to set for every export breaks every family but
    YOLOv3 under paddle 3.3.1 ("sigmoid(): argument (position 1) must be Value, but got Variable");
    paddledet 2.6.0's YOLOv3 needed it only for its NMS, which `pir_static_ops` now builds in PIR."""
    for key, value in EXPORT_QUIET_ENV.items():
        os.environ.setdefault(key, value)
    return dict(EXPORT_QUIET_ENV)


# The one export measured to need paddle 3's old IR (FLAGS_enable_pir_api=0, model.pdmodel): YOLOv3
# with its YOLOv3FPN neck (leaky_relu), on every tree. paddle 3.3.1 saves leaky_relu's negative_slope
# as a double in model.json, and Paddle Inference with oneDNN (trainctl's CPU default for the old
# IR) then segfaults building FusedConv2dOp (measured 2026-12-02 on paddledet 2.6.0's and develop's
# YOLOv3); its old-IR model runs with oneDNN, as before. Every other family exports in the new IR:
# under the old IR they fail ("sigmoid(): argument (position 1) must be Value, but got Variable").
OLD_IR_ENV = {"FLAGS_enable_pir_api": "0"}


def old_ir_reason(cfg: dict) -> str | None:
    """Why this config exports in the old IR, or None (the new IR). Pure: reads the resolved config."""
    arch = cfg.get("architecture")
    section = cfg.get(arch) if isinstance(arch, str) else None
    if arch == "YOLOv3" and isinstance(section, dict) and section.get("neck") == "YOLOv3FPN":
        return ("YOLOv3 (YOLOv3FPN, leaky_relu): paddle 3.3.1's new-IR model segfaults in Paddle Inference with "
                "oneDNN; exported in the old IR (model.pdmodel)")
    return None


def pir_active() -> bool:
    """Whether this process's paddle runs the new IR (call after importing paddle)."""
    import paddle

    return bool(paddle.framework.use_pir_api())


def pir_static_ops() -> list[str]:
    """paddle 3.x (new IR on, measured with 3.3.1) + a ppdet whose `ops.multiclass_nms` / `ops.matrix_nms`
    build their static op with the old `LayerHelper.append_op` (paddledet 2.6.0): under PIR that
    fails in to_static with a TypeError, so no model with MultiClassNMS (YOLOv3, PP-YOLOE+, YOLOX, GFL,
    RetinaNet, FCOS, ...) or MatrixNMS (PP-YOLO) exports. Keyed on the loaded function itself: one
    without a PIR branch (develop added `in_dynamic_or_pir_mode`) gets one that calls paddle's own
    PIR op (`_C_ops.multiclass_nms3`; for matrix_nms, prior_box (SSD), generate_proposals and
    distribute_fpn_proposals (R-CNNs) and box_coder the same-named `paddle.vision.ops` function, whose
    parameters are the same); dynamic mode and the old IR still run ppdet's code. Returns the names patched (none on develop / release-2.7.1)."""
    import inspect

    import paddle
    from paddle.framework import in_pir_mode
    from ppdet.modeling import ops

    patched: list[str] = []
    if getattr(ops, "_trainctl_pir_ops", False):
        return patched

    def has_pir_branch(func) -> bool:
        try:
            return "pir" in inspect.getsource(func)
        except (OSError, TypeError):
            return True  # cannot tell: leave it alone

    if not has_pir_branch(ops.multiclass_nms):
        original_mc = ops.multiclass_nms

        def multiclass_nms(bboxes, scores, score_threshold, nms_top_k, keep_top_k, nms_threshold=0.3,
                           normalized=True, nms_eta=1.0, background_label=-1, return_index=False,
                           return_rois_num=True, rois_num=None, name=None):
            if not in_pir_mode():
                return original_mc(bboxes, scores, score_threshold, nms_top_k, keep_top_k, nms_threshold, normalized,
                                   nms_eta, background_label, return_index, return_rois_num, rois_num, name)
            out, index, nms_rois_num = paddle._C_ops.multiclass_nms3(
                bboxes, scores, rois_num, score_threshold, nms_top_k, keep_top_k, nms_threshold, normalized, nms_eta,
                background_label)
            return out, nms_rois_num if return_rois_num else None, index if return_index else None

        ops.multiclass_nms = multiclass_nms
        patched.append("ops.multiclass_nms")
    # the same static ops that paddle.vision.ops has with the same parameters and a PIR branch:
    # MatrixNMS (PP-YOLO), prior_box (SSD, SSDLite), the R-CNN proposal ops, box_coder
    import functools

    for name in ("matrix_nms", "prior_box", "generate_proposals", "distribute_fpn_proposals", "box_coder"):
        ours, theirs = getattr(ops, name, None), getattr(paddle.vision.ops, name, None)
        if ours is None or theirs is None or has_pir_branch(ours):
            continue
        if list(inspect.signature(ours).parameters)[3:] != list(inspect.signature(theirs).parameters)[3:]:
            continue  # not the same call: leave it

        def pir_or_ppdet(*args, _ours=ours, _theirs=theirs, **kwargs):
            return (_theirs if in_pir_mode() else _ours)(*args, **kwargs)

        setattr(ops, name, functools.wraps(ours)(pir_or_ppdet))
        patched.append(f"ops.{name}")
    ops._trainctl_pir_ops = True
    return patched


def paddle_imported() -> bool:
    import sys

    return "paddle" in sys.modules


@contextlib.contextmanager
def to_static_full_graph():
    """paddle 3.x + paddledet 2.6.0: ppdet calls `paddle.jit.to_static(model, input_spec=...)`,
    and paddle 3 defaults to full_graph=False (SOT), where ppdet then fails with
    "Can't call main_program when full_graph=False". Inside this block
    to_static defaults to full_graph=True (paddle 2.x's behaviour)."""
    import paddle

    original = paddle.jit.to_static

    def to_static(function=None, **kwargs):
        kwargs.setdefault("full_graph", True)
        return original(function, **kwargs)

    paddle.jit.to_static = to_static
    try:
        yield
    finally:
        paddle.jit.to_static = original


# (architectures, file under ppdet/, expression measured to fail, family, one-line reason)
EXPORT_REFUSALS = (
    (("FasterRCNN", "MaskRCNN", "CascadeRCNN"), "modeling/proposal_generator/rpn_head.py",
     "bs_rois_num_collect.append(paddle.shape(topk_rois)[0])", "R-CNN (Faster/Mask/Cascade)",
     "its RPN head counts proposals in 0-D tensors that paddle 3's new IR then rejects in RCNNBox (\"The axis "
     "value should be less than the rank of input\")"),
)


def check_export_supported(package_dir: str | None, architecture: str | None, ppdet_name: str) -> None:
    """Before an export starts (static, no import): a family whose export was measured to fail on the
    chosen ppdet under paddle 3.3.1 and that a newer tree exports (docs/models.md) is refused in one
    line naming the source that works. Keyed on the ppdet's own source text, so a ppdet without the
    failing expression (release-2.7.1, develop) is never refused."""
    from trainctl.errors import UserError

    if not package_dir or not architecture:
        return
    for archs, rel, expression, family, reason in EXPORT_REFUSALS:
        if architecture not in archs:
            continue
        try:
            text = open(os.path.join(package_dir, rel), encoding="utf-8").read()
        except OSError:
            continue
        if expression in text:
            raise UserError(f"{family} does not export on {ppdet_name} with paddle 3: {reason}",
                            hint="train and evaluate there, export with a PaddleDetection checkout: "
                                 "trainctl export --ppdet DIR (develop; docs/models.md)")
