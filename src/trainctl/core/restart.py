"""Restart with backoff: one loop for the single-node launcher (`launch/attempts.py`, `--max-restarts`)
and the ssh fan-out's controller (`cluster/fanout.run_fanout`), which restarts every host."""

from __future__ import annotations

from typing import Callable, TypeVar

R = TypeVar("R")

RESTART_BACKOFF = (0.5, 60.0)  # seconds before restart n >= 2: first * 2**(n-1), at most the second (none before 1)


def backoff_seconds(attempt: int) -> float:
    """The wait before restart `attempt` (1, 2, ...): none before the first (a single failure is
    restarted at once: the restart costs no more than a fresh start plus loading the checkpoint),
    then 1 s, 2 s, 4 s, ... up to 60 s, so a job that keeps failing does not spin."""
    first, cap = RESTART_BACKOFF
    if attempt <= 1:
        return 0.0
    return min(cap, first * 2 ** (attempt - 1))


def when(wait: float) -> str:
    """'now' or 'in 2s': how a restart message says when it restarts."""
    return "now" if wait <= 0 else f"in {wait:g}s"


def run_with_restarts(run_once: Callable[[int], R], should_restart: Callable[[R, int], bool], budget: int,
                      before_wait: Callable[[int, float, R], None],
                      sleep: Callable[[float], object]) -> tuple[R, int, bool]:
    """Call run_once(0); while should_restart(result, attempt) and fewer than `budget` restarts
    were made: before_wait(restart number, wait in seconds, failed result), sleep(wait), and
    run_once(restart number) again.

    Returns (the last result, restarts made, interrupted): interrupted when sleep() returned
    something true (the user stopped the run while it waited).
    """
    attempt = 0
    while True:
        result = run_once(attempt)
        if attempt >= budget or not should_restart(result, attempt):
            return result, attempt, False
        attempt += 1
        wait = backoff_seconds(attempt)
        before_wait(attempt, wait, result)
        if sleep(wait):
            return result, attempt, True
