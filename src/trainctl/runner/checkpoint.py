"""Checkpoints that are complete or absent, never half-written.

ppdet's Checkpointer calls paddle.save straight onto the final names, and in
paddle 3.x "Save checkpoint" is logged before the files are complete on disk;
a kill at that moment leaves a truncated `N.pdparams` that a resume would pick.
Here each file is written to a temporary name in the run directory, fsynced
and renamed; then the checkpoint is added to `checkpoints.json` (the index,
itself written atomically). A checkpoint exists for trainctl only when the
index lists it and its files have the sizes the index recorded, so a file
planted or truncated under a final name is never chosen by `--resume auto`.

The index part (read_index, latest_checkpoint) is pure and lives in
core/checkpoints.py, where the launcher and `trainctl runs` read it; saving
imports paddle inside the functions, so this module can be imported without paddle.
"""

from __future__ import annotations

import errno
import os
import time
from pathlib import Path

from trainctl.core.checkpoints import (  # noqa: F401 (the index half, re-exported for the worker's modules)
    INDEX_FILE, ITER_PREFIX, PARTS, checkpoint_stem, find_entry, is_complete, is_rotated, latest_checkpoint, position,
    read_index, write_index,
)
from trainctl.fsutil import atomic_target, fsync_dir

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
    fsync_dir(run_dir)

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
