"""The job file: what the launcher hands to each worker process.

The launcher writes `<run_dir>/job.json` and starts every worker as
`python -m trainctl.runner.worker --job <run_dir>/job.json`. This module is
pure (no paddle) so the launcher and the worker share one definition.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from trainctl.fsutil import atomic_write_text

JOB_FILE = "job.json"
CONFIG_FILE = "config.yml"


@dataclass
class Job:
    task: str  # "train" or "eval"
    config: str  # path of the resolved, flat config (no _BASE_), loadable by ppdet's load_config
    run_dir: str  # where checkpoints, logs and records go
    device: str = "cpu"  # "cpu" or "gpu"
    eval_during_train: bool = False  # train --eval
    resume: str | None = None  # checkpoint path without suffix (weights + optimizer + epoch)
    weights: str | None = None  # weights only (fine-tune for train; the weights to evaluate for eval)
    amp: bool = False
    vdl: bool = False
    keep_checkpoints: int | None = None  # keep the newest N epoch checkpoints
    seed: int | None = None  # rank r seeds with seed + r; each epoch's data order from (seed, rank, epoch)
    save_interval_iters: int | None = None  # a mid-epoch checkpoint every K global iterations
    attempt: int = 0  # restart attempt (train --max-restarts): 0 first
    ppdet: dict | None = None  # core.ppdet_source.PpdetSource.to_dict(): the ppdet to import
    progress: str = "auto"  # auto (live line on a terminal, else log lines), tty, plain, quiet
    extra: dict = field(default_factory=dict)

    def save(self, path: str | os.PathLike) -> None:
        atomic_write_text(path, json.dumps(asdict(self), indent=2, sort_keys=True) + "\n")

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Job":
        return cls(**json.loads(Path(path).read_text()))
