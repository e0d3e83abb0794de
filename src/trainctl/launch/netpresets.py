"""Named network environments for NCCL and gloo, checked against the host (pure).

    nccl       NCCL's own defaults (it probes IB, then sockets); nothing set
    tcp        NCCL over sockets: NCCL_IB_DISABLE=1, NCCL_SOCKET_IFNAME and
               GLOO_SOCKET_IFNAME = --ifname or the default-route interface
    rdma       IB or RoCE verbs without GPUDirect: NCCL_IB_DISABLE=0,
               NCCL_IB_HCA = --hca or the ACTIVE ports in /sys/class/infiniband,
               NCCL_NET_GDR_LEVEL=0, NCCL_IB_GID_INDEX for RoCE when asked
               (--gid-index) or when NCCL is older than 2.21 (which cannot pick
               it), NCCL_SOCKET_IFNAME for bootstrap
    gpudirect  rdma plus NCCL_NET_GDR_LEVEL=PHB (--gdr-level); refused unless
               nvidia_peermem or nv_peer_mem is loaded
    gloo       CPU collectives: GLOO_SOCKET_IFNAME when more than one node
    auto       picks one of the above from what /sys shows (`choose_auto`)

A user preset is a YAML file, given as `--net path.yml` or as `--net NAME` for
NAME.yml in $TRAINCTL_PRESETS, ~/.config/trainctl/presets or the presets
bundled with trainctl (`consumer-gpu`: NCCL_P2P_DISABLE=1 for workstation GPUs):

    name: cluster-a          # optional, shown in the plan
    base: rdma               # optional: a built-in preset to start from
    env:                     # added on top; an empty value removes a key
      NCCL_IB_HCA: mlx5_0:1,mlx5_1:1
      NCCL_SOCKET_IFNAME: ib0

`--env KEY=VAL` is applied last and wins over everything.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from trainctl.errors import UserError
from trainctl.core import hostinfo

PRESETS = ("auto", "nccl", "tcp", "rdma", "gpudirect", "gloo")
NCCL_AUTO_GID_CODE = 22100  # NCCL 2.21 picks the RoCE GID index itself
GDR_LEVELS = ("LOC", "PIX", "PXB", "PHB", "SYS")

# one line per variable, printed next to the value in plans and used by docs
EXPLAIN = {
    "NCCL_IB_DISABLE": "1 = never use InfiniBand/RoCE verbs, 0 = use them",
    "NCCL_SOCKET_IFNAME": "interface(s) NCCL uses for bootstrap and socket transport",
    "GLOO_SOCKET_IFNAME": "interface gloo (CPU collectives, paddle's barriers) binds to",
    "NCCL_IB_HCA": "RDMA devices:ports NCCL may use",
    "NCCL_NET_GDR_LEVEL": "GPUDirect RDMA: 0 = off, LOC/PIX/PXB/PHB/SYS = allowed up to that PCI distance",
    "NCCL_IB_GID_INDEX": "RoCE GID table index (which address/RoCE version to use)",
    "NCCL_DEBUG": "NCCL log level (INFO shows the transport chosen)",
    "NCCL_DEBUG_SUBSYS": "NCCL subsystems to log",
    "OMP_NUM_THREADS": "CPU threads per worker (several workers share this node)",
    "PYTHONUNBUFFERED": "worker output reaches the logs line by line",
    "PYTHONSAFEPATH": "no working directory on sys.path: workers import the ppdet the plan names",
    "PYTHONPATH": "the chosen PaddleDetection checkout first (its ppdet)",
}


@dataclass
class HostFacts:
    """What the presets look at. `probe()` reads them; tests build them from fixture trees."""

    interfaces: list[hostinfo.Interface] = field(default_factory=list)
    default_iface: str | None = None
    ib_ports: list[hostinfo.IBPort] = field(default_factory=list)
    gpudirect_module: str | None = None
    nccl_code: int | None = None  # NCCL version code of paddle's build, None if unknown

    @classmethod
    def probe(cls, sys_root: str = "/sys", proc_root: str = "/proc", nccl_code: int | None = None) -> "HostFacts":
        return cls(
            interfaces=hostinfo.interfaces(sys_root),
            default_iface=hostinfo.default_route_interface(proc_root),
            ib_ports=hostinfo.ib_ports(sys_root),
            gpudirect_module=hostinfo.gpudirect_module(sys_root),
            nccl_code=nccl_code,
        )

    def active_ports(self) -> list[hostinfo.IBPort]:
        return [p for p in self.ib_ports if p.active]


@dataclass
class NetEnv:
    name: str  # the preset applied (after auto)
    reason: str  # why (auto's choice, or "--net X")
    env: dict[str, str]
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    source: str | None = None  # the user YAML file, if any

    def to_dict(self) -> dict:
        return {"name": self.name, "reason": self.reason, "env": dict(self.env), "notes": list(self.notes),
                "warnings": list(self.warnings), "source": self.source}


def choose_auto(facts: HostFacts, device: str = "gpu", nnodes: int = 1) -> tuple[str, str]:
    """(preset, reason) for --net auto."""
    if device == "cpu":
        return "gloo", "CPU training: collectives run over gloo"
    active = facts.active_ports()
    if nnodes == 1:
        return "nccl", "one node: NCCL uses NVLink/PCIe/shared memory between local GPUs"
    if active:
        names = ",".join(p.nccl_name for p in active)
        if facts.gpudirect_module:
            return "gpudirect", f"active RDMA ports {names} and {facts.gpudirect_module} loaded"
        return "rdma", f"active RDMA ports {names}; no nvidia_peermem/nv_peer_mem, so no GPUDirect"
    return "tcp", "no active InfiniBand/RoCE port in /sys/class/infiniband: NCCL over sockets"


def _iface(facts: HostFacts, ifname: str | None, strict: bool, why: str) -> tuple[str | None, list[str]]:
    """--ifname, checked against /sys, or the default-route interface."""
    problems: list[str] = []
    if ifname:
        known = {i.name for i in facts.interfaces}
        # NCCL accepts prefix lists (eth,ib), ^exclusions and =exact; check only plain names
        plain = [n for n in ifname.split(",") if n and not n.startswith(("^", "="))]
        if known and plain and not any(n in known or any(k.startswith(n) for k in known) for n in plain):
            msg = f"--ifname {ifname}: no such interface here (have {', '.join(sorted(known))})"
            if strict:
                raise UserError(msg, hint="pick one of the interfaces listed, e.g. the one on the cluster network")
            problems.append(msg)
        return ifname, problems
    if facts.default_iface:
        return facts.default_iface, problems
    problems.append(f"no default route to take the {why} interface from; pass --ifname")
    return None, problems


def build_env(
    name: str,
    facts: HostFacts,
    *,
    device: str = "gpu",
    nnodes: int = 1,
    ifname: str | None = None,
    hca: str | None = None,
    gid_index: int | None = None,
    gdr_level: str = "PHB",
    nccl_debug: bool = False,
    extra_env: dict[str, str] | None = None,
    strict: bool = True,
) -> NetEnv:
    """The environment a preset sets. strict=False (dry runs) turns host problems into warnings."""
    source = None
    user_env: dict[str, str | None] = {}
    user_name = None
    if name not in PRESETS:
        path = find_user_preset(name)
        if path is None:
            names = sorted(set(PRESETS) | set(named_presets()))
            raise UserError(f"--net {name!r} is not a preset",
                            hint=f"use one of {', '.join(names)}, or a preset .yml file")
        user_name, base, user_env = load_user_preset(path)
        source, name = path, base or "nccl"

    reason = f"--net {name}"
    if name == "auto":
        name, why = choose_auto(facts, device, nnodes)
        reason = f"auto: {why}"
    if device == "cpu" and name in ("rdma", "gpudirect"):
        raise UserError(f"--net {name} is for NCCL on GPUs; this run is on CPU",
                        hint="use --net gloo or tcp (both set GLOO_SOCKET_IFNAME) for CPU training")

    env: dict[str, str] = {}
    notes: list[str] = []
    warnings: list[str] = []

    def problem(message: str, hint: str) -> None:
        if strict:
            raise UserError(message, hint=hint)
        warnings.append(f"{message} ({hint})")

    if name == "tcp":
        iface, issues = _iface(facts, ifname, strict, "socket")
        warnings += issues
        env["NCCL_IB_DISABLE"] = "1"
        if device == "cpu":
            notes.append("on CPU only GLOO_SOCKET_IFNAME matters; the NCCL variables are inert")
        if iface:
            env["NCCL_SOCKET_IFNAME"] = iface
            env["GLOO_SOCKET_IFNAME"] = iface
    elif name in ("rdma", "gpudirect"):
        env["NCCL_IB_DISABLE"] = "0"
        active = facts.active_ports()
        if hca:
            env["NCCL_IB_HCA"] = hca
            chosen = [p for p in facts.ib_ports if p.nccl_name in hca.split(",") or p.hca in hca.split(",")]
        elif active:
            env["NCCL_IB_HCA"] = ",".join(p.nccl_name for p in active)
            chosen = active
        else:
            chosen = []
            down = ", ".join(f"{p.nccl_name} {p.state}" for p in facts.ib_ports)
            problem("no ACTIVE InfiniBand/RoCE port in /sys/class/infiniband" + (f" ({down})" if down else ""),
                    "check `ibstat`/cabling, name ports with --hca mlx5_0:1, or use --net tcp")
        if name == "rdma":
            env["NCCL_NET_GDR_LEVEL"] = "0"
        else:
            if gdr_level not in GDR_LEVELS:
                raise UserError(f"--gdr-level {gdr_level!r} is not one of {', '.join(GDR_LEVELS)}")
            if not facts.gpudirect_module:
                problem("GPUDirect RDMA needs the nvidia_peermem (or nv_peer_mem) kernel module, which is not loaded",
                        "`modprobe nvidia_peermem` as root, or use --net rdma")
            env["NCCL_NET_GDR_LEVEL"] = gdr_level
        roce = [p for p in chosen if p.roce]
        if gid_index is not None:
            env["NCCL_IB_GID_INDEX"] = str(gid_index)
        elif roce:
            if facts.nccl_code is not None and facts.nccl_code < NCCL_AUTO_GID_CODE:
                env["NCCL_IB_GID_INDEX"] = "3"
                notes.append("RoCE with NCCL older than 2.21: NCCL_IB_GID_INDEX=3 (RoCE v2 over IPv4 on "
                             "most Mellanox setups; check `show_gids` and pass --gid-index)")
            else:
                notes.append("RoCE: NCCL 2.21+ picks the GID index itself; --gid-index N to force one")
        iface, issues = _iface(facts, ifname, strict, "bootstrap")
        warnings += issues
        if iface:
            env["NCCL_SOCKET_IFNAME"] = iface
            env["GLOO_SOCKET_IFNAME"] = iface
    elif name == "gloo":
        if nnodes > 1 or ifname:
            iface, issues = _iface(facts, ifname, strict, "gloo")
            warnings += issues
            if iface:
                env["GLOO_SOCKET_IFNAME"] = iface
    elif name == "nccl":
        if ifname:
            env["NCCL_SOCKET_IFNAME"] = ifname
            env["GLOO_SOCKET_IFNAME"] = ifname
        if nnodes > 1 and not ifname:
            notes.append("NCCL picks the interface itself; if nodes hang at start, pass --ifname or --net tcp")

    for key, value in user_env.items():
        if value is None or value == "":
            env.pop(key, None)
        else:
            env[key] = str(value)
    if user_name:
        notes.insert(0, f"user preset {user_name!r} from {source}, based on {name}")
    if nccl_debug:
        env["NCCL_DEBUG"] = "INFO"
        env["NCCL_DEBUG_SUBSYS"] = "INIT,NET"
    env.update(extra_env or {})
    return NetEnv(name=user_name or name, reason=reason if not source else f"--net {source}",
                  env=env, notes=notes, warnings=warnings, source=source)


def preset_dirs() -> list[Path]:
    """Where `--net NAME` looks for NAME.yml: $TRAINCTL_PRESETS, ~/.config/trainctl/presets, then bundled."""
    dirs = []
    if os.environ.get("TRAINCTL_PRESETS"):
        dirs.append(Path(os.environ["TRAINCTL_PRESETS"]).expanduser())
    dirs.append(Path.home() / ".config" / "trainctl" / "presets")
    dirs.append(Path(__file__).resolve().parent.parent / "presets")
    return dirs


def named_presets() -> dict[str, str]:
    """Preset files found in preset_dirs(), by name (the first directory wins)."""
    found: dict[str, str] = {}
    for directory in preset_dirs():
        if directory.is_dir():
            for file in sorted(directory.glob("*.y*ml")):
                found.setdefault(file.stem, str(file))
    return found


def find_user_preset(name: str) -> str | None:
    """A preset file: a path (ends in .yml/.yaml or contains a /), or a name from preset_dirs()."""
    if name.endswith((".yml", ".yaml")) or os.sep in name:
        return name
    return named_presets().get(name)


def load_user_preset(path: str) -> tuple[str, str | None, dict[str, str | None]]:
    """(name, base preset, env) from a preset YAML file."""
    import yaml  # pyyaml is a core dependency; imported here to keep `import` cheap

    file = Path(path)
    try:
        data = yaml.safe_load(file.read_text())
    except OSError as exc:
        raise UserError(f"--net {path}: cannot read the preset file ({exc.strerror})",
                        hint="check the path, or use a named preset: auto, nccl, tcp, rdma, gpudirect, gloo") from exc
    except yaml.YAMLError as exc:
        raise UserError(f"--net {path}: not valid YAML ({exc})") from exc
    if not isinstance(data, dict):
        raise UserError(f"--net {path}: expected a mapping with `env:` (and optional `name:`, `base:`)")
    unknown = set(data) - {"name", "base", "env", "description"}
    if unknown:
        raise UserError(f"--net {path}: unknown key(s) {', '.join(sorted(unknown))}",
                        hint="a preset file has name, base, env, description")
    base = data.get("base")
    if base is not None and base not in PRESETS:
        raise UserError(f"--net {path}: base {base!r} is not a preset", hint=f"one of {', '.join(PRESETS)}")
    env = data.get("env") or {}
    if not isinstance(env, dict) or not all(isinstance(k, str) for k in env):
        raise UserError(f"--net {path}: env must map variable names to values")
    return str(data.get("name") or file.stem), base, {k: (None if v is None else str(v)) for k, v in env.items()}


def parse_env_pairs(pairs: tuple[str, ...] | list[str]) -> dict[str, str]:
    """--env KEY=VAL pairs."""
    env = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key or not key.replace("_", "").isalnum() or key[0].isdigit():
            raise UserError(f"--env {pair!r} is not KEY=VALUE", hint="e.g. --env NCCL_P2P_DISABLE=1")
        env[key] = value
    return env
