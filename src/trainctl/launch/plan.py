"""The launch plan: flags + host facts -> per node argv, env, cwd, log dir (pure).

A Plan is plain data. `--dry-run` prints it, `run.json` stores it, the local
executor runs the NodePlan of this node, and a fan-out executor (ssh, Slurm)
can run the other NodePlans on their hosts.

Shapes of the command a node runs:

  one process     <python> -m trainctl.runner.worker --job RUN/job.json
  several         <python> -m paddle.distributed.launch [--master H:P --nnodes N --rank R --host IP]
                      (--devices 0,1 | --nproc_per_node N) --log_dir RUN/logs
                      <python> -m trainctl.runner.worker --job RUN/job.json
  --launcher fleetrun   the same flags after `fleetrun` (the same entry point in paddle 2.6/3.x)

paddle launch accepts any executable as its "training script", so each worker
is `<python> -m trainctl.runner.worker` with the same interpreter as trainctl.
"""

from __future__ import annotations

import os
import shlex
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

from trainctl.errors import UserError
from trainctl.core import envutil, ppdet_source
from trainctl.core.hostinfo import free_port, is_ip, is_local_address, port_in_use, route_source_address
from trainctl.launch import netpresets
from trainctl.launch.devices import DeviceChoice, DeviceEnv, choose_devices
from trainctl.launch.lr import LRReport
from trainctl.launch.options import NetworkOptions, PlacementOptions

WORKER_MODULE = "trainctl.runner.worker"
LAUNCHERS = ("paddle", "fleetrun")


@dataclass
class LaunchOptions(PlacementOptions, NetworkOptions):
    """The device, node and network flags shared by `train` and `eval` (launch/options.py), and the run's environment."""

    env: tuple[str, ...] = ()
    lr_scale: str = "linear"
    ref_gpus: int | None = None
    ppdet: str | None = None  # --ppdet DIR (see core/ppdet_source.py for the rule)
    # set by a cluster engine that placed this node from its scheduler's environment (cluster/kubeflow.py):
    keep_env: tuple[str, ...] = ()  # stale-looking variables that are this run's input: not removed
    placement: dict | None = None  # {"kind", "title", "rows": [[key, text], ...], ...}: shown by --dry-run


@dataclass
class PlanContext:
    """Everything a plan depends on besides the flags; tests pass their own."""

    device_env: DeviceEnv
    host_facts: netpresets.HostFacts
    environ: dict[str, str]
    python: str = sys.executable
    cwd: str = field(default_factory=os.getcwd)
    strict: bool = True  # False for --dry-run: host problems become warnings
    free_port: Callable[[], int] | None = None
    is_local_address: Callable[[str], bool] | None = None
    port_in_use: Callable[[str, int], bool] | None = None
    route_source_address: Callable[[str], str | None] | None = None
    fleetrun: str | None = None  # path of the fleetrun script; default: next to python


@dataclass
class NodePlan:
    rank: int
    host: str | None  # the address this node announces (--host); None: paddle guesses
    argv: list[str]
    env: dict[str, str]  # set by trainctl, on top of the inherited environment
    unset: list[str]  # removed from the inherited environment (stale launch variables)
    cwd: str
    log_dir: str
    local: bool  # this machine runs this node

    def shell_command(self, mask: bool = True, multiline: bool = False) -> str:
        """What a shell runs as-is: `env -u STALE K=V ... argv` (shlex-quoted).

        multiline=True breaks it with backslash-newlines before the launcher
        and before the worker, for people; the shell reads it the same way.
        """
        env = envutil.mask_secrets(self.env) if mask else self.env
        head: list[str] = []
        if self.unset:
            head.append("env")
            for name in self.unset:
                head += ["-u", name]
        head += [f"{k}={v}" for k, v in env.items()]
        if not multiline:
            return shlex.join(head + self.argv)
        groups = [head] if head else []
        try:
            split = self.argv.index(WORKER_MODULE) - 2  # "<python> -m trainctl.runner.worker"
        except ValueError:
            split = 0
        if split > 0:
            groups += [self.argv[:split], self.argv[split:]]
        else:
            groups.append(self.argv)
        return " \\\n    ".join(shlex.join(g) for g in groups)


