"""Which rank caused a failed job: decided from evidence, never from who exited first.

When one rank of a collective job dies, its peers fail soon after, waiting for
it: gloo aborts them (SIGABRT raised by the process itself after "Connection
closed by peer"), NCCL's watchdog times out, or paddle's launcher stops them
with SIGTERM. Their exits can reach the launcher (and us) before the dead
rank's, within milliseconds, so arrival order names the victim as often as
the culprit. What does not depend on timing:

- how each rank ended: its exit code or signal (read from its zombie before the
  launcher reaps it, from the launcher's report, or from our own wait), and,
  in its log, paddle's signal line "SIGxxx ... received by PID A ... from PID B"
  (B == A: raised by the process itself; B == the launcher: stopped by it);
- what its log says last: a collective-communication error (a victim), a Python
  exception or paddle error of its own (a cause), nothing at all (a process
  killed from outside writes nothing);
- whether it was stopped (state T) or stuck (state D) when the others failed.

Strength of the evidence, strongest first: a crash or a kill from outside, an
error of its own, a non-zero exit with no word, a stopped process (all causes);
an unexplained end; a communication error (a victim); stopped by the launcher
or by trainctl (a victim). The strongest ranks are the cause; when several
share the strongest evidence the verdict is ambiguous and names them all.

Pure: no paddle, no processes; the executor collects, this module judges.
"""

from __future__ import annotations

import re
import signal as _signal
from dataclasses import dataclass, field

# paddle's fatal-signal handler (3.x) prints, e.g.
#   [SignalInfo: *** SIGABRT (@0x55ef) received by PID 21999 (TID 0x7f..) from PID 21999 ***]
_SIGNAL_INFO_RE = re.compile(r"SignalInfo: \*\*\* (SIG[A-Z0-9]+) \(@0x[0-9a-fA-F]+\) received by PID (\d+)"
                             r"(?: \(TID [^)]*\))? from PID (\d+)")
# a collective broke because a peer went away or the network failed: gloo (Paddle's CPU backend),
# NCCL and paddle's process groups, the TCP store
_COMM_PATTERNS = (
    "connection closed by peer", "connection reset by peer", "connection refused", "broken pipe",
    "gloo::", "processgroupgloo", "processgroupnccl", "nccl error", "ncclremoteerror", "ncclsystemerror",
    "ncclinternalerror", "remote process exited", "watchdog caught collective operation timeout",
    "collective operation timeout", "timed out waiting", "socket timeout", "read error", "tcpstore",
    "tcp_store", "enforce fail at", "nccl communicator was aborted",
)
# lines that mention the words above but are not errors
_BENIGN = ("successfully connected", "create libuv server", "peer_to_peer", "p2p")
_PEER_ADDR_RE = re.compile(r"\[?(\d{1,3}(?:\.\d{1,3}){3})\]?:(\d+)")
_EXCEPTION_RE = re.compile(r"^([A-Za-z_][\w.]*(?:Error|Exception|Interrupt|Exit|Fault|Warning)):\s*(.*)$")
WORKER_ERROR_PREFIX = "trainctl: error: "
# set by the ssh fan-out's remote guard: a node's trainctl then ends a failed run with one
# REPORT_PREFIX line (JSON) that the controller reads to pick the cause across hosts
ROOT_CAUSE_VAR = "TRAINCTL_REPORT_ROOT_CAUSE"
REPORT_PREFIX = "trainctl: root-cause "
# signals that mean the process itself crashed
_CRASH_SIGNALS = {"SIGSEGV", "SIGBUS", "SIGILL", "SIGFPE"}
# signals a launcher or supervisor uses to stop processes
_STOP_SIGNALS = {"SIGTERM", "SIGINT", "SIGHUP", "SIGQUIT"}

