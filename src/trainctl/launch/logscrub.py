"""Secrets out of the logs: paddle launch dumps the whole environment (envlog.N,
backup_env.N.json) into --log_dir; values of secret-looking variables (core/envutil.py)
are replaced with *** as soon as those dumps appear, and in every log file at the end."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from trainctl.fsutil import atomic_write_bytes
from trainctl.core import envutil

# files paddle.distributed.launch (2.6, 3.3) writes into --log_dir with the whole environment:
# envlog.N and backup_env.N.json when it starts the workers, <job>.<pod>.log (str(os.environ))
_ENV_DUMPS = ("envlog.", "backup_env.")


def secret_values(env: dict[str, str]) -> list[bytes]:
    values = {v for k, v in env.items() if envutil.is_secret(k) and len(v) >= 4}
    return sorted((v.encode() for v in values), key=len, reverse=True)


def scrub_secrets(log_dir: Path, secrets: list[bytes], only_env_dumps: bool = False) -> list[str]:
    """Replace secret values in the files of log_dir with ***; returns the files changed.

    During the run only paddle's environment dumps are rewritten (the workers append
    to their logs, which a rename would cut off); at the end every file is.
    """
    changed = []
    if not secrets:
        return changed
    for path in sorted(log_dir.rglob("*")):
        if not path.is_file() or (only_env_dumps and not path.name.startswith(_ENV_DUMPS)):
            continue
        try:
            data = path.read_bytes()
        except OSError:
            continue
        clean = data
        for secret in secrets:
            clean = clean.replace(secret, envutil.MASK.encode())
        if clean != data:
            atomic_write_bytes(path, clean)
            changed.append(str(path))
    return changed


def scrub_when_written(log_dir: Path, secrets: list[bytes], stop: threading.Event, seconds: float = 120) -> None:
    """Scrub paddle's environment dumps as soon as they appear (they are written once, at start)."""
    deadline = time.monotonic() + seconds
    while not stop.is_set() and time.monotonic() < deadline:
        if any(p.name.startswith(_ENV_DUMPS) for p in log_dir.rglob("*")):
            stop.wait(1.0)  # let the launcher finish writing them
            scrub_secrets(log_dir, secrets, only_env_dumps=True)
            return
        stop.wait(0.5)
