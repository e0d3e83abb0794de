"""Restart with backoff: one loop for the single-node launcher (`launch/flow.py`, `--max-restarts`)
and the ssh fan-out's controller (`cluster/fanout.run_fanout`), which restarts every host."""

from __future__ import annotations

from typing import Callable, TypeVar

R = TypeVar("R")

RESTART_BACKOFF = (0.5, 60.0)  # seconds before restart n: first * 2**(n-1), at most the second


def backoff_seconds(attempt: int) -> float:
    """The wait before restart `attempt` (1, 2, ...): 0.5 s, 1 s, 2 s, ... up to 60 s."""
    first, cap = RESTART_BACKOFF
    return min(cap, first * 2 ** max(0, attempt - 1))


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