# verdict kinds, and the strength of each as evidence of being the cause
CRASH = "crash"  # a crash signal (SIGSEGV, SIGBUS, ...) or an abort of its own that is not a lost peer
KILLED = "killed"  # a signal sent from outside the job (SIGKILL, the OOM killer, a user's kill)
ERROR = "error"  # a Python exception or a paddle error of its own
EXIT = "exit"  # a non-zero exit code and no word in its log
STALLED = "stalled"  # stopped (state T) or stuck in the kernel (state D) when the others failed
UNKNOWN = "unknown"  # it ended, and nothing tells how
COMM = "comm"  # it failed in a collective: a peer went away (a victim)
STOPPED = "stopped"  # stopped by the launcher or by trainctl after another rank failed (a victim)
DONE = "done"
RUNNING = "running"
STRENGTH = {CRASH: 3, KILLED: 3, ERROR: 3, EXIT: 3, STALLED: 3, UNKNOWN: 2, COMM: 1, STOPPED: 0,
            DONE: -1, RUNNING: -1}


@dataclass
class RankEvidence:
    """What is known of one rank when the job ended."""

    rank: int  # global rank
    local_rank: int
    pid: int | None = None
    exit_code: int | None = None  # >= 0 an exit code, < 0 minus the signal number, None unknown
    exited_after: float | None = None  # seconds after the first rank of this node ended (None: not seen)
    state: str | None = None  # /proc state letter when the first rank ended (T, D, S, R...), None if gone
    log_tail: list[str] = field(default_factory=list)
    log: str | None = None  # the log file, as shown to the user
    heartbeat: dict | None = None


@dataclass
class RankVerdict:
    rank: int
    local_rank: int
    kind: str
    why: str  # one line: the evidence
    exit_code: int | None = None
    signal: str | None = None
    peer: str | None = None  # the peer address a communication error names
    line: str | None = None  # the log line that decided it

    @property
    def strength(self) -> int:
        return STRENGTH[self.kind]

    def to_dict(self) -> dict:
        data = {"rank": self.rank, "local_rank": self.local_rank, "kind": self.kind, "why": self.why,
                "exit_code": self.exit_code if self.exit_code is None or self.exit_code >= 0 else None,
                "signal": self.signal}
        if self.peer:
            data["peer"] = self.peer
        if self.line:
            data["line"] = self.line
        return data


@dataclass
class RootCause:
    """The judgement over one node's ranks."""

    verdicts: list[RankVerdict]
    culprits: list[int]  # global ranks; several when ambiguous; empty when no rank failed
    ambiguous: bool = False

    @property
    def cause(self) -> RankVerdict | None:
        return self.by_rank(self.culprits[0]) if self.culprits else None

    def by_rank(self, rank: int) -> RankVerdict | None:
        return next((v for v in self.verdicts if v.rank == rank), None)

    @property
    def only_victims(self) -> bool:
        """Every failed rank here failed because of a peer: the cause is elsewhere (another node)."""
        return self.cause is not None and self.cause.kind in (COMM, STOPPED)

    def victims(self) -> list[RankVerdict]:
        return [v for v in self.verdicts if v.rank not in self.culprits and v.strength >= 0]

    def summary(self) -> str:
        """One line: the cause and what happened to the others."""
        if not self.culprits:
            return "no rank failed"
        if self.ambiguous:
            named = "; ".join(f"rank {v.rank}: {v.why}" for v in map(self.by_rank, self.culprits) if v)
            return f"ambiguous: the evidence does not single out one rank ({named})"
        cause = self.cause
        text = f"rank {cause.rank}: {cause.why}"
        others = self.victims()
        if others:
            text += "; then " + "; ".join(f"rank {v.rank}: {v.why}" for v in others)
        return text

    def to_dict(self) -> dict:
        return {"culprits": self.culprits, "ambiguous": self.ambiguous,
                "ranks": [v.to_dict() for v in self.verdicts]}


def signal_name(number: int) -> str:
    try:
        return _signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def signal_info(lines: list[str]) -> tuple[str, int, int] | None:
    """The last paddle signal line in a log: (signal name, receiving PID, sending PID)."""
    found = None
    for line in lines:
        match = _SIGNAL_INFO_RE.search(line)
        if match:
            found = (match.group(1), int(match.group(2)), int(match.group(3)))
    return found


