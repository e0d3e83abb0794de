"""Dataset checks for a config's train and eval datasets (VOC and COCO), without paddle.

`check_config` is `trainctl data check`: it opens every annotation and reads
every image header (PNG, JPEG, BMP: size and truncation, no decoding) and
reports missing files, unreadable images, empty annotations, labels not in
the label list, boxes outside the image or of zero area, and duplicates,
with a class histogram per dataset.

`quick_check` only looks at file metadata: that the dataset directory,
annotation file and label list exist (fast and pure; it raises `UserError`).
`launch_check` is what `train` and `eval` run before launching: quick_check,
then the findings that would crash or hang ppdet's reader (FATAL_CODES).

Relative paths in a config are relative to the current working directory,
as in PaddleDetection.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from trainctl.data.images import ImageError, image_size
from trainctl.errors import UserError

TASK_KEYS = {"train": "TrainDataset", "eval": "EvalDataset", "test": "TestDataset"}
SAMPLE_COMMAND = "trainctl data sample --out {dir}"

# ppdet's VOCDataSet uses these 20 classes when the config gives no label_list.
PASCAL_VOC_CLASSES = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow", "diningtable",
    "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor",
)

# Finding codes (stable: tests and tools match on them).
ERROR, WARNING = "error", "warning"


@dataclass
class Finding:
    severity: str  # error | warning
    code: str  # e.g. missing-image, unknown-label
    message: str
    where: str = ""  # file[:line] the finding is about


@dataclass
class DatasetSpec:
    """Where one dataset of a config lives, as ppdet would read it."""

    task: str  # train | eval
    key: str  # TrainDataset
    kind: str  # VOC | COCO | other tag name
    dataset_dir: str
    image_dir: str
    anno_path: str | None
    label_list: str | None
    allow_empty: bool = False

    @property
    def anno_file(self) -> str | None:
        return os.path.join(self.dataset_dir, self.anno_path) if self.anno_path else None

    @property
    def label_file(self) -> str | None:
        return os.path.join(self.dataset_dir, self.label_list) if self.label_list else None

    @property
    def image_root(self) -> str:
        return os.path.join(self.dataset_dir, self.image_dir) if self.image_dir else self.dataset_dir


@dataclass
class DatasetReport:
    task: str
    key: str
    kind: str
    dataset_dir: str
    anno_file: str | None
    entries: int = 0  # lines / images listed
    checked: int = 0  # entries whose image and annotation were checked
    objects: int = 0
    classes: list[str] = field(default_factory=list)
    histogram: dict[str, int] = field(default_factory=dict)
    findings: list[Finding] = field(default_factory=list)

    def add(self, severity: str, code: str, message: str, where: str = "") -> None:
        self.findings.append(Finding(severity, code, message, where))

    @property
    def errors(self) -> int:
        return sum(1 for f in self.findings if f.severity == ERROR)

    @property
    def warnings(self) -> int:
        return sum(1 for f in self.findings if f.severity == WARNING)


@dataclass
class CheckReport:
    datasets: list[DatasetReport] = field(default_factory=list)

    @property
    def errors(self) -> int:
        return sum(d.errors for d in self.datasets)

    @property
    def warnings(self) -> int:
        return sum(d.warnings for d in self.datasets)

    @property
    def ok(self) -> bool:
        return self.errors == 0

    def to_dict(self) -> dict[str, Any]:
        out = {"ok": self.ok, "errors": self.errors, "warnings": self.warnings, "datasets": []}
        for d in self.datasets:
            item = asdict(d)
            item.update(errors=d.errors, warnings=d.warnings)
            out["datasets"].append(item)
        return out


# -- config -> dataset specs ----------------------------------------------------


def _config_data(rc: Any) -> dict:
    return rc.data if hasattr(rc, "data") else rc


def dataset_spec(rc: Any, task: str) -> DatasetSpec | None:
    """The dataset a task reads, or None when the config has none for it."""
    key = TASK_KEYS[task]
    entry = _config_data(rc).get(key)
    if entry is None:
        return None
    tag = None
    if hasattr(entry, "tag") and hasattr(entry, "value"):  # trainctl.config.Tagged
        tag, entry = entry.tag, entry.value
    if not isinstance(entry, dict):
        raise UserError(f"{key} is not a mapping", hint=f"give {key} dataset_dir, anno_path, ... as in PaddleDetection")
    name = tag or entry.get("name")
    anno_path = entry.get("anno_path")
    if name is None:
        name = "COCODataSet" if str(anno_path or "").endswith(".json") else "VOCDataSet"
    kind = {"VOCDataSet": "VOC", "COCODataSet": "COCO"}.get(str(name), str(name))
    image_dir = entry.get("image_dir") or ""
    return DatasetSpec(
        task=task,
        key=key,
        kind=kind,
        dataset_dir=str(entry.get("dataset_dir") or ""),
        image_dir=str(image_dir) if not isinstance(image_dir, list) else str(image_dir[0]),
        anno_path=str(anno_path) if anno_path else None,
        label_list=str(entry["label_list"]) if kind == "VOC" and entry.get("label_list") else None,
        allow_empty=bool(entry.get("allow_empty", False)),
    )


def _display(path: str) -> str:
    return path if path else "."


def _looks_like_sample(spec: DatasetSpec) -> bool:
    return spec.kind == "VOC" and "roadsign" in os.path.basename(os.path.normpath(spec.dataset_dir or "."))


def quick_check(rc: Any, tasks: tuple[str, ...] = ("train", "eval")) -> None:
    """Raise UserError (one line) when a dataset dir, annotation file or label list is missing."""
    for task in tasks:
        spec = dataset_spec(rc, task)
        if spec is None:
            continue
        key = spec.key
        if spec.kind not in ("VOC", "COCO"):
            continue
        if not spec.dataset_dir and not spec.anno_path:
            raise UserError(f"{key} has no dataset_dir or anno_path", hint=f"set them with -o {key}.dataset_dir=PATH")
        if spec.dataset_dir and not os.path.isdir(spec.dataset_dir):
            if _looks_like_sample(spec):
                hint = "create the built-in sample with: " + SAMPLE_COMMAND.format(dir=spec.dataset_dir)
            else:
                hint = f"run from the directory the config expects, or set -o {key}.dataset_dir=PATH"
            raise UserError(f"dataset directory '{spec.dataset_dir}' ({key}.dataset_dir) does not exist", hint=hint)
        if not spec.anno_path:
            raise UserError(f"{key} has no anno_path", hint=f"set it with -o {key}.anno_path=FILE")
        if not os.path.isfile(spec.anno_file):
            raise UserError(f"annotation file '{spec.anno_file}' ({key}.anno_path) does not exist",
                            hint=f"check the dataset or set -o {key}.anno_path=FILE (relative to dataset_dir)")
        if spec.label_file and not os.path.isfile(spec.label_file):
            raise UserError(f"label list '{spec.label_file}' ({key}.label_list) does not exist",
                            hint=f"write one class name per line there, or set -o {key}.label_list=FILE")
        if spec.kind == "COCO" and spec.image_dir and not os.path.isdir(spec.image_root):
            raise UserError(f"image directory '{spec.image_root}' ({key}.image_dir) does not exist",
                            hint=f"check the dataset or set -o {key}.image_dir=DIR (relative to dataset_dir)")


# Findings that make ppdet crash or hang mid-training rather than skip the entry: a
# ParseError or KeyError while it parses the dataset, or an image that does not decode,
# which kills paddle's loader thread and leaves the training loop waiting forever
# (paddle 3.3 DataLoader with worker_num 0). ppdet skips missing images and annotations
# with a warning, so those are not here.
FATAL_CODES = frozenset({
    "unreadable-annotation-file", "malformed-annotation-file", "unreadable-annotation", "unreadable-image",
    "unreadable-label-list", "empty-label-list", "malformed-line", "missing-size", "missing-label",
    "unknown-label", "malformed-box", "missing-categories", "malformed-category", "malformed-image",
    "malformed-annotation", "missing-area", "empty-dataset", "no-usable-images",
})
# the launch check reads at most this many entries per dataset (image headers and XML: ~1 ms each)
LAUNCH_CHECK_MAX_IMAGES = 5000


def launch_check(rc: Any, tasks: tuple[str, ...] = ("train", "eval"),
                 max_images: int | None = LAUNCH_CHECK_MAX_IMAGES) -> None:
    """What `train` and `eval` run before launching: quick_check, then the fatal findings.

    Raises UserError (one line) naming the first finding that would crash or hang
    the workers, how many there are, and `trainctl data check` for the full list.
    """
    quick_check(rc, tasks)
    report = check_config(rc, tasks, max_images=max_images)
    for ds in report.datasets:
        fatal = [f for f in ds.findings if f.severity == ERROR and f.code in FATAL_CODES]
        if not fatal:
            continue
        first = fatal[0]
        where = f" ({first.where})" if first.where and first.where not in first.message else ""
        more = f" and {len(fatal) - 1} more" if len(fatal) > 1 else ""
        config = getattr(rc, "path", None)
        command = f"trainctl data check -c {config}" if config else "trainctl data check -c CFG"
        raise UserError(f"{ds.key}: {first.code}: {first.message}{where}{more}",
                        hint=f"fix or remove these entries; `{command}` lists every problem "
                             "(--no-data-check skips this check)")


def check_config(rc: Any, tasks: tuple[str, ...] = ("train", "eval"), max_images: int | None = None) -> CheckReport:
    """Full check of the datasets the tasks read; never raises for bad data (it is reported)."""
    report = CheckReport()
    seen: set[tuple] = set()
    for task in tasks:
        spec = dataset_spec(rc, task)
        if spec is None:
            continue
        ident = (spec.kind, spec.dataset_dir, spec.image_dir, spec.anno_path, spec.label_list)
        ds = DatasetReport(task=task, key=spec.key, kind=spec.kind, dataset_dir=spec.dataset_dir,
                           anno_file=spec.anno_file)
        report.datasets.append(ds)
        if ident in seen:
            ds.add(WARNING, "same-as-train", f"{spec.key} is the same dataset as another task's (eval on training data?)")
        seen.add(ident)
        check_dataset(spec, ds, max_images)
        check_num_classes(_config_data(rc).get("num_classes"), spec, ds)
    return report


def check_num_classes(num_classes: Any, spec: DatasetSpec, ds: DatasetReport) -> None:
    """The config's num_classes against the classes the dataset declares (COCO categories, VOC label list).

    Fewer is an error (labels beyond the model's classes); more is a warning (PaddleDetection's COCO
    configs say 80: a model with classes the data never has).
    """
    if not isinstance(num_classes, int) or isinstance(num_classes, bool) or not ds.classes:
        return
    found = len(ds.classes)
    source = "categories in " + _display(spec.anno_file or "") if spec.kind == "COCO" else "classes in the label list"
    if num_classes < found:
        ds.add(ERROR, "num-classes", f"num_classes is {num_classes} but {spec.key} has {found} {source}; "
               f"set num_classes: {found} in your config (or -o num_classes={found})")
    elif num_classes > found:
        ds.add(WARNING, "num-classes", f"num_classes is {num_classes} but {spec.key} has {found} {source}; "
               f"set num_classes: {found} unless you mean it")


def check_dataset(spec: DatasetSpec, ds: DatasetReport, max_images: int | None = None) -> None:
    if spec.kind not in ("VOC", "COCO"):
        ds.add(WARNING, "unsupported-format", f"{spec.key} is a {spec.kind}; only VOC and COCO datasets are checked")
        return
    if not spec.dataset_dir or not os.path.isdir(spec.dataset_dir):
        hint = f"; create the sample with: {SAMPLE_COMMAND.format(dir=spec.dataset_dir)}" if _looks_like_sample(spec) else ""
        ds.add(ERROR, "missing-dataset-dir", f"dataset directory '{_display(spec.dataset_dir)}' does not exist{hint}")
        return
    if not spec.anno_file or not os.path.isfile(spec.anno_file):
        ds.add(ERROR, "missing-annotation-file", f"annotation file '{spec.anno_file}' does not exist")
        return
    if spec.kind == "VOC":
        from trainctl.data.voc import check_voc

        check_voc(spec, ds, max_images)
    else:
        from trainctl.data.coco import check_coco

        check_coco(spec, ds, max_images)
    if ds.checked and ds.histogram:
        for name in ds.classes:
            if ds.histogram.get(name, 0) == 0 and not (max_images and ds.checked < ds.entries):
                ds.add(WARNING, "class-without-boxes", f"class '{name}' has no boxes in {spec.key}")


def check_box(ds: DatasetReport, box: tuple[float, float, float, float], width: int | None, height: int | None,
              where: str, label: str) -> bool:
    """Zero-area and outside-image checks on an (x1, y1, x2, y2) box; True when the box is usable."""
    x1, y1, x2, y2 = box
    if x2 <= x1 or y2 <= y1:
        ds.add(ERROR, "zero-area-box", f"box of zero area for '{label}': ({x1:g}, {y1:g}, {x2:g}, {y2:g})", where)
        return False
    if width and height:
        tol = 1.0  # VOC coordinates are 1-based pixel indices: x2 == width is inside
        if x1 < -tol or y1 < -tol or x2 > width + tol or y2 > height + tol:
            ds.add(ERROR, "box-outside-image",
                   f"box for '{label}' ({x1:g}, {y1:g}, {x2:g}, {y2:g}) is outside the {width}x{height} image", where)
            return False
    return True


def check_image(ds: DatasetReport, path: str, where: str) -> tuple[int, int] | None:
    """Missing or unreadable image -> error; returns (width, height) from the header."""
    if not os.path.isfile(path):
        ds.add(ERROR, "missing-image", f"image '{path}' does not exist", where)
        return None
    try:
        width, height, _ = image_size(path)
    except ImageError as exc:
        ds.add(ERROR, "unreadable-image", f"image '{path}': {exc}", where)
        return None
    return width, height


def histogram_rows(ds: DatasetReport) -> list[list[str]]:
    total = sum(ds.histogram.values()) or 1
    names = list(ds.classes) + [n for n in ds.histogram if n not in ds.classes]
    return [[n, str(ds.histogram.get(n, 0)), f"{100.0 * ds.histogram.get(n, 0) / total:.1f}%"] for n in names]


def summary_line(ds: DatasetReport) -> str:
    partial = f" (checked {ds.checked} of {ds.entries})" if ds.checked < ds.entries else ""
    return (f"{ds.key} [{ds.kind}] {ds.anno_file or ds.dataset_dir}: {ds.entries} images{partial}, "
            f"{ds.objects} boxes, {len(ds.classes)} classes, {ds.errors} errors, {ds.warnings} warnings")


def read_label_list(ds: DatasetReport, path: str) -> list[str] | None:
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        ds.add(ERROR, "unreadable-label-list", f"label list '{path}': {exc}", path)
        return None
    names = []
    counts = Counter()
    for n, line in enumerate(lines, 1):
        name = line.strip()
        if not name:
            if any(x.strip() for x in lines[n:]):
                ds.add(ERROR, "blank-label", "blank line in the label list shifts every class id after it", f"{path}:{n}")
                names.append(name)
            continue
        counts[name] += 1
        if counts[name] == 2:
            ds.add(ERROR, "duplicate-label", f"label '{name}' appears twice in the label list", f"{path}:{n}")
        names.append(name)
    if not [n for n in names if n]:
        ds.add(ERROR, "empty-label-list", f"label list '{path}' is empty", path)
    return names
