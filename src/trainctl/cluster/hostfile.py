"""Hostfiles: which hosts a multi-host job runs on, one host per line.

    # comment lines and blank lines are ignored
    gpu-node-01 slots=4                 # 4 workers: GPUs 0-3 (CPU runs: 4 processes)
    gpu-node-02 gpus=0,1,2,3            # exactly these GPUs
    alice@10.0.0.3:2222 slots=8         # ssh user and port
    10.0.0.4 ifname=ens1f0 addr=192.168.7.4

Keys (all optional):
  slots=N       number of workers on this host (like DeepSpeed's hostfiles)
  gpus=LIST     the GPU ids to use on this host (implies slots=len(LIST))
  ifname=NAME   the network interface for NCCL/gloo on this host (per-host --ifname)
  addr=IP       the address other hosts reach this one at (for --master/--host),
                when it differs from the name ssh uses

`--hosts a,b,user@c:2222` is the same without keys. Pure: no ssh, no network.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from trainctl.core.hostinfo import is_ip
from trainctl.errors import UserError

KNOWN_KEYS = ("slots", "gpus", "ifname", "addr")
_HOSTNAME_RE = re.compile(r"^[A-Za-z0-9_]([A-Za-z0-9_.-]*[A-Za-z0-9_])?$")
_USER_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")
_IFNAME_RE = re.compile(r"^[A-Za-z0-9_.:@-]{1,15}$")


@dataclass(frozen=True)
class HostSpec:
    """One host of a multi-host job, as written in the hostfile or --hosts."""

    host: str  # name or address ssh connects to (IPv6 without brackets)
    user: str | None = None
    port: int | None = None  # ssh port
    slots: int | None = None
    gpus: tuple[int, ...] | None = None
    ifname: str | None = None
    addr: str | None = None  # address for --master/--host when it differs from `host`
    source: str = ""  # "hosts.txt:3" or "--hosts" (for error messages)

    @property
    def ssh_target(self) -> str:
        return f"{self.user}@{self.host}" if self.user else self.host

    @property
    def label(self) -> str:
        """Short name used to prefix this host's output lines."""
        return self.host if self.port is None else f"{self.host}:{self.port}"

    @property
    def workers(self) -> int | None:
        """Workers on this host, when the hostfile says."""
        if self.gpus is not None:
            return len(self.gpus)
        return self.slots


def parse_host_entry(text: str, source: str) -> HostSpec:
    """Parse one hostfile line (without its comment): `[user@]host[:port] [key=value ...]`."""
    fields = text.split()
    if not fields:
        raise UserError(f"{source}: empty host entry", hint="write a host name, e.g. `node1 slots=4`")
    user, host, port = _split_target(fields[0], source)
    values: dict[str, str] = {}
    for field in fields[1:]:
        key, sep, value = field.partition("=")
        if not sep or not value:
            raise UserError(
                f"{source}: `{field}` is not key=value",
                hint=f"write keys as key=value, one of: {', '.join(KNOWN_KEYS)} (e.g. `{host} slots=4`)",
            )
        if key not in KNOWN_KEYS:
            raise UserError(
                f"{source}: unknown key `{key}`", hint=f"known keys: {', '.join(KNOWN_KEYS)}"
            )
        if key in values:
            raise UserError(f"{source}: `{key}` given twice", hint="keep one of them")
        values[key] = value

    slots = None
    if "slots" in values:
        slots = _positive_int(values["slots"], f"{source}: slots", "slots=4")
    gpus = None
    if "gpus" in values:
        gpus = _gpu_list(values["gpus"], source)
        if slots is not None and slots != len(gpus):
            raise UserError(
                f"{source}: slots={slots} but gpus= lists {len(gpus)} GPUs",
                hint="drop slots= (gpus= implies it) or make them agree",
            )
    ifname = values.get("ifname")
    if ifname is not None and not _IFNAME_RE.match(ifname):
        raise UserError(f"{source}: `{ifname}` is not a network interface name", hint="e.g. ifname=eth0")
    addr = values.get("addr")
    if addr is not None:
        addr = _strip_brackets(addr)
        if not is_ip(addr) and not _HOSTNAME_RE.match(addr):
            raise UserError(f"{source}: addr={addr} is neither an IP address nor a host name", hint="e.g. addr=10.0.0.4")
    return HostSpec(host=host, user=user, port=port, slots=slots, gpus=gpus, ifname=ifname, addr=addr, source=source)


