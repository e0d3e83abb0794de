"""The heartbeat file protocol shared by the worker (writer) and the launcher (reader).

Each worker writes `<run_dir>/progress/rank<R>.json` after every training
iteration (runner/progress.py): {"rank", "iter" (global iterations done),
"epoch", "step", "phase", "time"}. A write is a small file replaced by rename,
no fsync: cheap next to an iteration, and a reader never sees half a record.
Phase is "train" while iterating; "epoch_end" (checkpoint, evaluation) and
"save" (a mid-epoch checkpoint) pause the hang clock (launch/progress.py).

Pure: no paddle.
"""

from __future__ import annotations

import os
from pathlib import Path

PROGRESS_DIR = "progress"
PHASE_TRAIN = "train"
STACK_SIGNAL_NAME = "SIGUSR1"  # the worker registers faulthandler on it (runner/progress.py)


def heartbeat_path(run_dir: str | os.PathLike, rank: int) -> Path:
    return Path(run_dir) / PROGRESS_DIR / f"rank{rank}.json"


def write_heartbeat(path: Path, record: dict) -> None:
    """Replace the rank's record (temporary file + rename; no fsync: a lost record only delays)."""
    import json  # lazy: a dry run reads this module's defaults and must not load json

    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(record))
    os.replace(tmp, path)


def read_heartbeat(run_dir: str | os.PathLike, rank: int) -> dict | None:
    import json

    try:
        return json.loads(heartbeat_path(run_dir, rank).read_text())
    except (OSError, ValueError):
        return None


def clear_heartbeats(run_dir: str | os.PathLike, ranks) -> None:
    for rank in ranks:
        try:
            heartbeat_path(run_dir, rank).unlink()
        except FileNotFoundError:
            pass
