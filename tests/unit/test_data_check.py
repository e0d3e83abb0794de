"""Dataset checks (no paddle): the sample passes, each planted defect is reported."""

from __future__ import annotations

import json
import os
import shutil
import struct
import zlib
from pathlib import Path

import pytest
from click.testing import CliRunner

from trainctl.cli import cli
from trainctl.config import Tagged
from trainctl.data.check import ImageError, check_config, dataset_spec, image_size, quick_check
from trainctl.data.sample import CLASSES, write_sample_dataset
from trainctl.errors import UserError

SAMPLE_IMAGES = 10


def voc_config(root: str = "dataset/roadsign_voc", label_list: str | None = "label_list.txt") -> dict:
    def entry(anno: str) -> dict:
        e = {"name": "VOCDataSet", "dataset_dir": root, "anno_path": anno}
        if label_list:
            e["label_list"] = label_list
        return e

    return {"TrainDataset": entry("train.txt"), "EvalDataset": entry("valid.txt")}


@pytest.fixture(scope="session")
def sample_master(tmp_path_factory) -> tuple[Path, object]:
    out = tmp_path_factory.mktemp("sample") / "roadsign_voc"
    summary = write_sample_dataset(out, images=SAMPLE_IMAGES, seed=7)
    return out, summary


@pytest.fixture
def sample(sample_master, tmp_path, monkeypatch) -> Path:
    """A private copy of the sample at ./dataset/roadsign_voc (cwd = tmp_path), free to break."""
    src, _ = sample_master
    dst = tmp_path / "dataset" / "roadsign_voc"
    shutil.copytree(src, dst)
    monkeypatch.chdir(tmp_path)
    return dst


def codes(report, severity: str | None = None) -> set[str]:
    return {f.code for d in report.datasets for f in d.findings if severity is None or f.severity == severity}


def first_train(sample: Path) -> tuple[str, str]:
    image, xml = (sample / "train.txt").read_text().splitlines()[0].split()
    return image, xml


def rewrite_xml(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new, 1))


# -- the clean sample ---------------------------------------------------------


def test_sample_passes_with_histogram(sample, sample_master):
    _, summary = sample_master
    report = check_config(voc_config())
    assert report.ok and report.errors == 0, [f for d in report.datasets for f in d.findings]
    train, valid = report.datasets
    # the only warnings a clean sample may get: a class with no box in a (small) split
    for ds in (train, valid):
        warned = {f.message.split("'")[1] for f in ds.findings if f.code == "class-without-boxes"}
        assert warned == {c for c in CLASSES if ds.histogram[c] == 0}
        assert {f.code for f in ds.findings} <= {"class-without-boxes"}
    assert (train.entries, valid.entries) == (summary.train, summary.valid)
    assert train.classes == list(CLASSES)
    total = {c: train.histogram[c] + valid.histogram[c] for c in CLASSES}
    assert total == summary.objects_per_class
    assert train.objects + valid.objects == summary.objects


def test_max_images_limits_work(sample):
    report = check_config(voc_config(), tasks=("train",), max_images=3)
    (train,) = report.datasets
    assert train.checked == 3 and train.entries > 3 and report.ok


# -- planted defects, VOC -------------------------------------------------------


def test_missing_image(sample):
    image, _ = first_train(sample)
    (sample / image).unlink()
    report = check_config(voc_config())
    assert "missing-image" in codes(report, "error") and not report.ok


