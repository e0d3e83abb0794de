"""Preflight of a multi-host launch: check every host before starting any.

For each host, one ssh session runs a small probe with the remote python in the remote
working directory (standard library and trainctl's pure config/data modules only; it
never imports paddle):

- reachable: ssh works without a prompt (BatchMode), the working directory exists;
- versions: trainctl, paddle (paddlepaddle or paddlepaddle-gpu) and paddledet as
  importlib.metadata reports them; they must be installed and equal on every host, and
  trainctl must equal the version typing the command;
- config and data: the config resolves there (with the -o overrides) and the datasets
  the job reads exist, relative to the remote working directory (trainctl's quick
  dataset check, as each node would run it);
- ppdet: the ppdet each host's workers would import (core/ppdet_source.py's rule, applied
  in the remote working directory with the forwarded --ppdet), its modules installed; the
  same kind, version and commit on every host;
- port: on the master host, the master port can be bound.

One table; any problem names the host and what is wrong. Unreachable hosts are a
RuntimeFailure (exit 1); everything else is a UserError (exit 2) with a hint.
"""

from __future__ import annotations

import importlib.metadata
import json
import shlex
import subprocess
import threading
from dataclasses import dataclass, field

from trainctl import output
from trainctl.errors import RuntimeFailure, UserError
from trainctl.cluster.ssh import FanoutPlan, RemoteNode

MARK = "TRAINCTL-PREFLIGHT "
PACKAGES = {"trainctl": ("trainctl",), "paddle": ("paddlepaddle-gpu", "paddlepaddle"), "paddledet": ("paddledet",)}

# Runs on each host as `python -c PROBE PAYLOAD_JSON`; prints one line MARK + JSON.
PROBE = r'''
import importlib.metadata as md, json, os, socket, sys
args = json.loads(sys.argv[1])
out = {"python": sys.executable, "cwd": os.getcwd(), "versions": {}}
for name, dists in args["packages"].items():
    version = None
    for dist in dists:
        try:
            version = md.version(dist)
            break
        except md.PackageNotFoundError:
            pass
    out["versions"][name] = version
def one_line(exc):
    return exc.one_line() if hasattr(exc, "one_line") else "%s: %s" % (type(exc).__name__, exc)
if args.get("config"):
    try:
        from trainctl.config import resolve
        rc = resolve(args["config"], overrides=args.get("overrides", []))
        out["config"] = str(rc.path)
        problems = []
        if args.get("tasks"):
            from trainctl.data import check
            for task in args["tasks"]:
                try:
                    check.quick_check(rc, (task,))
                except Exception as exc:
                    problems.append(one_line(exc))
        out["data_problems"] = problems
    except Exception as exc:
        out["config_error"] = one_line(exc)
try:
    from trainctl.core import ppdet_checks, ppdet_source
    src = ppdet_source.choose(args.get("ppdet"))
    out["ppdet"] = src.identity
    out["ppdet_description"] = src.describe()
    if src.kind == "missing":
        out["ppdet_error"] = src.describe()
    else:
        missing = ppdet_checks.missing_modules(src)
        if missing:
            out["ppdet_error"] = "ppdet cannot be imported, missing %s (%s)" % (
                ", ".join(missing), ppdet_checks.install_command(src, missing))
except Exception as exc:
    out["ppdet_error"] = one_line(exc)
if args.get("port"):
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(("", int(args["port"])))
        out["port_free"] = True
    except OSError as exc:
        out["port_free"] = False
        out["port_error"] = str(exc)
    finally:
        sock.close()
print("TRAINCTL-PREFLIGHT " + json.dumps(out), flush=True)
'''


@dataclass
class ProbeResult:
    node: RemoteNode
    returncode: int | None
    stdout: str = ""
    stderr: str = ""
    data: dict | None = None  # the probe's JSON, when it ran
    python: str = ""  # the remote python the probe was run with

    @classmethod
    def parse(cls, node: RemoteNode, returncode: int | None, stdout: str, stderr: str) -> "ProbeResult":
        data = None
        for line in stdout.splitlines():
            if line.startswith(MARK):
                try:
                    data = json.loads(line[len(MARK):])
                except json.JSONDecodeError:
                    data = None
        return cls(node, returncode, stdout, stderr, data)


@dataclass
class HostCheck:
    node: RemoteNode
    cells: dict[str, str] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    unreachable: bool = False


def probe_payload(node_rank: int, *, config: str | None, overrides: list[str], tasks: list[str],
                  port: int | None, ppdet: str | None = None) -> dict:
    return {
        "ppdet": ppdet,
        "packages": {k: list(v) for k, v in PACKAGES.items()},
        "config": config,
        "overrides": list(overrides),
        "tasks": list(tasks),
        "port": port if node_rank == 0 else None,
    }


def probe_command(node: RemoteNode, python: str, payload: dict) -> str:
    """The remote shell string for one probe (quoted once, like the launch itself)."""
    words = [python, "-c", PROBE, json.dumps(payload)]
    return f"cd {shlex.quote(node.workdir)} && " + " ".join(shlex.quote(w) for w in words)


def local_versions() -> dict[str, str | None]:
    found = {}
    for name, dists in PACKAGES.items():
        found[name] = None
        for dist in dists:
            try:
                found[name] = importlib.metadata.version(dist)
                break
            except importlib.metadata.PackageNotFoundError:
                pass
    return found


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else ""