@dataclass
class Plan:
    task: str
    run_dir: str
    job_file: str
    launcher: str  # "direct", "paddle" or "fleetrun"
    device: DeviceChoice
    nnodes: int
    node_rank: int
    world_size: int
    master: str | None
    net: netpresets.NetEnv
    nodes: list[NodePlan]
    lr: LRReport | None = None
    omp_rule: str | None = None
    warnings: list[str] = field(default_factory=list)
    config_name: str = ""
    ppdet: ppdet_source.PpdetSource | None = None  # the ppdet every worker imports
    placement: dict | None = None  # how a cluster engine placed this node (LaunchOptions.placement)
    extras: dict | None = None  # train: precision, to_static, fleet, profile, slim (launch/train_extras.py)

    @property
    def local_node(self) -> NodePlan:
        return next(n for n in self.nodes if n.local)

    def to_dict(self, mask: bool = True) -> dict:
        data = {
            "task": self.task,
            "config_name": self.config_name,
            "run_dir": self.run_dir,
            "job_file": self.job_file,
            "launcher": self.launcher,
            "device": {"kind": self.device.kind, "ids": self.device.ids,
                       "nproc_per_node": self.device.nproc_per_node},
            "nnodes": self.nnodes,
            "node_rank": self.node_rank,
            "world_size": self.world_size,
            "master": self.master,
            "net": self.net.to_dict(),
            "omp_rule": self.omp_rule,
            "ppdet": self.ppdet.to_dict() if self.ppdet else None,
            "lr": self.lr.to_dict() if self.lr else None,
            "warnings": list(self.warnings),
            "placement": self.placement,
            "train_extras": self.extras,
            "nodes": [],
        }
        if mask:
            data["net"]["env"] = envutil.mask_secrets(data["net"]["env"])
        for node in self.nodes:
            item = asdict(node)
            if mask:
                item["env"] = envutil.mask_secrets(item["env"])
            item["command"] = node.shell_command(mask=mask)
            data["nodes"].append(item)
        return data


def default_context(environ: dict[str, str] | None = None, strict: bool = True) -> PlanContext:
    from trainctl.launch.devices import detect_device_env

    environ = dict(os.environ if environ is None else environ)
    device_env = detect_device_env(environ)
    return PlanContext(
        device_env=device_env,
        host_facts=netpresets.HostFacts.probe(nccl_code=device_env.paddle.nccl_code),
        environ=environ,
        strict=strict,
    )


# ---------------------------------------------------------------- validation


def parse_master(master: str) -> tuple[str, int]:
    if master.startswith("etcd://"):
        rest = master[len("etcd://"):]
    else:
        rest = master
    host, sep, port = rest.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise UserError(f"--master {master!r} is not HOST:PORT",
                        hint="e.g. --master 10.0.0.1:8090 (the address of node 0 and a free port)")
    return host.strip("[]"), int(port)


# ---------------------------------------------------------------- building