def test_truncated_image(sample):
    image, _ = first_train(sample)
    data = (sample / image).read_bytes()
    (sample / image).write_bytes(data[: len(data) // 2])
    report = check_config(voc_config())
    found = [f for d in report.datasets for f in d.findings if f.code == "unreadable-image"]
    assert found and "truncated" in found[0].message and not report.ok


def test_garbage_image(sample):
    image, _ = first_train(sample)
    (sample / image).write_bytes(b"this is not an image at all")
    assert "unreadable-image" in codes(check_config(voc_config()), "error")


def test_empty_annotation(sample):
    _, xml = first_train(sample)
    path = sample / xml
    text = path.read_text()
    start, end = text.index("<object>"), text.rindex("</object>") + len("</object>")
    path.write_text(text[:start] + text[end:])
    report = check_config(voc_config())
    assert "empty-annotation" in codes(report, "warning")


def test_unknown_label(sample):
    _, xml = first_train(sample)
    text = (sample / xml).read_text()
    label = next(c for c in CLASSES if f"<name>{c}</name>" in text)
    rewrite_xml(sample / xml, f"<name>{label}</name>", "<name>stopsign</name>")
    report = check_config(voc_config())
    assert "unknown-label" in codes(report, "error")
    assert report.datasets[0].histogram.get("stopsign") == 1


def test_box_outside_image(sample):
    _, xml = first_train(sample)
    text = (sample / xml).read_text()
    xmax = text[text.index("<xmax>") + 6 : text.index("</xmax>")]
    rewrite_xml(sample / xml, f"<xmax>{xmax}</xmax>", "<xmax>5000</xmax>")
    assert "box-outside-image" in codes(check_config(voc_config()), "error")


def test_zero_area_box(sample):
    _, xml = first_train(sample)
    text = (sample / xml).read_text()
    xmin = text[text.index("<xmin>") + 6 : text.index("</xmin>")]
    xmax = text[text.index("<xmax>") + 6 : text.index("</xmax>")]
    rewrite_xml(sample / xml, f"<xmax>{xmax}</xmax>", f"<xmax>{xmin}</xmax>")
    assert "zero-area-box" in codes(check_config(voc_config()), "error")


def test_duplicate_line(sample):
    lines = (sample / "train.txt").read_text().splitlines()
    (sample / "train.txt").write_text("\n".join(lines + [lines[0]]) + "\n")
    report = check_config(voc_config())
    dup = [f for f in report.datasets[0].findings if f.code == "duplicate-entry"]
    assert dup and dup[0].where.endswith(f"train.txt:{len(lines) + 1}")


def test_missing_label_list(sample):
    (sample / "label_list.txt").unlink()
    assert "missing-label-list" in codes(check_config(voc_config()), "error")


def test_missing_xml_and_malformed_line(sample):
    _, xml = first_train(sample)
    (sample / xml).unlink()
    with open(sample / "train.txt", "a") as f:
        f.write("images/only_one_field.png\n")
    found = codes(check_config(voc_config()), "error")
    assert {"missing-annotation", "malformed-line"} <= found


def test_broken_xml_and_missing_size(sample):
    lines = (sample / "train.txt").read_text().split()
    rel_a, rel_b = (os.path.join("dataset/roadsign_voc", x) for x in (lines[1], lines[3]))  # as reported (cwd-relative)
    xml_a, xml_b = sample / lines[1], sample / lines[3]
    xml_a.write_text("<annotation><size><width>320</width>")  # cut short
    text = xml_b.read_text()
    xml_b.write_text(text[: text.index("<size>")] + text[text.index("</size>") + len("</size>"):])
    report = check_config(voc_config(), tasks=("train",))
    findings = {f.code: f for f in report.datasets[0].findings}
    assert findings["unreadable-annotation"].severity == "error" and rel_a in findings["unreadable-annotation"].message
    assert findings["missing-size"].where == rel_b
    # boxes of the image without <size> are still checked against the image header
    assert report.datasets[0].objects > 0


def test_blank_and_duplicate_labels(sample):
    (sample / "label_list.txt").write_text("speedlimit\n\ncrosswalk\ntrafficlight\nstop\nstop\n")
    found = codes(check_config(voc_config(), tasks=("train",)), "error")
    assert {"blank-label", "duplicate-label"} <= found


def test_missing_dataset_dir_names_sample_command(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    report = check_config(voc_config())
    msgs = [f.message for d in report.datasets for f in d.findings]
    assert "missing-dataset-dir" in codes(report) and "trainctl data sample --out dataset/roadsign_voc" in msgs[0]


# -- COCO ----------------------------------------------------------------------


def voc_to_coco(sample: Path, list_name: str) -> dict:
    """A COCO document for the sample's images (built independently of the checker)."""
    import xml.etree.ElementTree as ET

    cats = [{"id": i + 1, "name": c} for i, c in enumerate(CLASSES)]
    images, anns = [], []
    for n, line in enumerate((sample / list_name).read_text().split("\n")):
        if not line.strip():
            continue
        image, xml = line.split()
        root = ET.parse(sample / xml).getroot()
        w, h = int(root.find("size/width").text), int(root.find("size/height").text)
        images.append({"id": n + 1, "file_name": os.path.basename(image), "width": w, "height": h})
        for obj in root.findall("object"):
            b = [float(obj.find(f"bndbox/{k}").text) for k in ("xmin", "ymin", "xmax", "ymax")]
            anns.append({"id": len(anns) + 1, "image_id": n + 1, "category_id": CLASSES.index(obj.find("name").text) + 1,
                         "bbox": [b[0], b[1], b[2] - b[0], b[3] - b[1]], "area": (b[2] - b[0]) * (b[3] - b[1]),
                         "iscrowd": 0})
    return {"images": images, "annotations": anns, "categories": cats}


def coco_config(anno: str = "train.json") -> dict:
    return {"TrainDataset": Tagged("COCODataSet", {"dataset_dir": "dataset/roadsign_voc", "image_dir": "images",
                                                    "anno_path": anno})}


def test_coco_clean_passes(sample):
    doc = voc_to_coco(sample, "train.txt")
    (sample / "train.json").write_text(json.dumps(doc))
    report = check_config(coco_config())
    assert report.ok and report.warnings == 0, report.datasets[0].findings
    (ds,) = report.datasets
    assert ds.kind == "COCO" and ds.entries == len(doc["images"]) and ds.objects == len(doc["annotations"])
    assert sum(ds.histogram.values()) == len(doc["annotations"])


def test_coco_defects(sample):
    doc = voc_to_coco(sample, "train.txt")
    anns = doc["annotations"]
    anns[0]["category_id"] = 99  # unknown label
    anns[1]["bbox"][2] = 0  # zero area
    anns[2]["bbox"][0] = 10_000  # outside the image
    anns.append(dict(anns[3], id=len(anns) + 1))  # duplicate box
    del anns[4]["area"]
    doc["images"].append(dict(doc["images"][0]))  # duplicate image id
    doc["images"].append({"id": 500, "file_name": "nope.png", "width": 320, "height": 240})  # missing file
    doc["images"].append({"id": 501, "file_name": doc["images"][1]["file_name"], "width": 320, "height": 240})
    anns.append({"id": 900, "image_id": 777, "category_id": 1, "bbox": [1, 1, 5, 5], "area": 25, "iscrowd": 0})
    (sample / "train.json").write_text(json.dumps(doc))
    report = check_config(coco_config())
    assert {"unknown-label", "zero-area-box", "box-outside-image", "duplicate-box", "missing-area",
            "duplicate-image-id", "missing-image", "duplicate-image", "unknown-image"} <= codes(report, "error")
    assert "empty-annotation" in codes(report, "warning")  # image 500 has no annotations
    assert not report.ok


def test_coco_bad_json(sample):
    (sample / "train.json").write_text("{not json")
    assert "unreadable-annotation-file" in codes(check_config(coco_config()), "error")


def test_tagged_and_untagged_specs():
    spec = dataset_spec(coco_config(), "train")
    assert (spec.kind, spec.image_root, spec.anno_file) == (
        "COCO", os.path.join("dataset/roadsign_voc", "images"), os.path.join("dataset/roadsign_voc", "train.json"))
    spec = dataset_spec(voc_config(), "eval")
    assert (spec.kind, spec.label_file) == ("VOC", os.path.join("dataset/roadsign_voc", "label_list.txt"))
    assert dataset_spec({"TrainDataset": {"dataset_dir": "d", "anno_path": "a.json"}}, "train").kind == "COCO"
    assert dataset_spec({}, "eval") is None


# -- quick_check ---------------------------------------------------------------


def test_quick_check_missing_dir_message(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UserError) as exc:
        quick_check(voc_config())
    assert exc.value.one_line() == (
        "dataset directory 'dataset/roadsign_voc' (TrainDataset.dataset_dir) does not exist; "
        "create the built-in sample with: trainctl data sample --out dataset/roadsign_voc")
    assert exc.value.exit_code == 2


def test_quick_check_missing_files(sample):
    (sample / "valid.txt").unlink()
    with pytest.raises(UserError, match=r"annotation file .*valid.txt' \(EvalDataset.anno_path\)"):
        quick_check(voc_config())
    quick_check(voc_config(), tasks=("train",))  # train alone is fine
    (sample / "label_list.txt").unlink()
    with pytest.raises(UserError, match=r"label list .*label_list.txt' \(TrainDataset.label_list\)"):
        quick_check(voc_config(), tasks=("train",))


def test_quick_check_other_dir_hint(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UserError) as exc:
        quick_check({"TrainDataset": {"name": "VOCDataSet", "dataset_dir": "data/mine", "anno_path": "t.txt"}})
    assert "data sample" not in exc.value.one_line() and "-o TrainDataset.dataset_dir=" in exc.value.one_line()


def test_quick_check_reads_no_images(sample):
    """quick_check must stay fast: it never opens images (garbage images pass it)."""
    for png in (sample / "images").iterdir():
        png.write_bytes(b"garbage")
    quick_check(voc_config())
    assert not check_config(voc_config()).ok


# -- image headers -------------------------------------------------------------


def png_bytes(width: int, height: int) -> bytes:
    raw = b"".join(b"\x00" + b"\x00" * 3 * width for _ in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def jpeg_bytes(width: int, height: int, eoi: bool = True) -> bytes:
    app0 = b"\xff\xe0" + struct.pack(">H", 16) + b"JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"
    sof = b"\xff\xc0" + struct.pack(">HBHHB", 11, 8, height, width, 1) + b"\x01\x11\x00"
    sos = b"\xff\xda" + struct.pack(">HB", 8, 1) + b"\x01\x00\x00\x3f\x00" + b"\x12\x34" * 20
    return b"\xff\xd8" + app0 + sof + sos + (b"\xff\xd9" if eoi else b"")


def bmp_bytes(width: int, height: int) -> bytes:
    row = (3 * width + 3) // 4 * 4
    size = 54 + row * abs(height)
    header = b"BM" + struct.pack("<IHHI", size, 0, 0, 54)
    info = struct.pack("<IiiHHIIiiII", 40, width, height, 1, 24, 0, row * abs(height), 0, 0, 0, 0)
    return header + info + b"\x00" * (row * abs(height))


@pytest.mark.parametrize("make,fmt", [(png_bytes, "PNG"), (jpeg_bytes, "JPEG"), (bmp_bytes, "BMP")])
def test_image_size_formats(tmp_path, make, fmt):
    path = tmp_path / "img"
    path.write_bytes(make(37, 21))
    assert image_size(path) == (37, 21, fmt)
    path.write_bytes(make(37, 21)[:-4])  # cut the tail
    with pytest.raises(ImageError, match="truncated"):
        image_size(path)


def test_image_size_top_down_bmp_and_errors(tmp_path):
    path = tmp_path / "img"
    path.write_bytes(bmp_bytes(5, -4))
    assert image_size(path) == (5, 4, "BMP")
    path.write_bytes(jpeg_bytes(8, 8, eoi=False))
    with pytest.raises(ImageError, match="truncated JPEG"):
        image_size(path)
    path.write_bytes(b"")
    with pytest.raises(ImageError, match="empty"):
        image_size(path)
    with pytest.raises(ImageError, match="cannot read"):
        image_size(tmp_path / "missing.png")


def test_image_size_matches_sample_annotations(sample_master):
    src, _ = sample_master
    import xml.etree.ElementTree as ET

    for xml in sorted((src / "annotations").iterdir())[:3]:
        root = ET.parse(xml).getroot()
        want = (int(root.find("size/width").text), int(root.find("size/height").text))
        assert image_size(src / "images" / (xml.stem + ".png"))[:2] == want


# -- CLI -----------------------------------------------------------------------


def write_config(tmp_path: Path) -> Path:
    cfg = tmp_path / "ds.yml"
    cfg.write_text(json.dumps(voc_config()))  # JSON is YAML
    return cfg


def test_cli_data_sample_and_check(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    result = runner.invoke(cli, ["data", "sample", "--out", "dataset/roadsign_voc", "--images", "6", "--seed", "2"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "dataset/roadsign_voc/train.txt").is_file() and "wrote 6 images" in result.output
    cfg = write_config(tmp_path)
    result = runner.invoke(cli, ["data", "check", "-c", str(cfg)])
    assert result.exit_code == 0, result.output
    assert "TrainDataset [VOC]" in result.output and "class" in result.output and "speedlimit" in result.output

    result = runner.invoke(cli, ["data", "check", "-c", str(cfg), "--json"])
    doc = json.loads(result.output[: result.output.rindex("}") + 1])
    assert doc["ok"] is True and len(doc["datasets"]) == 2

    (tmp_path / "dataset/roadsign_voc/label_list.txt").unlink()
    result = runner.invoke(cli, ["data", "check", "-c", str(cfg)])
    assert result.exit_code == 1 and "missing-label-list" in result.output


def test_cli_data_check_override(tmp_path, monkeypatch, sample_master):
    src, _ = sample_master
    monkeypatch.chdir(tmp_path)
    cfg = write_config(tmp_path)
    result = CliRunner().invoke(cli, ["data", "check", "-c", str(cfg), "-o", f"TrainDataset.dataset_dir={src}",
                                      "-o", f"EvalDataset.dataset_dir={src}"])
    assert result.exit_code == 0, result.output


def test_num_classes_against_the_datasets_classes(sample):
    """COCO categories and a VOC label list are counted against the config's num_classes."""
    (sample / "train.json").write_text(json.dumps(voc_to_coco(sample, "train.txt")))
    for config, kind in ((coco_config(), "categories in"), (voc_config(), "label list")):
        report = check_config({**config, "num_classes": len(CLASSES)})
        assert "num-classes" not in codes(report), report.datasets[0].findings
        report = check_config({**config, "num_classes": len(CLASSES) - 1})
        assert "num-classes" in codes(report, "error") and not report.ok
        message = next(f.message for f in report.datasets[0].findings if f.code == "num-classes")
        assert f"has {len(CLASSES)} " in message and f"num_classes: {len(CLASSES)}" in message and kind in message
        report = check_config({**config, "num_classes": 80})  # a COCO config left at 80
        assert "num-classes" in codes(report, "warning") and report.ok
