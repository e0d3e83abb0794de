"""Run this node's part of a Plan and watch it.

One process: the worker itself. Several: `python -m paddle.distributed.launch`
(or fleetrun), which starts one worker per device and writes
`<run>/logs/workerlog.N`; it prints local rank 0's log, which we stream.

Process hygiene (launch/procwatch.py): the child starts in its own session, so a
terminal Ctrl-C reaches only us; we forward SIGINT/SIGTERM to the child's process
group and escalate to SIGKILL after a grace period or on a second signal; workers
that outlive the launcher are found by the run marker and killed. When the job
fails, the rank that caused it is decided from evidence (launch/rootcause.py), not
from the order in which the ranks' exits arrived. Secrets are scrubbed from the
logs (launch/logscrub.py); --hang-timeout is watched by launch/hangwatch.py.
"""

from __future__ import annotations

import collections
import os
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from trainctl.core import envutil
from trainctl.core.procutil import parent_death_signal
from trainctl.launch import logscrub, procwatch, progress, rootcause
from trainctl.launch.hangwatch import HangWatch
from trainctl.launch.plan import NodePlan, Plan
from trainctl.launch.procwatch import RUN_ID_VAR, kill_leftovers, processes_with_marker  # noqa: F401 (re-exported)

GRACE_SECONDS = 20.0
TAIL_LINES = 30
EVIDENCE_LINES = 80  # lines of each worker's log read for evidence
_FAILED_RE = re.compile(r"Container rank (\d+) status (\w+) cmd .*? code (-?\d+) log (\S+)")
_CAUSE_WORDS = ("Error", "error", "Exception", "Aborted", "Killed", "Signal", "signal", "Timeout", "timed out",
                "terminate called")
WORKER_ERROR_PREFIX = rootcause.WORKER_ERROR_PREFIX


@dataclass
class ExecResult:
    exit_code: int
    status: str  # "done", "failed", "interrupted"
    signal: int | None = None  # the signal that interrupted us
    failed_rank: int | None = None  # global rank
    failed_local_rank: int | None = None
    failed_code: int | None = None
    failed_log: str | None = None
    log_tail: list[str] = field(default_factory=list)
    leftovers_killed: list[int] = field(default_factory=list)
    worker_error: str | None = None  # the failed worker's own `trainctl: error:` line, without the prefix
    note: str | None = None
    hang: str | None = None  # set when --hang-timeout stopped the job: what was found
    root_cause: rootcause.RootCause | None = None  # the judgement over this node's ranks

    def failure_dict(self) -> dict | None:
        if self.status == "done":
            return None
        data = {"rank": self.failed_rank, "local_rank": self.failed_local_rank, "code": self.failed_code,
                "log": self.failed_log, "signal": self.signal, "note": self.note, "hang": self.hang,
                "cause": self.cause_line(), "tail": self.log_tail[-TAIL_LINES:]}
        if self.root_cause is not None:
            data["root_cause"] = self.root_cause.to_dict()
        return data

    @property
    def failed_signal(self) -> str | None:
        """The signal that ended the failed rank: from its exit status, else from its log."""
        if self.failed_code is not None and self.failed_code < 0:
            return rootcause.signal_name(-self.failed_code)
        cause = self.root_cause.cause if self.root_cause is not None else None
        return cause.signal if cause is not None and cause.rank == self.failed_rank else None

    def cause_line(self) -> str | None:
        """The line of the failed worker's log that says why: its own error line, the line the
        root-cause judgement rested on, else the last line that looks like an error, else None."""
        if self.worker_error:
            return self.worker_error
        cause = self.root_cause.cause if self.root_cause is not None else None
        if cause is not None and cause.line:
            return cause.line[:300]
        for line in reversed(self.log_tail):
            text = line.strip()
            if text and any(word in text for word in _CAUSE_WORDS):
                return text[:300]
        return None


def _tail(path: Path, lines: int = TAIL_LINES) -> list[str]:
    try:
        with open(path, "rb") as f:
            f.seek(0, 2)
            size = f.tell()
            f.seek(max(0, size - 64 * 1024))
            text = f.read().decode("utf-8", "replace")
    except OSError:
        return []
    return text.splitlines()[-lines:]


