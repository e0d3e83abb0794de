"""Multi-host entry points for `trainctl train`: ssh fan-out from a hostfile, and Slurm.

The CLI hands over its parsed parameters (a core.cmdline.GivenFlags, never click objects); this module decides:

- `--hostfile/--hosts`: forward the user's own flags (only those given on the command
  line), plan one ssh command per host (trainctl.cluster.ssh), run the preflight
  (trainctl.cluster.preflight) and the fan-out; `--dry-run` prints the ssh commands;
- `--launcher slurm`, or an srun step detected from SLURM_* variables: fill
  --nnodes/--node-rank/--master/--host and the devices from Slurm
  (trainctl.cluster.slurm) and continue with the normal single-node launch.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from typing import TYPE_CHECKING, Mapping

from trainctl import output
from trainctl.errors import UserError
from trainctl.cluster import slurm as slurmmod
from trainctl.cluster.options import CLUSTER_PARAMS, ClusterOptions, pop_cluster_options  # noqa: F401 (re-exported)
from trainctl.cluster.options import NODE_PARAMS, node_flags_given  # NODE_PARAMS: set per host by the fan-out
from trainctl.core.cmdline import GivenFlags
from trainctl.cluster.hostfile import HostSpec, parse_hosts_arg, read_hostfile
from trainctl.cluster.ssh import (
    DEFAULT_MASTER_PORT,
    FanoutPlan,
    SshSettings,
    parse_ssh_option,
    plan_fanout,
    resolve_ipv4,
)
from trainctl.cluster.fanout import run_fanout

if TYPE_CHECKING:
    from trainctl.launch.plan import LaunchOptions

DEVICE_PARAMS = ("gpus", "nproc")
# max_restarts: the fan-out controller restarts every host itself (fanout.run_fanout)
NOT_FORWARDED = set(CLUSTER_PARAMS) | set(NODE_PARAMS) | {"dry_run", "max_restarts"}


# ------------------------------------------------------------------ fan-out


def forwarded_args(flags: GivenFlags) -> tuple[list[str], list[str]]:
    """The user's own flags, as given on the command line: (common, device flags).

    Values are forwarded as typed (relative paths stay relative to the remote working
    directory). Flags the fan-out sets per host are left out.
    """
    common: list[str] = []
    devices: list[str] = []
    for name, words in flags.words:
        if name not in NOT_FORWARDED:
            (devices if name in DEVICE_PARAMS else common).extend(words)
    return common, devices


def _hosts(copts: ClusterOptions) -> list[HostSpec]:
    if copts.hostfile and copts.hosts:
        raise UserError("--hostfile and --hosts both given", hint="use one of them")
    if copts.hostfile:
        return read_hostfile(copts.hostfile)
    return parse_hosts_arg(copts.hosts or "")


FORWARDED_ENV_PREFIXES = ("NCCL_", "GLOO_", "TRAINCTL_PPDET")  # the ppdet rule is the same on every host


def forwarded_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """NCCL_* and GLOO_* set in the launching shell, for every host (as DeepSpeed forwards them).

    An ssh session starts with a fresh environment, so these would otherwise be lost.
    The preset each host computes and --env still win for the workers.
    """
    return {k: v for k, v in sorted(environ.items()) if k.startswith(FORWARDED_ENV_PREFIXES)}


def _env_values(pairs) -> dict[str, str]:
    env = {}
    for pair in pairs or ():
        key, sep, value = str(pair).partition("=")
        if not sep or not key:
            raise UserError(f"--env {pair!r} is not KEY=VALUE", hint="e.g. --env NCCL_DEBUG=INFO")
        env[key] = value
    return env


def _lenient(resolve, warnings: list[str]):
    """For dry runs (planned on a laptop): an unresolvable name stays as written, with a warning."""

    def lookup(name: str) -> str:
        try:
            return resolve(name)
        except OSError:
            warnings.append(f"cannot resolve {name} here; the real launch needs it resolvable (or addr=IP)")
            return name

    return lookup


def plan_from_cli(flags: GivenFlags, copts: ClusterOptions, task: str = "train",
                  warnings: list[str] | None = None, resolve=resolve_ipv4) -> FanoutPlan:
    params = flags.params
    if params.get("dry_run") and warnings is not None:
        resolve = _lenient(resolve, warnings)
    for name in ("nnodes", "node_rank", "host", "ips"):
        if flags.was_given(name):
            flag = "--" + name.replace("_", "-")
            raise UserError(
                f"{flag} cannot be combined with --hostfile/--hosts",
                hint="trainctl sets --nnodes, --node-rank and --host for every host of the hostfile",
            )
    if params.get("launcher") in ("slurm", "kubeflow"):
        where = "srun for Slurm allocations" if params["launcher"] == "slurm" else "a PaddleJob for Kubernetes"
        raise UserError(f"--launcher {params['launcher']} and --hostfile/--hosts are two ways to start nodes",
                        hint=f"use {where}, --hostfile for plain ssh hosts")
    if flags.was_given("master") and copts.master_port is not None:
        raise UserError("--master and --master-port both given", hint="give the port in --master HOST:PORT")
    python = copts.remote_python or sys.executable
    common, devices = forwarded_args(flags)
    global_flags = []
    if os.environ.get("TRAINCTL_DEBUG", "") not in ("", "0"):
        global_flags.append("--debug")
    if output.is_quiet():
        global_flags.append("--quiet")
    train_argv = [python, "-m", "trainctl", *global_flags, task, *common]
    env = forwarded_environment(os.environ)
    env.update(_env_values(params.get("env")))
    env.setdefault("PYTHONUNBUFFERED", "1")  # lines reach the prefixing reader as they are written
    settings = SshSettings(
        options=tuple(parse_ssh_option(o) for o in copts.ssh_options),
        port=copts.ssh_port,
        connect_timeout=copts.connect_timeout,
    )
    return plan_fanout(
        _hosts(copts),
        train_argv=train_argv,
        device_argv=devices,
        cpu=params.get("device") == "cpu",
        master=params.get("master") if flags.was_given("master") else None,
        master_port=copts.master_port,
        workdir=copts.remote_workdir or os.getcwd(),
        python=python,
        env=env,
        settings=settings,
        resolve=resolve,
    )


def plan_json(plan: FanoutPlan) -> str:
    """--dry-run=json; secret-looking values are masked (in what is printed, not in what runs)."""
    from trainctl.core.envutil import mask_secrets
    from trainctl.cluster.ssh import mask_argv, masked_command

    def shown(n) -> str:
        return masked_command(n.workdir, dict(n.env), n.argv, plan.python, plan.grace)

    return json.dumps(
        {
            "kind": "ssh-fanout",
            "master": plan.master,
            "nodes": [
                {
                    "host": n.host.host,
                    "rank": n.rank,
                    "addr": n.addr,
                    "workdir": n.workdir,
                    "env": mask_secrets(dict(n.env)),
                    "argv": mask_argv(n.argv),
                    "remote_command": shown(n),
                    "ssh_argv": plan.settings.argv(n.host) + [shown(n)],
                }
                for n in plan.nodes
            ],
        },
        indent=2,
    )


def run_from_cli(flags: GivenFlags, copts: ClusterOptions, task: str = "train") -> None:
    """`trainctl train --hostfile/--hosts`: dry run, or preflight and fan-out."""
    from trainctl.cluster import preflight

    warnings: list[str] = []
    plan = plan_from_cli(flags, copts, task, warnings)
    params = flags.params
    dry_run = params.get("dry_run")
    for warning in warnings:
        output.warn(warning)
    if dry_run == "json":
        output.echo(plan_json(plan))
        return
    if dry_run:
        output.echo(plan.describe())
        output.echo("")
        output.echo("(dry run: no host was contacted; each host plans its own workers, see "
                    "`trainctl train ... --nnodes N --node-rank R --dry-run` there)")
        return
    if not copts.no_preflight:
        tasks: list[str] = []
        if not params.get("no_data_check") and not params.get("sample_data"):
            tasks = ["train", "eval"] if params.get("eval_during_train") else ["train"]
        port = None
        if not flags.was_given("master"):
            port = DEFAULT_MASTER_PORT if copts.master_port is None else copts.master_port
        preflight.preflight(plan, config=params.get("config"), overrides=list(params.get("overrides") or ()),
                            tasks=tasks, port=port, ppdet=params.get("ppdet") or os.environ.get("TRAINCTL_PPDET"))
    run_fanout(plan, max_restarts=params.get("max_restarts") or 0)


# ------------------------------------------------------------------ Slurm


def apply_slurm(opts: LaunchOptions, master_port: int | None = None, env: Mapping[str, str] | None = None,
                resolve=resolve_ipv4, launcher_given: bool = False) -> LaunchOptions:
    """Fill the node and device options from Slurm for `--launcher slurm` or an srun step.

    Returns the options to plan with (launcher set back to paddle's). Auto-detection
    (inside srun, no node flags, --launcher not given: `launcher_given`) says so in one line;
    pass `--launcher paddle` to ignore Slurm.
    """
    env = os.environ if env is None else env
    explicit = opts.launcher == "slurm"
    if not explicit:
        if launcher_given or not slurmmod.in_slurm_step(env) or node_flags_given(opts):
            return opts
    elif node_flags_given(opts):
        raise UserError("--launcher slurm takes the nodes from Slurm; drop --nnodes/--node-rank/--master/--host/--ips",
                        hint="or use those flags without --launcher slurm")
    placement = slurmmod.placement_from_env(env, master_port)
    changes: dict = {"launcher": "paddle"}
    if placement.nnodes > 1:
        changes["nnodes"] = placement.nnodes
        changes["node_rank"] = placement.node_rank
        changes["master"] = f"{_resolve(placement.master_host, resolve)}:{placement.master_port}"
        changes["host"] = _resolve(placement.node_name, resolve)
    if placement.gpus is not None and not opts.gpus and not opts.nproc and opts.device != "cpu":
        changes["gpus"] = ",".join(str(g) for g in placement.gpus)
    opts = dataclasses.replace(opts, **changes)
    how = "--launcher slurm" if explicit else "srun step detected (--launcher paddle to ignore Slurm)"
    devices = f", GPUs {opts.gpus} (from {placement.gpus_from})" if placement.gpus and opts.gpus else ""
    output.info(f"Slurm job {placement.job_id}: node {placement.node_rank} of {placement.nnodes} "
                f"({placement.node_name}), master {opts.master or placement.master_host}{devices}; {how}")
    return opts


def _resolve(name: str, resolve) -> str:
    from trainctl.core.hostinfo import is_ip

    if is_ip(name):
        return name
    try:
        return resolve(name)
    except OSError as exc:
        raise UserError(f"cannot resolve the Slurm node name {name} ({exc})",
                        hint="pass --master IP:PORT and --host IP instead of --launcher slurm") from None
