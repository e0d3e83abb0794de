"""One node's run of a job with `--max-restarts`: each attempt recorded in run.json, its logs
archived, and the job started again from the newest complete checkpoint after a failure
(`core.restart` is the loop; the ssh fan-out's controller uses the same one).

`launch.flow.launch` writes the run directory and calls `run_attempts`; a fresh trainctl
started with `--resume auto` continues the attempt list an earlier one left (`earlier_attempts`).
"""

from __future__ import annotations

import os
from pathlib import Path

from trainctl import output
from trainctl.launch.plan import Plan


def run_attempts(plan: Plan, node, job, record, budget: int, hang_timeout: float, earlier: int, run_dir: Path):
    """Run the job, and again from the newest complete checkpoint after each failure, up to
    `budget` restarts; returns (the last attempt's result, restarts done), or (None, n) when
    interrupted while waiting to restart. Each attempt is recorded in run.json."""
    from trainctl.core import restart
    from trainctl.core.restart import run_with_restarts
    from trainctl.launch import executor

    log_dir = Path(node.cwd) / node.log_dir
    entry: dict = {}

    def run_once(attempt: int):
        nonlocal entry
        if attempt:
            job.resume, job.attempt = "auto", attempt
            job.save(run_dir / "job.json")
        entry = _attempt_start(record, earlier + attempt, job, run_dir)
        try:
            result = executor.run_node(plan, node, hang_timeout=hang_timeout)
        except BaseException as exc:
            _attempt_end(record, entry, None, plan, node)
            record.finish(1, "failed", {"error": str(exc)})
            raise
        _attempt_end(record, entry, result, plan, node)
        return result

    def before_wait(attempt: int, wait: float, result) -> None:
        output.warn(f"attempt {attempt} of {budget + 1} failed: {executor.describe_failure(result, plan)}")
        archive_logs(log_dir, entry["attempt"], entry)
        _clear_progress(run_dir, plan)
        record.write()
        output.info(f"restarting the job {restart.when(wait)} from the newest complete checkpoint "
                    f"(restart {attempt} of {budget}, --max-restarts)")

    result, restarts, interrupted = run_with_restarts(
        run_once, lambda result, attempt: should_restart(result, plan, attempt, budget), budget, before_wait,
        _sleep_interruptibly)
    if interrupted:
        record.finish(130, "interrupted", {"note": "interrupted while waiting to restart"})
        output.error("interrupted while waiting to restart; all workers stopped")
        return None, restarts
    return result, restarts


def report_root_cause(result, plan: Plan) -> None:
    """Under the ssh fan-out's guard: one machine-readable line with this node's verdict, which
    the controller weighs against the other hosts' (cluster/ssh.py)."""
    from trainctl.launch import executor, rootcause

    if not os.environ.get(rootcause.ROOT_CAUSE_VAR) or result.status != "failed":
        return
    root = result.root_cause
    cause = root.cause if root is not None and not result.hang else None
    if result.hang:
        cause = rootcause.RankVerdict(rank=result.failed_rank, local_rank=result.failed_local_rank,
                                      kind=rootcause.STALLED, why=result.hang)
    output.echo(rootcause.report_line(cause, plan.node_rank, executor.describe_failure(result, plan)), err=True)


def is_user_error(result, plan: Plan) -> bool:
    """A user error the worker found (bad data, weights of another model): exit 2, never restarted."""
    return bool(result.worker_error) and (result.failed_code == 2 or (plan.launcher == "direct" and result.exit_code == 2))


def earlier_attempts(path: Path) -> list[dict]:
    """The attempts an earlier trainctl process recorded for this run directory (its last one
    marked lost if that process died without writing how it ended)."""
    import json

    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return []
    attempts = [a for a in data.get("attempts") or [] if isinstance(a, dict) and isinstance(a.get("attempt"), int)]
    if attempts and "end_time" not in attempts[-1]:
        attempts[-1].update(end_time=None, status="lost", note="the launcher ended without recording the end")
    return attempts


def should_restart(result, plan: Plan, attempt: int, budget: int) -> bool:
    """Restart a failed job (a crash, a lost peer, a hang) within the budget; never an interruption
    (Ctrl-C, SIGTERM) or a user error (exit 2: bad data, wrong weights fail the same way again)."""
    return result.status == "failed" and attempt < budget and not is_user_error(result, plan)


def _attempt_start(record, attempt: int, job, run_dir: Path) -> dict:
    """Add attempt `attempt` (0 = the first) to run.json with the checkpoint it resumes from."""
    from trainctl.core.checkpoints import latest_checkpoint
    from trainctl.runrecord import now

    resumed = None
    if job.resume == "auto":
        found = latest_checkpoint(run_dir)
        if found:
            resumed = {"name": found["name"], "epoch": found["epoch"], "iter": found.get("iter", 0),
                       "global_iter": found.get("global_iter")}
    elif job.resume:
        resumed = {"name": job.resume}
    entry = {"attempt": attempt + 1, "start_time": now(), "resumed_from": resumed}
    record.data.setdefault("attempts", []).append(entry)
    record.data["restarts"] = len(record.data["attempts"]) - 1
    record.write()
    return entry


def _attempt_end(record, entry: dict, result, plan: Plan, node) -> None:
    """One attempt in run.json: start, end, how it ended, and for a failure the rank, host,
    exit code or signal, the cause line of its log and the log's path."""
    import socket

    from trainctl.runrecord import now

    entry["end_time"] = now()
    if result is None:
        entry["status"] = "failed"
    else:
        entry["status"], entry["exit_code"] = result.status, result.exit_code
        if result.status != "done":
            code = result.failed_code
            entry["failure"] = {
                "rank": result.failed_rank, "host": socket.gethostname(), "address": node.host, "node_rank": plan.node_rank,
                "exit_code": code if code is not None and code >= 0 else None,
                "signal": result.failed_signal,
                "hang": result.hang is not None, "cause": result.cause_line(), "note": result.note,
                "log": result.failed_log,
            }
            if result.root_cause is not None:  # every rank's verdict and evidence (launch/rootcause.py)
                entry["failure"]["root_cause"] = result.root_cause.to_dict()
    record.write()


def archive_logs(log_dir: Path, attempt: int, entry: dict) -> None:
    """Move attempt N's logs (1 = the first) into logs/attempt<N>/ so the next one starts fresh logs."""
    target = log_dir / f"attempt{attempt}"
    target.mkdir(parents=True, exist_ok=True)
    for path in list(log_dir.iterdir()):
        if path.is_file():
            os.replace(path, target / path.name)
    failure = entry.get("failure")
    if failure and failure.get("log"):
        log = Path(failure["log"])
        failure["log"] = str(log.parent / target.name / log.name)


def _clear_progress(run_dir: Path, plan: Plan) -> None:
    """Drop this node's heartbeats: the next attempt's first one marks its first iteration."""
    from trainctl.core.heartbeat import clear_heartbeats

    per_node = plan.world_size // max(1, plan.nnodes)
    clear_heartbeats(run_dir, range(plan.node_rank * per_node, (plan.node_rank + 1) * per_node))


def _sleep_interruptibly(seconds: float) -> bool:
    """Sleep; True when SIGINT/SIGTERM arrived meanwhile (the user stops the run between attempts)."""
    import time

    from trainctl.launch import procwatch

    got: list[int] = []
    previous = procwatch.catch_signals(lambda signum, _frame: got.append(signum))
    try:
        deadline = time.monotonic() + seconds
        while not got and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        procwatch.restore_signals(previous)
    return bool(got)