class _Pump(threading.Thread):
    """Copies the child's output to our stdout (and a log file), remembering the tail."""

    def __init__(self, stream, sink, log_file=None):
        super().__init__(daemon=True)
        self.stream, self.sink, self.log_file = stream, sink, log_file
        self.tail: collections.deque[str] = collections.deque(maxlen=200)
        self.failures: list[tuple[int, str, int, str]] = []

    def _pieces(self):
        """The child's output as it comes: whole lines, and also the pieces a live progress
        line rewrites with a carriage return (so a terminal shows it while it changes)."""
        pending = b""
        for chunk in iter(lambda: self.stream.read1(65536), b""):
            pending += chunk
            while True:
                ends = [i for i in (pending.find(b"\n"), pending.find(b"\r")) if i >= 0]
                if not ends:
                    break
                cut = min(ends) + 1
                yield pending[:cut]
                pending = pending[cut:]
        if pending:
            yield pending

    def run(self) -> None:
        for raw in self._pieces():
            # a worker's one-line error is not output: trainctl reports it on stderr (flow.launch)
            if not raw.startswith(WORKER_ERROR_PREFIX.encode()):
                try:
                    self.sink.write(raw)
                    self.sink.flush()
                except (OSError, ValueError):
                    pass
            if self.log_file:
                try:
                    self.log_file.write(raw)
                    self.log_file.flush()
                except (OSError, ValueError):  # closed after a leftover process kept the pipe open
                    self.log_file = None
            if raw.endswith(b"\r"):
                continue  # a live line being rewritten: shown and logged, not a line of the tail
            line = raw.decode("utf-8", "replace").rstrip("\n").lstrip("\r")
            self.tail.append(line)
            match = _FAILED_RE.search(line)
            if match and match.group(2).lower().startswith("fail"):
                self.failures.append((int(match.group(1)), match.group(2), int(match.group(3)), match.group(4)))
        self.stream.close()


