"""`trainctl train`'s flags for the rest of PaddleDetection's tools/train.py (issue 23).

One click decorator group, `train_extra_options`, and `pop_train_extras`, which turns its
values into a launch.train_extras.TrainExtras. The table "tools/train.py flag -> trainctl"
is in docs/training.md.
"""

from __future__ import annotations

import click

NAMES = ("amp_level", "amp_dtype", "master_grad", "init_loss_scaling", "to_static", "fleet", "profile",
         "profiler_options", "slim_config")


def train_extra_options(func):
    """Mixed precision, dynamic-to-static, fleet, profiler and PaddleSlim flags of `trainctl train`."""
    options = [
        click.option("--amp-level", type=click.Choice(["O1", "O2"]),
                     help="Mixed precision level (GPU; implies --amp): O1 casts white-listed ops, O2 the whole model."),
        click.option("--amp-dtype", type=click.Choice(["float16", "bfloat16"]),
                     help="Mixed precision type (GPU; implies --amp; default float16, bfloat16 needs a GPU that has it)."),
        click.option("--master-grad", is_flag=True, help="With --amp-level O2: keep float32 gradients (paddle.amp.decorate)."),
        click.option("--init-loss-scaling", type=float, metavar="S",
                     help="Initial loss scale of the float16 GradScaler (GPU; implies --amp; ppdet's default 1024)."),
        click.option("--to-static", is_flag=True, help="Train the model converted by paddle.jit.to_static (ppdet's to_static)."),
        click.option("--fleet", is_flag=True,
                     help="Use fleet's distributed model and optimizer (fleet.init) instead of DataParallel."),
        click.option("--profile", is_flag=True,
                     help="Run paddle's profiler over a few iterations (default 2..4); result in RUN_DIR/profile/."),
        click.option("--profiler-options", metavar="'K=V;...'",
                     help="ppdet's profiler string, e.g. 'batch_range=[2,5];timer_only=False' (implies --profile)."),
        click.option("--slim-config", metavar="FILE",
                     help="PaddleSlim config (QAT, PACT, pruning, distillation, OFA: PaddleDetection's configs/slim/); "
                          "needs PaddleSlim (docs/training.md)."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def pop_train_extras(kwargs: dict):
    """TrainExtras from the group's values (removed from kwargs)."""
    from trainctl.launch.train_extras import TrainExtras

    return TrainExtras(**{name: kwargs.pop(name) for name in NAMES if name in kwargs})
