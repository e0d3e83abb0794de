"""The synthetic road-sign sample: deterministic, in VOC layout, boxes inside the images."""

from __future__ import annotations

import hashlib
import struct
import sys
import xml.etree.ElementTree as ET
import zlib
from pathlib import Path

import pytest

from trainctl.data.sample import CLASSES, write_sample_dataset


def _digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*")) if p.is_file()}


def _png_size_and_pixels(data: bytes) -> tuple[int, int, bytes]:
    """Decode our own PNG (8-bit RGB, filter 0) without any image library."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, width, height = 8, b"", 0, 0
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind = data[pos + 4 : pos + 8]
        body = data[pos + 8 : pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length : pos + 12 + length])
        assert crc == zlib.crc32(kind + body) & 0xFFFFFFFF, f"bad CRC in {kind!r}"
        if kind == b"IHDR":
            width, height, depth, color = struct.unpack(">IIBB", body[:10])
            assert (depth, color) == (8, 2)
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    raw = zlib.decompress(idat)
    assert len(raw) == height * (1 + 3 * width)
    return width, height, raw


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    out = tmp_path_factory.mktemp("sample") / "roadsign_voc"
    summary = write_sample_dataset(out, images=12, seed=7)
    return out, summary


def test_same_seed_gives_same_bytes(tmp_path, sample):
    out, _ = sample
    again = tmp_path / "again"
    write_sample_dataset(again, images=12, seed=7)
    assert _digest(out) == _digest(again)


def test_other_seed_gives_other_images(tmp_path, sample):
    out, _ = sample
    other = tmp_path / "other"
    write_sample_dataset(other, images=12, seed=8)
    a, b = _digest(out), _digest(other)
    assert a.keys() == b.keys()
    changed = [k for k in a if k.startswith("images/") and a[k] != b[k]]
    assert len(changed) == 12


def test_layout_and_lists(sample):
    out, summary = sample
    assert (out / "label_list.txt").read_text().split() == list(CLASSES)
    train = (out / "train.txt").read_text().splitlines()
    valid = (out / "valid.txt").read_text().splitlines()
    assert summary.train == len(train) and summary.valid == len(valid)
    assert len(train) + len(valid) == 12 and len(valid) >= 1
    assert not set(train) & set(valid)
    for line in train + valid:
        image, anno = line.split()
        assert image.startswith("images/") and image.endswith(".png")
        assert anno.startswith("annotations/") and anno.endswith(".xml")
        assert (out / image).is_file() and (out / anno).is_file()
        assert Path(image).stem == Path(anno).stem


def test_annotations_parse_and_boxes_lie_inside(sample):
    out, summary = sample
    seen: dict[str, int] = {c: 0 for c in CLASSES}
    for xml_file in sorted((out / "annotations").glob("*.xml")):
        root = ET.parse(xml_file).getroot()
        width = int(root.findtext("size/width"))
        height = int(root.findtext("size/height"))
        png_w, png_h, _ = _png_size_and_pixels((out / "images" / root.findtext("filename")).read_bytes())
        assert (png_w, png_h) == (width, height) == (320, 240)
        objects = root.findall("object")
        assert 1 <= len(objects) <= 3
        for obj in objects:
            name = obj.findtext("name")
            assert name in CLASSES
            seen[name] += 1
            x1, y1, x2, y2 = (int(obj.findtext(f"bndbox/{k}")) for k in ("xmin", "ymin", "xmax", "ymax"))
            assert 0 <= x1 < x2 <= width - 1 and 0 <= y1 < y2 <= height - 1
            assert x2 - x1 >= 6 and y2 - y1 >= 12
    assert seen == summary.objects_per_class
    assert sum(seen.values()) == summary.objects


def test_signs_are_drawn_in_their_class_colour(sample):
    """Inside a stop or speedlimit box the red of the sign dominates; crosswalk boxes are mostly blue."""
    out, _ = sample
    checked = 0
    for xml_file in sorted((out / "annotations").glob("*.xml")):
        root = ET.parse(xml_file).getroot()
        width, _, raw = _png_size_and_pixels((out / "images" / root.findtext("filename")).read_bytes())
        for obj in root.findall("object"):
            name = obj.findtext("name")
            x1, y1, x2, y2 = (int(obj.findtext(f"bndbox/{k}")) for k in ("xmin", "ymin", "xmax", "ymax"))
            cy, cx = y1 + (y2 - y1) * 3 // 10, x1 + (x2 - x1) // 4  # off the white band and digits
            offset = cy * (1 + 3 * width) + 1 + 3 * cx
            r, g, b = raw[offset : offset + 3]
            if name == "crosswalk":
                assert b > r + 60, (xml_file.name, name, (r, g, b))
                checked += 1
            elif name == "stop":
                assert r > g + 100 and r > b + 100, (xml_file.name, name, (r, g, b))
                checked += 1
    assert checked >= 2


def test_needs_no_paddle_or_numpy(tmp_path):
    import subprocess

    code = (
        "import sys; from trainctl.data.sample import write_sample_dataset; "
        f"write_sample_dataset({str(tmp_path / 'd')!r}, images=3, seed=1); "
        "bad = [m for m in ('paddle', 'ppdet', 'numpy') if m in sys.modules]; "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_too_few_images_is_refused(tmp_path):
    with pytest.raises(ValueError):
        write_sample_dataset(tmp_path / "d", images=1)
