"""options -> words -> options is the identity for every option of `trainctl train`, and for
the train options that `smoke`, `sweep`, `k8s-manifest` and `slurm-script` pass on to it.

`trainctl.cli.forward.option_words` is the one function that turns an option's value back
into command-line words (the ssh fan-out, `trainctl smoke`'s stages, `trainctl sweep`'s runs,
the pods of `k8s-manifest` and the script of `slurm-script` forward the user's flags with it);
parsing those words with `train` must give the value back.
"""

from __future__ import annotations

import shlex
from types import SimpleNamespace

import click
import pytest
import yaml

from trainctl.cli import main
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



def _options(command: click.Command) -> dict[str, click.Option]:
    return {p.name: p for p in command.params if isinstance(p, click.Option)}


def _train_sample(names) -> dict:
    params = _options(train)
    return {name: sample(params[name]) for name in names}


def test_smoke_forwards_train_options_to_its_stages():
    """smoke's launch options, given, reach its `trainctl train` stage as the same values."""
    from trainctl.cli.smoke import OWN, forwarded_flags, smoke
    from trainctl.cluster.options import CLUSTER_PARAMS

    forwarded = [p for p in _options(smoke).values() if p.name not in OWN and p.name not in CLUSTER_PARAMS]
    assert {"gpus", "net", "nccl_debug", "env", "ppdet", "launcher"} <= {p.name for p in forwarded}
    values = {p.name: sample(p) for p in forwarded}
    words = [w for p in forwarded for w in option_words(p, values[p.name])]
    ctx = smoke.make_context("smoke", ["-c", "roadsign.yml", *words])
    assert {name: ctx.params[name] for name in values} == values  # smoke reads its own words back
    placed = SimpleNamespace(**{name: ctx.params[name] for name in ("nnodes", "master", "gpus")})
    flags = forwarded_flags(given_flags(ctx), placed)
    got = parse(["-c", "roadsign.yml", *flags.placement])
    assert {name: got[name] for name in values} == values


def test_sweep_forwards_train_options_to_its_runs():
    """sweep's train and launch options reach each run's `trainctl train` as the same values."""
    from trainctl.cli.sweep import SWEEP_ONLY, _child_args, sweep

    forwarded = [p for p in _options(sweep).values() if p.name not in SWEEP_ONLY]
    assert {"eval_during_train", "lr_scale", "gpus", "net", "max_restarts"} <= {p.name for p in forwarded}
    values = {p.name: sample(p) for p in forwarded}
    words = [w for p in forwarded for w in option_words(p, values[p.name])]
    ctx = sweep.make_context("sweep", ["-c", "roadsign.yml", "--vary", "epoch=1,2", *words])
    assert {name: ctx.params[name] for name in values} == values
    got = parse(["-c", "roadsign.yml", *_child_args(ctx.params, None, gpus_grouped=False)])
    assert {name: got[name] for name in values} == values


def _pod_train_params(capsys, *argv) -> dict:
    with pytest.raises(SystemExit) as info:
        main(["k8s-manifest", *argv])
    out, err = capsys.readouterr()
    assert info.value.code == 0, err
    job = yaml.safe_load(out)
    (container,) = job["spec"]["paddleReplicaSpecs"]["Worker"]["template"]["spec"]["containers"]
    assert container["command"] == ["trainctl"] and container["args"][0] == "train"
    return parse(container["args"][1:])


def test_k8s_manifest_network_options_reach_the_pods(capsys, monkeypatch, tmp_path):
    """k8s-manifest's network options (the one network group) are the pods' train options."""
    from trainctl.cli.k8s import k8s_manifest
    from trainctl.launch.options import NETWORK_FIELDS

    monkeypatch.chdir(tmp_path)
    params = _options(k8s_manifest)
    assert all(params[name].opts == _options(train)[name].opts for name in NETWORK_FIELDS)
    values = {"net": "gpudirect", "ifname": "ib0", "hca": "mlx5_0:1,mlx5_1:1", "gid_index": 3, "gdr_level": "SYS",
              "nccl_debug": True}
    assert set(values) == set(NETWORK_FIELDS)
    words = [w for name in NETWORK_FIELDS for w in option_words(params[name], values[name])]
    got = _pod_train_params(capsys, "-c", "roadsign.yml", "--nodes", "2", "--gpus-per-node", "8", "--image", "img",
                            "--output-pvc", "o:/o", "--rdma-resource", "rdma/hca", *words,
                            "-o", "epoch=3", "--env", "A=1")
    assert {name: got[name] for name in NETWORK_FIELDS} == values
    assert (got["config"], got["launcher"], got["resume"], got["gpus"], got["output"]) == (
        "roadsign.yml", "kubeflow", "auto", "0,1,2,3,4,5,6,7", "/o/trainctl-roadsign")
    assert (got["overrides"], got["env"]) == (("epoch=3",), ("A=1",))


def test_k8s_manifest_passes_every_other_train_option_through(capsys, monkeypatch, tmp_path):
    """Every train option the manifest does not set itself, after `--`, reaches the pods unchanged."""
    from trainctl.cli.k8s import SET_BY_MANIFEST

    monkeypatch.chdir(tmp_path)
    names = [p.name for p in OPTIONS if p.name not in SET_BY_MANIFEST]
    values = _train_sample(names)
    words = [w for name in names for w in option_words(_options(train)[name], values[name])]
    got = _pod_train_params(capsys, "-c", "roadsign.yml", "--nodes", "2", "--gpus-per-node", "1", "--image", "img",
                            "--", *words)
    assert {name: got[name] for name in names} == values


def test_slurm_script_passes_every_other_train_option_through(capsys, tmp_path, monkeypatch):
    """Every train option Slurm does not set, after the script's options, reaches its `trainctl train` unchanged."""
    from trainctl.cluster.options import NODE_PARAMS

    monkeypatch.chdir(tmp_path)
    refused = set(NODE_PARAMS) | {"hostfile", "hosts", "launcher", "config"}
    names = [p.name for p in OPTIONS if p.name not in refused]
    values = _train_sample(names)
    words = [w for name in names for w in option_words(_options(train)[name], values[name])]
    with pytest.raises(SystemExit) as info:
        main(["slurm-script", "--nodes", "2", "--gpus-per-node", "1", "-c", "roadsign.yml", "--", *words])
    out, err = capsys.readouterr()
    assert info.value.code == 0, err
    command = shlex.split(out.splitlines()[-1])
    got = parse(command[command.index("train") + 1:])
    assert {name: got[name] for name in names} == values
    assert (got["config"], got["launcher"]) == ("roadsign.yml", "slurm")
