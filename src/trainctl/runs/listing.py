"""Run directories: find them and read what each run left behind (pure, no paddle).

A run directory is one that holds a launch record (`run.json`, or
`run.node<R>.json` on a node R > 0 without a shared filesystem). What a run
shows in `trainctl runs` comes from files other parts of trainctl write:

- `run.json` (launch/flow.py + runrecord.py): task, config, devices, world
  size, start and end time, recorded status;
- `checkpoints.json` (core/checkpoints.py): the complete checkpoints with
  their epoch, and the evaluations with the best model; without the index (a
  run made by PaddleDetection's own tools) the `N.pdparams` and
  `model_final.pdparams` files are counted instead;
- `eval.json` (runner/worker.py): the result of an eval run;
- `config.yml`: the resolved config (its `epoch` is the planned epoch count);
- `vdl/`: VisualDL scalars (train --vdl).

A record that says "running" is checked against the processes of this host
(/proc): a launcher killed with SIGKILL never rewrites its record, and such a
run is shown as interrupted. Every probe takes `proc_root` so tests can use a
fixture tree.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import re
import socket
from dataclasses import asdict, dataclass, field
from pathlib import Path

from trainctl.core.checkpoints import INDEX_FILE, is_complete, read_index
from trainctl.errors import UserError
from trainctl.runrecord import RUN_FILE


EVAL_FILE = "eval.json"  # written by runner/worker.py (_evaluate)
VDL_DIR = "vdl"  # runner/worker.py: cfg["vdl_log_dir"] = <run_dir>/vdl
CONFIG_FILE = "config.yml"
FINISHED = ("done", "failed", "interrupted")
METRIC_KEYS = ("bbox", "keypoint", "mask")  # the keys ppdet's metrics report, in the order ppdet's Checkpointer prefers
SKIP_DIRS = {VDL_DIR, "logs", "best_model", "__pycache__"}
_NODE_RECORD = re.compile(r"^run\.node(\d+)\.json$")
_EPOCH_FILE = re.compile(r"^(\d+)\.pdparams$")


@dataclass
class RunInfo:
    run_dir: str
    record_file: str
    task: str | None = None
    status: str = "unknown"  # running, done, failed, interrupted, unknown
    status_note: str | None = None  # why the shown status differs from the recorded one
    recorded_status: str | None = None
    exit_code: int | None = None
    config: str | None = None
    hostname: str | None = None
    device: str | None = None  # "cpu" or "gpu"
    device_ids: list = field(default_factory=list)
    world_size: int | None = None
    nnodes: int | None = None
    start_time: str | None = None
    end_time: str | None = None
    duration_s: float | None = None
    duration_estimated: bool = False  # no end time recorded: duration up to the last file the run wrote
    epochs_done: int | None = None
    epochs_total: int | None = None
    final: bool = False  # model_final is there
    checkpoints: list = field(default_factory=list)  # complete checkpoint names, oldest first
    checkpoint_source: str | None = None  # "checkpoints.json" or "files"
    best: dict | None = None  # {"metric": "bbox", "value": 0.61, "epoch": 3, "source": ...}
    vdl_dir: str | None = None
    problems: list = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


# ------------------------------------------------------------------ finding


def record_file(run_dir: str | os.PathLike) -> Path | None:
    """The launch record of a run dir: run.json, else the lowest run.node<R>.json, else None."""
    run_dir = Path(run_dir)
    if (run_dir / RUN_FILE).is_file():
        return run_dir / RUN_FILE
    try:
        nodes = [(int(m.group(1)), p) for p in run_dir.iterdir() if (m := _NODE_RECORD.match(p.name)) and p.is_file()]
    except OSError:
        return None
    return min(nodes)[1] if nodes else None


def find_run_dirs(root: str | os.PathLike, max_depth: int = 4) -> list[Path]:
    """Run dirs at or below root (an eval run inside a train run's dir counts too), sorted by path."""
    root = Path(root)
    found: list[Path] = []

    def walk(directory: Path, depth: int) -> None:
        if record_file(directory) is not None:
            found.append(directory)
        if depth >= max_depth:
            return
        try:
            children = sorted(p for p in directory.iterdir() if p.is_dir() and not p.is_symlink())
        except OSError:
            return
        for child in children:
            if child.name.startswith(".") or child.name in SKIP_DIRS:
                continue
            walk(child, depth + 1)

    walk(root, 0)
    return found


# ------------------------------------------------------------------ reading


def read_json(path: Path) -> tuple[dict | None, str | None]:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return None, None
    except (OSError, ValueError) as exc:
        return None, f"cannot read {path.name}: {exc}"
    if not isinstance(data, dict):
        return None, f"{path.name} is not a JSON object"
    return data, None


def parse_time(text: str | None) -> _dt.datetime | None:
    if not text:
        return None
    try:
        value = _dt.datetime.fromisoformat(str(text))
    except ValueError:
        return None
    return value if value.tzinfo else value.replace(tzinfo=_dt.timezone.utc)


def planned_epochs(run_dir: Path) -> int | None:
    """The `epoch` of the run's resolved config.yml, or None."""
    from trainctl.config.yamlio import load_yaml_file

    path = run_dir / CONFIG_FILE
    if not path.is_file():
        return None
    try:
        data = load_yaml_file(path)
    except UserError:
        return None
    value = data.get("epoch") if isinstance(data, dict) else None
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def checkpoints(run_dir: Path, epochs_total: int | None) -> tuple[list[str], int | None, bool, str | None]:
    """(complete checkpoint names, epochs done, model_final there, source).

    With checkpoints.json only the complete checkpoints it lists count (a
    truncated or planted file is ignored); best_model is a copy, not progress.
    Without it, non-empty `N.pdparams` (saved after epoch N+1) and
    `model_final.pdparams` files count.
    """
    if (run_dir / INDEX_FILE).is_file():
        entries = [e for e in read_index(run_dir)["checkpoints"] if e.get("name") != "best_model" and is_complete(run_dir, e)]
        entries.sort(key=lambda e: (e.get("epoch", 0), e.get("time", 0)))
        epochs = [e["epoch"] for e in entries if isinstance(e.get("epoch"), int)]
        final = any(e["name"] == "model_final" for e in entries)
        return [e["name"] for e in entries], (max(epochs) if epochs else None), final, INDEX_FILE
    numbered: list[int] = []
    final = False
    try:
        files = list(run_dir.iterdir())
    except OSError:
        files = []
    for path in files:
        try:
            if not path.is_file() or path.stat().st_size == 0:
                continue
        except OSError:
            continue
        if m := _EPOCH_FILE.match(path.name):
            numbered.append(int(m.group(1)))
        elif path.name == "model_final.pdparams":
            final = True
    names = [str(n) for n in sorted(numbered)] + (["model_final"] if final else [])
    if not names:
        return [], None, False, None
    done = max(numbered) + 1 if numbered else None
    if final and epochs_total is not None:
        done = epochs_total
    return names, done, final, "files"


def metric_of(results: dict) -> tuple[str, float] | None:
    if not isinstance(results, dict):
        return None
    for key in METRIC_KEYS + tuple(sorted(results)):
        value = results.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return key, float(value)
    return None


def best_metric(run_dir: Path) -> dict | None:
    """The best evaluation of a run: checkpoints.json's best model, its evals, or eval.json (an eval run)."""
    index = read_index(run_dir) if (run_dir / INDEX_FILE).is_file() else None
    if index and isinstance(index.get("best"), dict):
        best = index["best"]
        found = metric_of(best.get("results") or {})
        if found:
            return {"metric": found[0], "value": found[1], "epoch": best.get("epoch"), "model": best.get("name"), "source": INDEX_FILE}
    if index and index.get("evals"):
        scored = [(found, e) for e in index["evals"] if (found := metric_of(e.get("results") or {}))]
        if scored:
            (metric, value), entry = max(scored, key=lambda item: item[0][1])
            return {"metric": metric, "value": value, "epoch": entry.get("epoch"), "model": None, "source": INDEX_FILE}
    result, _ = read_json(run_dir / EVAL_FILE)
    if result:
        found = metric_of(result.get("results") or {})
        if found:
            return {"metric": found[0], "value": found[1], "epoch": None, "model": result.get("weights"), "source": EVAL_FILE}
    return None


def last_activity(run_dir: Path) -> _dt.datetime | None:
    """The newest modification time among the files a running job keeps writing (logs, index, scalars)."""
    candidates = [run_dir / INDEX_FILE]
    for sub in ("logs", VDL_DIR):
        try:
            candidates += list((run_dir / sub).iterdir())
        except OSError:
            pass
    times = []
    for path in candidates:
        try:
            times.append(path.stat().st_mtime)
        except OSError:
            pass
    return _dt.datetime.fromtimestamp(max(times), _dt.timezone.utc) if times else None


# ------------------------------------------------------------------ liveness


def pid_alive(pid: int, proc_root: str = "/proc") -> bool:
    """True when /proc/<pid> exists and is not a zombie."""
    try:
        stat = Path(proc_root, str(int(pid)), "stat").read_text()
    except (OSError, ValueError):
        return False
    state = stat.rsplit(")", 1)[-1].split()
    return bool(state) and state[0] not in ("Z", "X")


def _cmdline(pid_dir: Path) -> list[str]:
    try:
        raw = (pid_dir / "cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode("utf-8", "replace") for part in raw.split(b"\0") if part]


def run_processes(run_dir: str | os.PathLike, proc_root: str = "/proc") -> list[int]:
    """Pids on this host whose command line runs this run's job file.

    Matches the worker (`python -m trainctl.runner.worker --job <run_dir>/job.json`)
    and `paddle.distributed.launch`, which carries the same arguments; a
    relative --job path is resolved against the process's working directory.
    """
    target = os.path.realpath(os.path.join(run_dir, "job.json"))
    pids = []
    try:
        entries = list(Path(proc_root).iterdir())
    except OSError:
        return []
    for pid_dir in entries:
        if not pid_dir.name.isdigit():
            continue
        argv = _cmdline(pid_dir)
        if "trainctl.runner.worker" not in argv:
            continue
        for flag, value in zip(argv, argv[1:]):
            if flag != "--job":
                continue
            if not os.path.isabs(value):
                try:
                    cwd = os.readlink(pid_dir / "cwd")
                except OSError:
                    continue
                value = os.path.join(cwd, value)
            if os.path.realpath(value) == target and pid_alive(int(pid_dir.name), proc_root):
                pids.append(int(pid_dir.name))
    return sorted(pids)


def decide_status(record: dict, run_dir: Path, proc_root: str = "/proc", hostname: str | None = None) -> tuple[str, str | None]:
    """(status, note). A finished record is trusted; a "running" one is checked on this host."""
    recorded = record.get("status")
    if recorded in FINISHED:
        return recorded, None
    if record.get("end_time"):
        return "unknown", f"the record ended with status {recorded!r}"
    this_host = hostname or socket.gethostname()
    host = record.get("hostname")
    if host and host != this_host:
        return "running", f"recorded as running on {host}; not checked from {this_host}"
    pid = record.get("pid")
    # the recorded launcher (a reused pid belongs to another program: only a live trainctl counts),
    # or any worker still running this run's job file (e.g. orphans of a killed launcher)
    launcher_alive = (isinstance(pid, int) and pid_alive(pid, proc_root)
                      and any("trainctl" in word for word in _cmdline(Path(proc_root, str(pid)))))
    if launcher_alive or run_processes(run_dir, proc_root):
        return "running", None
    return "interrupted", f"the record says {recorded or 'running'} but no launcher or worker process of this run is alive (killed?)"


# ------------------------------------------------------------------ one run


def read_run(run_dir: str | os.PathLike, proc_root: str = "/proc", hostname: str | None = None,
             now: _dt.datetime | None = None) -> RunInfo:
    run_dir = Path(run_dir)
    path = record_file(run_dir)
    if path is None:
        raise UserError(f"{run_dir} is not a run directory (no {RUN_FILE})", hint="pass a directory that `trainctl train` wrote")
    info = RunInfo(run_dir=str(run_dir), record_file=path.name)
    record, problem = read_json(path)
    if problem:
        info.problems.append(problem)
    record = record or {}
    plan = record.get("plan") if isinstance(record.get("plan"), dict) else {}

    info.task = record.get("task") or plan.get("task")
    info.recorded_status = record.get("status")
    info.exit_code = record.get("exit_code")
    info.hostname = record.get("hostname")
    if record:
        info.status, info.status_note = decide_status(record, run_dir, proc_root, hostname)
    config = record.get("config") or plan.get("config_name")
    info.config = Path(str(config)).name if config else None
    device = plan.get("device") if isinstance(plan.get("device"), dict) else {}
    info.device = device.get("kind")
    info.device_ids = list(device.get("ids") or [])
    info.world_size = plan.get("world_size")
    info.nnodes = plan.get("nnodes")
    info.start_time = record.get("start_time")
    info.end_time = record.get("end_time")
    start, end = parse_time(info.start_time), parse_time(info.end_time)
    if start and not end and info.status == "running":
        end = now or _dt.datetime.now(_dt.timezone.utc)
    if start and not end and info.status == "interrupted":
        end = last_activity(run_dir)  # killed without writing its end: the last file it wrote
        info.duration_estimated = end is not None
    if start and end:
        info.duration_s = max(0.0, (end - start).total_seconds())

    info.epochs_total = planned_epochs(run_dir) if info.task != "eval" else None
    info.checkpoints, info.epochs_done, info.final, info.checkpoint_source = checkpoints(run_dir, info.epochs_total)
    info.best = best_metric(run_dir)
    vdl = run_dir / VDL_DIR
    info.vdl_dir = str(vdl) if vdl.is_dir() else None
    return info


def list_runs(dirs: list[str] | None = None, proc_root: str = "/proc", hostname: str | None = None,
              now: _dt.datetime | None = None) -> list[RunInfo]:
    """Every run at or below each of dirs (default ./output), oldest start first."""
    dirs = list(dirs) if dirs else ["output"]
    found: list[Path] = []
    for directory in dirs:
        if not os.path.isdir(directory):
            hint = ("run trainctl where you trained, or pass the run directory: trainctl runs DIR"
                    if directory == "output" else "pass a run directory or a directory that holds runs")
            raise UserError(f"no such directory: {directory}", hint=hint)
        for run_dir in find_run_dirs(directory):
            if all(os.path.realpath(run_dir) != os.path.realpath(seen) for seen in found):
                found.append(run_dir)
    runs = [read_run(d, proc_root, hostname, now) for d in found]
    runs.sort(key=lambda r: (parse_time(r.start_time) or _dt.datetime.min.replace(tzinfo=_dt.timezone.utc), r.run_dir))
    return runs
