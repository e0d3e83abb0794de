"""`trainctl train`: one CPU, several GPUs or many hosts, through one launch plan."""

from __future__ import annotations

import os
import sys

import click

from trainctl.cli.multihost import cluster_options  # multi-host: --hostfile/--hosts, Slurm (docs/cluster.md)
from trainctl.cli.train_extras import pop_train_extras, train_extra_options  # AMP levels, fleet, to_static, profile, slim

DRY_RUN_HELP = "Print the launch plan (--dry-run) or its JSON (--dry-run=json) and start nothing."
PPDET_HELP = ("PaddleDetection checkout whose ppdet to use (default: $TRAINCTL_PPDET, else the checkout containing "
              "the current directory, else the installed paddledet).")


def launch_options(func):
    """The device, node, network and LR flags shared by train and eval."""
    from trainctl.cli.options import network_options, placement_options

    options = [
        placement_options,
        network_options(),
        click.option("--env", "env", multiple=True, metavar="KEY=VAL", help="Set a worker environment variable (wins)."),
        click.option("--ppdet", metavar="DIR", help=PPDET_HELP),
        click.option("--dry-run", type=click.Choice(["text", "json"]), is_flag=False, flag_value="text",
                     default=None, help=DRY_RUN_HELP),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def ppdet_style_overrides(overrides, extra) -> list[str]:
    """-o values plus PaddleDetection's trailing words (`-o a=1 b=2`): every extra word must be KEY=VALUE."""
    from trainctl.errors import UserError

    for word in extra:
        if "=" not in word or word.startswith("-"):
            raise UserError(f"unexpected argument {word!r}", hint="overrides are -o KEY=VALUE; see --help")
    return list(overrides) + list(extra)


def launch_options_from(kwargs: dict, lr_scale: str = "none", ref_gpus: int | None = None):
    """launch.plan.LaunchOptions from the launch flags; a cluster engine that applies places the node."""
    from trainctl.launch.options import NETWORK_FIELDS, PLACEMENT_FIELDS
    from trainctl.launch.plan import LaunchOptions

    master_port = kwargs.pop("master_port", None)
    opts = LaunchOptions(
        **{name: kwargs[name] for name in PLACEMENT_FIELDS + NETWORK_FIELDS},
        env=tuple(kwargs["env"]), lr_scale=lr_scale, ref_gpus=ref_gpus, ppdet=kwargs.get("ppdet"),
    )
    # --- multi-host (trainctl.cluster): --launcher kubeflow / a PaddleJob pod, --launcher slurm / an srun step
    from trainctl.cli.forward import launcher_was_given
    from trainctl.cluster.options import kubeflow_may_apply, slurm_may_apply

    if kubeflow_may_apply(opts, os.environ):  # each engine is loaded only when it can matter
        from trainctl.cluster.kubeflow import apply_kubeflow

        opts = apply_kubeflow(opts, launcher_given=launcher_was_given())
    if slurm_may_apply(opts, os.environ):
        from trainctl.cluster.dispatch import apply_slurm

        opts = apply_slurm(opts, master_port=master_port, launcher_given=launcher_was_given())
    # --- end multi-host
    return opts


def _duration(text: str | None) -> float | None:
    """--hang-timeout: '90s', '30m', '2h', seconds, or 0/off."""
    if text is None:
        return None
    from trainctl.errors import UserError
    from trainctl.launch.progress import parse_duration

    try:
        return parse_duration(text)
    except ValueError:
        raise UserError(f"--hang-timeout {text!r} is not a duration", hint="use e.g. 90s, 30m, 2h, or 0 to turn it off") from None


def train_options(output_help: str = "Run directory (default output/<config name>).",
                  seed_help: str = "Seed python, numpy and paddle in every worker (rank r uses S + r); recorded in run.json.",
                  resume: bool = True):
    """The flags of a training run (config, overrides, checkpoints, LR, seed), shared by train and sweep."""
    options = [
        click.option("-c", "--config", required=True, help="Config file, or the name of a bundled config (roadsign.yml)."),
        click.option("-o", "--override", "overrides", multiple=True, metavar="KEY=VALUE",
                     help="Override a config value (repeatable; ppdet's -o a=1 b=2 works too); list items by index: a.0.b=1."),
        click.option("--eval", "eval_during_train", is_flag=True, help="Evaluate after each snapshot epoch."),
        *([click.option("-r", "--resume", metavar="CKPT|auto", help="Resume weights, optimizer and epoch from a checkpoint.")]
          if resume else []),
        click.option("--weights", metavar="W", help="Start from these weights (fine-tune; mismatched shapes skipped)."),
        click.option("--amp", is_flag=True, help="Automatic mixed precision (GPU)."),
        click.option("--output", metavar="DIR", help=output_help),
        click.option("--no-pretrained", is_flag=True, help="Ignore the config's pretrain_weights (train from scratch)."),
        click.option("--sample-data", is_flag=True, help="Write the built-in sample dataset where the config expects data, if missing."),
        click.option("--no-data-check", is_flag=True, help="Skip the dataset check before launch."),
        click.option("--vdl", is_flag=True, help="Write VisualDL scalars under the run directory."),
        click.option("--keep", "keep_checkpoints", type=click.IntRange(min=1), metavar="N",
                     help="Keep only the newest N epoch checkpoints (model_final and best_model are always kept)."),
        click.option("--lr-scale", type=click.Choice(["linear", "sqrt", "none"]), default="linear", show_default=True,
                     help="Scale base_lr and warmup steps from the config files' total batch (reference GPUs x batch_size) "
                          "to this run's (devices x batch after -o); a -o base_lr is used as given."),
        click.option("--ref-gpus", type=int, metavar="N",
                     help="GPUs the config's LR is tuned for (default: config key trainctl.ref_gpus, else 8)."),
        click.option("--seed", type=click.IntRange(min=0), metavar="S", help=seed_help),
        click.option("--max-restarts", type=click.IntRange(min=0), default=0, show_default=True, metavar="N",
                     help="When a worker or node fails or hangs, stop every worker and start the job again from the "
                          "newest complete checkpoint, up to N times (backoff 0.5 s, 1 s, 2 s, ... 60 s); see docs/reliability.md."),
        click.option("--hang-timeout", metavar="DURATION",
                     help="Stop (or restart) the job when no rank completes an iteration for this long, e.g. 90s, 30m; "
                          "every worker's stack goes into its log. Default: 30m with several workers, off for one; 0 = off."),
        click.option("--save-interval-iters", type=click.IntRange(min=1), metavar="K",
                     help="Also write a complete checkpoint every K iterations (iter<G>); a resume continues at that "
                          "iteration (data order, LR, epoch). --keep covers them."),
    ]

    def decorate(func):
        for option in reversed(options):
            func = option(func)
        return func
    return decorate


def task_options(config, overrides, kwargs: dict):
    """launch.options.TaskOptions from train's flags (popped from kwargs; what is left are the launch flags)."""
    from trainctl.launch.options import TASK_FLAGS, TaskOptions

    values = {name: kwargs.pop(name) for name in TASK_FLAGS if name in kwargs}
    if "hang_timeout" in values:
        values["hang_timeout"] = _duration(values["hang_timeout"])
    return TaskOptions(config=config, overrides=list(overrides), dry_run=kwargs.pop("dry_run"), **values)


@click.command("train", context_settings={"max_content_width": 100})
@train_options()
@train_extra_options
@launch_options
@cluster_options
@click.argument("extra_overrides", nargs=-1, metavar="")
def train(config, overrides, extra_overrides, lr_scale, ref_gpus, **launch_kwargs) -> None:
    """Train a model: one process, several devices, or several nodes.

    \b
    Examples:
      trainctl train -c roadsign_cpu_smoke.yml --sample-data          # CPU, one process
      trainctl train -c roadsign.yml --gpus 0,1                        # 2 GPUs, LR scaled 2/8
      trainctl train -c roadsign.yml --gpus 0,1 --dry-run             # print the plan only
      trainctl train -c roadsign_cpu_smoke.yml --nproc 2               # 2 CPU processes (gloo)
      trainctl train -c roadsign.yml --gpus 0,1 --max-restarts 3 --save-interval-iters 500
    \b
    Several nodes (the same command on each, with its own --node-rank):
      trainctl train -c roadsign.yml --gpus 0,1,2,3 --nnodes 2 --node-rank 0 \\
          --master 10.0.0.1:8090 --net rdma
    \b
    Network presets: --net auto|nccl|tcp|rdma|gpudirect|gloo|FILE.yml; see docs/distributed.md.
    \b
    Every host from one shell (ssh), or under Slurm (docs/cluster.md):
      trainctl train -c roadsign.yml --hostfile hosts.txt --net tcp      # hosts.txt: node1 slots=4 ...
      trainctl train -c roadsign.yml --hosts node1,node2 --gpus 0,1 --dry-run
      srun --ntasks-per-node=1 trainctl train -c roadsign.yml            # inside an allocation
      trainctl train -c roadsign.yml --launcher kubeflow                 # in a PaddleJob pod (docs/kubernetes.md)
    """
    overrides = ppdet_style_overrides(overrides, extra_overrides)
    click.get_current_context().params["overrides"] = tuple(overrides)  # so a fan-out forwards them too
    # --- multi-host (trainctl.cluster.dispatch): ssh fan-out from --hostfile/--hosts
    from trainctl.cluster.options import pop_cluster_options

    copts = pop_cluster_options(launch_kwargs)
    if copts.fanout:
        from trainctl.cluster import dispatch  # ssh, hostfile, preflight: only for a fan-out

        from trainctl.cli.forward import given_flags

        dispatch.run_from_cli(given_flags(click.get_current_context()), copts, "train")
        return
    launch_kwargs["master_port"] = copts.master_port  # used by --launcher slurm
    # --- end multi-host
    from trainctl.launch import flow

    extras = pop_train_extras(launch_kwargs)
    topts = task_options(config, overrides, launch_kwargs)
    topts.extras = extras
    lopts = launch_options_from(launch_kwargs, lr_scale=lr_scale, ref_gpus=ref_gpus)
    code = flow.run("train", topts, lopts, argv=["trainctl"] + sys.argv[1:])
    if code:
        sys.exit(code)  # SystemExit: trainctl.cli.main ignores click's return value in non-standalone mode
