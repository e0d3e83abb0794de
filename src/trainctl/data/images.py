"""Image sizes from file headers (PNG, JPEG, BMP) without decoding: the dataset checks read
every image's size this way (data/check.py), fast and with no image library."""

from __future__ import annotations

import os
import struct


class ImageError(Exception):
    """The file is not a readable image (unknown format, bad header, truncated)."""


_JPEG_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_IEND = b"\x00\x00\x00\x00IEND\xaeB`\x82"


def image_size(path: str | os.PathLike) -> tuple[int, int, str]:
    """(width, height, format) from a PNG, JPEG or BMP header; raises ImageError.

    Also detects truncation cheaply: a PNG must end with its IEND chunk, a
    JPEG must contain its end-of-image marker near the end, a BMP must be as
    long as its header says.
    """
    try:
        with open(path, "rb") as f:
            head = f.read(64)
            f.seek(0, os.SEEK_END)
            size = f.tell()
            if head.startswith(_PNG_SIGNATURE):
                return _png_size(f, head, size)
            if head.startswith(b"\xff\xd8"):
                return _jpeg_size(f, size)
            if head.startswith(b"BM"):
                return _bmp_size(head, size)
    except OSError as exc:
        raise ImageError(f"cannot read: {exc.strerror or exc}") from None
    if not head:
        raise ImageError("empty file")
    raise ImageError("not a PNG, JPEG or BMP image")


def _png_size(f, head: bytes, size: int) -> tuple[int, int, str]:
    if len(head) < 24 or head[12:16] != b"IHDR":
        raise ImageError("PNG without an IHDR header")
    width, height = struct.unpack(">II", head[16:24])
    f.seek(max(0, size - len(_PNG_IEND)))
    if f.read() != _PNG_IEND:
        raise ImageError("truncated PNG (no IEND chunk at the end)")
    if width == 0 or height == 0:
        raise ImageError(f"PNG of size {width}x{height}")
    return width, height, "PNG"


def _jpeg_size(f, size: int) -> tuple[int, int, str]:
    f.seek(2)
    dims = None
    while True:
        byte = f.read(1)
        if not byte:
            break
        if byte != b"\xff":
            continue
        marker = f.read(1)
        while marker == b"\xff":  # fill bytes
            marker = f.read(1)
        if not marker:
            break
        code = marker[0]
        if code in (0x01, 0xD8) or 0xD0 <= code <= 0xD7:  # markers without a length
            continue
        if code == 0xD9 or code == 0xDA:  # end of image, or start of scan (data follows)
            break
        length_bytes = f.read(2)
        if len(length_bytes) < 2:
            break
        length = struct.unpack(">H", length_bytes)[0]
        if code in _JPEG_SOF:
            seg = f.read(5)
            if len(seg) < 5:
                break
            height, width = struct.unpack(">HH", seg[1:5])
            dims = (width, height)
            break
        f.seek(length - 2, os.SEEK_CUR)
    if dims is None:
        raise ImageError("JPEG without a frame header (truncated or corrupt)")
    f.seek(max(0, size - 64))
    if b"\xff\xd9" not in f.read():
        raise ImageError("truncated JPEG (no end-of-image marker)")
    if dims[0] == 0 or dims[1] == 0:
        raise ImageError(f"JPEG of size {dims[0]}x{dims[1]}")
    return dims[0], dims[1], "JPEG"


def _bmp_size(head: bytes, size: int) -> tuple[int, int, str]:
    if len(head) < 26:
        raise ImageError("truncated BMP header")
    declared = struct.unpack("<I", head[2:6])[0]
    header_size = struct.unpack("<I", head[14:18])[0]
    if header_size == 12:  # OS/2 BITMAPCOREHEADER
        width, height = struct.unpack("<HH", head[18:22])
    else:
        width, height = struct.unpack("<ii", head[18:26])
    if declared and size < declared:
        raise ImageError(f"truncated BMP ({size} of {declared} bytes)")
    if width <= 0 or height == 0:
        raise ImageError(f"BMP of size {width}x{height}")
    return width, abs(height), "BMP"
