"""Data shims: bad data fails the worker with the file's name instead of hanging it, and the
inference image list is set the way every ppdet tree reads it.
"""

from __future__ import annotations

import os


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