def run_node(plan: Plan, node: NodePlan | None = None, environ: dict[str, str] | None = None,
             grace: float = GRACE_SECONDS, sink=None, hang_timeout: float = 0.0) -> ExecResult:
    """Start this node's command, stream its output, wait, clean up; never leaves workers behind.

    hang_timeout (seconds, 0 = off): stop the job when no rank of this node completed an
    iteration for that long (launch/hangwatch.py), after dumping every worker's stack."""
    node = node or plan.local_node
    run_id = uuid.uuid4().hex
    env = envutil.clean_environ(dict(os.environ if environ is None else environ), node.unset)
    env.update(node.env)
    env[RUN_ID_VAR] = run_id
    log_dir = Path(node.cwd) / node.log_dir
    log_dir.mkdir(parents=True, exist_ok=True)
    direct = plan.launcher == "direct"
    log_path = log_dir / ("workerlog.0" if direct else "launcher.log")
    sink = sink or sys.stdout.buffer

    procwatch.become_subreaper()
    received: list[int] = []
    log_file = open(log_path, "ab")
    try:
        child = subprocess.Popen(node.argv, cwd=node.cwd, env=env, stdin=subprocess.DEVNULL,
                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
                                 preexec_fn=parent_death_signal)
    except OSError as exc:
        log_file.close()
        from trainctl.errors import RuntimeFailure
        raise RuntimeFailure(f"could not start {node.argv[0]}: {exc.strerror}") from exc

    def forward(signum, _frame):
        received.append(signum)
        sig = signal.SIGKILL if len(received) > 1 else signum
        try:
            os.killpg(child.pid, sig)
        except ProcessLookupError:
            pass

    previous = procwatch.catch_signals(forward)
    pump = _Pump(child.stdout, sink, log_file)
    pump.start()
    secrets = logscrub.secret_values(env)
    scrub_stop = threading.Event()
    if secrets and not direct:
        threading.Thread(target=logscrub.scrub_when_written, args=(log_dir, secrets, scrub_stop), daemon=True).start()
    watch = None
    if not direct:
        watch = procwatch.WorkerWatch(run_id, plan.device.nproc_per_node, parent=child.pid)
        watch.start()
    nproc = 1 if direct else plan.device.nproc_per_node
    run_root = Path(node.cwd) / plan.run_dir
    progress.clear_heartbeats(run_root, range(plan.node_rank * nproc, (plan.node_rank + 1) * nproc))
    hang_watch = HangWatch(run_root, log_dir, plan.node_rank * nproc, nproc, hang_timeout, direct,
                           node.log_dir) if hang_timeout else None
    hang = None
    try:
        code = _wait(child, received, grace, hang_watch, watch, run_id)
        if isinstance(code, str):  # hung: stacks are in the logs, everything was stopped
            hang, code = code, child.wait()
        pump.join(timeout=5)
    finally:
        procwatch.restore_signals(previous)
        if watch is not None:
            watch.stop()
            watch.join(timeout=2)
        killed = kill_leftovers(run_id)
        log_file.close()
        scrub_stop.set()
        logscrub.scrub_secrets(log_dir, secrets)

    result = ExecResult(exit_code=code, status="done" if code == 0 else "failed", leftovers_killed=killed)
    if hang:
        return _hang_result(result, hang, hang_watch, node)
    if received:
        result.status, result.signal = "interrupted", received[0]
        result.exit_code = 128 + received[0]
    if code == 0 and not received:
        return result
    if direct:
        result.failed_rank, result.failed_local_rank, result.failed_code = 0, 0, code
        result.failed_log = str(Path(node.log_dir) / "workerlog.0")
        result.log_tail = list(pump.tail)[-TAIL_LINES:]
        result.worker_error = rootcause.worker_error(pump.tail)
        if not received:
            evidence = rootcause.RankEvidence(rank=0, local_rank=0, pid=child.pid, exit_code=code,
                                              log_tail=list(pump.tail)[-EVIDENCE_LINES:], log=result.failed_log)
            result.root_cause = rootcause.judge([evidence], launcher_pids={os.getpid()})
        return result
    reported = {local: c for local, _, c, _ in pump.failures}
    killed_ranks = {local for local, pid in watch.pids.items() if pid in killed}
    root = _judge(plan, node, log_dir, run_root, watch, reported, killed_ranks, launcher=child.pid)
    result.root_cause = root
    cause = root.cause
    if cause is None:
        result.log_tail = list(pump.tail)[-TAIL_LINES:]
        return result
    result.failed_local_rank = cause.local_rank
    result.failed_rank = cause.rank
    result.failed_code = cause.exit_code
    result.failed_log = str(Path(node.log_dir) / f"workerlog.{cause.local_rank}")
    result.log_tail = _tail(log_dir / f"workerlog.{cause.local_rank}")
    result.worker_error = rootcause.worker_error(result.log_tail)
    result.note = _note(root, plan)
    return result


