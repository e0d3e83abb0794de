"""Atomic file writes: a reader never sees a half-written file.

Write to a temporary file in the same directory, fsync, then rename over the
target. Files are created 0644 (never world-writable).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def atomic_target(path: str | os.PathLike, mode: int = 0o644, suffix: str = ".tmp", fsync: bool = True) -> Iterator[Path]:
    """Yield a temporary path beside `path` for the caller to write (by any means).

    When the block ends normally the file is fsynced, given `mode` and renamed over
    `path`; when it raises, the temporary file is removed and `path` is untouched.
    fsync=False skips the file and directory fsyncs (still never half-written, but
    may be lost in a power cut): for derived output that is cheap to make again.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        if fsync:
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    if fsync:
        fsync_dir(path.parent)


def atomic_write_bytes(path: str | os.PathLike, data: bytes, mode: int = 0o644, fsync: bool = True) -> None:
    with atomic_target(path, mode, fsync=fsync) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: str | os.PathLike, text: str, mode: int = 0o644) -> None:
    atomic_write_bytes(path, text.encode("utf-8"), mode)


def fsync_dir(directory: Path) -> None:
    """fsync a directory so that a rename in it survives a crash (best effort: errors are ignored)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def ensure_writable_dir(path: str | os.PathLike, flag: str) -> Path:
    """Create directory `path` if needed and prove it is writable, before any work starts.

    Raises UserError naming `path` and the flag that chose it (e.g. "--output"),
    so a read-only mount, a file in the way or a missing permission is one line
    up front instead of an OSError after minutes of training. Root ignores
    permission bits, so the check writes (and removes) a probe file.
    """
    from trainctl.errors import UserError

    path = Path(path)
    hint = f"pass a writable directory with {flag} DIR"
    try:
        path.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".trainctl-write-test.", dir=path)
        os.close(fd)
        os.unlink(probe)
    except FileExistsError:
        raise UserError(f"{path} is not writable: it exists and is not a directory", hint=hint) from None
    except OSError as exc:
        raise UserError(f"{path} is not writable ({exc.strerror or exc})", hint=hint) from None
    return path
