"""The collective probe, launcher side (no paddle): sizes, launch, transport, table, warnings.

The probe runs the worker module trainctl.runner.commprobe (job task "comm")
through the same launch plan as training (trainctl.launch.plan / executor), so
it covers every rank of the placement with the training's launcher, devices
and network preset. Rank 0 writes `comm.json`; this module reads it, finds the
transport NCCL chose in the workers' NCCL_DEBUG lines (GPU) or names gloo
(CPU), prints the nccl-tests style table and warns when the bandwidth is far
below what the preset's link should give.

Several nodes: the probe's rendezvous uses the port after --master's (P+1), so
it can never meet a peer's training launcher that is still shutting down on P.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field, replace
from pathlib import Path

from trainctl.errors import UserError

RESULT_FILE = "comm.json"  # trainctl.runner.commprobe.RESULT_FILE (that module imports paddle)
DEFAULT_SIZES = "8K..256M"
DEFAULT_MAX_ITERS = 20
# warn when the peak bus bandwidth is below this share of the link's line rate: healthy NCCL over
# InfiniBand/RoCE reaches most of the line rate (docs/smoke.md), a fallback to sockets a small share
FAR_BELOW = 0.25

_UNITS = {"": 1, "B": 1, "K": 1 << 10, "KB": 1 << 10, "KIB": 1 << 10, "M": 1 << 20, "MB": 1 << 20, "MIB": 1 << 20,
          "G": 1 << 30, "GB": 1 << 30, "GIB": 1 << 30}


# ------------------------------------------------------------------ sizes


def parse_size(text: str) -> int:
    """'8K' -> 8192, '256M' -> 268435456, '1024' -> 1024 (binary units, as nccl-tests' -b/-e)."""
    match = re.fullmatch(r"\s*(\d+)\s*([A-Za-z]*)\s*", text)
    unit = match.group(2).upper() if match else None
    if not match or unit not in _UNITS:
        raise UserError(f"--comm-sizes: {text!r} is not a size", hint="e.g. 8K, 1M, 256M or a number of bytes")
    return int(match.group(1)) * _UNITS[unit]


def parse_sizes(text: str) -> list[int]:
    """'MIN..MAX' (doubling, like nccl-tests -f 2) or a comma list; float32 elements, so multiples of 4."""
    if ".." in text:
        low, _, high = text.partition("..")
        start, stop = parse_size(low), parse_size(high)
        if start > stop:
            raise UserError(f"--comm-sizes {text}: the first size is larger than the last", hint="e.g. 8K..256M")
        sizes, size = [], start
        while size <= stop:
            sizes.append(size)
            size *= 2
    else:
        sizes = [parse_size(part) for part in text.split(",") if part.strip()]
    if not sizes:
        raise UserError(f"--comm-sizes {text!r} names no size", hint="e.g. 8K..256M or 8K,1M,64M")
    too_small = [s for s in sizes if s < 4]
    if too_small:
        raise UserError(f"--comm-sizes: {too_small[0]} bytes is less than one float32", hint="use at least 4 bytes")
    return sorted({s // 4 * 4 for s in sizes})


def human_size(nbytes: int) -> str:
    for unit, factor in (("GB", 1 << 30), ("MB", 1 << 20), ("KB", 1 << 10)):
        if nbytes >= factor and nbytes % factor == 0:
            return f"{nbytes // factor} {unit}"
    return f"{nbytes} B"


def bus_bandwidth(algbw: float, ranks: int) -> float:
    """nccl-tests' all-reduce bus bandwidth: algbw * 2(n-1)/n."""
    return algbw * 2 * (ranks - 1) / ranks if ranks > 0 else 0.0


# ------------------------------------------------------------------ transport


@dataclass
class Transport:
    backend: str  # "NCCL" or "gloo"
    network: str | None = None  # NCCL: "IB" or "Socket" (NET/<x>); gloo: "TCP"
    devices: str | None = None  # NCCL: "[0]mlx5_0:1/IB"; gloo: the interface
    paths: list[str] = field(default_factory=list)  # NCCL channel transports: NET/IB/0/GDRDMA, P2P/IPC, SHM/...
    source: str = ""  # where this was read

    @property
    def gdrdma(self) -> bool:
        return any("GDRDMA" in p for p in self.paths)

    def describe(self) -> str:
        if self.backend == "gloo":
            return f"gloo over TCP ({self.devices or 'interface chosen by gloo'}; {self.source})"
        text = "NCCL"
        if self.network:
            text += f" NET/{self.network}" + (f" using {self.devices}" if self.devices else "")
        if self.paths:
            text += f", channels via {', '.join(self.paths)}"
        if not self.network and not self.paths:
            text += " (no NCCL_DEBUG transport lines in the worker logs)"
        return text

    def to_dict(self) -> dict:
        return {"backend": self.backend, "network": self.network, "devices": self.devices, "paths": list(self.paths),
                "gdrdma": self.gdrdma, "source": self.source, "text": self.describe()}


_NET_USING = re.compile(r"NET/(\w+)\s*:\s*Using\s+(.+?)\s*(?:;|$)")
_NETWORK = re.compile(r"Using network (\w+)")
_VIA = re.compile(r"\bvia (\S+)")


def nccl_transport(lines) -> Transport:
    """The transport NCCL reports with NCCL_DEBUG=INFO (INIT,NET): network plugin, NICs, channel paths."""
    found = Transport(backend="NCCL", source="NCCL_DEBUG lines in the worker logs")
    paths: list[str] = []
    for line in lines:
        if "NCCL INFO" not in line:
            continue
        match = _NET_USING.search(line)
        if match and match.group(1) in ("IB", "Socket"):
            found.network = found.network or match.group(1)
            found.devices = found.devices or match.group(2).strip()
        match = _NETWORK.search(line)
        if match and not found.network:
            found.network = match.group(1)
        for via in _VIA.findall(line):
            if via not in paths:
                paths.append(via)
    found.paths = paths
    return found


def gloo_transport(env: dict[str, str]) -> Transport:
    iface = env.get("GLOO_SOCKET_IFNAME")
    source = "GLOO_SOCKET_IFNAME" if iface else "GLOO_SOCKET_IFNAME unset: gloo binds to the host name's address"
    return Transport(backend="gloo", network="TCP", devices=iface, source=source)


def read_worker_logs(log_dir: Path) -> list[str]:
    lines: list[str] = []
    for path in sorted(log_dir.glob("workerlog.*")):
        try:
            lines += path.read_text(errors="replace").splitlines()
        except OSError:
            pass
    return lines


# ------------------------------------------------------------------ the link a preset should give


@dataclass
class Link:
    name: str  # "InfiniBand mlx5_0:1 100 Gb/s", "eth0 25000 Mb/s"
    gbytes_per_s: float  # line rate in GB/s (1e9 bytes)


def _gbit(rate: str | None) -> float | None:
    match = re.search(r"([\d.]+)\s*Gb/sec", rate or "")
    return float(match.group(1)) if match else None


def expected_link(preset: str, env: dict[str, str], facts, nnodes: int) -> Link | None:
    """The network link between nodes the preset chose, with its line rate from /sys; None when unknown.

    One node: no network link is involved (NVLink/PCIe/shared memory), so no expectation.
    """
    if nnodes < 2:
        return None
    if preset in ("rdma", "gpudirect"):
        wanted = [h for h in env.get("NCCL_IB_HCA", "").split(",") if h]
        ports = [p for p in facts.ib_ports if not wanted or p.nccl_name in wanted or p.hca in wanted]
        rated = [(p, _gbit(p.rate)) for p in ports if p.active and _gbit(p.rate)]
        if not rated:
            return None
        port, gbit = max(rated, key=lambda item: item[1])
        kind = "RoCE" if port.roce else "InfiniBand"
        return Link(f"{kind} {port.nccl_name} {gbit:g} Gb/s", gbit / 8)
    iface = env.get("NCCL_SOCKET_IFNAME") or env.get("GLOO_SOCKET_IFNAME") or facts.default_iface
    for item in facts.interfaces:
        if item.name == iface and item.speed_mbps and item.speed_mbps > 0:
            return Link(f"{item.name} {item.speed_mbps} Mb/s", item.speed_mbps / 8000)
    return None


def judge(results: list[dict], transport: Transport, preset: str, link: Link | None) -> list[str]:
    """Warnings about the measured figures (wrong results are a failure, decided by the caller)."""
    warnings: list[str] = []
    if transport.backend == "NCCL":
        if preset in ("rdma", "gpudirect") and transport.network == "Socket":
            warnings.append(f"NCCL uses sockets (NET/Socket) although --net {preset} asks for InfiniBand/RoCE verbs: "
                            "check NCCL_IB_HCA, the ports' state (`trainctl doctor`) and that the NCCL build has IB")
        if preset == "gpudirect" and transport.paths and not transport.gdrdma:
            warnings.append("no channel runs via GDRDMA although --net gpudirect: GPUDirect RDMA is not in use "
                            "(nvidia_peermem loaded? NCCL_NET_GDR_LEVEL?)")
    peak = max((r["busbw_gbps"] for r in results), default=0.0)
    if link is not None and peak < FAR_BELOW * link.gbytes_per_s:
        warnings.append(f"peak bus bandwidth {peak:.2f} GB/s is far below the {link.name} link "
                        f"({link.gbytes_per_s:.2f} GB/s; under {FAR_BELOW:.0%} of it): "
                        f"{'NCCL probably fell back to sockets' if preset in ('rdma', 'gpudirect') else 'the collective does not use this link well'}"
                        f" ({transport.describe()})")
    return warnings


# ------------------------------------------------------------------ report


def table(results: list[dict]) -> str:
    from trainctl.output import table as text_table

    rows = [[human_size(r["bytes"]), str(r["count"]), str(r["iters"]), f"{r['time_us']:.1f}", f"{r['algbw_gbps']:.3f}",
             f"{r['busbw_gbps']:.3f}", "ok" if r.get("correct", True) else "WRONG"] for r in results]
    return text_table(rows, headers=["size", "count", "iters", "time (us)", "algbw (GB/s)", "busbw (GB/s)", "check"])


def format_report(report: dict) -> str:
    lines = [f"all-reduce (sum, float32) over {report['world_size']} ranks ({report['placement']}); "
             f"{report['transport']['text']}", "", table(report["results"])]
    if report.get("link"):
        lines.append(f"link: {report['link']['name']} = {report['link']['gbytes_per_s']:.2f} GB/s line rate")
    lines += [f"warning: {w}" for w in report.get("warnings", [])]
    return "\n".join(lines)


def probe_job_extra(sizes: list[int], max_iters: int) -> dict:
    return {"sizes": list(sizes), "max_iters": int(max_iters)}


def comm_launch_options(lopts, device_kind: str):
    """The training's launch options for the probe: the next master port on several nodes; NCCL_DEBUG on GPUs."""
    changes = {}
    if lopts.master and lopts.nnodes > 1 and not lopts.master.startswith("etcd://"):
        from trainctl.launch.plan import parse_master

        host, port = parse_master(lopts.master)
        changes["master"] = f"{host}:{port + 1}"
    if device_kind == "gpu":
        changes["nccl_debug"] = True  # the transport lines (a preset or --env may still override the level)
    return replace(lopts, **changes)


def read_results(run_dir: Path) -> dict | None:
    try:
        return json.loads((run_dir / RESULT_FILE).read_text())
    except (OSError, ValueError):
        return None


# ------------------------------------------------------------------ running the probe (`smoke --comm-only`)


def placement_text(plan) -> str:
    """'2 nodes x 1 CPU process', '1 node x 8 GPUs'."""
    n = plan.device.nproc_per_node
    what = ("GPU" + ("s" if n > 1 else "")) if plan.device.kind == "gpu" else ("CPU process" + ("es" if n > 1 else ""))
    return f"{plan.nnodes} node{'s' if plan.nnodes > 1 else ''} x {n} {what}"


def run_probe(lopts, root: Path, sizes: list[int], max_iters: int, timeout: float, ctx) -> dict:
    """Launch the probe on this node through the training's plan; node 0 returns the measured report.

    Raises RuntimeFailure when a worker fails, the probe times out or a result is wrong.
    """
    import os
    import signal
    import threading

    from trainctl.errors import RuntimeFailure
    from trainctl.fsutil import ensure_writable_dir
    from trainctl.launch import executor
    from trainctl.launch.plan import build_plan
    from trainctl.core.job import JOB_FILE, Job

    run_dir = str(root / "comm")
    device = build_plan(lopts, task="comm", run_dir=run_dir, ctx=ctx).device.kind
    plan = build_plan(comm_launch_options(lopts, device), task="comm", run_dir=run_dir, ctx=ctx)
    report = {"status": "n/a", "world_size": plan.world_size, "placement": placement_text(plan),
              "node_rank": plan.node_rank, "nnodes": plan.nnodes, "master": plan.master, "preset": plan.net.name,
              "sizes": list(sizes), "results": [], "warnings": [], "link": None, "transport": None,
              "command": plan.local_node.shell_command(mask=True)}
    if plan.world_size < 2:
        report["reason"] = "one process: no peer to exchange with (use --nproc 2, several GPUs or nodes)"
        return report
    node = plan.local_node
    report["log"] = str(Path(node.log_dir) / "launcher.log")  # the executor's copy of the launcher's output
    where = ensure_writable_dir(Path(node.cwd) / plan.run_dir, "--output")
    if plan.node_rank == 0:
        (where / RESULT_FILE).unlink(missing_ok=True)  # a previous run's figures must not pass for this one's
    Job(task="comm", config="", run_dir=plan.run_dir, device=plan.device.kind,
        extra=probe_job_extra(sizes, max_iters), progress="quiet").save(where / JOB_FILE)
    # past the timeout, SIGTERM ourselves: the executor forwards it to the launcher and cleans up the workers
    fired = threading.Event()

    def expire() -> None:
        fired.set()
        os.kill(os.getpid(), signal.SIGTERM)

    watchdog = threading.Timer(timeout, expire)
    watchdog.daemon = True
    watchdog.start()
    try:
        with open(os.devnull, "wb") as sink:  # the launcher's output is in <comm>/logs/.../launcher.log
            result = executor.run_node(plan, node, sink=sink)
    finally:
        watchdog.cancel()
    if result.status != "done":
        if fired.is_set():  # what the launcher printed when stopped says nothing about why it waited
            raise RuntimeFailure(f"collective probe timed out after {timeout:.0f} s (--stage-timeout): a rank never "
                                 f"joined or a collective hung; all workers stopped (log: {report['log']})")
        message = executor.describe_failure(result, plan)
        cause = result.worker_error or (result.log_tail[-1].strip() if result.log_tail else "")
        raise RuntimeFailure(f"collective probe failed: {message}" + (f" ({cause})" if cause else ""))
    report["status"] = "pass"
    if plan.node_rank != 0:
        report["reason"] = "rank 0 (node 0) measured and reports the figures"
        return report
    data = read_results(where)
    if data is None:
        raise RuntimeFailure(f"collective probe ended without results ({where / RESULT_FILE} missing)")
    results = data.get("results") or []
    worker_env = data.get("env") or {}
    if plan.device.kind == "gpu":
        transport = nccl_transport(read_worker_logs(Path(node.cwd) / node.log_dir))
    else:
        transport = gloo_transport(worker_env)
    link = expected_link(plan.net.name, {**plan.net.env, **worker_env}, ctx.host_facts, plan.nnodes)
    report.update(results=results, backend=data.get("backend"), transport=transport.to_dict(),
                  link={"name": link.name, "gbytes_per_s": link.gbytes_per_s} if link else None,
                  warnings=judge(results, transport, plan.net.name, link))
    wrong = [human_size(r["bytes"]) for r in results if not r.get("correct", True)]
    if wrong:
        report["status"] = "fail"
        report["reason"] = f"all-reduce returned wrong sums at {', '.join(wrong)}"
    return report
