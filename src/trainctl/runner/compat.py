"""Every version shim for paddle / ppdet lives here, each naming the versions it is for.

Nothing here imports paddle at import time: `export_env()` must run before the
first `import paddle` of the process.
"""

from __future__ import annotations

import contextlib
import os

# paddle 3.0-3.3 (measured with 3.3.1) + paddledet 2.6.0: ppdet's export builds
# its NMS with the old static-graph `append_op`, which fails under paddle 3's new
# IR (PIR) with a TypeError in multiclass_nms. The flag selects the old IR. Paddle
# reads FLAGS_* environment variables when it is imported, so the flag must be in
# os.environ before `import paddle`; setting it later has no effect.
EXPORT_ENV = {"FLAGS_enable_pir_api": "0"}


# paddle 3.3.1's old-IR executor logs "New Executor is Running." at glog INFO level
# (program_interpreter.cc) once per export; glog reads GLOG_minloglevel when paddle
# initialises it on import. 1 = warnings and errors only. A user's own value wins.
EXPORT_QUIET_ENV = {"GLOG_minloglevel": "1"}


def export_env() -> dict[str, str]:
    """Put the export flags into os.environ; returns them. Call before importing paddle."""
    os.environ.update(EXPORT_ENV)
    for key, value in EXPORT_QUIET_ENV.items():
        os.environ.setdefault(key, value)
    return dict(EXPORT_ENV)


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
