"""ppdet Trainer callbacks: atomic checkpoints into the run dir, and metric records.

`install_callbacks` replaces ppdet's Checkpointer (which writes straight onto
final names under save_dir/<config file name>/) with AtomicCheckpointer.
"""

from __future__ import annotations

import paddle.distributed as dist
from ppdet.engine.callbacks import Callback, Checkpointer

from trainctl.runner.checkpoint import ITER_PREFIX, record_eval, save_checkpoint
from trainctl.runner.compat import replace_callbacks, trainer_callbacks, trainer_metrics


def _metric_results(trainer) -> dict:
    """{"bbox": 0.61, ...} from the trainer's metrics (first value of each result)."""
    results: dict = {}
    for metric in trainer_metrics(trainer):
        for key, value in metric.get_results().items():
            try:
                results[key] = float(value[0])
            except (TypeError, IndexError, ValueError):
                results[key] = value
    return results


def _is_main() -> bool:
    return dist.get_world_size() < 2 or dist.get_rank() == 0


class MetricRecorder(Callback):
    """Keep the metric of each evaluation (ppdet resets its metrics right after on_epoch_end)."""

    def __init__(self, trainer):
        super().__init__(trainer)
        self.results: list[dict] = []
        self.samples = 0

    def on_epoch_end(self, status):
        if status.get("mode") == "eval":
            self.results.append(_metric_results(self.model))
            self.samples = int(status.get("sample_num", 0))


class AtomicCheckpointer(Callback):
    """Save as ppdet's Checkpointer does (N, model_final, best_model), but atomically into run_dir;
    with every_iters K also `iter<G>` every K global iterations (a mid-epoch checkpoint)."""

    def __init__(self, trainer, run_dir: str, keep: int | None = None, every_iters: int | None = None,
                 resumed_at: int | None = None, heartbeat=None):
        super().__init__(trainer)
        self.run_dir = run_dir
        self.keep = keep
        self.every_iters = every_iters
        self.resumed_at = resumed_at  # the global iteration this run resumed at: already saved
        self.heartbeat = heartbeat
        self.best = None
        self.weight = trainer.model.student_model if hasattr(trainer.model, "student_model") else trainer.model

    def _save(self, status, name: str, epoch: int) -> None:
        trainer = self.model
        current = self.weight.state_dict()
        if trainer.use_ema and "weight" in status:
            # during a snapshot the model holds the EMA weights and status["weight"] the raw ones
            save_checkpoint(self.run_dir, name, status["weight"], trainer.optimizer, epoch, ema_params=current, keep=self.keep)
        else:
            save_checkpoint(self.run_dir, name, current, trainer.optimizer, epoch, keep=self.keep)

    def on_step_begin(self, status):
        """A mid-epoch checkpoint once step_id (iterations done in this epoch) reaches a multiple of K.

        Taken before the next step runs, so the weights, optimizer, LR step count and
        EMA all hold exactly `done` iterations."""
        if not self.every_iters or status.get("mode") != "train" or not _is_main():
            return
        from trainctl.runner.progress import global_iteration

        done, step = global_iteration(status), int(status["step_id"])
        if step == 0 or done % self.every_iters or done == self.resumed_at:
            return
        if self.heartbeat is not None:
            self.heartbeat.beat(status, "save")
        trainer = self.model
        params = self.weight.state_dict()
        # ModelEMA keeps its running average in the dict `state_dict`; ema.resume puts it back as is
        ema = dict(trainer.ema.state_dict) if trainer.use_ema else None
        save_checkpoint(self.run_dir, f"{ITER_PREFIX}{done}", params, trainer.optimizer, int(status["epoch_id"]),
                        ema_params=ema, keep=self.keep, iteration=step, global_iter=done)
        if self.heartbeat is not None:
            self.heartbeat.beat(status, "train")

    def on_epoch_end(self, status):
        if not _is_main():
            return
        trainer = self.model
        epoch_id = status["epoch_id"]
        end_epoch = trainer.cfg.epoch
        if status["mode"] == "train":
            if (epoch_id + 1) % trainer.cfg.snapshot_epoch == 0 or epoch_id == end_epoch - 1:
                name = "model_final" if epoch_id == end_epoch - 1 else str(epoch_id)
                self._save(status, name, epoch_id + 1)
        elif status["mode"] == "eval" and status.get("save_best_model"):
            results = _metric_results(trainer)
            key = next((k for k in ("bbox", "keypoint", "mask") if k in results), None)
            best_name = None
            if key is not None and isinstance(results[key], float) and (self.best is None or results[key] >= self.best):
                self.best = results[key]
                self._save(status, "best_model", epoch_id + 1)
                best_name = "best_model"
            record_eval(self.run_dir, epoch_id + 1, results, best_name)


def install_callbacks(trainer, job, rank: int = 0, resume_entry: dict | None = None) -> None:
    """ppdet's callbacks with AtomicCheckpointer for its Checkpointer; DataOrder first (it shifts
    step_id for the others on a mid-epoch resume), the Heartbeat last."""
    from trainctl.runner.monitor import install_monitors
    from trainctl.runner.data_order import DataOrder
    from trainctl.runner.progress import Heartbeat

    callbacks = trainer_callbacks(trainer)
    heartbeat = Heartbeat(trainer, job.run_dir, rank)
    skip = int(resume_entry.get("iter", 0)) if resume_entry else 0
    order = DataOrder(trainer, job.seed, rank, skip_epoch=int(resume_entry["epoch"]) if skip else None, skip=skip)
    resumed_at = resume_entry.get("global_iter") if resume_entry else None
    replaced = [order] + [AtomicCheckpointer(trainer, job.run_dir, job.keep_checkpoints, job.save_interval_iters,
                                             resumed_at, heartbeat)
                          if isinstance(c, Checkpointer) else c for c in callbacks]
    install_monitors(trainer, replaced, job.run_dir, job.vdl, getattr(job, "progress", "auto"))
    replaced.append(heartbeat)
    replace_callbacks(trainer, replaced)
