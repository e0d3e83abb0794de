"""Processes of one node's job as the launcher side sees them: finding the workers, noticing
each one's end the moment it happens, reading how it ended, and leaving nothing behind.

paddle launch starts the workers as its own children, each in a session of its
own (os.setsid): a group kill of the launcher does not reach them, and only the
launcher can wait() for them. So:
- every worker inherits TRAINCTL_RUN_ID=<unique id>; leftovers are found by that
  marker in /proc/<pid>/environ and killed;
- trainctl is a child subreaper (prctl PR_SET_CHILD_SUBREAPER): orphaned workers
  become its children and are reaped, not left as zombies;
- each worker's end is noticed through a pidfd (Linux 5.3+; it becomes readable
  when the process exits, whoever its parent is), so exits are timed to the
  millisecond, and its exit status is read from its zombie (/proc/<pid>/stat)
  before the launcher reaps it. Without pidfds /proc is polled every 50 ms.
"""

from __future__ import annotations

import ctypes
import os
import select
import signal
import threading
import time
from pathlib import Path

from trainctl.launch import progress

RUN_ID_VAR = "TRAINCTL_RUN_ID"
PR_SET_CHILD_SUBREAPER = 36


def become_subreaper() -> None:
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    except (OSError, AttributeError):
        pass


def catch_signals(handler, signals=(signal.SIGINT, signal.SIGTERM)) -> dict:
    """Install handler for each signal that is not ignored (an inherited "ignore", from nohup or
    a shell's background job, is what the user asked for and stays); returns what to restore.
    Only the main thread may install handlers: elsewhere nothing is installed."""
    previous = {}
    if threading.current_thread() is threading.main_thread():
        for signum in signals:
            if signal.getsignal(signum) is not signal.SIG_IGN:
                previous[signum] = signal.signal(signum, handler)
    return previous


def restore_signals(previous: dict) -> None:
    for signum, handler in previous.items():
        signal.signal(signum, handler)


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


def _pidfd(pid: int) -> int | None:
    try:
        return os.pidfd_open(pid)
    except (AttributeError, OSError):
        return None


class WorkerWatch(threading.Thread):
    """Finds this node's workers (our run marker, PADDLE_LOCAL_RANK, the launcher as parent) and
    records, for each, when it ended and how (exit code or -signal, from its zombie), plus the
    /proc state of the others at the moment the first one ended (T: stopped, D: stuck)."""

    def __init__(self, run_id: str, expected: int, parent: int | None = None, scan_interval: float = 0.2):
        super().__init__(daemon=True)
        self.parent = parent  # the launcher: workers are its direct children
        self.needle = f"{RUN_ID_VAR}={run_id}".encode()
        self.expected, self.scan_interval = expected, scan_interval
        self.pids: dict[int, int] = {}  # local rank -> pid
        self.ended: dict[int, float] = {}  # local rank -> time.monotonic() of its end
        self.exit_codes: dict[int, int] = {}  # local rank -> exit code or -signal, read from the zombie
        self.states_at_first_exit: dict[int, str | None] = {}
        self._fds: dict[int, int] = {}  # pidfd -> local rank
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
                        rank, pid = int(item.split(b"=", 1)[1]), int(entry.name)
                    except ValueError:
                        continue
                    if rank not in self.pids:
                        self.pids[rank] = pid
                        fd = _pidfd(pid)
                        if fd is not None:
                            self._fds[fd] = rank

    @staticmethod
    def _gone(pid: int) -> bool:
        return progress.proc_state(pid)[0] in (None, "Z", "X")

    def _ended(self, rank: int) -> None:
        if rank in self.ended:
            return
        self.ended[rank] = time.monotonic()
        code = zombie_exit_code(self.pids[rank])
        if code is not None:
            self.exit_codes[rank] = code
        if len(self.ended) == 1:
            self.states_at_first_exit = {r: progress.proc_state(pid)[0] for r, pid in self.pids.items()
                                         if r not in self.ended}

    def run(self) -> None:
        poller = select.poll()
        registered: set[int] = set()
        try:
            while not self._halt.is_set():
                if len(self.pids) < self.expected:
                    self._scan()
                for fd in self._fds:
                    if fd not in registered:
                        poller.register(fd, select.POLLIN)
                        registered.add(fd)
                if len(self.pids) < self.expected:
                    # until every worker is known, an end is still noticed: poll the known ones
                    self._check_by_proc()
                    self._halt.wait(self.scan_interval)
                    continue
                if self._fds and len(self._fds) == len(self.pids):
                    for fd, _ in poller.poll(200):
                        rank = self._fds[fd]
                        poller.unregister(fd)
                        self._ended(rank)
                    if len(self.ended) == len(self.pids):
                        return
                else:
                    self._check_by_proc()
                    self._halt.wait(0.05)
        finally:
            for fd in self._fds:
                try:
                    os.close(fd)
                except OSError:
                    pass

    def _check_by_proc(self) -> None:
        for rank, pid in list(self.pids.items()):
            if rank not in self.ended and self._gone(pid):
                self._ended(rank)

    def stop(self) -> None:
        self._halt.set()

    def exited_after(self) -> dict[int, float]:
        """Seconds from the first end on this node to each rank's end."""
        if not self.ended:
            return {}
        first = min(self.ended.values())
        return {rank: t - first for rank, t in self.ended.items()}