def comm_error(lines: list[str]) -> str | None:
    """The last line that reports a broken collective (a lost peer, a network error), or None."""
    found = None
    for line in lines:
        low = line.lower()
        if any(word in low for word in _BENIGN):
            continue
        if any(word in low for word in _COMM_PATTERNS) and _looks_like_error(low):
            found = line.strip()
    return found


def _looks_like_error(low: str) -> bool:
    return any(word in low for word in ("error", "exception", "closed", "reset", "refused", "broken", "timeout",
                                        "timed out", "exited", "aborted", "fail", "enforce", "what()"))


def worker_error(lines) -> str | None:
    """The last one-line error a trainctl worker printed (trainctl.output.error), without the prefix."""
    found = None
    for line in lines:
        if line.startswith(WORKER_ERROR_PREFIX):
            found = line[len(WORKER_ERROR_PREFIX):].strip()
    return found


def own_error(lines: list[str]) -> str | None:
    """The error the rank reported itself: trainctl's worker error line, else the last Python
    exception line after a traceback, else paddle's error summary line. None if there is none."""
    worker = worker_error(lines)
    if worker:
        return worker
    seen_traceback = False
    found = None
    for line in lines:
        text = line.strip()
        if text.startswith("Traceback (most recent call last)"):
            seen_traceback = True
            continue
        match = _EXCEPTION_RE.match(text)
        if match and (seen_traceback or match.group(1).endswith("Error")):
            if match.group(1) == "FatalError":
                continue  # paddle's signal report: the signal line decides, not this one
            found = text
    return found


def peer_address(line: str | None) -> str | None:
    if not line:
        return None
    match = _PEER_ADDR_RE.search(line)
    return f"{match.group(1)}:{match.group(2)}" if match else None


def judge_rank(ev: RankEvidence, launcher_pids: set[int], stopped_by_us: bool = False) -> RankVerdict:
    """One rank's verdict from its evidence (see the module docstring for the order)."""
    code = ev.exit_code
    info = signal_info(ev.log_tail)
    sig = signal_name(-code) if code is not None and code < 0 else None
    sender_external = None
    if info and (sig is None or sig == info[0] or sig == "SIGKILL"):
        # paddle wrote the signal it received; SIGKILL (no handler) may follow a SIGTERM it logged
        if sig is None or sig == info[0]:
            sig = info[0]
        sender = info[2]
        sender_external = sender != info[1] and sender not in launcher_pids
        stopped_by_launcher = sender in launcher_pids
    else:
        stopped_by_launcher = False
    comm = comm_error(ev.log_tail)
    own = own_error(ev.log_tail)
    base = dict(rank=ev.rank, local_rank=ev.local_rank, exit_code=code, signal=sig)

    # stopped (SIGSTOP, a debugger) when the first rank ended: whatever killed it later, it stalled the job
    if ev.state in ("T", "t") or (ev.state == "D" and code is None and sig is None):
        what = "stopped (state T)" if ev.state in ("T", "t") else "stuck in the kernel (state D)"
        return RankVerdict(kind=STALLED, why=f"its process was {what} when the others failed", **base)
    if code == 0 and sig is None:
        return RankVerdict(kind=DONE, why="finished", **base)
    if code is None and sig is None and not comm and not own and ev.state is not None:
        return RankVerdict(kind=RUNNING, why="still running", **base)

    if sig in _CRASH_SIGNALS:
        how = "sent from outside" if sender_external else "a crash"
        return RankVerdict(kind=CRASH, why=f"killed by {sig} ({how})", line=own or comm, **base)
    if sig == "SIGKILL" and not stopped_by_launcher and not stopped_by_us:
        return RankVerdict(kind=KILLED, why="killed by SIGKILL from outside the job (a user, a scheduler or the "
                                            "kernel's out-of-memory killer); its log ends without an error",
                           **base)
    if code == 137 and not comm:
        return RankVerdict(kind=KILLED, why="exit code 137 (SIGKILL: often the out-of-memory killer)", **base)
    if sig in _STOP_SIGNALS or (sig == "SIGKILL" and (stopped_by_launcher or stopped_by_us)):
        if sender_external:
            return RankVerdict(kind=KILLED, why=f"killed by {sig} sent from outside the job (PID {info[2]})",
                               **base)
        if comm and not stopped_by_launcher:
            return RankVerdict(kind=COMM, why=f"failed in a collective ({_short(comm)})", peer=peer_address(comm),
                               line=comm, **base)
        who = "the launcher" if stopped_by_launcher else ("trainctl" if stopped_by_us else "the launcher or trainctl")
        return RankVerdict(kind=STOPPED, why=f"stopped by {who} ({sig}) after another rank failed", **base)
    if sig == "SIGABRT":
        if comm:
            return RankVerdict(kind=COMM, why=f"aborted in a collective ({_short(comm)})", peer=peer_address(comm),
                               line=comm, **base)
        if own:
            return RankVerdict(kind=ERROR, why=f"aborted: {_short(own)}", line=own, **base)
        if sender_external:
            return RankVerdict(kind=KILLED, why=f"killed by SIGABRT sent from outside (PID {info[2]})", **base)
        return RankVerdict(kind=CRASH, why="aborted (SIGABRT raised by the process itself, no lost peer in its log)",
                           **base)
    if sig is not None:  # any other signal
        return RankVerdict(kind=KILLED, why=f"killed by {sig}", line=own or comm, **base)
    # an exit code (or no code at all)
    if comm and (not own or comm_error([own])):
        return RankVerdict(kind=COMM, why=f"failed in a collective ({_short(comm)})", peer=peer_address(comm),
                           line=comm, **base)
    if own:
        tail = f" (exit code {code})" if code is not None else ""
        return RankVerdict(kind=ERROR, why=f"{_short(own)}{tail}", line=own, **base)
    if code is not None:
        return RankVerdict(kind=EXIT, why=f"exited with code {code} without an error in its log", **base)
    return RankVerdict(kind=UNKNOWN, why="ended; its exit status was not seen and its log says nothing", **base)


