"""Kubeflow PaddleJob pods: the node flags from the training operator's environment.

In every container of a collective PaddleJob (Worker replicas, no Master replica) the
training operator (kubeflow/training-operator release-1.9,
pkg/controller.v1/paddlepaddle/envvar.go) sets:

  PADDLE_MASTER     worker 0's endpoint: on worker 0 its own pod IP and port
                    (`$(POD_IP_DUMMY):PORT`), on the others `<job>-worker-0:PORT`, the
                    name of worker 0's headless service
  PADDLE_NNODES     the total number of replicas
  PADDLE_JOB_ID     the job name
  PYTHONUNBUFFERED  1

and names the pods `<job>-worker-<index>`; a pod's hostname is its name, except with
hostNetwork (then it is the node's, and the pod name comes from TRAINCTL_POD_NAME, which
`trainctl k8s-manifest` sets from the downward API). In parameter-server mode (a Master
replica) it also sets PADDLE_SERVER_NUM / PADDLE_TRAINER_NUM: not supported here.

paddle's own launcher, which the operator expects in each pod, reads those variables
and ranks the pods in the order they reach the master. trainctl maps them to its flags
instead: nodes = PADDLE_NNODES, rank = the pod's index, master = PADDLE_MASTER (resolved
when it can be), and this pod's address (--host) from, in order: TRAINCTL_POD_IP
(downward API status.podIP, set by k8s-manifest); on worker 0 the master's IP, its own;
the pod name as the pod resolves it (kubelet writes `<pod IP> <pod name>` into the pod's
/etc/hosts); else the route to the master (trainctl.core.hostinfo). The three variables are
kept in the launcher's environment (paddle launch reads them; they agree with the flags).
"""

from __future__ import annotations

import dataclasses
import os
import re
from dataclasses import dataclass
from typing import Callable, Mapping

from trainctl import output
from trainctl.errors import UserError
from trainctl.core.envutil import PADDLEJOB_VARIABLES
from trainctl.core.hostinfo import is_ip, route_source_address
from trainctl.launch.plan import LaunchOptions

POD_NAME_VARIABLE = "TRAINCTL_POD_NAME"  # downward API metadata.name (k8s-manifest sets it)
POD_IP_VARIABLE = "TRAINCTL_POD_IP"  # downward API status.podIP (k8s-manifest sets it)
PS_MODE_VARIABLES = ("PADDLE_SERVER_NUM", "PADDLE_TRAINER_NUM")
REPLICA = "worker"  # collective mode: every pod is a Worker replica


@dataclass(frozen=True)
class PodPlacement:
    """Where this pod sits in its PaddleJob, from the operator's variables and the pod's name."""

    job: str
    pod: str
    pod_from: str  # "the hostname" or TRAINCTL_POD_NAME
    index: int
    nnodes: int
    master_host: str  # as PADDLE_MASTER names it (an IP on worker 0, a service name elsewhere)
    master_port: int

    @property
    def master(self) -> str:
        return f"{self.master_host}:{self.master_port}"


def pod_index(job: str, pod: str) -> int | None:
    """The index in `<job>-worker-<index>`, or None when the name is not one of the job's workers."""
    match = re.fullmatch(re.escape(job) + rf"-{REPLICA}-(\d+)", pod)
    return int(match.group(1)) if match else None


def placement_from_env(env: Mapping[str, str], hostname: str) -> PodPlacement:
    """Read this pod's placement (pure); UserError naming the variable when something is off."""
    missing = [name for name in PADDLEJOB_VARIABLES if not env.get(name)]
    if missing:
        raise UserError(
            f"--launcher kubeflow needs the variables of a PaddleJob pod, but {' '.join(missing)} "
            f"{'is' if len(missing) == 1 else 'are'} not set",
            hint="run it in a Kubeflow PaddleJob's Worker pods (`trainctl k8s-manifest` writes one)",
        )
    ps = [name for name in PS_MODE_VARIABLES if env.get(name)]
    if ps:
        raise UserError(
            f"this PaddleJob runs in parameter-server mode ({' '.join(ps)} set: it has a Master replica); "
            "trainctl trains collectively",
            hint="give the PaddleJob only Worker replicas (as `trainctl k8s-manifest` writes it)",
        )
    job = env["PADDLE_JOB_ID"]
    nnodes_text = env["PADDLE_NNODES"].strip()
    if not nnodes_text.isdigit() or int(nnodes_text) < 1:
        raise UserError(f"PADDLE_NNODES={nnodes_text!r} is not a number of pods",
                        hint="the training operator sets it to the PaddleJob's replica count")
    nnodes = int(nnodes_text)
    master = env["PADDLE_MASTER"].strip()
    host, sep, port = master.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise UserError(f"PADDLE_MASTER={master!r} is not HOST:PORT",
                        hint="the training operator sets it to worker 0's address and the `master` port")
    pod, pod_from = env.get(POD_NAME_VARIABLE) or hostname, POD_NAME_VARIABLE if env.get(POD_NAME_VARIABLE) else "the hostname"
    index = pod_index(job, pod)
    if index is None:
        raise UserError(
            f"cannot tell this pod's index in PaddleJob {job}: its name {pod!r} ({pod_from}) is not "
            f"{job}-{REPLICA}-<index>",
            hint=f"run it in the job's Worker pods; with hostNetwork set {POD_NAME_VARIABLE} from the "
                 "downward API (metadata.name), as `trainctl k8s-manifest` does",
        )
    if index >= nnodes:
        raise UserError(f"pod {pod} has index {index}, but PADDLE_NNODES={nnodes}",
                        hint=f"indices run 0..{nnodes - 1}; the operator sets both, so check the pod's environment")
    return PodPlacement(job=job, pod=pod, pod_from=pod_from, index=index, nnodes=nnodes,
                        master_host=host.strip("[]"), master_port=int(port))


