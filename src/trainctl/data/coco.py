"""Checks for a COCO dataset as ppdet's COCODataSet reads it.

One JSON file (dataset_dir/anno_path) with `images` (id, file_name, width,
height), `annotations` (id, image_id, category_id, bbox [x, y, w, h], area,
iscrowd) and `categories` (id, name); images live in dataset_dir/image_dir.
The categories are the label list.
"""

from __future__ import annotations

import json
import os
from collections import Counter

from trainctl.data.check import ERROR, WARNING, DatasetReport, DatasetSpec, check_box, check_image


def _number(value) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def check_coco(spec: DatasetSpec, ds: DatasetReport, max_images: int | None = None) -> None:
    path = spec.anno_file
    try:
        with open(path, encoding="utf-8") as f:
            doc = json.load(f)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        ds.add(ERROR, "unreadable-annotation-file", f"annotation file '{path}': {exc}", path)
        return
    if not isinstance(doc, dict) or not isinstance(doc.get("images"), list):
        ds.add(ERROR, "malformed-annotation-file", "a COCO file needs an 'images' list", path)
        return
    categories = doc.get("categories")
    if not isinstance(categories, list) or not categories:
        ds.add(ERROR, "missing-categories", "no 'categories' list: the COCO file has no label list", path)
        categories = []
    annotations = doc.get("annotations")
    if annotations is None:
        ds.add(WARNING, "no-annotations", "no 'annotations' list: ppdet loads images only (no ground truth)", path)
        annotations = []

    cat_names: dict[object, str] = {}
    name_counts: Counter[str] = Counter()
    for n, cat in enumerate(categories):
        where = f"{path}: categories[{n}]"
        if not isinstance(cat, dict) or "id" not in cat or not cat.get("name"):
            ds.add(ERROR, "malformed-category", "a category needs an id and a name", where)
            continue
        if cat["id"] in cat_names:
            ds.add(ERROR, "duplicate-category", f"category id {cat['id']} is defined twice", where)
            continue
        cat_names[cat["id"]] = str(cat["name"])
        name_counts[str(cat["name"])] += 1
        if name_counts[str(cat["name"])] == 2:
            ds.add(ERROR, "duplicate-label", f"category name '{cat['name']}' is used by two ids", where)
    ds.classes = list(dict.fromkeys(cat_names.values()))

    images: dict[object, dict] = {}
    file_names: dict[str, object] = {}
    for n, img in enumerate(doc["images"]):
        where = f"{path}: images[{n}]"
        if not isinstance(img, dict) or "id" not in img or not img.get("file_name"):
            ds.add(ERROR, "malformed-image", "an image needs an id and a file_name", where)
            continue
        ds.entries += 1
        if img["id"] in images:
            ds.add(ERROR, "duplicate-image-id", f"image id {img['id']} is used twice", where)
            continue
        if img["file_name"] in file_names:
            ds.add(ERROR, "duplicate-image", f"{img['file_name']} is also image id {file_names[img['file_name']]}", where)
        file_names.setdefault(img["file_name"], img["id"])
        images[img["id"]] = img

    per_image: dict[object, list[tuple[int, dict]]] = {i: [] for i in images}
    ann_ids: set = set()
    for n, ann in enumerate(annotations):
        where = f"{path}: annotations[{n}]"
        if not isinstance(ann, dict):
            ds.add(ERROR, "malformed-annotation", "an annotation must be an object", where)
            continue
        if "id" in ann:
            if ann["id"] in ann_ids:
                ds.add(ERROR, "duplicate-annotation-id", f"annotation id {ann['id']} is used twice", where)
            ann_ids.add(ann["id"])
        if ann.get("image_id") not in images:
            ds.add(ERROR, "unknown-image", f"image_id {ann.get('image_id')!r} is not in 'images'", where)
            continue
        per_image[ann["image_id"]].append((n, ann))

    histogram: Counter[str] = Counter()
    checked_ids = list(images)[: max_images] if max_images is not None else list(images)
    usable = 0
    for image_id in checked_ids:
        img = images[image_id]
        ds.checked += 1
        img_where = f"{path}: image id {image_id} ({img['file_name']})"
        dims = check_image(ds, os.path.join(spec.image_root, img["file_name"]), img_where)
        json_w, json_h = _number(img.get("width")), _number(img.get("height"))
        if json_w is None or json_h is None or json_w <= 0 or json_h <= 0:
            ds.add(ERROR, "missing-size", "image without a positive width/height: ppdet cannot read it", img_where)
        elif dims and (int(json_w), int(json_h)) != dims:
            ds.add(WARNING, "size-mismatch",
                   f"width/height say {int(json_w)}x{int(json_h)} but the image is {dims[0]}x{dims[1]}", img_where)
        width, height = dims if dims else ((int(json_w), int(json_h)) if json_w and json_h else (None, None))
        anns = per_image[image_id]
        if not anns and annotations:
            ds.add(WARNING, "empty-annotation",
                   "no annotations for this image" + ("" if spec.allow_empty else ": ppdet skips it"), img_where)
            continue
        seen_boxes: dict[tuple, int] = {}
        good = 0
        for n, ann in anns:
            where = f"{path}: annotations[{n}] (image {img['file_name']})"
            label = cat_names.get(ann.get("category_id"))
            if label is None:
                ds.add(ERROR, "unknown-label", f"category_id {ann.get('category_id')!r} is not in 'categories'", where)
                continue
            bbox = ann.get("bbox")
            if not isinstance(bbox, list) or len(bbox) != 4 or any(_number(v) is None for v in bbox):
                ds.add(ERROR, "malformed-box", f"bbox must be [x, y, width, height], got {bbox!r}", where)
                continue
            if _number(ann.get("area")) is None:
                ds.add(ERROR, "missing-area", "annotation without a numeric 'area': ppdet reads it", where)
            x, y, w, h = (float(v) for v in bbox)
            key = (ann.get("category_id"), round(x, 2), round(y, 2), round(w, 2), round(h, 2))
            if key in seen_boxes:
                ds.add(ERROR, "duplicate-box", f"same '{label}' box as annotations[{seen_boxes[key]}]", where)
                continue
            seen_boxes[key] = n
            histogram[label] += 1
            ds.objects += 1
            if check_box(ds, (x, y, x + w, y + h), width, height, where, label):
                good += 1
        if good:
            usable += 1
    ds.histogram = {name: histogram.get(name, 0) for name in ds.classes}
    if ds.entries == 0:
        ds.add(ERROR, "empty-dataset", f"annotation file '{path}' lists no images", path)
    elif ds.checked and annotations and usable == 0:
        ds.add(ERROR, "no-usable-images", "no image has a usable box", path)
