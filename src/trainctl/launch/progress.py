"""Worker progress as the launcher sees it: per-rank heartbeat files and /proc.

The heartbeat files themselves (`<run_dir>/progress/rank<R>.json`, written by
each worker after every iteration) are core/heartbeat.py's protocol.

The launcher reads these records to decide two things (executor.py):
- a hang: no rank completed an iteration within --hang-timeout while every
  rank that has started is in its "train" phase (start-up, before the first
  iteration, and evaluation never count);
- who stopped first when ranks fail or hang: a rank whose process is stopped
  (state T) or stuck in the kernel (state D), one that cannot answer the
  stack-dump signal, or one that is iterations behind the others, is the
  cause; ranks that merely waited in a collective are its victims.

Pure: no paddle.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

# the file protocol itself is core (the worker writes it): re-exported here for the executor
from trainctl.core.heartbeat import (  # noqa: F401
    PHASE_TRAIN, PROGRESS_DIR, STACK_SIGNAL_NAME, clear_heartbeats, heartbeat_path, read_heartbeat, write_heartbeat,
)

_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|sec|m|min|h)?\s*$", re.IGNORECASE)
_UNIT = {None: 1, "s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600}
# default --hang-timeout when the run has several workers (world size > 1); off for one process
DEFAULT_HANG_TIMEOUT = 30 * 60.0


def parse_duration(text: str) -> float:
    """'90s', '30m', '2h', '45' (seconds) -> seconds; '0' or 'off' -> 0 (disabled). ValueError if bad."""
    if text.strip().lower() in ("off", "none", "0"):
        return 0.0
    match = _DURATION_RE.match(text)
    if not match:
        raise ValueError(text)
    unit = (match.group(2) or "").lower() or None
    return float(match.group(1)) * _UNIT[unit]


def format_duration(seconds: float) -> str:
    if seconds >= 3600 and seconds % 3600 == 0:
        return f"{int(seconds // 3600)}h"
    if seconds >= 60 and seconds % 60 == 0:
        return f"{int(seconds // 60)}m"
    return f"{seconds:g}s"


def stalled(records: dict[int, dict | None], now: float, timeout: float) -> bool:
    """True when the ranks that have iterated are all in their train phase and none
    completed an iteration within `timeout` seconds (wall clock, time.time())."""
    started = [r for r in records.values() if r]
    if not timeout or not started:
        return False
    if any(r.get("phase") != PHASE_TRAIN for r in started):
        return False  # a checkpoint or an evaluation in progress is not a hang
    return max(float(r.get("time", 0)) for r in started) < now - timeout


def proc_state(pid: int, proc_root: str = "/proc") -> tuple[str | None, int | None]:
    """(state letter, utime + stime in clock ticks) of a process, (None, None) if it is gone."""
    try:
        fields = (Path(proc_root) / str(pid) / "stat").read_text().rsplit(")", 1)[-1].split()
        return fields[0], int(fields[11]) + int(fields[12])
    except (OSError, IndexError, ValueError):
        return None, None


STATE_NAMES = {"T": "stopped (state T)", "t": "stopped by a tracer (state t)",
               "D": "stuck in the kernel (state D, uninterruptible)"}


def stopped_first(ranks: list[int], records: dict[int, dict | None], states: dict[int, str | None],
                  answered: dict[int, bool] | None = None, by_iteration: bool = True) -> tuple[list[int], dict[int, str]]:
    """(the ranks that stopped first, why for each), from the evidence there is.

    In order: processes stopped or stuck in the kernel; processes that did not
    answer the stack-dump signal (a live Python process runs faulthandler at
    once); ranks whose last completed iteration is behind the others' (unless
    by_iteration is False: right after a rank died, a peer may lag one heartbeat
    behind it without being stuck). Empty when nothing singles out a rank.
    """
    why: dict[int, str] = {}
    for rank in ranks:
        state = states.get(rank)
        if state in STATE_NAMES:
            why[rank] = f"its process is {STATE_NAMES[state]}"
    if not why and answered:
        for rank in ranks:
            if states.get(rank) and not answered.get(rank, True):
                why[rank] = "it did not answer the stack-dump signal"
    if not why and by_iteration:
        iters = {r: int(records[r].get("iter", 0)) if records.get(r) else -1 for r in ranks}
        if len(set(iters.values())) > 1:
            low = min(iters.values())
            for rank, value in iters.items():
                if value == low:
                    why[rank] = ("it never completed an iteration" if value < 0
                                 else f"it is behind: last iteration {value}, the others reached {max(iters.values())}")
    return sorted(why), why


def describe_record(record: dict | None, now: float | None = None) -> str:
    if not record:
        return "no iteration completed"
    now = time.time() if now is None else now
    age = max(0.0, now - float(record.get("time", now)))
    return f"last iteration {record.get('iter')} (epoch {int(record.get('epoch', 0)) + 1}), {age:.0f}s ago"


_FRAME_RE = re.compile(r'^\s*File "([^"]+)", line (\d+) in (\S+)')


def innermost_frame(dump: str) -> str | None:
    """The innermost frame of the main thread in a faulthandler dump ('file:line in function').

    The main thread is the one whose stack goes down to the worker's entry
    (runner/worker.py); a dump lists frames most recent first.
    """
    blocks: list[list[str]] = []
    for line in dump.splitlines():
        if line.startswith(("Thread 0x", "Current thread 0x")):
            blocks.append([])
        elif blocks and _FRAME_RE.match(line):
            blocks[-1].append(line)
    main = next((b for b in blocks if any("runner/worker.py" in line for line in b)), blocks[-1] if blocks else None)
    if not main:
        return None
    match = _FRAME_RE.match(main[0])
    return f"{Path(match.group(1)).name}:{match.group(2)} in {match.group(3)}"
