"""Watching a training: VisualDL scalars, the loss history and the progress line (ppdet Trainer callbacks).

LossHistory writes `<run_dir>/history.jsonl` on every run (what `trainctl runs compare` reads).

VisualDLScalars writes under `<run_dir>/vdl/`, with the global iteration as the step
(so a resumed run continues its curves):
    train/loss, train/<each loss term>, train/lr, train/ips (images/s), eval/<key>_mAP (by epoch)

ProgressLine: on a terminal (the launcher's: it tells the workers through job.progress), one
live line per epoch (iteration, loss, images/s, ETA of the whole run) rewritten in place,
ending with a newline when the epoch ends; ppdet's own
per-iteration log lines are silenced then. Without a terminal (or under CI) ppdet's
plain log lines stay. "quiet" silences both; eval results and the final line remain.
"""

from __future__ import annotations

import logging
import os
import sys
import time

import paddle.distributed as dist
from ppdet.engine.callbacks import Callback

from trainctl.runner.compat import trainer_metrics

PROGRESS_MODES = ("auto", "tty", "plain", "quiet")


def _is_main() -> bool:
    return dist.get_world_size() < 2 or dist.get_rank() == 0


def _latest_losses(status) -> dict[str, float]:
    stats = status.get("training_staus")
    meters = getattr(stats, "meters", None) or {}
    return {k: float(v.deque[-1]) for k, v in meters.items() if len(v.deque)}


def _batch_size(trainer) -> int:
    try:
        return int(trainer.cfg["TrainReader"]["batch_size"])
    except (KeyError, TypeError, ValueError):
        return 1


class VisualDLScalars(Callback):
    def __init__(self, trainer, logdir: str):
        super().__init__(trainer)
        from visualdl import LogWriter

        self.writer = LogWriter(logdir=logdir) if _is_main() else None
        self.batch_size = _batch_size(trainer)

    def on_step_end(self, status):
        if self.writer is None or status.get("mode") != "train":
            return
        step = status["epoch_id"] * status["steps_per_epoch"] + status["step_id"]
        for name, value in _latest_losses(status).items():
            self.writer.add_scalar(f"train/{name}", value, step)
        if "learning_rate" in status:
            self.writer.add_scalar("train/lr", float(status["learning_rate"]), step)
        batch_time = status.get("batch_time")
        if batch_time is not None and len(batch_time.deque):
            self.writer.add_scalar("train/ips", self.batch_size / max(1e-9, float(batch_time.deque[-1])), step)

    def on_epoch_end(self, status):
        if self.writer is None:
            return
        if status.get("mode") == "eval":
            for metric in trainer_metrics(self.model):
                for key, value in metric.get_results().items():
                    try:
                        self.writer.add_scalar(f"eval/{key}_mAP", float(value[0]), status["epoch_id"] + 1)
                    except (TypeError, IndexError, ValueError):
                        pass
        self.writer.flush()

    def on_train_end(self, status):
        if self.writer is not None:
            self.writer.close()


HISTORY_FILE = "history.jsonl"  # read by trainctl.runs (runs compare)


class LossHistory(Callback):
    """One JSON line per training step in <run_dir>/history.jsonl: {"epoch", "step", "loss"} (rank 0).

    `trainctl runs compare` reads it for the final loss and the loss curves. A resumed run
    keeps the lines of the epochs it resumes after; a run started again from scratch starts
    the file again."""

    def __init__(self, trainer, run_dir: str):
        super().__init__(trainer)
        self.path = os.path.join(run_dir, HISTORY_FILE)
        self.file = None

    def on_train_begin(self, status):
        if not _is_main():
            return
        start = int(getattr(self.model, "start_epoch", 0) or 0)
        kept = []
        if start > 0 and os.path.isfile(self.path):
            import json

            with open(self.path) as f:
                for line in f:
                    try:
                        if json.loads(line).get("epoch", 0) <= start:
                            kept.append(line)
                    except ValueError:
                        pass
        from trainctl.fsutil import atomic_write_text

        atomic_write_text(self.path, "".join(kept))  # a kill here leaves the old file or the kept lines, never half
        self.file = open(self.path, "a")

    def on_step_end(self, status):
        if self.file is None or status.get("mode") != "train":
            return
        loss = _latest_losses(status).get("loss")
        if loss is None:
            return
        step = status["epoch_id"] * status["steps_per_epoch"] + status["step_id"] + 1
        self.file.write(f'{{"epoch": {status["epoch_id"] + 1}, "step": {step}, "loss": {loss:.6g}}}\n')
        self.file.flush()

    def on_train_end(self, status):
        if self.file is not None:
            self.file.close()
            self.file = None


def resolve_progress_mode(mode: str | None, stream=None) -> str:
    """auto -> tty on an interactive terminal outside CI, else plain."""
    mode = mode or "auto"
    if mode not in PROGRESS_MODES:
        mode = "auto"
    if mode != "auto":
        return mode
    stream = stream or sys.stderr
    interactive = hasattr(stream, "isatty") and stream.isatty()
    return "tty" if interactive and not os.environ.get("CI") else "plain"


def _fmt_eta(seconds: float) -> str:
    seconds = max(0, int(seconds))
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


class ProgressLine(Callback):
    """The live line (tty mode)."""

    def __init__(self, trainer, stream=None):
        super().__init__(trainer)
        self.stream = stream or sys.stderr
        self.batch_size = _batch_size(trainer)
        self.epoch_start = time.monotonic()
        self.width = 0

    def on_epoch_begin(self, status):
        if status.get("mode") == "train":
            self.epoch_start = time.monotonic()

    def line(self, status) -> str:
        epoch, step, steps = status["epoch_id"], status["step_id"] + 1, status["steps_per_epoch"]
        epochs = int(self.model.cfg.epoch)
        elapsed = time.monotonic() - self.epoch_start
        per_step = elapsed / max(1, step)
        remaining = (steps - step) + (epochs - epoch - 1) * steps
        losses = _latest_losses(status)
        loss = losses.get("loss")
        ips = self.batch_size / per_step if per_step > 0 else 0.0
        text = f"epoch {epoch + 1}/{epochs}  iter {step}/{steps}"
        if loss is not None:
            text += f"  loss {loss:.4f}"
        return text + f"  {ips:.2f} img/s  ETA {_fmt_eta(remaining * per_step)}"

    def on_step_end(self, status):
        if status.get("mode") != "train" or not _is_main():
            return
        text = self.line(status)
        pad = max(0, self.width - len(text))
        self.width = len(text)
        self.stream.write("\r" + text + " " * pad)
        self.stream.flush()

    def on_epoch_end(self, status):
        if status.get("mode") == "train" and _is_main() and self.width:
            self.stream.write("\n")
            self.stream.flush()
            self.width = 0


def install_monitors(trainer, callbacks: list, run_dir: str, vdl: bool, progress: str | None) -> str:
    """Add the VisualDL and progress callbacks for a train job; returns the progress mode used."""
    mode = resolve_progress_mode(progress)
    callbacks.append(LossHistory(trainer, run_dir))
    if vdl:
        callbacks.append(VisualDLScalars(trainer, os.path.join(run_dir, "vdl")))
    if mode in ("tty", "quiet"):
        # ppdet's LogPrinter logs every log_iter steps at INFO through this logger
        logging.getLogger("ppdet.engine").setLevel(logging.WARNING)
    if mode == "tty":
        callbacks.append(ProgressLine(trainer))
    return mode
