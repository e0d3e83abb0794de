"""Checks for a Pascal VOC dataset as ppdet's VOCDataSet reads it.

The annotation file lists "image xml" per line, both relative to
dataset_dir/image_dir; each XML has <size> and <object>s with <name> and
<bndbox>. ppdet crashes on a class missing from the label list and drops
zero-area boxes and images without objects; these are reported here first.
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from collections import Counter

from trainctl.data.check import (
    ERROR,
    PASCAL_VOC_CLASSES,
    WARNING,
    DatasetReport,
    DatasetSpec,
    check_box,
    check_image,
    read_label_list,
)


def _number(node: ET.Element | None, tag: str) -> float | None:
    if node is None:
        return None
    child = node.find(tag)
    if child is None or child.text is None:
        return None
    try:
        return float(child.text.strip())
    except ValueError:
        return None


def check_voc(spec: DatasetSpec, ds: DatasetReport, max_images: int | None = None) -> None:
    if spec.label_file:
        if not os.path.isfile(spec.label_file):
            ds.add(ERROR, "missing-label-list", f"label list '{spec.label_file}' does not exist", spec.label_file)
            return
        labels = read_label_list(ds, spec.label_file)
        if labels is None:
            return
        labels = [n for n in labels if n]
    else:
        labels = list(PASCAL_VOC_CLASSES)
        ds.add(WARNING, "default-labels", f"{spec.key} has no label_list: ppdet uses the 20 Pascal VOC classes")
    ds.classes = list(dict.fromkeys(labels))
    known = set(labels)
    histogram: Counter[str] = Counter()

    try:
        lines = open(spec.anno_file, encoding="utf-8").read().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        ds.add(ERROR, "unreadable-annotation-file", f"annotation file '{spec.anno_file}': {exc}", spec.anno_file)
        return
    seen_lines: dict[tuple[str, str], int] = {}
    seen_images: dict[str, int] = {}
    usable = 0
    for lineno, raw in enumerate(lines, 1):
        if not raw.strip():
            continue
        where = f"{spec.anno_file}:{lineno}"
        fields = raw.split()
        if len(fields) < 2:
            ds.add(ERROR, "malformed-line", f"expected 'IMAGE XML', got {raw.strip()!r}", where)
            continue
        ds.entries += 1
        image_rel, xml_rel = fields[0], fields[1]
        if (image_rel, xml_rel) in seen_lines:
            ds.add(ERROR, "duplicate-entry", f"same entry as line {seen_lines[(image_rel, xml_rel)]}: {image_rel} {xml_rel}", where)
            continue
        seen_lines[(image_rel, xml_rel)] = lineno
        if image_rel in seen_images:
            ds.add(ERROR, "duplicate-image", f"image {image_rel} is also listed on line {seen_images[image_rel]}", where)
        seen_images.setdefault(image_rel, lineno)
        if max_images is not None and ds.checked >= max_images:
            continue
        ds.checked += 1
        image_path = os.path.join(spec.image_root, image_rel)
        xml_path = os.path.join(spec.image_root, xml_rel)
        dims = check_image(ds, image_path, where)
        if not os.path.isfile(xml_path):
            ds.add(ERROR, "missing-annotation", f"annotation '{xml_path}' does not exist", where)
            continue
        try:
            root = ET.parse(xml_path).getroot()
        except (ET.ParseError, OSError) as exc:
            ds.add(ERROR, "unreadable-annotation", f"annotation '{xml_path}': {exc}", where)
            continue
        xml_where = xml_path
        size = root.find("size")
        xml_w, xml_h = _number(size, "width"), _number(size, "height")
        if xml_w is None or xml_h is None:
            ds.add(ERROR, "missing-size", "no <size><width>/<height>: ppdet cannot read this annotation", xml_where)
        elif dims and (int(xml_w), int(xml_h)) != dims:
            ds.add(WARNING, "size-mismatch",
                   f"<size> says {int(xml_w)}x{int(xml_h)} but the image is {dims[0]}x{dims[1]}", xml_where)
        width, height = dims if dims else ((int(xml_w), int(xml_h)) if xml_w and xml_h else (None, None))
        objects = root.findall("object")
        if not objects:
            sev = WARNING
            ds.add(sev, "empty-annotation",
                   "no <object> in the annotation" + ("" if spec.allow_empty else ": ppdet skips this image"), xml_where)
            continue
        good = 0
        for n, obj in enumerate(objects, 1):
            name_node = obj.find("name")
            name = (name_node.text or "").strip() if name_node is not None else ""
            obj_where = f"{xml_where} (object {n})"
            if not name:
                ds.add(ERROR, "missing-label", "object without a <name>", obj_where)
                continue
            if name not in known:
                histogram[name] += 1
                ds.add(ERROR, "unknown-label", f"label '{name}' is not in the label list", obj_where)
                continue
            bnd = obj.find("bndbox")
            coords = [_number(bnd, t) for t in ("xmin", "ymin", "xmax", "ymax")]
            if any(c is None for c in coords):
                ds.add(ERROR, "malformed-box", "object without a numeric <bndbox> xmin/ymin/xmax/ymax", obj_where)
                continue
            histogram[name] += 1
            ds.objects += 1
            if check_box(ds, tuple(coords), width, height, obj_where, name):
                good += 1
        if good:
            usable += 1
    ds.histogram = {name: histogram.get(name, 0) for name in ds.classes}
    ds.histogram.update({name: count for name, count in histogram.items() if name not in known})
    if ds.entries == 0:
        ds.add(ERROR, "empty-dataset", f"annotation file '{spec.anno_file}' lists no images", spec.anno_file)
    elif ds.checked and usable == 0:
        ds.add(ERROR, "no-usable-images", "no image has a usable box", spec.anno_file)