def parse_hostfile_text(text: str, name: str = "hostfile") -> list[HostSpec]:
    hosts = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        content = line.split("#", 1)[0].strip()
        if content:
            hosts.append(parse_host_entry(content, f"{name}:{lineno}"))
    if not hosts:
        raise UserError(f"{name} lists no hosts", hint="write one host per line, e.g. `node1 slots=4`")
    _check_unique(hosts)
    return hosts


def read_hostfile(path: str | Path) -> list[HostSpec]:
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise UserError(f"hostfile {path} not found", hint="pass the path of a file with one host per line") from None
    except (IsADirectoryError, PermissionError, UnicodeDecodeError) as exc:
        raise UserError(f"cannot read hostfile {path}: {exc}", hint="pass a readable text file") from None
    return parse_hostfile_text(text, str(path))


def parse_hosts_arg(value: str) -> list[HostSpec]:
    """`--hosts a,b,user@c:2222`: host names only, no keys."""
    entries = [e.strip() for e in value.split(",")]
    if not all(entries):
        raise UserError(f"--hosts {value!r} has an empty entry", hint="separate host names with single commas: --hosts a,b")
    hosts = []
    for entry in entries:
        if "=" in entry or " " in entry:
            raise UserError(
                f"--hosts entry `{entry}` has keys",
                hint="--hosts takes only [user@]host[:port]; put slots=/gpus=/ifname= in a --hostfile",
            )
        hosts.append(parse_host_entry(entry, "--hosts"))
    _check_unique(hosts)
    return hosts


def _split_target(target: str, source: str) -> tuple[str | None, str, int | None]:
    user = None
    if "@" in target:
        user, _, target = target.rpartition("@")
        if not _USER_RE.match(user):
            raise UserError(f"{source}: `{user}` is not a user name", hint="write user@host")
    port = None
    if target.startswith("["):  # [ipv6]:port
        close = target.find("]")
        if close < 0:
            raise UserError(f"{source}: unbalanced `[` in `{target}`", hint="write IPv6 hosts as [fe80::1]:22")
        host, rest = target[1:close], target[close + 1 :]
        if rest:
            if not rest.startswith(":"):
                raise UserError(f"{source}: unexpected `{rest}` after `[{host}]`", hint="write [addr]:port")
            port = _port(rest[1:], source)
        if not is_ip(host):
            raise UserError(f"{source}: `{host}` is not an IP address", hint="brackets are for IPv6 addresses")
        return user, host, port
    if target.count(":") > 1:  # bare IPv6 address, no port
        if not is_ip(target):
            raise UserError(f"{source}: `{target}` is not a host", hint="write IPv6 hosts as [fe80::1]:22")
        return user, target, None
    host, sep, port_text = target.partition(":")
    if sep:
        port = _port(port_text, source)
    if not host or not (_HOSTNAME_RE.match(host) or is_ip(host)):
        raise UserError(f"{source}: `{host}` is not a host name or address", hint="e.g. node1, 10.0.0.1 or user@node1:2222")
    return user, host, port


def _port(text: str, source: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise UserError(f"{source}: `{text}` is not a port number", hint="write host:port with a port from 1 to 65535")
    return int(text)


def _positive_int(text: str, what: str, example: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise UserError(f"{what} must be a positive integer, not `{text}`", hint=f"e.g. {example}")
    return int(text)


def _gpu_list(text: str, source: str) -> tuple[int, ...]:
    parts = text.split(",")
    if not all(p.isdigit() for p in parts):
        raise UserError(f"{source}: gpus={text} is not a list of GPU ids", hint="e.g. gpus=0,1,2,3")
    ids = tuple(int(p) for p in parts)
    if len(set(ids)) != len(ids):
        raise UserError(f"{source}: gpus={text} repeats a GPU id", hint="list each GPU once")
    return ids


def _strip_brackets(text: str) -> str:
    return text[1:-1] if text.startswith("[") and text.endswith("]") else text


def _check_unique(hosts: list[HostSpec]) -> None:
    seen: dict[tuple[str, int | None], HostSpec] = {}
    for h in hosts:
        key = (h.host, h.port)
        if key in seen:
            raise UserError(
                f"{h.source}: host {h.label} is already listed at {seen[key].source}",
                hint="list each host once; give it slots= for several workers",
            )
        seen[key] = h
