"""run.json: the launch record of a run (written atomically, secrets masked).

Node 0 writes run.json; node R > 0 writes run.node<R>.json, so nodes that
share a filesystem do not overwrite each other's record.
Written when the workers start (status "running") and rewritten when they
end (status "done", "failed" or "interrupted", exit code, end time).
Fields: argv, per-node commands, preset and env applied, LR report, versions,
hosts, start and end time, exit status. Versions come from package metadata,
never from importing paddle.
"""

from __future__ import annotations

import datetime as _dt
import importlib.metadata
import json
import os
import platform
import socket
import sys
from pathlib import Path
from typing import Any

from trainctl import __version__
from trainctl.fsutil import atomic_write_text
from trainctl.core import envutil

RUN_FILE = "run.json"


def record_name(node_rank: int, nnodes: int) -> str:
    """run.json for node 0; run.node<R>.json for the others (nodes may share one filesystem)."""
    return RUN_FILE if node_rank == 0 or nnodes == 1 else f"run.node{node_rank}.json"


def now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _dist_version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def versions() -> dict[str, str | None]:
    paddle = _dist_version("paddlepaddle-gpu")
    return {
        "trainctl": __version__,
        "python": platform.python_version(),
        "paddlepaddle": paddle or _dist_version("paddlepaddle"),
        "paddle_distribution": "paddlepaddle-gpu" if paddle else "paddlepaddle",
        "paddledet": _dist_version("paddledet"),
    }


def _mask_argv(argv: list[str]) -> list[str]:
    """Mask values of `--env SECRET=...` and `-o ...password=...` in the recorded argv."""
    masked = []
    for item in argv:
        key, sep, value = item.partition("=")
        if sep and envutil.is_secret(key.split(".")[-1]):
            masked.append(f"{key}={envutil.MASK}")
        else:
            masked.append(item)
    return masked


class RunRecord:
    def __init__(self, run_dir: str | Path, argv: list[str], plan: dict[str, Any], extra: dict | None = None):
        self.path = Path(run_dir) / record_name(plan.get("node_rank") or 0, plan.get("nnodes") or 1)
        self.data: dict[str, Any] = {
            "argv": _mask_argv(list(argv)),
            "task": plan.get("task"),
            "status": "starting",
            "exit_code": None,
            "hostname": socket.gethostname(),
            "pid": os.getpid(),  # the launcher; `trainctl runs` checks it to tell running from killed
            "node_rank": plan.get("node_rank"),
            "start_time": now(),
            "end_time": None,
            "versions": versions(),
            "python_executable": sys.executable,
            "net": plan.get("net"),
            "lr": plan.get("lr"),
            "commands": [{"rank": n["rank"], "host": n["host"], "command": n["command"], "cwd": n["cwd"]}
                         for n in plan.get("nodes", [])],
            "plan": plan,
        }
        self.data.update(extra or {})

    def write(self) -> None:
        atomic_write_text(self.path, json.dumps(self.data, indent=2, sort_keys=False, default=str) + "\n")

    def start(self) -> None:
        self.data["status"] = "running"
        self.write()

    def finish(self, exit_code: int, status: str, failure: dict | None = None) -> None:
        self.data.update(status=status, exit_code=exit_code, end_time=now())
        if failure:
            self.data["failure"] = failure
        self.write()
