"""Run this node's part of a Plan and watch it.

One process: the worker itself. Several: `python -m paddle.distributed.launch`
(or fleetrun), which starts one worker per device and writes
`<run>/logs/workerlog.N`; it prints local rank 0's log, which we stream.

Process hygiene:
- the child starts in its own session, so a terminal Ctrl-C reaches only us;
  we forward SIGINT/SIGTERM to the child's process group, and escalate to
  SIGKILL after a grace period or on a second signal;
- paddle launch puts each worker in a session of its own (os.setsid), so a
  group kill of the launcher does not reach them. Every worker therefore
  inherits TRAINCTL_RUN_ID=<unique id>; when the launcher is gone we find
  leftovers by that marker in /proc/<pid>/environ and kill them. We are also
  a child subreaper (prctl PR_SET_CHILD_SUBREAPER), so orphaned workers
  become our children and are reaped, not left as zombies.
"""

from __future__ import annotations

import collections
import ctypes
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

from trainctl.launch import envutil, progress
from trainctl.launch.plan import NodePlan, Plan

RUN_ID_VAR = "TRAINCTL_RUN_ID"
GRACE_SECONDS = 20.0
TAIL_LINES = 30
_FAILED_RE = re.compile(r"Container rank (\d+) status (\w+) cmd .*? code (-?\d+) log (\S+)")
PR_SET_CHILD_SUBREAPER = 36
_CAUSE_WORDS = ("Error", "error", "Exception", "Aborted", "Killed", "Signal", "signal", "Timeout", "timed out",
                "terminate called")


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

    def failure_dict(self) -> dict | None:
        if self.status == "done":
            return None
        return {"rank": self.failed_rank, "local_rank": self.failed_local_rank, "code": self.failed_code,
                "log": self.failed_log, "signal": self.signal, "note": self.note, "hang": self.hang,
                "cause": self.cause_line(), "tail": self.log_tail[-TAIL_LINES:]}

    def cause_line(self) -> str | None:
        """The line of the failed worker's log that says why: its own error line, else the last
        line that looks like an error (a Python exception, a signal, gloo's abort), else None."""
        if self.worker_error:
            return self.worker_error
        for line in reversed(self.log_tail):
            text = line.strip()
            if text and any(word in text for word in _CAUSE_WORDS):
                return text[:300]
        return None


def _become_subreaper() -> None:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    except (OSError, AttributeError):
        pass


def processes_with_marker(run_id: str, proc_root: str = "/proc") -> list[int]:
    """Live processes (not zombies) whose environment carries TRAINCTL_RUN_ID=run_id."""
    needle = f"{RUN_ID_VAR}={run_id}".encode()
    found = []
    me = os.getpid()
    for entry in Path(proc_root).iterdir():
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        try:
            environ = (entry / "environ").read_bytes()
            if needle not in environ.split(b"\0"):
                continue
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        state = stat.rsplit(")", 1)[-1].split()[0]
        if state not in ("Z", "X"):
            found.append(int(entry.name))
    return sorted(found)


def kill_leftovers(run_id: str, grace: float = 3.0) -> list[int]:
    """SIGTERM, then SIGKILL, every live process of this run; reap our own children."""
    pids = processes_with_marker(run_id)
    for pid in pids:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and processes_with_marker(run_id):
        _reap(pids)
        time.sleep(0.1)
    for pid in processes_with_marker(run_id):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    time.sleep(0.1)
    _reap(pids)
    return pids


def _reap(pids: list[int]) -> None:
    for pid in pids:
        try:
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            pass


WORKER_ERROR_PREFIX = "trainctl: error: "


def _worker_error(lines) -> str | None:
    """The last one-line error a worker printed (trainctl.output.error), without the prefix."""
    found = None
    for line in lines:
        if line.startswith(WORKER_ERROR_PREFIX):
            found = line[len(WORKER_ERROR_PREFIX):].strip()
    return found


