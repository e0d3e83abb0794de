"""`trainctl sweep`: every combination of a few config values, each an ordinary training run (pure, no paddle).

    trainctl sweep -c roadsign_demo.yml --vary TrainReader.batch_size=2,4 --vary epoch=4,8 --repeats 3 --seed 0

makes 2 x 2 settings x 3 repeats = 12 runs under one sweep directory (default
output/<config name>-sweep/), each run a directory of its own named after its
setting (`batch_size=2,epoch=4,seed=0`). A run is `trainctl train` with the
sweep's flags, the setting's `-o` overrides and its seed (repeat k of a setting
uses seed S + k). `sweep.json` in the sweep directory lists every run, its
overrides and its seed; each run's run.json records them too.

A rerun of the same command skips the runs whose record says done and resumes
the others from their newest complete checkpoint (`--resume auto`).
"""

from __future__ import annotations

import itertools
import json
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

from trainctl.errors import UserError
from trainctl.fsutil import atomic_write_text

SWEEP_FILE = "sweep.json"


@dataclass
class SweepRun:
    name: str
    run_dir: str
    overrides: list[str]  # the setting's -o KEY=VALUE, after the sweep's own -o
    seed: int | None
    repeat: int
    setting: dict = field(default_factory=dict)  # KEY -> value text
    gpus: str | None = None  # the GPU group this run uses, when runs share out --gpus

    def to_dict(self) -> dict:
        return asdict(self)


def split_values(text: str) -> list[str]:
    """'1,2' -> ['1', '2']; commas inside [...], {...} or quotes stay ('[224,256],[320]' -> two values)."""
    values, depth, quote, current = [], 0, "", ""
    for char in text:
        if quote:
            quote = "" if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char in "[{":
            depth += 1
        elif char in "]}":
            depth -= 1
        elif char == "," and depth == 0:
            values.append(current.strip())
            current = ""
            continue
        current += char
    values.append(current.strip())
    return values


def parse_vary(specs: list[str] | tuple[str, ...]) -> list[tuple[str, list[str]]]:
    """['KEY=V1,V2', ...] -> [(KEY, [V1, V2]), ...]; one clear error for a bad spec."""
    if not specs:
        raise UserError("nothing to vary", hint="add --vary KEY=V1,V2 (e.g. --vary TrainReader.batch_size=2,4)")
    parsed: list[tuple[str, list[str]]] = []
    for spec in specs:
        key, sep, values_text = spec.partition("=")
        key = key.strip()
        values = split_values(values_text) if sep else []
        if not key or not sep or not values or any(v == "" for v in values):
            raise UserError(f"bad --vary {spec!r}", hint="write --vary KEY=V1,V2 (values separated by commas)")
        if any(key == k for k, _ in parsed):
            raise UserError(f"--vary {key} is given twice", hint="list all its values in one --vary KEY=V1,V2,V3")
        if len(set(values)) != len(values):
            raise UserError(f"--vary {spec!r} repeats a value", hint="use --repeats N to run a setting several times")
        parsed.append((key, values))
    return parsed


def _short_names(keys: list[str]) -> dict[str, str]:
    """The last part of each dotted key, or the whole key where two would read the same."""
    last = {k: k.rsplit(".", 1)[-1] for k in keys}
    return {k: (last[k] if list(last.values()).count(last[k]) == 1 else k) for k in keys}


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._=,+-]+", "_", text).strip("_") or "_"


def plan_runs(sweep_dir: str, vary: list[tuple[str, list[str]]], repeats: int = 1, seed: int | None = 0,
              gpu_groups: list[str] | None = None) -> list[SweepRun]:
    """Every combination of the varied values (first key slowest), each `repeats` times."""
    if repeats < 1:
        raise UserError(f"--repeats {repeats}: a sweep runs each setting at least once", hint="use --repeats 1 or more")
    keys = [k for k, _ in vary]
    short = _short_names(keys)
    runs: list[SweepRun] = []
    for values in itertools.product(*(v for _, v in vary)):
        setting = dict(zip(keys, values))
        base = ",".join(f"{short[k]}={v}" for k, v in setting.items())
        for repeat in range(repeats):
            run_seed = None if seed is None else seed + repeat
            name = base + (f",seed={run_seed}" if repeats > 1 and run_seed is not None else (f",repeat={repeat}" if repeats > 1 else ""))
            runs.append(SweepRun(name=_safe(name), run_dir=os.path.join(sweep_dir, _safe(name)),
                                 overrides=[f"{k}={v}" for k, v in setting.items()], seed=run_seed, repeat=repeat,
                                 setting=dict(setting)))
    if gpu_groups:
        for i, run in enumerate(runs):
            run.gpus = gpu_groups[i % len(gpu_groups)]
    return runs


