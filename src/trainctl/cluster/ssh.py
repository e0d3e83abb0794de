"""One command for many hosts: plan the per-host ssh commands and run them.

Every host runs trainctl's own single-node launch for its rank:

    ssh -o BatchMode=yes ... -- HOST \\
      'cd WORKDIR && exec env K=V ... PYTHON -m trainctl.cluster.guard --grace G -- \\
       PYTHON -m trainctl train <the user's args> --nnodes N --node-rank R \\
       --master FIRST_ADDR:PORT --host THIS_ADDR [--ifname IF] [--gpus ...]'

so each node resolves the config, checks its own devices and network (the preset is
computed from that host's /sys, not from the machine typing the command) and writes
its own run directory and worker logs. The remote sshd hands the command string to the
login shell, so it is built once with shlex.quote for every word: paths with spaces or
`;` arrive unchanged and nothing in them is executed.

`guard` (trainctl.cluster.guard) ends the remote process tree when the ssh session
closes; FanOut closes every session when one host fails or on Ctrl-C/SIGTERM.

This module is the planning half (`plan_fanout`, `RemoteNode`), pure;
cluster/fanout.py runs the plan (`FanOut`, `run_fanout`).
"""

from __future__ import annotations

import re
import shlex
import socket
from dataclasses import dataclass
from typing import Callable, Sequence

from trainctl.cluster.hostfile import HostSpec
from trainctl.cluster.options import DEFAULT_CONNECT_TIMEOUT, DEFAULT_MASTER_PORT  # noqa: F401 (re-exported)
from trainctl.core.hostinfo import is_ip
from trainctl.errors import UserError


DEFAULT_GRACE = 10.0  # seconds a remote job gets between SIGTERM and SIGKILL
_ENV_KEY_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# node flags the fan-out sets per host; the user's own values for them are not forwarded
NODE_FLAGS = ("--nnodes", "--node-rank", "--master", "--host")


@dataclass(frozen=True)
class SshSettings:
    """How to reach hosts: extra `-o` options, default port, timeouts."""

    options: tuple[str, ...] = ()  # each "Key=Value", passed as `-o Key=Value`
    port: int | None = None  # used for hosts without their own :port
    connect_timeout: int = DEFAULT_CONNECT_TIMEOUT
    program: str = "ssh"

    def argv(self, host: HostSpec) -> list[str]:
        """`ssh ... -- host` without the remote command."""
        argv = [
            self.program,
            "-o", "BatchMode=yes",  # never prompt for a password or passphrase
            "-o", f"ConnectTimeout={self.connect_timeout}",
            "-o", "ServerAliveInterval=15",
            "-o", "ServerAliveCountMax=4",
        ]
        for option in self.options:
            argv += ["-o", option]
        port = host.port or self.port
        if port:
            argv += ["-p", str(port)]
        if host.user:
            argv += ["-l", host.user]
        return argv + ["--", host.host]


def parse_ssh_option(text: str) -> str:
    """Check one --ssh-option (`Key=Value`, as ssh's -o takes)."""
    key, sep, value = text.partition("=")
    if not sep or not key or not re.match(r"^[A-Za-z]+$", key):
        raise UserError(
            f"--ssh-option {text!r} is not Key=Value",
            hint="pass ssh_config options as for ssh -o, e.g. --ssh-option IdentityFile=~/.ssh/cluster_key",
        )
    return text


def remote_command(workdir: str, env: dict[str, str], argv: Sequence[str], python: str, grace: float) -> str:
    """The one shell string the remote login shell runs (every word quoted once)."""
    for key in env:
        if not _ENV_KEY_RE.match(key):
            raise UserError(f"environment variable name {key!r} is not valid", hint="use letters, digits and _")
    words = ["exec", "env"]
    words += [f"{key}={value}" for key, value in env.items()]
    words += [python, "-m", "trainctl.cluster.guard", "--grace", f"{grace:g}", "--"]
    words += list(argv)
    return f"cd {shlex.quote(workdir)} && " + " ".join(shlex.quote(w) for w in words)


def mask_argv(argv: Sequence[str]) -> list[str]:
    """`KEY=VALUE` arguments with a secret-looking key (`--env API_TOKEN=...`, `-o x.password=...`) masked."""
    from trainctl.core.envutil import MASK, is_secret

    shown = []
    for item in argv:
        key, sep, value = item.partition("=")
        shown.append(f"{key}={MASK}" if sep and value and is_secret(key.split(".")[-1]) else item)
    return shown


def masked_command(workdir: str, env: dict[str, str], argv: Sequence[str], python: str, grace: float) -> str:
    """remote_command as printed by dry runs: secret-looking values masked. What runs is never masked."""
    from trainctl.core.envutil import mask_secrets

    return remote_command(workdir, mask_secrets(dict(env)), mask_argv(argv), python, grace)


