"""Atomic file writes: a reader never sees a half-written file.

Write to a temporary file in the same directory, fsync, then rename over the
target. Files are created 0644 (never world-writable).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def atomic_write_bytes(path: str | os.PathLike, data: bytes, mode: int = 0o644) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    _fsync_dir(path.parent)


def atomic_write_text(path: str | os.PathLike, text: str, mode: int = 0o644) -> None:
    atomic_write_bytes(path, text.encode("utf-8"), mode)


def _fsync_dir(directory: Path) -> None:
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
