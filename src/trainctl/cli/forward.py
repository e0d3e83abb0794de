"""Options back as command-line words: the one place that writes a `trainctl train` command line.

`option_words` turns one option's value into words; `given_flags` a command's given options
(the ssh fan-out, `trainctl smoke`'s stages); `train_words` a set of `trainctl train` option
values (the pods of `trainctl k8s-manifest`); `train_args_words` the train arguments a user
passes through (`k8s-manifest ... -- ARGS`, `slurm-script ... ARGS`), parsed by train's own
parser first.
"""

from __future__ import annotations

from typing import Any, Mapping

import click
from click.core import ParameterSource

from trainctl.core.cmdline import GivenFlags


def was_given(ctx: click.Context, name: str) -> bool:
    """True when the user set the parameter (on the command line or from its environment variable)."""
    return ctx.get_parameter_source(name) in (ParameterSource.COMMANDLINE, ParameterSource.ENVIRONMENT)


def launcher_was_given() -> bool:
    """True when the running click command got --launcher on its command line (or from its environment)."""
    ctx = click.get_current_context(silent=True)
    if ctx is None or "launcher" not in ctx.params:
        return False
    return was_given(ctx, "launcher")


def option_words(param: click.Option, value) -> list[str]:
    """The words that give `param` the value `value` on a command line."""
    name = next((o for o in param.opts if o.startswith("--")), param.opts[0])
    if param.is_flag and param.is_bool_flag:
        if value:
            return [name]
        return [param.secondary_opts[0]] if param.secondary_opts else []
    if param.count:
        return [name] * int(value or 0)
    if param.multiple:
        words = []
        for item in value or ():
            words += [name, str(item)]
        return words
    if value is None:
        return []
    return [name, str(value)]


def train_flags(*names: str) -> tuple[str, ...]:
    """Every spelling of these `trainctl train` options (for commands that set them themselves)."""
    from trainctl.cli.train import train

    params = {p.name: p for p in train.params}
    return tuple(flag for name in names for flag in (*params[name].opts, *params[name].secondary_opts))


def refuse_flags(args: list[str], names: tuple[str, ...], why: str, hint: str) -> None:
    """UserError when `args` (words for `trainctl train`) give one of these options."""
    from trainctl.errors import UserError

    for flag in train_flags(*names):
        if any(a == flag or a.startswith(flag + "=") for a in args):
            raise UserError(f"{flag} {why}", hint=hint.format(flag=flag))


def given_flags(ctx: click.Context) -> GivenFlags:
    """The command's parameters, which options the user gave, and those options as words."""
    words = []
    given = set()
    for param in ctx.command.params:
        if not isinstance(param, click.Option):
            continue
        if was_given(ctx, param.name):
            given.add(param.name)
        # repeatable options may have been filled by the command itself (ppdet-style `-o a=1 b=2`)
        elif not (param.multiple and ctx.params.get(param.name)):
            continue
        words.append((param.name, tuple(option_words(param, ctx.params[param.name]))))
    return GivenFlags(params=dict(ctx.params), words=tuple(words), given=frozenset(given))


def _train_options() -> dict[str, click.Option]:
    from trainctl.cli.train import train

    return {p.name: p for p in train.params if isinstance(p, click.Option)}


def train_words(values: Mapping[str, Any]) -> list[str]:
    """`trainctl train` words for these option values (by parameter name), in the order given; an
    option at its default gives no words."""
    params = _train_options()
    words: list[str] = []
    for name, value in values.items():
        param = params[name]
        if value != param.default:
            words += option_words(param, value)
    return words


def train_args_words(config: str, args: list[str]) -> list[str]:
    """Arguments for `trainctl train -c CONFIG` as a user passes them through, parsed by train's
    own parser (a typo or a bad value is a UsageError here, exit 2, not on the cluster) and written
    again by `option_words`: the options given, in train's order, without -c (the caller's)."""
    from trainctl.cli.train import ppdet_style_overrides, train

    ctx = train.make_context("train", ["-c", config, *args])
    ctx.params["overrides"] = tuple(ppdet_style_overrides(ctx.params["overrides"], ctx.params["extra_overrides"]))
    return [w for name, words in given_flags(ctx).words if name != "config" for w in words]