def gpu_groups(gpus: str | None, per_run: int | None) -> list[str] | None:
    """--gpus 0,1,2,3 --gpus-per-run 2 -> ['0,1', '2,3'] (runs side by side, one group each)."""
    if not per_run:
        return None
    if not gpus:
        raise UserError("--gpus-per-run needs --gpus", hint="e.g. --gpus 0,1,2,3 --gpus-per-run 1")
    ids = [g.strip() for g in gpus.split(",") if g.strip()]
    if per_run < 1 or len(ids) % per_run:
        raise UserError(f"--gpus-per-run {per_run} does not divide the {len(ids)} GPUs of --gpus {gpus}",
                        hint=f"pick a divisor of {len(ids)}")
    return [",".join(ids[i:i + per_run]) for i in range(0, len(ids), per_run)]


def run_status(run_dir: str) -> str:
    """done, started (a record or checkpoints exist, not done) or new."""
    from trainctl.runrecord import RUN_FILE

    path = Path(run_dir) / RUN_FILE
    if not path.is_file():
        return "new"
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return "started"
    return "done" if isinstance(record, dict) and record.get("status") == "done" else "started"


def write_sweep_file(sweep_dir: str, config: str, vary, repeats: int, seed, base_overrides: list[str],
                     runs: list[SweepRun]) -> Path:
    path = Path(sweep_dir) / SWEEP_FILE
    data = {"config": config, "vary": [{"key": k, "values": v} for k, v in vary], "repeats": repeats, "seed": seed,
            "overrides": list(base_overrides), "runs": [r.to_dict() for r in runs]}
    atomic_write_text(path, json.dumps(data, indent=2) + "\n")
    return path


def format_runs(runs: list[SweepRun], statuses: dict[str, str] | None = None) -> str:
    from trainctl.output import table

    rows = []
    for r in runs:
        row = [r.name, " ".join(f"-o {o}" for o in r.overrides), "-" if r.seed is None else str(r.seed)]
        if any(r.gpus for r in runs):
            row.append(r.gpus or "-")
        if statuses is not None:
            row.append(statuses.get(r.run_dir, "new"))
        rows.append(row)
    headers = ["RUN", "OVERRIDES", "SEED"] + (["GPUS"] if any(r.gpus for r in runs) else []) + (["STATUS"] if statuses is not None else [])
    return table(rows, headers=headers)


# ------------------------------------------------------------------ running


def run_sweep(config: str, base_overrides: list[str], topts, lopts, runs: list[SweepRun], sweep_dir: str, vary,
              repeats: int, seed, parallel: int = 1, child_args: list[str] | None = None) -> int:
    """Check every run's config (as --dry-run does), then list (--dry-run) or train the runs not done yet.

    Returns the exit code: 0 when every run is done, 1 when one failed, 130 on an interrupt."""
    import dataclasses

    from trainctl import output
    from trainctl.launch import flow

    def run_options(run: SweepRun, dry: str | None):
        status = run_status(run.run_dir)
        t = dataclasses.replace(topts, overrides=list(base_overrides) + run.overrides, output=run.run_dir, seed=run.seed,
                                resume="auto" if status == "started" else None, dry_run=dry)
        lo = dataclasses.replace(lopts, gpus=run.gpus) if run.gpus else lopts
        return t, lo

    for run in runs:  # a bad key or value fails here, before any run starts
        t, lo = run_options(run, "text")
        flow.prepare("train", t, lo)
    statuses = {r.run_dir: run_status(r.run_dir) for r in runs}
    labels = {"done": "done (skipped)", "started": "unfinished (resumes)", "new": "new"}
    if topts.dry_run is not None:
        if topts.dry_run == "json":
            output.echo(json.dumps({"sweep_dir": sweep_dir, "runs": [dict(r.to_dict(), status=statuses[r.run_dir]) for r in runs]}, indent=2))
        else:
            output.echo(f"sweep {sweep_dir}: {len(runs)} runs of {config}" + (f" with -o {' '.join(base_overrides)}" if base_overrides else ""))
            output.echo(format_runs(runs, {k: labels[v] for k, v in statuses.items()}))
        return 0

    Path(sweep_dir).mkdir(parents=True, exist_ok=True)
    write_sweep_file(sweep_dir, config, vary, repeats, seed, base_overrides, runs)
    todo = [r for r in runs if statuses[r.run_dir] != "done"]
    skipped = len(runs) - len(todo)
    output.info(f"sweep {sweep_dir}: {len(runs)} runs, {len(todo)} to train"
                + (f" ({skipped} done earlier, skipped)" if skipped else "")
                + (f", {parallel} at a time" if parallel > 1 and len(todo) > 1 else ""))
    if parallel > 1 and len(todo) > 1:
        failed = _run_side_by_side(config, base_overrides, todo, runs, parallel, child_args or [], statuses)
    else:
        failed = []
        for run in todo:
            index = runs.index(run) + 1
            output.info(f"[{index}/{len(runs)}] {run.name}: -o {' '.join(run.overrides)}, seed {run.seed}"
                        + (" (resuming)" if statuses[run.run_dir] == "started" else ""))
            t, lo = run_options(run, None)
            try:
                code = flow.run("train", t, lo, argv=_train_argv(config, base_overrides, run, t.resume))
            except SystemExit as exc:  # pragma: no cover - flow returns codes; kept for safety
                code = exc.code if isinstance(exc.code, int) else 1
            except Exception as exc:  # noqa: BLE001 - a failed run does not stop the sweep
                from trainctl.errors import TrainctlError

                if not isinstance(exc, TrainctlError):
                    raise
                output.error(f"run {run.name}: {exc.one_line()}")
                code = exc.exit_code
            if code == 130 or code in (128 + 2, 128 + 15):
                output.error(f"sweep interrupted during {run.name}; run the same command again to finish it")
                return 130
            if code:
                failed.append(run.name)
    if failed:
        output.error(f"{len(failed)} of {len(runs)} runs failed: {', '.join(failed)} (their logs are in their run directories)")
        return 1
    output.info(f"sweep done: {len(runs)} runs in {sweep_dir}; compare them: trainctl runs compare {sweep_dir}")
    return 0


