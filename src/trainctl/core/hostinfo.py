"""Facts about this host, read without root and without paddle.

Every probe takes the root of the tree it reads (`sys_root`, `proc_root`) so
tests can point it at fixture trees (tests/fixtures/sys/...). The doctor
command shows the same facts that the network presets are built from.
"""

from __future__ import annotations

import ipaddress
import os
import platform
import shutil
from dataclasses import dataclass
from pathlib import Path

ARPHRD_LOOPBACK = "772"


@dataclass(frozen=True)
class Interface:
    name: str
    operstate: str  # "up", "down", "unknown" (loopback and veth often say unknown)
    loopback: bool
    mtu: int | None = None
    speed_mbps: int | None = None  # None when the driver does not say (virtual links)

    @property
    def usable(self) -> bool:
        return not self.loopback and self.operstate in ("up", "unknown")


@dataclass(frozen=True)
class IBPort:
    hca: str  # e.g. mlx5_0
    port: int
    state: str  # "ACTIVE", "DOWN", "INIT", ... (the text after "4: ")
    link_layer: str  # "InfiniBand" or "Ethernet" (RoCE)
    rate: str | None = None  # e.g. "100 Gb/sec (4X EDR)"

    @property
    def active(self) -> bool:
        return self.state.upper() == "ACTIVE"

    @property
    def roce(self) -> bool:
        return self.link_layer.lower() == "ethernet"

    @property
    def nccl_name(self) -> str:
        """The form NCCL_IB_HCA takes: `mlx5_0:1`."""
        return f"{self.hca}:{self.port}"


@dataclass(frozen=True)
class GPU:
    index: int
    name: str
    uuid: str
    memory_mib: int | None = None


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def _int(text: str | None) -> int | None:
    try:
        return int(text) if text is not None else None
    except ValueError:
        return None


def interfaces(sys_root: str | os.PathLike = "/sys") -> list[Interface]:
    """Network interfaces from /sys/class/net, sorted by name."""
    base = Path(sys_root) / "class" / "net"
    if not base.is_dir():
        return []
    result = []
    for entry in sorted(base.iterdir(), key=lambda p: p.name):
        speed = _int(_read(entry / "speed"))
        result.append(
            Interface(
                name=entry.name,
                operstate=(_read(entry / "operstate") or "unknown").lower(),
                loopback=_read(entry / "type") == ARPHRD_LOOPBACK or entry.name == "lo",
                mtu=_int(_read(entry / "mtu")),
                speed_mbps=speed if speed is not None and speed > 0 else None,
            )
        )
    return result


def default_route_interface(proc_root: str | os.PathLike = "/proc") -> str | None:
    """The interface of the IPv4 default route (lowest metric), from /proc/net/route."""
    text = _read(Path(proc_root) / "net" / "route")
    if not text:
        return None
    best: tuple[int, str] | None = None
    for line in text.splitlines()[1:]:
        fields = line.split()
        if len(fields) < 7:
            continue
        iface, destination, flags, metric = fields[0], fields[1], fields[3], fields[6]
        try:
            up = int(flags, 16) & 0x1
        except ValueError:
            continue
        if destination != "00000000" or not up:
            continue
        rank = (_int(metric) or 0, iface)
        if best is None or rank < best:
            best = rank
    return best[1] if best else None


def ib_ports(sys_root: str | os.PathLike = "/sys") -> list[IBPort]:
    """RDMA ports from /sys/class/infiniband/<hca>/ports/<n>/{state,link_layer,rate}."""
    base = Path(sys_root) / "class" / "infiniband"
    if not base.is_dir():
        return []
    result = []
    for hca in sorted(base.iterdir(), key=lambda p: p.name):
        ports = hca / "ports"
        if not ports.is_dir():
            continue
        for port in sorted(ports.iterdir(), key=lambda p: _int(p.name) or 0):
            number = _int(port.name)
            if number is None:
                continue
            state = _read(port / "state") or "UNKNOWN"
            # "4: ACTIVE" -> "ACTIVE"
            state = state.split(":", 1)[1].strip() if ":" in state else state
            result.append(
                IBPort(
                    hca=hca.name,
                    port=number,
                    state=state,
                    link_layer=_read(port / "link_layer") or "InfiniBand",
                    rate=_read(port / "rate"),
                )
            )
    return result


def gpudirect_module(sys_root: str | os.PathLike = "/sys") -> str | None:
    """The loaded kernel module that gives NCCL GPUDirect RDMA, or None.

    nvidia_peermem (in the NVIDIA driver since 470) and the older Mellanox
    nv_peer_mem both show up under /sys/module; nv_peer_mem also registers
    /sys/kernel/mm/memory_peers/nv_mem.
    """
    root = Path(sys_root)
    for name in ("nvidia_peermem", "nv_peer_mem"):
        if (root / "module" / name).is_dir():
            return name
    if (root / "kernel" / "mm" / "memory_peers" / "nv_mem" / "version").exists():
        return "nv_peer_mem"
    return None


def gpus(nvidia_smi: str | None = None, timeout: float = 10.0) -> list[GPU]:
    """GPUs that nvidia-smi lists (physical indices), or [] without a driver."""
    exe = nvidia_smi or shutil.which("nvidia-smi")
    if not exe:
        return []
    import subprocess  # only with a driver: CPU-only hosts never load it

    try:
        proc = subprocess.run(
            [exe, "--query-gpu=index,name,uuid,memory.total", "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except (OSError, subprocess.TimeoutExpired):
        return []
    if proc.returncode != 0:
        return []
    return parse_nvidia_smi(proc.stdout)


def parse_nvidia_smi(text: str) -> list[GPU]:
    result = []
    for line in text.splitlines():
        fields = [f.strip() for f in line.split(",")]
        if len(fields) < 3 or _int(fields[0]) is None:
            continue
        result.append(GPU(index=int(fields[0]), name=fields[1], uuid=fields[2],
                          memory_mib=_int(fields[3]) if len(fields) > 3 else None))
    return result


def cpu_count() -> int:
    """CPUs this process may run on (respects taskset/cgroup affinity)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def cpu_model(cpuinfo: str = "/proc/cpuinfo") -> str:
    try:
        for line in Path(cpuinfo).read_text(errors="replace").splitlines():
            key, _, value = line.partition(":")
            if key.strip() in ("model name", "Model", "Hardware", "cpu model") and value.strip():
                return value.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def is_ip(text: str) -> bool:
    """True for an IPv4 or IPv6 address (not a host name)."""
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


# ---------------------------------------------------------------- network probes for a launch plan
# (each imports socket when it runs: a single-node plan calls none of them)


def free_port() -> int:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("", 0))
        return s.getsockname()[1]


def is_local_address(host: str) -> bool:
    """True when `host` is an address of this machine (binding to it works)."""
    import socket

    try:
        address = socket.gethostbyname(host)
    except OSError:
        return False
    if address.startswith("127."):
        return True
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((address, 0))
            return True
        except OSError:
            return False


def port_in_use(host: str, port: int) -> bool:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("", port))
            return False
        except OSError:
            return True


def route_source_address(host: str) -> str | None:
    """The local address the kernel would use to reach `host` (a UDP connect sends nothing)."""
    import socket

    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect((host, 9))
            return s.getsockname()[0]
    except OSError:
        return None
