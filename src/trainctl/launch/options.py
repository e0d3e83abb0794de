"""The option objects shared by every command that places workers or sets up their network.

One dataclass per concern, each declared once:

- `PlacementOptions`: devices and nodes (`--device --gpus --nproc --launcher --nnodes
  --node-rank --master --host --ips`);
- `NetworkOptions`: the network preset and its knobs (`--net --ifname --hca --gid-index
  --gdr-level --nccl-debug`);
- `TaskOptions`: the run's lifecycle (`-c -o --eval --resume --weights --amp --output
  --no-pretrained --sample-data --no-data-check --vdl --keep --seed --max-restarts
  --hang-timeout --save-interval-iters --dry-run`; `trainctl.cli.train.train_options`), which
  `launch.flow` runs.

`launch.plan.LaunchOptions` is both (plus the run's environment and LR flags);
`cluster.k8s_manifest.ManifestSpec` has the network part. Their click options are
declared once too (`trainctl.cli.options`), and `trainctl.cli.forward.option_words`
turns any of them back into command-line words.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class NetworkOptions:
    net: str = "auto"
    ifname: str | None = None
    hca: str | None = None
    gid_index: int | None = None
    gdr_level: str = "PHB"
    nccl_debug: bool = False


@dataclass
class PlacementOptions:
    device: str = "auto"
    gpus: str | None = None
    nproc: int | None = None
    launcher: str = "paddle"
    nnodes: int = 1
    node_rank: int = 0
    master: str | None = None
    host: str | None = None
    ips: str | None = None


@dataclass
class TaskOptions:
    config: str
    overrides: list[str] = field(default_factory=list)
    eval_during_train: bool = False
    resume: str | None = None
    weights: str | None = None
    amp: bool = False
    output: str | None = None
    no_pretrained: bool = False
    sample_data: bool = False
    no_data_check: bool = False
    vdl: bool = False
    keep_checkpoints: int | None = None  # train --keep N
    seed: int | None = None  # train --seed S: rank r seeds python, numpy and paddle with S + r
    max_restarts: int = 0  # train --max-restarts N: restart the whole job from the newest checkpoint
    hang_timeout: float | None = None  # seconds; None: the default (progress.DEFAULT_HANG_TIMEOUT if world size > 1)
    save_interval_iters: int | None = None  # train --save-interval-iters K
    dry_run: str | None = None  # None, "text" or "json"
    classwise: bool = False  # eval --classwise: per-class AP and PR curves
    extras: object = None  # train: launch.train_extras.TrainExtras (AMP levels, fleet, to_static, profile, slim)


NETWORK_FIELDS = tuple(NetworkOptions.__dataclass_fields__)
PLACEMENT_FIELDS = tuple(PlacementOptions.__dataclass_fields__)
# the lifecycle flags that `train` (and `sweep`) fill TaskOptions from; the rest are set by the command itself
TASK_FLAGS = tuple(name for name in TaskOptions.__dataclass_fields__
                   if name not in ("config", "overrides", "dry_run", "classwise", "extras"))