def _short(line: str, limit: int = 200) -> str:
    line = line.strip()
    return line if len(line) <= limit else line[: limit - 3] + "..."


def judge(evidence: list[RankEvidence], launcher_pids: set[int], stopped_by_us: set[int] | None = None) -> RootCause:
    """The cause among one node's ranks: the ranks with the strongest evidence (see the module docstring)."""
    stopped_by_us = stopped_by_us or set()
    verdicts = [judge_rank(ev, launcher_pids, ev.rank in stopped_by_us) for ev in evidence]
    failed = [v for v in verdicts if v.strength >= 0]
    if not failed:
        return RootCause(verdicts, [])
    best = max(v.strength for v in failed)
    top = [v for v in failed if v.strength == best]
    if len(top) > 1 and best >= STRENGTH[UNKNOWN]:
        # several ranks carry the same strong evidence: say so, listing them; order them by exit time
        order = {ev.rank: (ev.exited_after if ev.exited_after is not None else float("inf")) for ev in evidence}
        top.sort(key=lambda v: (order.get(v.rank, float("inf")), v.rank))
        return RootCause(verdicts, [v.rank for v in top], ambiguous=True)
    if len(top) > 1:
        # only victims (a peer on another node, or the network): the earliest one stands for them
        order = {ev.rank: (ev.exited_after if ev.exited_after is not None else float("inf")) for ev in evidence}
        top.sort(key=lambda v: (order.get(v.rank, float("inf")), v.rank))
    return RootCause(verdicts, [top[0].rank])


def report_line(cause: RankVerdict | None, node_rank: int, summary: str) -> str:
    """The line a node's trainctl prints for the fan-out controller (see ROOT_CAUSE_VAR)."""
    import json

    data = {"node_rank": node_rank, "summary": summary}
    if cause is not None:
        data.update(rank=cause.rank, kind=cause.kind, strength=cause.strength, why=cause.why)
    else:
        data.update(rank=None, kind=UNKNOWN, strength=STRENGTH[UNKNOWN], why=summary)
    return REPORT_PREFIX + json.dumps(data)


def parse_report_line(line: str) -> dict | None:
    import json

    if not line.startswith(REPORT_PREFIX):
        return None
    try:
        data = json.loads(line[len(REPORT_PREFIX):])
    except ValueError:
        return None
    return data if isinstance(data, dict) else None
