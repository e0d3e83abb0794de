"""`trainctl config show | layers | validate`: look at a layered config before training."""

from __future__ import annotations

import sys

import click

from trainctl import output
from trainctl.errors import UserError

_CONFIG_HELP = "Config file, or the name of a bundled config (roadsign.yml, roadsign_cpu_smoke)."
_OVERRIDE_HELP = "Override a key: -o TrainReader.batch_size=4 (repeatable; list items by index)."


def _overrides(opts: tuple[str, ...], extra: tuple[str, ...]) -> list[str]:
    """-o values plus ppdet-style trailing `k=v` words (`-o a=1 b=2`)."""
    for word in extra:
        if "=" not in word:
            raise UserError(f"unexpected argument {word!r}", hint="overrides are key=value, e.g. -o epoch=1")
    return list(opts) + list(extra)


@click.group("config")
def config() -> None:
    """Show, trace and validate layered PaddleDetection configs (no paddle needed).

    \b
    Examples:
      trainctl config show -c roadsign.yml --provenance
      trainctl config show -c roadsign.yml -o TrainReader.batch_size=4 LearningRate.base_lr=0.0005
      trainctl config layers -c roadsign.yml
      trainctl config validate -c my_config.yml
    """


@config.command("show")
@click.option("-c", "--config", "config_path", required=True, help=_CONFIG_HELP)
@click.option("-o", "--override", "overrides", multiple=True, help=_OVERRIDE_HELP)
@click.option("--provenance", is_flag=True, help="Add '# <file or -o>' after each line: who set the value.")
@click.argument("extra", nargs=-1)
def show(config_path: str, overrides: tuple[str, ...], provenance: bool, extra: tuple[str, ...]) -> None:
    """Print the resolved config as YAML (tags such as !PiecewiseDecay kept).

    The output is a flat config that PaddleDetection's load_config reads as is.

    \b
    Examples:
      trainctl config show -c roadsign.yml
      trainctl config show -c roadsign.yml --provenance
      trainctl config show -c roadsign.yml -o TrainReader.sample_transforms.1.Mixup.alpha=2.0
    """
    from trainctl.config.report import show_text

    output.echo(show_text(config_path, _overrides(overrides, extra), provenance=provenance).rstrip("\n"))


@config.command("layers")
@click.option("-c", "--config", "config_path", required=True, help=_CONFIG_HELP)
def layers(config_path: str) -> None:
    """Print the _BASE_ tree of a config and the order the files are merged in.

    \b
    Example:
      trainctl config layers -c roadsign.yml
    """
    from trainctl.config.report import layers_text

    output.echo(layers_text(config_path))


@config.command("validate")
@click.option("-c", "--config", "config_path", required=True, help=_CONFIG_HELP)
@click.option("-o", "--override", "overrides", multiple=True, help=_OVERRIDE_HELP)
@click.argument("extra", nargs=-1)
def validate(config_path: str, overrides: tuple[str, ...], extra: tuple[str, ...]) -> None:
    """Check keys and value types against what PaddleDetection registers.

    Unknown keys get a did-you-mean (from ppdet's components and transforms and the
    keys PaddleDetection's own configs use); values of a clearly wrong type are reported.
    Exit code 0 when clean, 1 when problems are found, 2 when the config cannot be read.

    \b
    Examples:
      trainctl config validate -c roadsign.yml
      trainctl config validate -c my.yml -o TrainReader.batch_size=4
    """
    from trainctl.config.report import validate_config

    rc, problems = validate_config(config_path, _overrides(overrides, extra))
    if not problems:
        output.echo(f"{rc.path}: OK (no unknown keys or wrong types)")
        return
    for problem in problems:
        source = rc.source_of(problem.path) if problem.path != "(schema)" else None
        where = f"  [{source}]" if source else ""
        output.echo(f"{problem}{where}")
    output.error(f"{len(problems)} problem{'s' if len(problems) != 1 else ''} in {rc.path}")
    sys.exit(1)  # not ctx.exit: the root main() runs click with standalone_mode=False and drops its code
