"""The text form of `trainctl runs`: one row per run, durations, devices, epochs, best metric, notes."""

from __future__ import annotations

import datetime as _dt
import os

from trainctl.runs.listing import RunInfo, parse_time


# ------------------------------------------------------------------ formatting


def format_duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m{seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours}h{minutes:02d}m"
    days, hours = divmod(hours, 24)
    return f"{days}d{hours:02d}h"


def format_devices(info: RunInfo) -> str:
    if not info.device:
        return "-"
    text = info.device
    if info.device_ids:
        text += " " + ",".join(str(i) for i in info.device_ids)
    if info.world_size:
        text += f" x{info.world_size}"
    if info.nnodes and info.nnodes > 1:
        text += f" ({info.nnodes} nodes)"
    return text


def format_epochs(info: RunInfo) -> str:
    if info.task == "eval":
        return "-"
    done = info.epochs_done if info.epochs_done is not None else 0
    return f"{done}/{info.epochs_total}" if info.epochs_total is not None else str(done)


def format_best(info: RunInfo) -> str:
    if not info.best:
        return "-"
    text = f"{info.best['metric']} {100 * info.best['value']:.2f}%"  # as ppdet and the worker print mAP
    if info.best.get("epoch") is not None:
        text += f" @{info.best['epoch']}"
    return text


def format_start(text: str | None) -> str:
    when = parse_time(text)
    return when.astimezone(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M") if when else "-"


def display_path(path: str) -> str:
    rel = os.path.relpath(path)
    return path if rel.startswith("..") else rel


HEADERS = ["RUN", "TASK", "STATUS", "CONFIG", "DEVICES", "STARTED (UTC)", "DURATION", "EPOCHS", "BEST"]


def table_rows(runs: list[RunInfo]) -> list[list[str]]:
    return [
        [display_path(r.run_dir), r.task or "-", r.status, r.config or "-", format_devices(r), format_start(r.start_time),
         ("~" if r.duration_estimated else "") + format_duration(r.duration_s), format_epochs(r), format_best(r)]
        for r in runs
    ]


def notes(runs: list[RunInfo]) -> list[str]:
    """One line per run whose status was corrected or whose files could not be read."""
    out = []
    for r in runs:
        for text in ([r.status_note] if r.status_note else []) + r.problems:
            out.append(f"{display_path(r.run_dir)}: {text}")
    return out