# files paddle.distributed.launch (2.6, 3.3) writes into --log_dir with the whole environment:
# envlog.N and backup_env.N.json when it starts the workers, <job>.<pod>.log (str(os.environ))
_ENV_DUMPS = ("envlog.", "backup_env.")


def _secret_values(env: dict[str, str]) -> list[bytes]:
    values = {v for k, v in env.items() if envutil.is_secret(k) and len(v) >= 4}
    return sorted((v.encode() for v in values), key=len, reverse=True)


def scrub_secrets(log_dir: Path, secrets: list[bytes], only_env_dumps: bool = False) -> list[str]:
    """Replace secret values in the files of log_dir with ***; returns the files changed.

    During the run only paddle's environment dumps are rewritten (the workers append
    to their logs, which a rename would cut off); at the end every file is.
    """
    changed = []
    if not secrets:
        return changed
    for path in sorted(log_dir.rglob("*")):
        if not path.is_file() or (only_env_dumps and not path.name.startswith(_ENV_DUMPS)):
            continue
        try:
            data = path.read_bytes()
        except OSError:
            continue
        clean = data
        for secret in secrets:
            clean = clean.replace(secret, envutil.MASK.encode())
        if clean != data:
            from trainctl.fsutil import atomic_write_bytes

            atomic_write_bytes(path, clean)
            changed.append(str(path))
    return changed


def _scrub_when_written(log_dir: Path, secrets: list[bytes], stop: threading.Event, seconds: float = 120) -> None:
    """Scrub paddle's environment dumps as soon as they appear (they are written once, at start)."""
    deadline = time.monotonic() + seconds
    while not stop.is_set() and time.monotonic() < deadline:
        if any(p.name.startswith(_ENV_DUMPS) for p in log_dir.rglob("*")):
            stop.wait(1.0)  # let the launcher finish writing them
            scrub_secrets(log_dir, secrets, only_env_dumps=True)
            return
        stop.wait(0.5)