def _wait(child, received: list[int], grace: float | None, hang_watch: HangWatch | None, watch, run_id: str):
    """Wait for the launcher (or the worker) to exit: its exit code, or the hang's description
    when --hang-timeout stopped the job. A forwarded signal gets `grace` seconds, then SIGKILL."""
    while True:
        try:
            return child.wait(timeout=0.5)
        except subprocess.TimeoutExpired:
            pass
        if hang_watch is not None and not received:
            pids = {0: child.pid} if watch is None else dict(watch.pids)
            hang = hang_watch.check(pids)
            if hang:
                for pid in processes_with_marker(run_id):  # stacks are in the logs: stop everything now
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                return hang
        if received and grace is not None:
            start = time.monotonic()
            while child.poll() is None and time.monotonic() - start < grace and len(received) < 2:
                time.sleep(0.2)
            if child.poll() is None:
                try:
                    os.killpg(child.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass


def _judge(plan: Plan, node: NodePlan, log_dir: Path, run_root: Path, watch: procwatch.WorkerWatch,
           reported: dict[int, int], killed_ranks: set[int], launcher: int) -> rootcause.RootCause:
    """Collect every local rank's evidence and judge which one caused the failure."""
    nproc = plan.device.nproc_per_node
    base = plan.node_rank * nproc
    after = watch.exited_after()
    evidence = []
    for local in range(nproc):
        code = watch.exit_codes.get(local)
        if code is None:
            code = reported.get(local)
        evidence.append(rootcause.RankEvidence(
            rank=base + local, local_rank=local, pid=watch.pids.get(local), exit_code=code,
            exited_after=after.get(local), state=watch.states_at_first_exit.get(local),
            log_tail=_tail(log_dir / f"workerlog.{local}", EVIDENCE_LINES),
            log=str(Path(node.log_dir) / f"workerlog.{local}"), heartbeat=progress.read_heartbeat(run_root, base + local)))
    stopped_by_us = {base + local for local in killed_ranks}
    return rootcause.judge(evidence, launcher_pids={launcher, os.getpid()}, stopped_by_us=stopped_by_us)


def _note(root: rootcause.RootCause, plan: Plan) -> str | None:
    """What the judgement adds to 'rank R failed': the evidence, the other ranks, an ambiguity,
    or that this node's ranks only lost a peer on another node."""
    cause = root.cause
    if root.ambiguous:
        return root.summary()
    parts = [cause.why]
    if root.only_victims and plan.nnodes > 1:
        peer = f" (the peer at {cause.peer})" if cause.peer else ""
        parts.append(f"the rank that failed first is probably on another node{peer}; see that node's trainctl output")
    elif root.only_victims:
        parts.append("no rank of this job failed on its own: the network, or a process outside the job, broke "
                     "the collective")
    others = root.victims()
    if others:
        parts.append("then " + "; ".join(f"rank {v.rank} {v.why}" for v in others))
    return "; ".join(parts)


def _hang_result(result: ExecResult, hang: str, hang_watch: HangWatch, node: NodePlan) -> ExecResult:
    """A hang is a failure of the rank that stopped first (else the lowest rank of this node)."""
    rank = (hang_watch.culprits or [min(hang_watch.ranks)])[0]
    local = hang_watch.ranks[rank]
    result.status, result.exit_code = "failed", 1
    result.failed_rank, result.failed_local_rank, result.failed_code = rank, local, None
    result.failed_log = str(Path(node.log_dir) / f"workerlog.{local}")
    result.log_tail = _tail(hang_watch.log_path(local))
    result.hang = hang
    result.note = "hang: " + hang
    return result


def describe_failure(result: ExecResult, plan: Plan) -> str:
    if result.status == "interrupted":
        name = signal.Signals(result.signal).name if result.signal else "a signal"
        return f"interrupted by {name}; all workers stopped"
    if result.hang:
        return f"the job hung and was stopped: {result.hang}"
    if result.failed_rank is None:
        if plan.nnodes > 1:
            return (f"the launcher exited with code {result.exit_code} and no local worker failed: "
                    "a worker on another node probably failed (see that node's logs)")
        return f"the launcher exited with code {result.exit_code}"
    where = f"rank {result.failed_rank}"
    if plan.nnodes > 1 or plan.world_size > 1:
        where += f" (node {plan.node_rank}, local rank {result.failed_local_rank})"
    root = result.root_cause
    if root is not None and root.ambiguous:
        return f"workers failed and {result.note}; logs: {Path(result.failed_log).parent}"
    code = result.failed_code
    if code is not None and code < 0:
        how = f"was killed by {rootcause.signal_name(-code)}"
    elif code is not None:
        how = f"failed with exit code {code}"
    elif root is not None and root.cause is not None and root.cause.signal:
        how = f"was killed by {root.cause.signal}"
    else:
        how = "failed"
    if root is not None and root.only_victims:
        how = "lost a peer"
    elif root is not None and root.cause is not None and root.cause.kind == rootcause.STALLED:
        how = "stalled the job"
    text = f"worker {where} {how}; log: {result.failed_log}"
    if result.note:
        text += f" ({result.note})"
    return text
