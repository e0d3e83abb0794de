"""options -> words -> options is the identity for every option of `trainctl train`.

`trainctl.cli.forward.option_words` is the one function that turns an option's value back
into command-line words (the ssh fan-out, `trainctl smoke`'s stages and `trainctl sweep`'s
runs forward the user's flags with it); parsing those words must give the value back.
"""

from __future__ import annotations

import click
import pytest

from trainctl.cli.forward import given_flags, option_words
from trainctl.cli.train import train

OPTIONS = [p for p in train.params if isinstance(p, click.Option)]


def sample(param: click.Option):
    """A value for the option that is not its default and that its type accepts."""
    if param.is_flag and param.is_bool_flag:
        return not param.default
    if isinstance(param.type, click.Choice):
        return next(c for c in reversed(param.type.choices) if c != param.default)
    if isinstance(param.type, (click.types.IntParamType, click.IntRange)):
        value = 3
    elif isinstance(param.type, (click.types.FloatParamType, click.FloatRange)):
        value = 1024.5
    else:
        value = "a value=with spaces;and,commas"
        if param.name in ("overrides", "env"):
            value = "KEY.sub=1"
    if param.multiple:
        return (value, value if isinstance(value, int) else value + "2")
    return value


def parse(words: list[str]) -> dict:
    ctx = train.make_context("train", list(words), resilient_parsing=False)
    return ctx.params


def test_every_train_option_has_a_sample():
    assert len(OPTIONS) > 30  # the whole train surface: run, launch, network, cluster options
    assert {"config", "overrides", "gpus", "net", "hostfile", "dry_run", "max_restarts"} <= {p.name for p in OPTIONS}


@pytest.mark.parametrize("param", OPTIONS, ids=lambda p: p.name)
def test_one_option_round_trips(param):
    value = sample(param)
    words = option_words(param, value)
    base = [] if param.name == "config" else ["-c", "roadsign.yml"]
    assert parse(base + words)[param.name] == value


def test_all_options_together_round_trip():
    values = {p.name: sample(p) for p in OPTIONS}
    words = [w for p in OPTIONS for w in option_words(p, values[p.name])]
    assert parse(words) == {**values, "extra_overrides": ()}


def test_given_flags_forwards_exactly_what_was_given():
    words = ["-c", "roadsign.yml", "--gpus", "0,1", "--net", "tcp", "-o", "a=1", "--nccl-debug"]
    ctx = train.make_context("train", list(words))
    flags = given_flags(ctx)
    assert flags.given == {"config", "gpus", "net", "overrides", "nccl_debug"}
    forwarded = [w for _, ws in flags.words for w in ws]
    assert parse(forwarded) == ctx.params
