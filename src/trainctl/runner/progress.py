"""Inside a worker: the heartbeat the launcher watches (a ppdet Trainer callback).

After every training iteration the rank replaces `<run_dir>/progress/rank<R>.json`
(the protocol is core/heartbeat.py; launch/progress.py reads it). The data order
a resumed run continues is runner/data_order.py.
"""

from __future__ import annotations

import time

from ppdet.engine.callbacks import Callback

from trainctl.core.heartbeat import PHASE_TRAIN, heartbeat_path, write_heartbeat


def global_iteration(status) -> int:
    """Iterations completed before the current step (ppdet's status, after DataOrder's shift)."""
    return int(status["epoch_id"]) * int(status["steps_per_epoch"]) + int(status["step_id"])


class Heartbeat(Callback):
    """Writes this rank's progress record after every training iteration (and its phase changes)."""

    def __init__(self, trainer, run_dir: str, rank: int):
        super().__init__(trainer)
        self.path = heartbeat_path(run_dir, rank)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.rank = rank
        self.last: dict = {}

    def beat(self, status, phase: str, done: int | None = None) -> None:
        record = {"rank": self.rank, "iter": done if done is not None else self.last.get("iter", 0),
                  "epoch": int(status.get("epoch_id", 0)), "step": int(status.get("step_id", 0)),
                  "phase": phase, "time": time.time()}
        try:
            write_heartbeat(self.path, record)
        except OSError:
            return  # progress reporting must never break training
        self.last = record

    def on_step_end(self, status):
        if status.get("mode") == "train":
            self.beat(status, PHASE_TRAIN, global_iteration(status) + 1)

    def on_epoch_end(self, status):
        if status.get("mode") == "train" and self.last:
            self.beat(status, "epoch_end")  # checkpoint and evaluation follow: not a hang

    def on_epoch_begin(self, status):
        # a later epoch only: ppdet also calls on_epoch_begin (mode still "train") before an evaluation
        if status.get("mode") == "train" and self.last and int(status["epoch_id"]) > self.last["epoch"]:
            self.beat(status, PHASE_TRAIN)