def _parent_death_signal() -> None:
    """In the child before exec: SIGTERM it when trainctl dies, even by SIGKILL (Linux prctl)."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGTERM), 0, 0, 0)  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


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


def _parent_pid(entry: Path) -> int | None:
    try:
        return int((entry / "stat").read_text().rsplit(")", 1)[-1].split()[1])
    except (OSError, IndexError, ValueError):
        return None


def zombie_exit_code(pid: int, proc_root: str = "/proc") -> int | None:
    """How a child of another process ended, while it is a zombie not yet reaped: the exit code,
    or -signal (Linux /proc/<pid>/stat field 52, exit_code in waitpid form)."""
    try:
        fields = (Path(proc_root) / str(pid) / "stat").read_text().rsplit(")", 1)[-1].split()
        if fields[0] != "Z":
            return None
        status = int(fields[49])
    except (OSError, IndexError, ValueError):
        return None
    return -(status & 0x7F) if status & 0x7F else (status >> 8) & 0xFF


class _WorkerWatch(threading.Thread):
    """Notes the order in which this node's workers exit.

    paddle launch checks its workers about once a second and names only the
    first failed one in rank order; when one worker dies, its peers often
    abort within that second (the collective breaks), and the launcher may
    then blame local rank 0. Watching /proc ourselves tells which worker
    stopped first. Workers are found by our run marker plus the
    PADDLE_LOCAL_RANK paddle gives each of them.
    """

    def __init__(self, run_id: str, expected: int, interval: float = 0.2, parent: int | None = None):
        super().__init__(daemon=True)
        self.parent = parent  # the launcher: workers are its direct children
        self.needle = f"{RUN_ID_VAR}={run_id}".encode()
        self.expected, self.interval = expected, interval
        self.pids: dict[int, int] = {}  # local rank -> pid
        self.exits: list[tuple[float, int]] = []  # (monotonic time, local rank), in order
        self.states_at_first_exit: dict[int, str | None] = {}  # the others' /proc state then (T: stopped)
        self.exit_codes: dict[int, int] = {}  # read from a worker's zombie before the launcher reaps it
        self._halt = threading.Event()

    def _scan(self) -> None:
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit() or int(entry.name) in self.pids.values():
                continue
            try:
                environ = (entry / "environ").read_bytes().split(b"\0")
            except OSError:
                continue
            if self.needle not in environ:
                continue
            if self.parent is not None and _parent_pid(entry) != self.parent:
                continue
            for item in environ:
                if item.startswith(b"PADDLE_LOCAL_RANK="):
                    try:
                        self.pids.setdefault(int(item.split(b"=", 1)[1]), int(entry.name))
                    except ValueError:
                        pass

    @staticmethod
    def _gone(pid: int) -> bool:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0]
        except OSError:
            return True
        return state in ("Z", "X")

    def run(self) -> None:
        done: set[int] = set()
        tick = 0
        while not self._halt.is_set():
            # looking for new workers reads every /proc/*/environ: about once a second is enough
            if len(self.pids) < self.expected and tick % 5 == 0:
                self._scan()
            tick += 1
            if len(self.pids) < self.expected:
                self._halt.wait(self.interval)
                continue  # until every worker is known, "first to exit" would mean nothing
            now = time.monotonic()  # one time per scan: exits found in the same scan are a tie
            for rank, pid in self.pids.items():
                if rank not in done and self._gone(pid):
                    done.add(rank)
                    self.exits.append((now, rank))
                    code = zombie_exit_code(pid)
                    if code is not None:
                        self.exit_codes[rank] = code
            if self.exits and not self.states_at_first_exit:
                self.states_at_first_exit = {rank: progress.proc_state(pid)[0] for rank, pid in self.pids.items()
                                             if rank not in done}
            self._halt.wait(self.interval)

    def stop(self) -> None:
        self._halt.set()

    def first_exit(self, reported: dict[int, int] | None = None) -> int | None:
        """The worker that stopped first; a tie within one scan goes to a rank the launcher reported
        (a killed worker and the peer the launcher then stopped can fall into the same 0.2 s)."""
        if not self.exits:
            return None
        first_time = self.exits[0][0]
        tied = [rank for t, rank in self.exits if t == first_time]
        preferred = [rank for rank in tied if reported and rank in reported]
        return min(preferred) if preferred else tied[0]


class _HangWatch:
    """--hang-timeout: reads this node's heartbeat files; on a hang, dumps every worker's stack
    into its log (SIGUSR1, faulthandler in the worker) and says who stopped first."""

    def __init__(self, run_root: Path, log_dir: Path, first_rank: int, nproc: int, timeout: float, direct: bool,
                 shown_dir: str = "logs"):
        self.run_root, self.log_dir, self.timeout, self.direct = run_root, log_dir, timeout, direct
        self.shown_dir = shown_dir  # the log directory as the user gave it (relative to the working directory)
        self.ranks = {first_rank + local: local for local in range(nproc)}  # global -> local
        self.next_check = 0.0
        self.culprits: list[int] = []  # after diagnose: the ranks that stopped first

    def log_path(self, local: int) -> Path:
        return self.log_dir / f"workerlog.{local}"

    def records(self) -> dict[int, dict | None]:
        return {rank: progress.read_heartbeat(self.run_root, rank) for rank in self.ranks}

    def check(self, pids: dict[int, int]) -> str | None:
        """None while the job progresses; the hang's description once it is hung (stacks dumped)."""
        now = time.monotonic()
        if now < self.next_check:
            return None
        self.next_check = now + 1.0
        records = self.records()
        if not progress.stalled(records, time.time(), self.timeout):
            return None
        return self.diagnose(records, pids)

    def diagnose(self, records: dict[int, dict | None], pids: dict[int, int], wait: float = 5.0) -> str:
        by_rank = {rank: pids.get(local) for rank, local in self.ranks.items()}
        states = {rank: progress.proc_state(pid)[0] if pid else None for rank, pid in by_rank.items()}
        sizes = {rank: self._size(self.log_path(self.ranks[rank])) for rank in self.ranks}
        signalled = []
        for rank, pid in by_rank.items():
            if pid and states[rank] not in (None, "T", "t", "Z"):
                try:
                    os.kill(pid, signal.SIGUSR1)
                    signalled.append(rank)
                except ProcessLookupError:
                    pass
        dumps: dict[int, str] = {}
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline and len(dumps) < len(signalled):
            time.sleep(0.2)
            for rank in signalled:
                text = self._read_from(self.log_path(self.ranks[rank]), sizes[rank])
                if "most recent call first" in text:
                    time.sleep(0.3)  # let faulthandler finish writing every thread
                    dumps[rank] = self._read_from(self.log_path(self.ranks[rank]), sizes[rank])
        answered = {rank: rank in dumps for rank in signalled}
        ranks = sorted(self.ranks)
        culprits, why = progress.stopped_first(ranks, records, states, answered)
        self.culprits = culprits
        last = max((float(r["time"]) for r in records.values() if r), default=time.time())
        parts = [f"no rank completed an iteration for {time.time() - last:.0f}s "
                 f"(--hang-timeout {progress.format_duration(self.timeout)})"]
        for rank in culprits:
            parts.append(f"rank {rank} stopped first: {why[rank]}; {progress.describe_record(records.get(rank))}")
        for rank in ranks:
            if rank in culprits:
                continue
            frame = progress.innermost_frame(dumps.get(rank, ""))
            log = Path(self.shown_dir) / f"workerlog.{self.ranks[rank]}"
            if frame:
                parts.append(f"rank {rank} is blocked in {frame} (stack in {log})")
            elif states.get(rank) is None:
                parts.append(f"rank {rank} has exited")
        if not culprits:
            parts.append("no rank on this node stands out: a rank on another node may have stopped, "
                         "or every rank waits in the same place (see the stacks)")
        return "; ".join(parts)

    @staticmethod
    def _size(path: Path) -> int:
        try:
            return path.stat().st_size
        except OSError:
            return 0

    @staticmethod
    def _read_from(path: Path, offset: int) -> str:
        try:
            with open(path, "rb") as f:
                f.seek(offset)
                return f.read(256 * 1024).decode("utf-8", "replace")
        except OSError:
            return ""


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
    iteration for that long (launch/progress.py), after dumping every worker's stack."""
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

    _become_subreaper()
    received: list[int] = []
    log_file = open(log_path, "ab")
    try:
        child = subprocess.Popen(node.argv, cwd=node.cwd, env=env, stdin=subprocess.DEVNULL,
                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
                                 preexec_fn=_parent_death_signal)
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

    previous = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM)} \
        if threading.current_thread() is threading.main_thread() else {}
    pump = _Pump(child.stdout, sink, log_file)
    pump.start()
    secrets = _secret_values(env)
    scrub_stop = threading.Event()
    if secrets and not direct:
        threading.Thread(target=_scrub_when_written, args=(log_dir, secrets, scrub_stop), daemon=True).start()
    watch = None
    if not direct:
        watch = _WorkerWatch(run_id, plan.device.nproc_per_node, parent=child.pid)
        watch.start()
    nproc = 1 if direct else plan.device.nproc_per_node
    run_root = Path(node.cwd) / plan.run_dir
    progress.clear_heartbeats(run_root, range(plan.node_rank * nproc, (plan.node_rank + 1) * nproc))
    hang_watch = _HangWatch(run_root, log_dir, plan.node_rank * nproc, nproc, hang_timeout, direct,
                            node.log_dir) if hang_timeout else None
    hang = None
    try:
        while True:
            try:
                code = child.wait(timeout=0.5)
                break
            except subprocess.TimeoutExpired:
                pass
            if hang_watch is not None and hang is None and not received:
                pids = {0: child.pid} if direct else dict(watch.pids)
                hang = hang_watch.check(pids)
                if hang:
                    for pid in processes_with_marker(run_id):  # stacks are in the logs: stop everything now
                        try:
                            os.kill(pid, signal.SIGKILL)
                        except ProcessLookupError:
                            pass
            if received and grace is not None:
                # first signal forwarded; give the child `grace` seconds, then kill the group
                start = time.monotonic()
                while child.poll() is None and time.monotonic() - start < grace and len(received) < 2:
                    time.sleep(0.2)
                if child.poll() is None:
                    try:
                        os.killpg(child.pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
        pump.join(timeout=5)
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        if watch is not None:
            watch.stop()
            watch.join(timeout=2)
        killed = kill_leftovers(run_id)
        log_file.close()
        scrub_stop.set()
        scrub_secrets(log_dir, secrets)

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
        result.worker_error = _worker_error(pump.tail)
        return result
    reported = {local: code for local, _, code, _ in pump.failures}
    first = watch.first_exit(reported) if watch is not None else None
    local = None
    if first is not None and (reported or plan.nnodes == 1):
        local = first  # the worker that stopped first is the cause; the others followed it
    elif reported:
        local = min(reported)
    culprit = _stopped_peer(watch, plan, run_root, first) if first is not None else None
    if culprit is not None:
        local, why = culprit
        victim = f"local rank {first}" + (f" (code {reported[first]})" if first in reported else "")
        result.note = f"{why}; {victim} then failed waiting for it"
        reported = {k: v for k, v in reported.items() if k == local}
    if local is not None:
        result.failed_local_rank = local
        result.failed_code = reported.get(local)
        if result.failed_code is None and watch is not None and culprit is None:
            result.failed_code = watch.exit_codes.get(local)  # the launcher reported another rank
        result.failed_rank = plan.node_rank * plan.device.nproc_per_node + local
        result.failed_log = str(Path(node.log_dir) / f"workerlog.{local}")
        result.log_tail = _tail(log_dir / f"workerlog.{local}")
        result.worker_error = _worker_error(result.log_tail)
        if reported and local not in reported:
            others = ", ".join(f"local rank {r} (code {c})" for r, c in sorted(reported.items()))
            result.note = f"it stopped first; the launcher then reported {others}"
    else:
        result.log_tail = list(pump.tail)[-TAIL_LINES:]
    return result


def _stopped_peer(watch, plan: Plan, run_root: Path, first: int) -> tuple[int, str] | None:
    """(local rank, why) of a worker that had stopped or fallen behind when `first` exited:
    then `first` is a victim (gloo aborts the ranks waiting for a stopped one after ~30 s)."""
    if watch is None or not watch.states_at_first_exit:
        return None
    nproc = plan.device.nproc_per_node
    base = plan.node_rank * nproc
    locals_ = sorted(set(watch.states_at_first_exit) | {first})
    records = {base + local: progress.read_heartbeat(run_root, base + local) for local in locals_}
    states = {base + local: watch.states_at_first_exit.get(local, "Z") for local in locals_}
    culprits, why = progress.stopped_first([base + local for local in locals_], records, states, by_iteration=False)
    culprits = [rank for rank in culprits if rank != base + first and rank - base in watch.states_at_first_exit]
    if not culprits:
        return None
    rank = culprits[0]
    return rank - base, f"it stopped first: {why[rank]}; {progress.describe_record(records[rank])}"


def _hang_result(result: ExecResult, hang: str, hang_watch: "_HangWatch", node: NodePlan) -> ExecResult:
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
    code = result.failed_code
    how = f"failed with exit code {code}" if code is not None else "stopped first"
    if code is not None and code < 0:
        try:
            how = f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            how = f"was killed by signal {-code}"
    where = f"rank {result.failed_rank}"
    if plan.nnodes > 1 or plan.world_size > 1:
        where += f" (node {plan.node_rank}, local rank {result.failed_local_rank})"
    text = f"worker {where} {how}; log: {result.failed_log}"
    if result.note and code is not None:
        text += f" ({result.note})"
    elif result.note:
        text = f"worker {where} failed: {result.note}; log: {result.failed_log}"
    return text