@dataclass(frozen=True)
class RemoteNode:
    """What one host runs."""

    host: HostSpec
    rank: int
    addr: str  # the address other hosts use for it (its --host)
    argv: tuple[str, ...]  # the trainctl command run there
    env: tuple[tuple[str, str], ...]
    workdir: str

    @property
    def label(self) -> str:
        return f"{self.host.label} r{self.rank}"

    def command(self, python: str, grace: float = DEFAULT_GRACE) -> str:
        return remote_command(self.workdir, dict(self.env), self.argv, python, grace)

    def ssh_argv(self, settings: SshSettings, python: str, grace: float = DEFAULT_GRACE) -> list[str]:
        return settings.argv(self.host) + [self.command(python, grace)]


@dataclass(frozen=True)
class FanoutPlan:
    nodes: tuple[RemoteNode, ...]
    master: str
    python: str
    settings: SshSettings
    grace: float = DEFAULT_GRACE

    def describe(self) -> str:
        """What --dry-run prints: every host's exact ssh command."""
        lines = [f"multi-host launch: {len(self.nodes)} hosts, master {self.master}"]
        for node in self.nodes:
            lines.append("")
            lines.append(f"# {node.label} ({node.host.source})")
            shown = masked_command(node.workdir, dict(node.env), node.argv, self.python, self.grace)
            lines.append(shlex.join(self.settings.argv(node.host) + [shown]))
        return "\n".join(lines)


def resolve_ipv4(name: str) -> str:
    """The address a host name resolves to here (paddle's master must be an IP literal)."""
    infos = socket.getaddrinfo(name, None, socket.AF_INET, socket.SOCK_STREAM)
    return infos[0][4][0]


def host_address(host: HostSpec, resolve: Callable[[str], str] = resolve_ipv4) -> str:
    name = host.addr or host.host
    if is_ip(name):
        return name
    try:
        return resolve(name)
    except OSError as exc:
        where = "use a --hostfile line with addr=IP" if host.source == "--hosts" else "add addr=IP to that hostfile line"
        raise UserError(
            f"{host.source}: cannot resolve {name} to an address ({exc})",
            hint=f"{where} (the address the other hosts reach {host.host} at)",
        ) from None


def device_args_for(host: HostSpec, cpu: bool) -> list[str] | None:
    """Per-host device flags from slots=/gpus=, or None to keep the user's own.

    gpus=0,2 -> --gpus 0,2. slots=N means N GPUs (as in DeepSpeed's hostfiles), or N
    CPU processes when the run is on CPU (--device cpu).
    """
    if host.gpus is not None:
        if cpu:
            raise UserError(f"{host.source}: gpus= given but the run is on CPU (--device cpu)",
                            hint="use slots=N for CPU processes")
        return ["--gpus", ",".join(str(g) for g in host.gpus)]
    if host.slots is not None:
        if cpu:
            return ["--nproc", str(host.slots)]
        return ["--gpus", ",".join(str(g) for g in range(host.slots))]
    return None


def plan_fanout(
    hosts: Sequence[HostSpec],
    *,
    train_argv: Sequence[str],
    device_argv: Sequence[str] = (),
    cpu: bool = False,
    master: str | None = None,
    master_port: int | None = None,
    workdir: str,
    python: str,
    env: dict[str, str] | None = None,
    settings: SshSettings = SshSettings(),
    grace: float = DEFAULT_GRACE,
    resolve: Callable[[str], str] = resolve_ipv4,
) -> FanoutPlan:
    """Plan every host's command.

    train_argv: the remote command up to and including the user's own flags, without
    node flags or device flags (e.g. [python, -m, trainctl, train, -c, CFG, ...]).
    device_argv: the user's --gpus/--nproc/--device flags, used on hosts whose line
    has no slots=/gpus=. master: an explicit --master; else the first host's address
    and master_port (default 8090).
    """
    if not hosts:
        raise UserError("no hosts to launch on", hint="pass --hostfile FILE or --hosts a,b")
    if not workdir:
        raise UserError("the remote working directory is empty", hint="pass --remote-workdir DIR")
    addrs = [host_address(h, resolve) for h in hosts]
    if master is None:
        port = DEFAULT_MASTER_PORT if master_port is None else master_port
        if not 0 < port < 65536:
            raise UserError(f"--master-port {port} is not a port number", hint="use 1024-65535")
        master_host = addrs[0]
        master = f"[{master_host}]:{port}" if ":" in master_host else f"{master_host}:{port}"
    env = dict(env or {})
    nodes = []
    for rank, (host, addr) in enumerate(zip(hosts, addrs)):
        argv = list(train_argv)
        own_devices = device_args_for(host, cpu)
        argv += list(device_argv) if own_devices is None else own_devices
        argv += ["--nnodes", str(len(hosts)), "--node-rank", str(rank), "--master", master, "--host", addr]
        if host.ifname:
            argv += ["--ifname", host.ifname]  # after the user's --ifname: the last one wins
        nodes.append(
            RemoteNode(host=host, rank=rank, addr=addr, argv=tuple(argv), env=tuple(env.items()), workdir=workdir)
        )
    return FanoutPlan(nodes=tuple(nodes), master=master, python=python, settings=settings, grace=grace)
