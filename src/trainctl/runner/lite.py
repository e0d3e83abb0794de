"""Lite training: stop each epoch after `trainctl.max_iters` iterations, and time them.

ppdet has no max-iterations key (its Trainer loops over the whole loader every
epoch), so the config key `trainctl.max_iters` (trainctl's own section, which
ppdet ignores) makes the worker wrap the trainer's loader: every rank takes the
first K batches of each epoch and the epoch ends there. The learning-rate
schedule keeps the steps per epoch of the full loader (it is built before the
wrap), so a lite run follows the real schedule's first K steps.

`trainctl smoke` sets it (with `epoch=1`) for its lite training; a user can set
it too: `trainctl train -c CFG -o trainctl.max_iters=20`.

The timer writes `<run_dir>/lite_train.json` on rank 0 when training ends: the
seconds of each iteration (data loading included, as ppdet's batch_cost) and
the images per second after the first iteration (which pays for warm-up).
"""

from __future__ import annotations

import json
import os
import time

from ppdet.engine.callbacks import Callback

from trainctl.fsutil import atomic_write_text
from trainctl.runner.compat import add_callback

MAX_ITERS_KEY = "max_iters"
LITE_FILE = "lite_train.json"


def max_iters(cfg) -> int | None:
    section = cfg.get("trainctl") or {}
    value = section.get(MAX_ITERS_KEY) if isinstance(section, dict) else None
    return int(value) if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


class LimitedLoader:
    """The first `limit` batches of `loader` per pass; everything else is the loader's."""

    def __init__(self, loader, limit: int):
        self.loader, self.limit = loader, limit

    def __len__(self) -> int:
        return min(self.limit, len(self.loader))

    def __iter__(self):
        for step, batch in enumerate(self.loader):
            if step >= self.limit:
                break
            yield batch

    def __getattr__(self, name):  # dataset, batch_sampler, ...
        return getattr(self.loader, name)


class IterationTimer(Callback):
    def __init__(self, trainer, run_dir: str, rank: int, world_size: int, batch_size: int):
        super().__init__(trainer)
        self.run_dir, self.rank, self.world_size, self.batch_size = run_dir, rank, world_size, batch_size
        self.seconds: list[float] = []
        self.last = None

    def on_epoch_begin(self, status):
        self.last = time.perf_counter()

    def on_step_end(self, status):
        if status.get("mode") != "train":
            return
        now = time.perf_counter()
        if self.last is not None:
            self.seconds.append(now - self.last)
        self.last = now

    def on_train_end(self, status):
        if self.rank != 0:
            return
        steady = self.seconds[1:] or self.seconds
        per_iter = sorted(steady)[len(steady) // 2] if steady else None
        images = self.batch_size * self.world_size
        summary = {
            "iterations": len(self.seconds),
            "seconds": [round(s, 4) for s in self.seconds],
            "median_seconds_after_first": per_iter,
            "batch_size_per_process": self.batch_size,
            "world_size": self.world_size,
            "images_per_s": images / per_iter if per_iter else None,
        }
        atomic_write_text(os.path.join(self.run_dir, LITE_FILE), json.dumps(summary, indent=2) + "\n")


def limit_iterations(trainer, limit: int, run_dir: str, rank: int, world_size: int) -> None:
    """Wrap the trainer's loader and add the timer (call after the callbacks are installed)."""
    trainer.loader = LimitedLoader(trainer.loader, limit)
    try:
        batch_size = int(trainer.cfg["TrainReader"]["batch_size"])
    except (KeyError, TypeError, ValueError):
        batch_size = 1
    add_callback(trainer, IterationTimer(trainer, run_dir, rank, world_size, batch_size))
