"""The checkpoint index (`<run_dir>/checkpoints.json`): which checkpoints exist and are whole.

The worker writes it (runner/checkpoint.py saves each checkpoint atomically and
then lists it here); the launcher (`--resume auto`, `--max-restarts`) and
`trainctl runs` read it. A checkpoint exists for trainctl only when the index
lists it and its files have the sizes the index recorded.

Pure: no paddle.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from trainctl.fsutil import atomic_write_text

INDEX_FILE = "checkpoints.json"
PARTS = (".pdparams", ".pdopt", ".pdema")
ITER_PREFIX = "iter"  # mid-epoch checkpoints: iter<global iteration>


def read_index(run_dir: str | os.PathLike) -> dict:
    path = Path(run_dir) / INDEX_FILE
    try:
        data = json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        return {"checkpoints": [], "evals": [], "best": None}
    data.setdefault("checkpoints", [])
    data.setdefault("evals", [])
    data.setdefault("best", None)
    return data


def write_index(run_dir: str | os.PathLike, index: dict) -> None:
    atomic_write_text(Path(run_dir) / INDEX_FILE, json.dumps(index, indent=2, sort_keys=True) + "\n")


def is_complete(run_dir: str | os.PathLike, entry: dict) -> bool:
    """True when every file the index recorded for the checkpoint is there with its recorded size."""
    files = entry.get("files") or {}
    if ".pdparams" not in files:
        return False
    for suffix, size in files.items():
        path = Path(run_dir) / (entry["name"] + suffix)
        try:
            if path.stat().st_size != size:
                return False
        except FileNotFoundError:
            return False
    return True


def position(entry: dict) -> tuple:
    """Where a checkpoint sits in training: (completed epochs, iterations into the next epoch, time).

    An epoch checkpoint after epoch e (0-based) is (e + 1, 0); a mid-epoch one
    (--save-interval-iters) taken k iterations into epoch e is (e, k).
    """
    return (entry["epoch"], entry.get("iter", 0), entry.get("time", 0))


def is_rotated(entry: dict) -> bool:
    """Numbered epoch checkpoints (`3`) and mid-epoch ones (`iter120`) fall under --keep."""
    name = entry["name"]
    return name.isdigit() or (name.startswith(ITER_PREFIX) and name[len(ITER_PREFIX):].isdigit())


def find_entry(run_dir: str | os.PathLike, name: str) -> dict | None:
    """The index entry of the checkpoint called `name` (a stem's file name), if listed."""
    return next((e for e in read_index(run_dir)["checkpoints"] if e["name"] == name), None)


def latest_checkpoint(run_dir: str | os.PathLike, need_optimizer: bool = True) -> dict | None:
    """The newest complete checkpoint of a run (by epoch, iteration, then time), or None.

    Only checkpoints listed in the index count; best_model is a copy of an
    epoch's weights and is never a resume point.
    """
    candidates = [
        e
        for e in read_index(run_dir)["checkpoints"]
        if e["name"] != "best_model" and is_complete(run_dir, e) and (not need_optimizer or ".pdopt" in e["files"])
    ]
    if not candidates:
        return None
    return max(candidates, key=position)


def checkpoint_stem(run_dir: str | os.PathLike, entry: dict) -> str:
    return str(Path(run_dir) / entry["name"])
