"""The multi-host flags' defaults and their split from a command's parameters.

Cheap to import on purpose (no ssh, sockets, subprocesses or hostfile parsing):
`trainctl train` needs these on every run, while the multi-host layer
(trainctl.cluster.dispatch, ssh, hostfile, slurm, kubeflow) is loaded only when a
run really fans out over ssh, runs under Slurm or in a Kubeflow PaddleJob pod.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

from trainctl.core.envutil import PADDLEJOB_VARIABLES  # the operator's variables in a PaddleJob pod

DEFAULT_MASTER_PORT = 8090  # paddle's documented example port; preflight checks it is free
DEFAULT_CONNECT_TIMEOUT = 10

# parameters of `train` that place this node among the others (set per host by the fan-out, by Slurm, by a PaddleJob)
NODE_PARAMS = ("nnodes", "node_rank", "master", "host", "ips")
PLACERS = ("slurm", "kubeflow")  # launchers that take the nodes (and devices) from their environment


@dataclass
class ClusterOptions:
    """The multi-host flags (`trainctl.cli.multihost.cluster_options`): the ssh fan-out's hosts and ssh
    settings, and the master port for a fan-out or Slurm."""

    hostfile: str | None = None
    hosts: str | None = None
    remote_workdir: str | None = None
    remote_python: str | None = None
    ssh_options: tuple[str, ...] = ()
    ssh_port: int | None = None
    connect_timeout: int = DEFAULT_CONNECT_TIMEOUT
    master_port: int | None = None
    no_preflight: bool = False

    @property
    def fanout(self) -> bool:
        return bool(self.hostfile or self.hosts)


# parameters of `train` that belong to the fan-out itself (never forwarded)
CLUSTER_PARAMS = tuple(ClusterOptions.__dataclass_fields__)


def pop_cluster_options(kwargs: dict) -> ClusterOptions:
    """Take the cluster flags out of a command's kwargs (the rest goes to the launch plan)."""
    values = {name: kwargs.pop(name) for name in CLUSTER_PARAMS if name in kwargs}
    values["ssh_options"] = tuple(values.get("ssh_options") or ())
    if values.get("connect_timeout") is None:
        values.pop("connect_timeout", None)
    return ClusterOptions(**values)


def node_flags_given(opts) -> bool:
    """True when the user placed this node by hand (--nnodes/--master/--host/--ips): no engine overrides that.

    `opts`: a launch.options.PlacementOptions (or LaunchOptions)."""
    return opts.nnodes != 1 or any((opts.master, opts.host, opts.ips))


def in_slurm_step(env: Mapping[str, str]) -> bool:
    """True inside an `srun` step (not just an allocation's batch script or salloc shell)."""
    return bool(env.get("SLURM_JOB_ID")) and bool(env.get("SLURM_STEP_ID") or env.get("SLURM_STEPID"))


def slurm_may_apply(opts, env: Mapping[str, str]) -> bool:
    """False when `cluster.apply_slurm` would leave these launch options unchanged.

    That is: --launcher is not slurm and this process is not in an srun step.
    """
    return opts.launcher == "slurm" or in_slurm_step(env)



def in_paddlejob(env: Mapping[str, str]) -> bool:
    """True when the operator's three variables are all set (a PaddleJob pod, or their stale copies)."""
    return all(env.get(name) for name in PADDLEJOB_VARIABLES)


def kubeflow_may_apply(opts, env: Mapping[str, str]) -> bool:
    """False when `cluster.kubeflow.apply_kubeflow` would leave these launch options unchanged.

    That is: --launcher is not kubeflow and the PaddleJob variables are not all set.
    """
    return opts.launcher == "kubeflow" or in_paddlejob(env)
