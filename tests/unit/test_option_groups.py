"""One dataclass per concern, one click decorator group each: the group's options are exactly the
dataclass's fields, and every command that takes a group takes all of it (no paddle)."""

from __future__ import annotations

import click
import pytest

from trainctl.cli.k8s import k8s_manifest
from trainctl.cli.multihost import cluster_options
from trainctl.cli.options import network_options, placement_options
from trainctl.cli.smoke import smoke
from trainctl.cli.sweep import sweep
from trainctl.cli.train import train, train_options
from trainctl.cluster.options import CLUSTER_PARAMS, ClusterOptions
from trainctl.launch.options import NETWORK_FIELDS, PLACEMENT_FIELDS, TASK_FLAGS, NetworkOptions, PlacementOptions


def names_of(decorator) -> set[str]:
    """The parameter names a decorator group adds to a command."""
    command = click.command("x")(decorator(lambda **kw: None))
    return {p.name for p in command.params}


def option_names(command: click.Command) -> set[str]:
    return {p.name for p in command.params if isinstance(p, click.Option)}


def test_each_group_is_its_dataclass():
    assert names_of(placement_options) == set(PLACEMENT_FIELDS)
    assert names_of(network_options()) == set(NETWORK_FIELDS)
    assert names_of(cluster_options) == set(CLUSTER_PARAMS)
    # train's lifecycle group: TaskOptions' flags, plus -c and -o and the LR flags the plan takes
    assert names_of(train_options()) == set(TASK_FLAGS) | {"config", "overrides", "lr_scale", "ref_gpus"}
    # the defaults are the dataclasses' defaults
    for decorator, cls in ((placement_options, PlacementOptions), (network_options(), NetworkOptions),
                           (cluster_options, ClusterOptions)):
        command = click.command("x")(decorator(lambda **kw: None))
        given = command.make_context("x", []).params
        defaults = cls()
        for name, value in given.items():
            assert value == getattr(defaults, name) or (value == () and getattr(defaults, name) in ((), None)), name


@pytest.mark.parametrize("command, groups", [
    (train, ("placement", "network", "cluster", "task")),
    (smoke, ("placement", "network", "cluster")),
    (sweep, ("placement", "network", "task")),
    (k8s_manifest, ("network",)),
], ids=lambda x: getattr(x, "name", None) or "+".join(x))
def test_commands_take_whole_groups(command, groups):
    group_names = {"placement": set(PLACEMENT_FIELDS), "network": set(NETWORK_FIELDS), "cluster": set(CLUSTER_PARAMS),
                   "task": set(TASK_FLAGS) - ({"resume"} if command is sweep else set())}
    have = option_names(command)
    for group in groups:
        assert group_names[group] <= have, (command.name, group, group_names[group] - have)
