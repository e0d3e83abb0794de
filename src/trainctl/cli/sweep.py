"""`trainctl sweep`: train every combination of a few config values (and repeats), as ordinary runs."""

from __future__ import annotations

import os
import sys

import click

from trainctl.cli.train import launch_options, launch_options_from, ppdet_style_overrides, task_options, train_options


@click.command("sweep", context_settings={"max_content_width": 100})
@click.option("--vary", "vary", multiple=True, required=True, metavar="KEY=V1,V2",
              help="A config key and its values, comma-separated (repeatable: every combination runs).")
@click.option("--repeats", type=click.IntRange(min=1), default=1, show_default=True,
              help="Runs per setting; repeat k uses seed S + k.")
@click.option("--parallel", type=click.IntRange(min=1), default=1, show_default=True, metavar="N",
              help="Runs side by side (CPU: N one-process runs, each with its share of the cores).")
@click.option("--gpus-per-run", type=click.IntRange(min=1), metavar="K",
              help="Share --gpus out in groups of K: one run per group, side by side.")
@train_options(output_help="Sweep directory (default output/<config name>-sweep); one run directory per run inside.",
               seed_help="Seed of each setting's first repeat (default 0); repeat k uses S + k.", resume=False)
@launch_options
@click.argument("extra_overrides", nargs=-1, metavar="")
def sweep(config, overrides, extra_overrides, vary, repeats, parallel, gpus_per_run, lr_scale, ref_gpus, **launch_kwargs) -> None:
    """Train every combination of the --vary values, each as an ordinary run.

    Every run is `trainctl train` with this command's flags, its setting's -o
    overrides and its seed, in a directory of its own under the sweep directory
    (sweep.json lists them). Run the same command again to finish a sweep: runs
    already done are skipped, interrupted ones resume from their last checkpoint.

    \b
    Examples:
      trainctl sweep -c roadsign_demo.yml --vary TrainReader.batch_size=4,8 --repeats 3 --eval
      trainctl sweep -c roadsign_demo.yml --vary LearningRate.base_lr=0.002,0.004 --vary epoch=6,12 --dry-run
      trainctl sweep -c roadsign_demo.yml --vary epoch=4,8 --parallel 2          # two CPU runs at a time
      trainctl sweep -c roadsign.yml --vary TrainReader.batch_size=8,16 --gpus 0,1,2,3 --gpus-per-run 2
      trainctl runs compare output/roadsign_demo-sweep --plot compare.png       # then compare them
    """
    from trainctl import sweep as sweepmod

    overrides = ppdet_style_overrides(overrides, extra_overrides)
    topts = task_options(config, overrides, launch_kwargs)
    lopts = launch_options_from(launch_kwargs, lr_scale=lr_scale, ref_gpus=ref_gpus)
    seed = 0 if topts.seed is None else topts.seed
    sweep_dir = topts.output or os.path.join("output", os.path.splitext(os.path.basename(config))[0] + "-sweep")
    varied = sweepmod.parse_vary(vary)
    groups = sweepmod.gpu_groups(lopts.gpus, gpus_per_run)
    runs = sweepmod.plan_runs(sweep_dir, varied, repeats, seed, groups)
    params = click.get_current_context().params
    code = sweepmod.run_sweep(config, overrides, topts, lopts, runs, sweep_dir, varied, repeats, seed,
                              parallel=max(parallel, len(groups) if groups else 1),
                              child_args=_child_args(params, topts, gpus_grouped=bool(groups)))
    if code:
        sys.exit(code)


# what a run's own `trainctl train` gets besides these flags: -c, -o, --output, --seed, --resume, --gpus (a group)
SWEEP_ONLY = {"config", "overrides", "extra_overrides", "vary", "repeats", "parallel", "gpus_per_run", "output", "seed",
              "dry_run"}


def _child_args(params: dict, topts, gpus_grouped: bool) -> list[str]:
    """This command's train and launch flags again, for the `trainctl train` of a run side by side."""
    from trainctl.cli.forward import option_words

    args: list[str] = []
    for param in sweep.params:
        if not isinstance(param, click.Option) or param.name in SWEEP_ONLY or (gpus_grouped and param.name == "gpus"):
            continue
        value = params.get(param.name)
        if value is None or value is False or value == () or value == param.default:
            continue
        args += option_words(param, value)
    return args
