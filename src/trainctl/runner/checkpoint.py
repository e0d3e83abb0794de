"""Checkpoints that are complete or absent, never half-written.

ppdet's Checkpointer calls paddle.save straight onto the final names, and in
paddle 3.x "Save checkpoint" is logged before the files are complete on disk;
a kill at that moment leaves a truncated `N.pdparams` that a resume would pick.
Here each file is written to a temporary name in the run directory, fsynced
and renamed; then the checkpoint is added to `checkpoints.json` (the index,
itself written atomically). A checkpoint exists for trainctl only when the
index lists it and its files have the sizes the index recorded, so a file
planted or truncated under a final name is never chosen by `--resume auto`.

The index part (read_index, latest_checkpoint) is pure; saving imports paddle
inside the functions, so this module can be imported without paddle.
"""

from __future__ import annotations

import errno
import json
import os
import time
from pathlib import Path

from trainctl.fsutil import _fsync_dir, atomic_target, atomic_write_text

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


def _save_atomic(obj, path: Path) -> int:
    """paddle.save to a temporary name, fsync, rename; return the size."""
    import paddle

    with atomic_target(path) as tmp:
        paddle.save(obj, str(tmp))
    return path.stat().st_size


def save_checkpoint(
    run_dir: str | os.PathLike,
    name: str,
    params: dict,
    optimizer=None,
    epoch: int = 0,
    ema_params: dict | None = None,
    keep: int | None = None,
    iteration: int = 0,
    global_iter: int | None = None,
) -> dict:
    """Write `<name>.pdparams` (+ `.pdopt`, `.pdema`) atomically and list them in the index.

    With ema_params, as ppdet does, the EMA weights go to .pdparams (they are
    what eval and export use) and the raw weights to .pdema.
    `keep` deletes the oldest numbered (epoch and mid-epoch) checkpoints beyond the newest N.
    `epoch` is the number of completed epochs; `iteration` the iterations done in the
    next one (a mid-epoch checkpoint), `global_iter` the iterations done in all.
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    try:
        return _save_checkpoint(run_dir, name, params, optimizer, epoch, ema_params, keep, iteration, global_iter)
    except OSError as exc:
        if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        from trainctl.errors import RuntimeFailure

        previous = latest_checkpoint(run_dir)
        kept = (f"the last complete checkpoint ({previous['name']}, epoch {previous['epoch']}) is intact"
                if previous else "no earlier checkpoint was complete")
        raise RuntimeFailure(
            f"no space left on device while saving checkpoint {name} in {run_dir}",
            hint=f"{kept}; free space (or use --output on a bigger disk) and rerun with --resume auto") from None


def _save_checkpoint(run_dir: Path, name: str, params: dict, optimizer, epoch: int, ema_params, keep,
                     iteration: int = 0, global_iter: int | None = None) -> dict:
    files: dict[str, int] = {}
    if ema_params is not None:
        files[".pdparams"] = _save_atomic(ema_params, run_dir / f"{name}.pdparams")
        files[".pdema"] = _save_atomic(params, run_dir / f"{name}.pdema")
    else:
        files[".pdparams"] = _save_atomic(params, run_dir / f"{name}.pdparams")
    if optimizer is not None:
        state = optimizer.state_dict()
        state["last_epoch"] = epoch
        files[".pdopt"] = _save_atomic(state, run_dir / f"{name}.pdopt")
    _fsync_dir(run_dir)

    entry = {"name": name, "epoch": epoch, "time": time.time(), "files": files}
    if iteration:
        entry["iter"] = iteration
    if global_iter is not None:
        entry["global_iter"] = global_iter
    add_to_index(run_dir, entry, keep)
    return entry


def rotate(checkpoints: list[dict], keep: int | None) -> tuple[list[dict], list[dict]]:
    """(kept, dropped): keep the newest `keep` numbered (epoch and mid-epoch) checkpoints;
    model_final and best_model are never dropped. keep None or 0 keeps everything."""
    if not keep or keep < 0:
        return list(checkpoints), []
    numbered = sorted((e for e in checkpoints if is_rotated(e)), key=position)
    dropped = numbered[:-keep] if len(numbered) > keep else []
    return [e for e in checkpoints if e not in dropped], dropped


def add_to_index(run_dir: str | os.PathLike, entry: dict, keep: int | None = None) -> list[dict]:
    """List a checkpoint whose files are complete, apply --keep, delete the dropped files.

    The index is rewritten before anything is deleted: from that moment the new
    checkpoint exists and the dropped ones do not, whatever happens next.
    Returns the dropped entries.
    """
    index = read_index(run_dir)
    checkpoints = [e for e in index["checkpoints"] if e["name"] != entry["name"]] + [entry]
    index["checkpoints"], dropped = rotate(checkpoints, keep)
    write_index(run_dir, index)
    for e in dropped:
        for suffix in PARTS:
            try:
                os.unlink(Path(run_dir) / (e["name"] + suffix))
            except FileNotFoundError:
                pass
    return dropped


def record_eval(run_dir: str | os.PathLike, epoch: int, results: dict, best_name: str | None = None) -> None:
    """Add one evaluation (e.g. {"bbox": 0.53}) to the index; best_name marks a new best model."""
    index = read_index(run_dir)
    index["evals"].append({"epoch": epoch, "time": time.time(), "results": results})
    if best_name is not None:
        index["best"] = {"name": best_name, "epoch": epoch, "results": results}
    write_index(run_dir, index)
