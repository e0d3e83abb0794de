"""ppdet Trainer callbacks: atomic checkpoints into the run dir, and metric records.

`install_callbacks` replaces ppdet's Checkpointer (which writes straight onto
final names under save_dir/<config file name>/) with AtomicCheckpointer.
"""

from __future__ import annotations

import paddle.distributed as dist
from ppdet.engine.callbacks import Callback, Checkpointer

from trainctl.runner.checkpoint import record_eval, save_checkpoint


def _metric_results(trainer) -> dict:
    """{"bbox": 0.61, ...} from the trainer's metrics (first value of each result)."""
    results: dict = {}
    for metric in trainer._metrics:
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
    """Save as ppdet's Checkpointer does (N, model_final, best_model), but atomically into run_dir."""

    def __init__(self, trainer, run_dir: str, keep: int | None = None):
        super().__init__(trainer)
        self.run_dir = run_dir
        self.keep = keep
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


def install_callbacks(trainer, job) -> None:
    callbacks = trainer._compose_callback._callbacks
    replaced = [AtomicCheckpointer(trainer, job.run_dir, job.keep_checkpoints) if isinstance(c, Checkpointer) else c for c in callbacks]
    from trainctl.runner.monitor import install_monitors

    install_monitors(trainer, replaced, job.run_dir, job.vdl, getattr(job, "progress", "auto"))
    callbacks[:] = replaced
    trainer._callbacks = replaced
