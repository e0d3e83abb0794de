"""`trainctl smoke`: lite train, eval, export and inference benchmark on the placement a run will use,
with a collective bandwidth probe (`--comm`, or `--comm-only` for the probe alone)."""

from __future__ import annotations

import click

from trainctl.cli.forward import given_flags
from trainctl.cli.multihost import cluster_options
from trainctl.cluster.options import NODE_PARAMS, PLACERS  # NODE_PARAMS: eval runs on node 0 alone
from trainctl.cli.train import launch_options, launch_options_from, ppdet_style_overrides
from trainctl.core.cmdline import GivenFlags
from trainctl.smoke.comm import DEFAULT_MAX_ITERS, DEFAULT_SIZES

# smoke's own parameters; every other option (train's launch_options) is forwarded to the stages as typed
OWN = ("config", "overrides", "sample_data", "no_pretrained", "no_data_check", "amp", "iters", "output", "as_json",
       "comm", "comm_only", "comm_sizes", "comm_iters", "stage_timeout", "dry_run")


def forwarded_flags(given: GivenFlags, lopts):
    """Train's placement flags as the user gave them: all for train and the probe, devices only for eval."""
    from trainctl.cluster.options import CLUSTER_PARAMS
    from trainctl.smoke import Flags

    flags = Flags()
    params = given.params
    for name, words in given.words:
        if name in OWN or name in CLUSTER_PARAMS or not given.was_given(name):
            continue
        flags.placement += words
        if name == "ppdet":  # export runs in trainctl's own process: it takes the same ppdet
            flags.ppdet = list(words)
        if name not in NODE_PARAMS and not (name == "launcher" and params[name] in PLACERS):
            flags.devices += words
    placed = params.get("launcher") in PLACERS or any(
        getattr(lopts, name) != params.get(name) for name in ("nnodes", "master", "gpus"))
    if placed:  # Slurm or a PaddleJob pod placed this node (launch_options_from): evaluate here, on its devices
        flags.devices += ["--launcher", "paddle"]
        if lopts.gpus and not given.was_given("gpus"):
            flags.devices += ["--gpus", lopts.gpus]
    return flags


@click.command("smoke", context_settings={"max_content_width": 100})
@click.option("-c", "--config", help="Config file, or the name of a bundled config (not needed with --comm-only).")
@click.option("-o", "--override", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override a config value for every stage (repeatable).")
@click.option("--sample-data", is_flag=True, help="Write the built-in sample dataset where the config expects data, if missing.")
@click.option("--no-pretrained", is_flag=True, help="Train from scratch (no pretrained weights download).")
@click.option("--no-data-check", is_flag=True, help="Skip the dataset check before the lite training.")
@click.option("--amp", is_flag=True, help="Automatic mixed precision in the lite training (GPU).")
@click.option("--iters", type=int, default=5, show_default=True, metavar="K",
              help="Iterations of the lite training (one epoch of at most K iterations: -o trainctl.max_iters=K).")
@click.option("--output", metavar="DIR", help="Smoke run directory (default output/smoke/<config name>).")
@click.option("--json", "as_json", is_flag=True, help="Print the verdict, stages, probe and environment as JSON.")
@click.option("--comm", is_flag=True, help="Also run the collective probe (all-reduce bandwidth over every rank) first.")
@click.option("--comm-only", is_flag=True, help="Run only the collective probe (no config needed).")
@click.option("--comm-sizes", default=DEFAULT_SIZES, show_default=True, metavar="MIN..MAX|S1,S2",
              help="All-reduce message sizes: MIN..MAX doubles from MIN to MAX; or a list (K, M, G: binary units).")
@click.option("--comm-iters", type=click.IntRange(min=1), default=DEFAULT_MAX_ITERS, show_default=True, metavar="N",
              help="At most N timed all-reduces per size and round (fewer for large sizes on slow links).")
@click.option("--stage-timeout", type=click.FloatRange(min=1), default=1800, show_default=True, metavar="S",
              help="Stop a stage after S seconds and report it failed.")
@launch_options
@cluster_options
@click.argument("extra_overrides", nargs=-1, metavar="")
def smoke(config, overrides, extra_overrides, sample_data, no_pretrained, no_data_check, amp, iters, output, as_json,
          comm, comm_only, comm_sizes, comm_iters, stage_timeout, **launch_kwargs) -> None:
    """Check the whole chain on the devices and hosts you will train on, before a long run.

    Runs the real trainctl commands with train's device, node and network flags: a lite
    training (one epoch of --iters iterations), evaluation, export, and `infer --benchmark` on
    the CPU and on the chosen GPU; prints a table of stages (pass/fail, time; for a failure
    the command and its log tail) and a TIPC-style environment and performance block, both
    saved in the run directory. Exit 1 names the first failing stage.

    \b
    Examples:
      trainctl smoke -c roadsign_cpu_smoke.yml --sample-data               # one CPU process
      trainctl smoke -c roadsign_cpu_smoke.yml --sample-data --nproc 2 --comm --comm-sizes 8K..4M
      trainctl smoke -c roadsign.yml --gpus 0,1,2,3 --comm --json
      trainctl smoke --comm-only --gpus 0,1,2,3 --nnodes 2 --node-rank 0 --master 10.0.0.1:8090 --net rdma
      trainctl smoke -c roadsign.yml --hostfile hosts.txt --net tcp --comm   # every host over ssh
    \b
    On several nodes run the same command on every node (its own --node-rank), or use
    --hostfile; the probe uses the port after --master's. See docs/smoke.md.
    """
    ctx = click.get_current_context()
    overrides = ppdet_style_overrides(overrides, extra_overrides)
    ctx.params["overrides"] = tuple(overrides)  # so a fan-out forwards them too
    # --- multi-host: --hostfile/--hosts runs this smoke on every host (trainctl.cluster.dispatch)
    from trainctl.cluster.options import pop_cluster_options

    copts = pop_cluster_options(launch_kwargs)
    if copts.fanout:
        from trainctl.cluster import dispatch

        dispatch.run_from_cli(given_flags(ctx), copts, "smoke")
        return
    launch_kwargs["master_port"] = copts.master_port
    # --- end multi-host
    from trainctl import smoke as smokemod

    sopts = smokemod.SmokeOptions(
        config=config, overrides=list(overrides), sample_data=sample_data, no_pretrained=no_pretrained,
        no_data_check=no_data_check, amp=amp, iters=iters, output=output, comm=comm, comm_only=comm_only,
        comm_sizes=comm_sizes, comm_iters=comm_iters, stage_timeout=stage_timeout, as_json=as_json,
        dry_run=launch_kwargs.pop("dry_run"),
    )
    lopts = launch_options_from(launch_kwargs, lr_scale="none")
    smokemod.run(sopts, lopts, forwarded_flags(given_flags(ctx), lopts))