def build_plan(opts: LaunchOptions, *, task: str, run_dir: str, ctx: PlanContext) -> Plan:
    warnings: list[str] = []

    def problem(message: str, hint: str | None = None) -> None:
        if ctx.strict:
            raise UserError(message, hint=hint)
        warnings.append(message + (f" ({hint})" if hint else ""))

    if opts.launcher not in LAUNCHERS:
        raise UserError(f"--launcher {opts.launcher!r} is not one of {', '.join(LAUNCHERS)}")
    device = choose_devices(ctx.device_env, opts.device, opts.gpus, opts.nproc, strict=ctx.strict)
    warnings += device.warnings

    # ---- nodes
    ips: list[str] | None = None
    nnodes, node_rank, master, host = opts.nnodes, opts.node_rank, opts.master, opts.host
    if opts.ips:
        ips = [ip.strip() for ip in opts.ips.split(",") if ip.strip()]
        if master:
            raise UserError("--ips and --master are two ways to name the nodes; give one",
                            hint="prefer --master HOST:PORT --nnodes N --node-rank R")
        if len(set(ips)) != len(ips):
            raise UserError(f"--ips {opts.ips} lists a node twice")
        if opts.nnodes not in (1, len(ips)):
            raise UserError(f"--nnodes {opts.nnodes} but --ips names {len(ips)} nodes")
        nnodes = len(ips)
        if host is None:
            is_local = ctx.is_local_address or is_local_address
            mine = [ip for ip in ips if is_local(ip)]
            host = mine[0] if mine else None
        if host in ips:
            node_rank = ips.index(host)
        else:
            problem(f"none of --ips {opts.ips} is an address of this host",
                    "run on one of the named nodes, or pass --host with this node's address from the list")
            node_rank = 0
    if nnodes < 1:
        raise UserError(f"--nnodes {nnodes} must be at least 1")
    if not 0 <= node_rank < nnodes:
        raise UserError(f"--node-rank {node_rank} is out of range for --nnodes {nnodes}",
                        hint=f"node ranks are 0..{nnodes - 1}")
    if nnodes > 1 and not master and not ips:
        raise UserError(f"--nnodes {nnodes} needs --master HOST:PORT",
                        hint="give the address of node 0 and a free port, the same on every node")

    master_host = None
    if master:
        master_host, master_port = parse_master(master)
        if node_rank == 0 and not master.startswith("etcd://"):
            is_local = ctx.is_local_address or is_local_address
            if not is_local(master_host):
                problem(f"this is node 0, which hosts the master, but {master_host} is not an address of this host",
                        "run node rank 0 on the --master host, or fix --master")
            elif (ctx.port_in_use or port_in_use)(master_host, master_port):
                problem(f"master port {master_port} is already in use on this host",
                        "pick another port in --master (the same on every node)")
    world_size = nnodes * device.nproc_per_node

    # ---- launcher kind
    if world_size == 1 and nnodes == 1:
        launcher = "direct"
    else:
        launcher = opts.launcher
        if nnodes == 1 and not master:
            master = f"127.0.0.1:{(ctx.free_port or free_port)()}"

    if host is None and nnodes > 1 and master_host:
        if node_rank == 0 and is_ip(master_host):
            host = master_host
        else:
            host = (ctx.route_source_address or route_source_address)(master_host)
            if host is None:
                warnings.append("could not tell this node's address on the route to the master; "
                                "paddle will guess from the host name (pass --host MY_IP if workers hang)")

    # ---- environment
    extra_env = netpresets.parse_env_pairs(opts.env)
    net = netpresets.build_env(
        opts.net, ctx.host_facts, device=device.kind, nnodes=nnodes, ifname=opts.ifname, hca=opts.hca,
        gid_index=opts.gid_index, gdr_level=opts.gdr_level, nccl_debug=opts.nccl_debug,
        extra_env=extra_env, strict=ctx.strict,
    )
    warnings += net.warnings
    env: dict[str, str] = {"PYTHONUNBUFFERED": "1"}
    omp_rule = None
    if device.nproc_per_node > 1:
        threads = max(1, ctx.device_env.cpus // device.nproc_per_node)
        omp_rule = (f"OMP_NUM_THREADS = max(1, CPUs // workers per node) = max(1, {ctx.device_env.cpus} // "
                    f"{device.nproc_per_node}) = {threads}")
        if "OMP_NUM_THREADS" in ctx.environ or "OMP_NUM_THREADS" in extra_env:
            omp_rule += " (not set: your OMP_NUM_THREADS is kept)"
        else:
            env["OMP_NUM_THREADS"] = str(threads)
    if launcher == "direct" and device.kind == "gpu":
        # one GPU: make exactly that device visible, so paddle's gpu:0 is the one asked for
        visible = ctx.device_env.visible_gpus()
        index = device.ids[0] if device.ids else 0
        env["CUDA_VISIBLE_DEVICES"] = visible[index] if index < len(visible) else str(index)
    env.update(net.env)
    ppdet = ppdet_source.choose(opts.ppdet, ctx.environ, ctx.cwd)
    env.update(ppdet_source.worker_env(ppdet, ctx.environ))  # never a ppdet from the working directory
    unset = [name for name in envutil.stale_variables(ctx.environ) if name not in opts.keep_env]
    paddlejob = [name for name in envutil.PADDLEJOB_VARIABLES if name in unset]
    if paddlejob and opts.placement is None:  # (an engine that placed this node removed them on purpose)
        warnings.append(f"removed {' '.join(paddlejob)} from the environment: a Kubeflow PaddleJob sets them in "
                        "its pods; inside one, run with --launcher kubeflow so they place this node")

    # ---- argv per node
    job_file = str(Path(run_dir) / "job.json")
    # several nodes may share one filesystem (NFS): each node logs under logs/node<R>/
    log_root = Path(run_dir) / "logs"
    worker = [ctx.python, "-m", WORKER_MODULE, "--job", job_file]
    nodes = []
    for rank in range(nnodes):
        local = rank == node_rank
        if ips:
            node_host = ips[rank]
        elif local:
            node_host = host
        elif rank == 0 and master_host and is_ip(master_host) and nnodes > 1:
            node_host = master_host
        else:
            node_host = None
        log_dir = str(log_root / f"node{rank}") if nnodes > 1 else str(log_root)
        if launcher == "direct":
            argv = list(worker)
        else:
            if launcher == "fleetrun":
                argv = [ctx.fleetrun or _fleetrun_path(ctx.python)]
            else:
                argv = [ctx.python, "-m", "paddle.distributed.launch"]
            if ips:
                argv += ["--ips", ",".join(ips)]
            else:
                argv += ["--master", master]
                if nnodes > 1:
                    argv += ["--nnodes", str(nnodes), "--rank", str(rank)]
            if node_host and nnodes > 1:
                argv += ["--host", node_host]
            if device.kind == "gpu":
                argv += ["--devices", ",".join(str(i) for i in device.ids or [])]
            else:
                argv += ["--nproc_per_node", str(device.nproc_per_node)]
            argv += ["--log_dir", log_dir]
            argv += worker
        nodes.append(NodePlan(rank=rank, host=node_host, argv=argv, env=dict(env),
                              unset=unset if local else [], cwd=ctx.cwd, log_dir=log_dir, local=local))

    return Plan(task=task, run_dir=run_dir, job_file=job_file, launcher=launcher, device=device,
                nnodes=nnodes, node_rank=node_rank, world_size=world_size, master=master, net=net,
                nodes=nodes, omp_rule=omp_rule, warnings=warnings, ppdet=ppdet, placement=opts.placement)


def _fleetrun_path(python: str) -> str:
    candidate = Path(python).parent / "fleetrun"
    return str(candidate) if candidate.exists() else "fleetrun"


# ---------------------------------------------------------------- printing


def format_plan(plan: Plan, dry_run: bool = True) -> str:
    """The human form of a plan (what `--dry-run` prints)."""
    lines = []
    title = f"trainctl plan: {plan.task} {plan.config_name}".rstrip() + (" (dry run: nothing started, nothing written)" if dry_run else "")
    lines.append(title)
    rows = [
        ("run dir", plan.run_dir),
        ("devices", plan.device.describe()),
        ("nodes", f"{plan.nnodes} (this is node {plan.node_rank})" if plan.nnodes > 1 else "1"),
        ("world size", str(plan.world_size)),
        ("launcher", {"direct": "one process, no distributed launcher",
                      "paddle": "python -m paddle.distributed.launch",
                      "fleetrun": "fleetrun"}[plan.launcher]),
    ]
    if plan.master:
        rows.append(("master", plan.master))
    if plan.ppdet is not None:
        rows.append(("ppdet", plan.ppdet.describe()))
    rows.append(("network", f"{plan.net.name} ({plan.net.reason})"))
    if plan.extras:
        from trainctl.launch.train_extras import record_line

        rows.append(("training", record_line(plan.extras)))
    width = max(len(k) for k, _ in rows)
    lines += [f"  {k.ljust(width)}  {v}" for k, v in rows]
    for note in plan.net.notes:
        lines.append(f"  note: {note}")
    if plan.placement:
        lines.append("")
        lines.append(plan.placement["title"] + ":")
        key_width = max(len(key) for key, _ in plan.placement["rows"])
        lines += [f"  {key.ljust(key_width)}  {text}" for key, text in plan.placement["rows"]]
    if plan.lr is not None:
        lines.append("")
        lines.append("learning rate:")
        lines += plan.lr.lines()
    node = plan.local_node
    env = envutil.mask_secrets(node.env)
    if env:
        lines.append("")
        lines.append("environment set by trainctl:")
        key_width = max(len(f"{k}={v}") for k, v in env.items())
        for key, value in env.items():
            why = netpresets.EXPLAIN.get(key, "")
            lines.append(f"  {f'{key}={value}'.ljust(key_width)}" + (f"  # {why}" if why else ""))
    if plan.omp_rule:
        lines.append(f"  ({plan.omp_rule})")
    if node.unset:
        lines.append("")
        lines.append("removed from the environment (stale; paddle launch would let them override the flags):")
        lines.append("  " + " ".join(node.unset))
    for item in plan.nodes:
        lines.append("")
        where = "this host" if item.local else (f"host {item.host}" if item.host else f"the host of node {item.rank}")
        label = f"node {item.rank} ({where})" if plan.nnodes > 1 else "command"
        lines.append(f"{label}, in {item.cwd}:")
        lines.append("  " + item.shell_command(mask=True, multiline=True))
    if plan.nnodes > 1:
        lines.append("")
        lines.append("(or run the same trainctl command on every node with its own --node-rank)")
    if dry_run:
        lines.append("")
        lines.append(f"note: these commands read {plan.job_file} and the config.yml next to it, which trainctl "
                     "writes when it launches (a dry run writes nothing)")
    if plan.warnings:
        lines.append("")
        lines += [f"warning: {w}" for w in plan.warnings]
    return "\n".join(lines)
