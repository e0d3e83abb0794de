"""Every version shim for paddle / ppdet lives here, each naming the versions it is for.

Nothing here imports paddle at import time: `export_env()` must run before the
first `import paddle` of the process.
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


def drop_unsupported_nms_args(cfg) -> list[str]:
    """PaddleDetection 2.7 configs (yolov3 `_base_/yolov3_mobilenet_v1.yml` and 4 others) give
    MultiClassNMS `cpu: True`; a ppdet whose MultiClassNMS has no such parameter (paddledet 2.6.0)
    fails in create() with "unexpected keyword argument 'cpu'". Keyed on the class's own signature:
    keys it does not accept are dropped (and returned, for a log line); a ppdet that has them keeps them."""
    import inspect

    from ppdet.modeling import layers

    accepted = set(inspect.signature(layers.MultiClassNMS.__init__).parameters) | {"name"}
    dropped: list[str] = []

    def walk(node, path: str) -> None:
        if isinstance(node, dict):
            if node.get("name") == "MultiClassNMS" or path.endswith("MultiClassNMS"):
                for key in [k for k in node if k not in accepted]:
                    del node[key]
                    dropped.append(f"{path}.{key}")
            for key, value in list(node.items()):
                walk(value, f"{path}.{key}" if path else str(key))

    walk(cfg, "")
    return dropped


def set_test_images(dataset, images: list[str]) -> None:
    """ppdet's ImageFolder.set_images for inference on a list of images.

    PaddleDetection 2.7 / develop (`set_images(images, do_eval=False)`): `_load_images` opens the
    TestDataset's anno_path with pycocotools' COCO() even when not evaluating; with a VOC label list
    there (the roadsign tutorial's `anno_path: .../label_list.txt`) that is a JSONDecodeError. There,
    unless the anno_path is a COCO json, the records are set as paddledet 2.6.0 sets them (one per
    image, im_id in order); a ppdet without `do_eval` (2.6.0) does it itself.
    """
    import inspect

    import numpy as np

    anno = dataset.get_anno() or ""
    if "do_eval" not in inspect.signature(dataset.set_images).parameters or anno.endswith(".json"):
        dataset.set_images(images)
        return
    dataset.image_dir = images
    records = []
    for index, image in enumerate(dataset._parse()):
        records.append({"im_id": np.array([index]), "im_file": image})
        dataset._imid2path[index] = image
    if not records:
        raise DataError("no image file found for inference")
    dataset.roidbs = records


class DataError(Exception):
    """A dataset file ppdet's reader cannot use, named (raised by the shims below)."""


_loader_errors: list[BaseException] = []


def loader_error() -> BaseException | None:
    """The exception that stopped a data loader thread of this process, if any."""
    return _loader_errors[0] if _loader_errors else None


def guard_data_loading() -> None:
    """Make bad data fail the worker with the file's name instead of hanging it.

    paddle 3.3.1 (io/dataloader/dataloader_iter.py): with `worker_num: 0` the
    DataLoader reads batches in a thread whose loop catches only StopIteration
    around the fetch; any other exception (an image that does not decode) ends
    the thread without closing its queue, and the training loop waits forever.
    The wrapper records the exception and kills the queue (paddle's own
    `_exit_thread_unexpectedly`), so the main thread raises at once.
    paddledet 2.6.0: `Decode` drops `im_file` before decoding and then fails on
    `None.shape`, and `VOCDataSet` raises a bare ParseError; both are re-raised
    as DataError naming the file.
    """
    import xml.etree.ElementTree as ET

    from paddle.io.dataloader import dataloader_iter
    from ppdet.data.source import voc
    from ppdet.data.transform import operators

    single = dataloader_iter._DataLoaderIterSingleProcess
    if getattr(single, "_trainctl_guarded", False):
        return
    original_loop = single._thread_loop

    def _thread_loop(self, *args, **kwargs):
        try:
            return original_loop(self, *args, **kwargs)
        except BaseException as exc:  # recorded for the worker's report; the queue kill wakes the main thread
            _loader_errors.append(exc)
            self._exit_thread_unexpectedly()

    single._thread_loop = _thread_loop
    single._trainctl_guarded = True

    original_decode = operators.Decode.apply

    def decode_apply(self, sample, context=None):
        path = sample.get("im_file")
        try:
            return original_decode(self, sample, context)
        except DataError:
            raise
        except Exception as exc:
            raise DataError(f"image {path} cannot be decoded ({type(exc).__name__}: {exc})") from exc

    operators.Decode.apply = decode_apply

    class _NamedParseErrors:
        """ppdet's voc module sees this as `ET`: parse errors name the file."""

        def __getattr__(self, name):
            return getattr(ET, name)

        @staticmethod
        def parse(source, *args, **kwargs):
            try:
                return ET.parse(source, *args, **kwargs)
            except ET.ParseError as exc:
                raise DataError(f"annotation {source} is not valid XML ({exc})") from exc

    voc.ET = _NamedParseErrors()

    # ppdet's reader logs every failed transform with its stack before re-raising; for a
    # named DataError the worker's one line says it all (the stack is kept under --debug)
    from ppdet.data import reader

    if os.environ.get("TRAINCTL_DEBUG", "") in ("", "0"):
        def keep(record) -> bool:
            message = record.getMessage()
            return not ("fail to map sample transform" in message and " cannot be decoded (" in message)

        reader.logger.addFilter(keep)


# paddledet 2.6.0 prints this twice on import (ppdet/modeling/mot/motion/*kalman_filter.py)
# when numba is missing: it concerns PP-Tracking (multi-object tracking) only, and
# detection never uses those modules. Dropped from the output, nothing else is.
# A PaddleDetection checkout without ppdet/version.py (not `pip install`ed; release-2.7.1, develop)
# writes "Warning: import ppdet from source directory without installing, ..." to stderr on import:
# trainctl says which ppdet it uses (plan, run.json, worker log), and needs no install.
PPDET_IMPORT_NOISE = ("Unable to use numba in PP-Tracking", "import ppdet from source directory without installing")


class LineFilter:
    """A stand-in for a text stream that forwards every line except those containing
    one of `drop`. Partial lines wait for their newline (or a flush).

    Modules keep references to the sys.stdout they saw on import (ppdet's logger
    builds its StreamHandler(sys.stdout) then), so what stands in for stdout during
    an import must keep working afterwards: this forwards to the real stream forever.
    """

    def __init__(self, target, drop: tuple[str, ...]):
        self._target = target
        self._drop = drop
        self._pending = ""

    def write(self, text: str) -> int:
        self._pending += text
        *lines, self._pending = self._pending.split("\n")
        for line in lines:
            if not any(d in line for d in self._drop):
                self._target.write(line + "\n")
        return len(text)

    def flush(self) -> None:
        if self._pending:
            if not any(d in self._pending for d in self._drop):
                self._target.write(self._pending)
            self._pending = ""
        self._target.flush()

    def __getattr__(self, name):  # encoding, fileno, isatty, ...: the real stream's
        return getattr(self._target, name)


def import_quietly(module: str, drop: tuple[str, ...] = PPDET_IMPORT_NOISE) -> None:
    """Import `module` with sys.stdout filtered: lines containing any of `drop` are
    left out, every other line goes through as it is written."""
    import importlib
    import sys

    if module in sys.modules:
        return
    real, real_err = sys.stdout, sys.stderr
    sys.stdout = LineFilter(real, drop)
    sys.stderr = LineFilter(real_err, drop)
    try:
        importlib.import_module(module)
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        sys.stdout, sys.stderr = real, real_err


def quiet_ppdet_warnings() -> None:
    """Warnings on import that say nothing a trainctl user can act on (paddle 3.x's
    ccache notice, deprecations inside paddledet 2.6.0). ppdet's own "Unable to use
    numba" lines are prints: `import_quietly("ppdet")` drops those."""
    import warnings

    warnings.filterwarnings("ignore", message=".*numba.*")
    warnings.filterwarnings("ignore", message="No ccache found")  # paddle 3.x cpp_extension, on import
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    # PaddleDetection 2.7 / develop sources hold `assert (cond, "message")` (detr_loss.py, matchers.py):
    # Python warns when it compiles them, once per checkout; nothing a trainctl user can act on
    warnings.filterwarnings("ignore", category=SyntaxWarning)


# ---------------------------------------------------------------- ppdet Trainer internals
# ppdet has no public API for a Trainer's callbacks and metrics; these are the only
# accesses to its private attributes. Checked on paddledet 2.6.0 (the wheel,
# ppdet/engine/trainer.py) and the release-2.7.1 and develop checkouts: in train,
# eval and test mode `Trainer._compose_callback` is a ComposeCallback whose
# `_callbacks` list is the one it calls (the same list object as `Trainer._callbacks`
# at construction), and `Trainer._metrics` is the list of metric objects
# (VOCMetric, COCOMetric, ...) built by `_init_metrics`.


def trainer_callbacks(trainer) -> list:
    """The list ppdet's ComposeCallback calls; changing it in place changes what runs."""
    return trainer._compose_callback._callbacks


def add_callback(trainer, callback) -> None:
    """Run `callback` after ppdet's own ones."""
    trainer_callbacks(trainer).append(callback)


def replace_callbacks(trainer, callbacks: list) -> None:
    """Make `callbacks` the trainer's whole callback list (ComposeCallback's and `Trainer._callbacks`)."""
    trainer_callbacks(trainer)[:] = callbacks
    trainer._callbacks = callbacks


def trainer_metrics(trainer) -> list:
    """The trainer's metric objects (`Trainer._metrics`)."""
    return trainer._metrics


# ------------------------------------------------ paddledet 2.6.0 training under paddle 3 ----
#
# paddle 3 (measured with 3.3.1) no longer promotes mixed dtypes implicitly in eager binary ops
# between integer widths, bool and float, or int and float; paddle 2.x did. paddledet 2.6.0 relies
# on it in a few places (the newer trees cast explicitly). Each patch below wraps one ppdet
# function, is applied only when that function's source still holds the measured expression, and
# during the call lets the binary ops of paddle.Tensor promote as paddle 2.x did: int32 with int64
# -> int64, bool or int with float -> the float. Outside those calls nothing changes.

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



@contextlib.contextmanager
def amp_settings(master_grad: bool = False, dtype: str | None = None):
    """Inside this block paddle.amp.decorate and paddle.amp.auto_cast get what ppdet does not pass.

    master_grad: paddledet 2.6.0 never passes it to paddle.amp.decorate, and develop passes it only when
    paddle.__version__[:3] is "2.5" or "0.0" (a develop build), so on paddle 3.x it is dropped; it is
    added here only to a decorate call that lacks it (where ppdet passes it, nothing changes).
    dtype: ppdet has no dtype key and always casts to float16; "bfloat16" is added to both calls.
    With neither case the block changes nothing."""
    import paddle

    add_dtype = dtype if dtype and dtype != "float16" else None
    if not master_grad and not add_dtype:
        yield
        return
    original_decorate, original_auto_cast = paddle.amp.decorate, paddle.amp.auto_cast

    def decorate(*args, **kwargs):
        if master_grad and kwargs.get("level", "O1") == "O2" and "master_grad" not in kwargs:
            kwargs["master_grad"] = True
            from trainctl import output

            output.echo("[trainctl worker] master_grad passed to paddle.amp.decorate (this ppdet drops it on "
                        f"paddle {paddle.__version__})", err=True)
        if add_dtype:
            kwargs.setdefault("dtype", add_dtype)
        return original_decorate(*args, **kwargs)

    def auto_cast(*args, **kwargs):
        if add_dtype:
            kwargs.setdefault("dtype", add_dtype)
        return original_auto_cast(*args, **kwargs)

    paddle.amp.decorate, paddle.amp.auto_cast = decorate, auto_cast
    try:
        yield
    finally:
        paddle.amp.decorate, paddle.amp.auto_cast = original_decorate, original_auto_cast