def _own_address(placement: PodPlacement, env: Mapping[str, str], resolve, master_host: str,
                 route) -> tuple[str | None, str]:
    """(this pod's address or None, where it came from)."""
    if env.get(POD_IP_VARIABLE):
        return env[POD_IP_VARIABLE], POD_IP_VARIABLE
    if placement.index == 0 and is_ip(placement.master_host):
        return placement.master_host, "PADDLE_MASTER (worker 0 hosts the master)"
    try:
        address = resolve(placement.pod)
    except OSError:
        address = None
    if address and not address.startswith("127."):
        return address, f"the pod name {placement.pod} as this pod resolves it (/etc/hosts)"
    address = route(master_host)
    if address:
        return address, "the route to the master (the pod name does not resolve to a pod address)"
    return None, "neither the pod name nor the route to the master gives an address; paddle guesses"


def apply_kubeflow(opts: LaunchOptions, env: Mapping[str, str] | None = None, hostname: str | None = None,
                   resolve: Callable[[str], str] | None = None, launcher_given: bool = False,
                   route: Callable[[str], str | None] | None = None) -> LaunchOptions:
    """Fill the node options from a PaddleJob pod for `--launcher kubeflow`, or when detected.

    Detected: the three PaddleJob variables are set, --launcher was not given and no node
    flag was. Returns the options to plan with (launcher back to paddle's, `keep_env` and
    `placement` set for the plan) or, when nothing applies, the options unchanged.
    """
    from trainctl.cluster.options import in_paddlejob, node_flags_given

    env = os.environ if env is None else env
    explicit = opts.launcher == "kubeflow"
    if not explicit:
        if launcher_given or not in_paddlejob(env) or node_flags_given(opts):
            return opts
    elif node_flags_given(opts):
        raise UserError("--launcher kubeflow takes the nodes from the PaddleJob; drop --nnodes/--node-rank/--master/--host/--ips",
                        hint="or use those flags with --launcher paddle")
    if resolve is None:
        from trainctl.cluster.ssh import resolve_ipv4 as resolve
    route = route or route_source_address
    try:
        placement = placement_from_env(env, hostname if hostname is not None else os.uname().nodename)
    except UserError as exc:
        if explicit:
            raise
        raise UserError(f"{exc.message} ({', '.join(PADDLEJOB_VARIABLES)} are set, as in a PaddleJob pod)",
                        hint=f"{exc.hint}; or pass --launcher paddle to ignore them") from None
    changes: dict = {"launcher": "paddle"}
    # one pod needs no master: the variables would only point paddle launch at one, so they go as stale
    kept = [name for name in PADDLEJOB_VARIABLES if name in env] if placement.nnodes > 1 else []
    changes["keep_env"] = tuple(kept)
    how = "--launcher kubeflow" if explicit else \
        f"detected from {', '.join(PADDLEJOB_VARIABLES)}; --launcher paddle ignores them"
    rows = [("pod", f"{placement.pod} ({placement.pod_from}): node rank {placement.index} of {placement.nnodes}")]
    if placement.nnodes > 1:
        master_host, master_note = placement.master_host, ""
        if not is_ip(master_host):
            try:
                master_host = resolve(master_host)
                master_note = f" (resolved {placement.master_host})"
            except OSError:
                master_note = " (not resolvable yet: paddle launch waits for it)"
        changes["nnodes"] = placement.nnodes
        changes["node_rank"] = placement.index
        changes["master"] = f"{master_host}:{placement.master_port}"
        host, host_from = _own_address(placement, env, resolve, master_host, route)
        changes["host"] = host
        rows.append(("master", f"PADDLE_MASTER={env['PADDLE_MASTER']} -> --master {changes['master']}{master_note}"))
        rows.append(("this pod", f"--host {host} (from {host_from})" if host else f"no --host: {host_from}"))
        rows.append(("kept", f"{' '.join(kept)} (paddle launch reads them; they agree with the flags)"))
    else:
        rows.append(("master", f"none needed for one pod: {' '.join(PADDLEJOB_VARIABLES)} are removed"))
    changes["placement"] = {
        "kind": "kubeflow",
        "title": f"Kubeflow PaddleJob {placement.job}, {how}",
        "rows": [list(row) for row in rows],
        "job": placement.job,
        "pod": placement.pod,
        "pod_from": placement.pod_from,
        "index": placement.index,
        "nnodes": placement.nnodes,
        "paddle_master": env["PADDLE_MASTER"],
        "master": changes.get("master"),
        "host": changes.get("host"),
        "kept": kept,
    }
    output.info(f"PaddleJob {placement.job}: pod {placement.pod} is node {placement.index} of {placement.nnodes}"
                + (f", master {changes['master']}" if placement.nnodes > 1 else "") + f"; {how}")
    return dataclasses.replace(opts, **changes)
