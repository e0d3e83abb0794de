"""paddledet 2.6.0 training under paddle 3: dtype promotion and 0-D shapes.

paddle 3 (measured with 3.3.1) no longer promotes mixed dtypes implicitly in eager binary ops
between integer widths, bool and float, or int and float; paddle 2.x did. paddledet 2.6.0 relies
on it in a few places (the newer trees cast explicitly). Each patch below wraps one ppdet
function, is applied only when that function's source still holds the measured expression, and
during the call lets the binary ops of paddle.Tensor promote as paddle 2.x did: int32 with int64
-> int64, bool or int with float -> the float. Outside those calls nothing changes. The 0-D
counts paddle 3 gives where paddle 2.x gave 1-element 1-D ones are made 1-D again for concat
(`_stacking_scalars`), applied the same way.
"""

from __future__ import annotations

_PROMOTING = [0]  # nesting depth of promoting calls (a training step runs in one thread)


def _promoted(a, b):
    import paddle

    ints = (paddle.int32, paddle.int64, paddle.int16, paddle.int8, paddle.uint8)
    floats = (paddle.float32, paddle.float64, paddle.float16, paddle.bfloat16)
    if a == b:
        return None
    if a in ints and b in ints:
        return paddle.int64
    if a in floats and (b in ints or b == paddle.bool):
        return a
    if b in floats and (a in ints or a == paddle.bool):
        return b
    return None


def _install_promoting_ops() -> None:
    import paddle

    tensor = paddle.Tensor
    if getattr(tensor, "_trainctl_promoting", False):
        return
    for name in ("__add__", "__radd__", "__sub__", "__rsub__", "__mul__", "__rmul__", "__lt__", "__le__", "__gt__",
                 "__ge__"):
        original = getattr(tensor, name)

        def op(self, other, _original=original):
            if _PROMOTING[0] and isinstance(other, paddle.Tensor):
                target = _promoted(self.dtype, other.dtype)
                if target is not None:
                    self = self if self.dtype == target else self.astype(target)
                    other = other if other.dtype == target else other.astype(target)
            return _original(self, other)

        setattr(tensor, name, op)
    original_tile = tensor.tile

    def tile(self, *args, **kwargs):  # bool tile: measured in ATSSAssigner when a box matches several gts
        if _PROMOTING[0] and self.dtype == paddle.bool:
            return original_tile(self.astype("int32"), *args, **kwargs).astype("bool")
        return original_tile(self, *args, **kwargs)

    tensor.tile = tile
    tensor._trainctl_promoting = True


def _promoting(func):
    import functools

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        _PROMOTING[0] += 1
        try:
            return func(*args, **kwargs)
        finally:
            _PROMOTING[0] -= 1

    wrapper._trainctl_shim = True
    return wrapper


def _source_has(func, text: str) -> bool:
    import inspect

    try:
        return text in inspect.getsource(func)
    except (OSError, TypeError):
        return False


def _stacking_scalars(func):
    """rpn_head._gen_proposal (paddledet 2.6.0) concatenates `paddle.shape(x)[0]`, a 0-D tensor under
    paddle 3, which concat rejects ("The axis is expected to be in range of [0, 0)"); during the call the
    0-D tensors of a concat become 1-element 1-D ones, the shape paddle 2.x gave them."""
    import functools

    import paddle

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        original = paddle.concat

        def concat(x, axis=0, name=None):
            if isinstance(x, (list, tuple)) and any(getattr(t, "ndim", 1) == 0 for t in x):
                x = [t.reshape([1]) if getattr(t, "ndim", 1) == 0 else t for t in x]
            return original(x, axis=axis, name=name)

        paddle.concat = concat
        try:
            return func(*args, **kwargs)
        finally:
            paddle.concat = original

    wrapper._trainctl_shim = True
    return wrapper


def ppdet26_training_shims() -> list[str]:
    """Apply the measured paddledet 2.6.0 / paddle 3 training fixes to the loaded ppdet; returns what
    was patched (nothing for release-2.7.1 or develop, whose code no longer holds the expressions)."""
    import importlib

    target = "ppdet.modeling.proposal_generator.target"
    cases = [
        # (module, attribute path, expression measured to fail, wrapper, one-line reason)
        (target, "generate_proposal_target", "paddle.shape(sampled_inds)[0])", _stacking_scalars,
         "concat of 0-D counts (Faster/Mask R-CNN)"),
        (target, "generate_mask_target", "paddle.shape(fg_rois)[0])", _stacking_scalars, "concat of 0-D counts (Mask R-CNN)"),
        (target, "libra_generate_proposal_target", "paddle.shape(sampled_inds)[0])", _stacking_scalars,
         "concat of 0-D counts (Libra R-CNN)"),
        ("ppdet.modeling.assigners.atss_assigner", "ATSSAssigner.forward", "assigned_gt_index + batch_ind * num_max_boxes",
         _promoting, "int64 + int32 (PP-YOLOE+, PicoDet)"),
        ("ppdet.modeling.assigners.task_aligned_assigner", "TaskAlignedAssigner.forward",
         "assigned_gt_index + batch_ind * num_max_boxes", _promoting, "int64 + int32 (PP-YOLOE+, PicoDet, TOOD)"),
        ("ppdet.modeling.assigners.task_aligned_assigner_cr", "TaskAlignedAssigner_CR.forward",
         "assigned_gt_index + batch_ind * num_max_boxes", _promoting, "int64 + int32"),
        ("ppdet.modeling.losses.ssd_loss", "SSDLoss._mine_hard_example", "(idx_rank < num_negs)", _promoting,
         "int64 < float32 (SSD, SSDLite)"),
        ("ppdet.modeling.losses.gfocal_loss", "quality_focal_loss", "loss * paddle.logical_not(pos_mask)", _promoting,
         "float32 * bool (GFL)"),
        ("ppdet.modeling.heads.tood_head", "TOODHead._reg_grid_sample", "b, _, h, w = get_static_shape(feat)",
         _stacking_scalars, "concat of 0-D sizes (TOOD)"),
        ("ppdet.modeling.post_process", "BBoxPostProcess.get_pred", "bbox_num_i = bbox_num[i]\n", _stacking_scalars,
         "concat of 0-D and 1-D counts (R-CNN eval and export)"),
        ("ppdet.modeling.proposal_generator.rpn_head", "RPNHead._gen_proposal", "paddle.shape(topk_rois)[0])",
         _stacking_scalars, "concat of 0-D counts (Faster/Mask R-CNN, Cascade R-CNN)"),
    ]
    patched: list[str] = []
    for module_name, path, expression, wrap, reason in cases:
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            continue
        owner_name, _, attr = path.rpartition(".")
        owner = getattr(module, owner_name) if owner_name else module
        func = getattr(owner, attr, None)
        if func is None or getattr(func, "_trainctl_shim", False) or not _source_has(func, expression):
            continue
        if wrap is _promoting:
            _install_promoting_ops()
        wrapped = wrap(func)
        setattr(owner, attr, wrapped)
        if module_name == target:  # target_layer imported these by name
            layer = importlib.import_module("ppdet.modeling.proposal_generator.target_layer")
            if getattr(layer, attr, None) is func:
                setattr(layer, attr, wrapped)
        patched.append(f"{module_name.rsplit('.', 1)[-1]}.{path}: {reason}")
    return patched