def evaluate(results: list[ProbeResult], local: dict[str, str | None], port: int | None) -> list[HostCheck]:
    """Turn probe results into table cells and problems per host (pure)."""
    checks = []
    for r in results:
        check = HostCheck(r.node)
        checks.append(check)
        c = check.cells
        if r.returncode is None:
            check.unreachable = True
            check.problems.append("ssh timed out")
            c["ssh"] = "timeout"
            continue
        if r.data is None:
            why = _last_line(r.stderr) or f"exit code {r.returncode}"
            if r.returncode == 255:
                check.unreachable = True
                check.problems.append(f"not reachable by ssh: {why}")
                c["ssh"] = "FAIL"
            else:
                c["ssh"] = "ok"
                check.problems.append(f"the probe did not run (workdir {r.node.workdir}, python {r.python}): {why}")
            continue
        c["ssh"] = "ok"
        for name in PACKAGES:
            version = r.data["versions"].get(name)
            c[name] = version or "missing"
            if version is None:
                check.problems.append(f"{name} is not installed for {r.data['python']}")
        if "ppdet" in r.data or "ppdet_error" in r.data:
            c["ppdet"] = r.data.get("ppdet") or "FAIL"
            if r.data.get("ppdet_error"):
                check.problems.append(r.data["ppdet_error"])
        if "config_error" in r.data:
            c["config/data"] = "FAIL"
            check.problems.append(r.data["config_error"])
        elif r.data.get("data_problems"):
            c["config/data"] = "FAIL"
            check.problems.extend(r.data["data_problems"])
        elif "config" in r.data:
            c["config/data"] = "ok"
        if r.node.rank == 0 and port is not None and "port_free" in r.data:
            if r.data["port_free"]:
                c["port"] = f"{port} free"
            else:
                c["port"] = f"{port} busy"
                check.problems.append(f"master port {port} is in use ({r.data.get('port_error', '')})")
    # versions must agree: trainctl with the machine typing the command, all three across hosts
    ran = [ch for ch, r in zip(checks, results) if r.data is not None]
    for name in (*PACKAGES, "ppdet"):
        seen = {ch.cells.get(name) for ch in ran if ch.cells.get(name) not in (None, "missing", "FAIL")}
        reference = local.get(name) if name == "trainctl" else None
        if reference is None and len(seen) > 1:
            # the most common version is the reference; the others are named as different
            counts = [(sum(ch.cells.get(name) == v for ch in ran), v) for v in seen]
            reference = max(counts)[1]
        if reference is None:
            continue
        for ch in ran:
            value = ch.cells.get(name)
            if value not in (None, "missing", "FAIL") and value != reference:
                where = "this machine" if name == "trainctl" else "the other hosts"
                ch.problems.append(f"{name} {value} differs from {reference} on {where}")
    for ch in checks:
        ch.cells["result"] = "ok" if not ch.problems else "FAIL"
    return checks


def run_probes(plan: FanoutPlan, payloads: list[dict], timeout: float = 60.0) -> list[ProbeResult]:
    results: list[ProbeResult | None] = [None] * len(plan.nodes)

    def probe(i: int, node: RemoteNode) -> None:
        argv = plan.settings.argv(node.host) + [probe_command(node, plan.python, payloads[i])]
        try:
            done = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout)
            results[i] = ProbeResult.parse(node, done.returncode, done.stdout, done.stderr)
        except subprocess.TimeoutExpired as exc:
            results[i] = ProbeResult(node, None, str(exc.stdout or ""), str(exc.stderr or ""))
        except OSError as exc:
            results[i] = ProbeResult(node, 255, "", f"cannot run {argv[0]}: {exc}")
        results[i].python = plan.python

    threads = [threading.Thread(target=probe, args=(i, n)) for i, n in enumerate(plan.nodes)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return [r for r in results if r is not None]


COLUMNS = ["ssh", "trainctl", "paddle", "paddledet", "ppdet", "config/data", "port", "result"]


def format_table(checks: list[HostCheck]) -> str:
    rows = [[ch.node.label, ch.node.addr] + [ch.cells.get(col, "-") for col in COLUMNS] for ch in checks]
    return output.table(rows, headers=["host", "address"] + COLUMNS)


def raise_for(checks: list[HostCheck]) -> None:
    bad = [ch for ch in checks if ch.problems]
    if not bad:
        return
    message = "preflight failed: " + "; ".join(f"{ch.node.label}: {', '.join(ch.problems)}" for ch in bad)
    hint = "fix these on the hosts named (or skip the checks with --no-preflight)"
    if all(ch.unreachable for ch in bad):
        raise RuntimeFailure(message, hint="check `ssh -o BatchMode=yes HOST true` works for each host")
    raise UserError(message, hint=hint)


def preflight(plan: FanoutPlan, *, config: str | None, overrides: list[str], tasks: list[str],
              port: int | None, timeout: float = 60.0, ppdet: str | None = None) -> list[HostCheck]:
    """Probe every host, print one table, raise when any host has a problem."""
    payloads = [probe_payload(n.rank, config=config, overrides=overrides, tasks=tasks, port=port, ppdet=ppdet)
                for n in plan.nodes]
    output.info(f"preflight: checking {len(plan.nodes)} hosts")
    checks = evaluate(run_probes(plan, payloads, timeout), local_versions(), port)
    table = format_table(checks)
    if any(ch.problems for ch in checks):
        output.echo(table, err=True)  # the table is the explanation: shown even under --quiet
    else:
        output.info(table)
    raise_for(checks)
    return checks