def _train_argv(config: str, base_overrides: list[str], run: SweepRun, resume: str | None) -> list[str]:
    """The `trainctl train` command line a run is equivalent to (recorded in its run.json)."""
    argv = ["trainctl", "train", "-c", config]
    for override in list(base_overrides) + run.overrides:
        argv += ["-o", override]
    argv += ["--output", run.run_dir]
    if run.seed is not None:
        argv += ["--seed", str(run.seed)]
    if resume:
        argv += ["--resume", resume]
    if run.gpus:
        argv += ["--gpus", run.gpus]
    return argv


def _run_side_by_side(config: str, base_overrides: list[str], todo: list[SweepRun], runs: list[SweepRun], parallel: int,
                      child_args: list[str], statuses: dict[str, str]) -> list[str]:
    """Each run as its own `trainctl train` process, `parallel` at a time; output to <run_dir>/sweep.log."""
    import signal
    import subprocess
    import sys
    import time

    from trainctl import output

    env = dict(os.environ)
    if not any(r.gpus for r in todo) and "OMP_NUM_THREADS" not in env:
        env["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // parallel))  # share the cores, do not fight
    pending = list(todo)
    active: dict[subprocess.Popen, tuple[SweepRun, float, object]] = {}
    failed: list[str] = []
    try:
        while pending or active:
            while pending and len(active) < parallel:
                run = pending.pop(0)
                Path(run.run_dir).mkdir(parents=True, exist_ok=True)
                resume = "auto" if statuses[run.run_dir] == "started" else None
                argv = [sys.executable, "-m", "trainctl"] + _train_argv(config, base_overrides, run, resume)[1:] + child_args
                log = open(Path(run.run_dir) / "sweep.log", "ab")
                child = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env)
                active[child] = (run, time.monotonic(), log)
                output.info(f"[{runs.index(run) + 1}/{len(runs)}] started {run.name}" + (f" on GPUs {run.gpus}" if run.gpus else "")
                            + f" (log {Path(run.run_dir) / 'sweep.log'})")
            time.sleep(0.5)
            for child in [c for c in active if c.poll() is not None]:
                run, started, log = active.pop(child)
                log.close()
                took = time.monotonic() - started
                state = "done" if child.returncode == 0 else f"failed (exit {child.returncode})"
                output.info(f"[{runs.index(run) + 1}/{len(runs)}] {state}: {run.name} in {took:.0f}s")
                if child.returncode:
                    failed.append(run.name)
    except KeyboardInterrupt:
        for child in active:
            child.send_signal(signal.SIGTERM)  # trainctl train stops its workers and records the run as interrupted
        for child, (_run, _started, log) in active.items():
            try:
                child.wait(timeout=30)
            except subprocess.TimeoutExpired:
                child.kill()
            log.close()
        raise
    return failed
