"""Remote end of an ssh fan-out: run one command, and kill all of it when ssh goes away.

    python -m trainctl.cluster.guard [--grace SECONDS] -- COMMAND ARGS...

Without a terminal, sshd does not signal the remote command when the ssh client dies
or is killed (and `ssh -tt` mangles output and still leaves grandchildren behind). So
the fan-out runs every node's command under this guard, with the ssh channel as the
guard's stdin (trainctl keeps it open and never writes to it):

- the command runs in its own session and process group, with stdin from /dev/null;
- the guard is a child subreaper (Linux), so workers orphaned by a dying launcher are
  re-parented to it and stay findable;
- when stdin reaches end of file (trainctl closed it to stop the job, or the ssh
  connection broke), or on SIGTERM/SIGHUP/SIGINT, the guard sends SIGTERM to every
  process below it, waits `--grace` seconds, then SIGKILLs whatever is left;
- when the command exits by itself, leftovers below the guard are stopped the same way,
  and the guard exits with the command's code (128+N when killed by signal N).

Standard library only; no paddle.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

from trainctl.launch.procwatch import become_subreaper
from trainctl.launch.rootcause import ROOT_CAUSE_VAR

DEFAULT_GRACE = 10.0


def descendants(root_pid: int, proc: str = "/proc") -> list[int]:
    """All processes below root_pid (children, grandchildren, ...), read from /proc."""
    children: dict[int, list[int]] = {}
    try:
        entries = os.listdir(proc)
    except OSError:
        return []
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"{proc}/{entry}/stat", "rb") as f:
                stat = f.read().decode("utf-8", "replace")
        except OSError:
            continue
        # the command name (field 2) may contain spaces and parentheses: split after the last ')'
        fields = stat[stat.rfind(")") + 2 :].split()
        if len(fields) < 2 or fields[0] == "Z":
            continue
        children.setdefault(int(fields[1]), []).append(int(entry))
    found, todo = [], [root_pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


class Guard:
    def __init__(self, argv: list[str], grace: float = DEFAULT_GRACE):
        self.argv = argv
        self.grace = grace
        self.stopping = threading.Event()
        self.proc: subprocess.Popen | None = None

    def run(self) -> int:
        become_subreaper()
        for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
            signal.signal(sig, lambda *_: self.stopping.set())
        try:
            # the node's trainctl then ends a failure with a root-cause line for the controller (ssh.FanOut)
            env = dict(os.environ, **{ROOT_CAUSE_VAR: "1"})
            self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, start_new_session=True, env=env)
        except OSError as exc:
            print(f"trainctl guard: cannot start {self.argv[0]}: {exc}", file=sys.stderr, flush=True)
            return 127
        threading.Thread(target=self._watch_stdin, daemon=True).start()
        while self.proc.poll() is None and not self.stopping.is_set():
            self.stopping.wait(0.2)
            self._reap()
        if self.proc.poll() is None:  # asked to stop: end the whole tree
            self._stop_tree()
            code = self.proc.wait()
        else:
            code = self.proc.returncode
            self._stop_tree()  # leftovers of a command that ended by itself
        self._reap()
        return 128 - code if code < 0 else code

    def _watch_stdin(self) -> None:
        try:
            while os.read(0, 4096):
                pass
        except OSError:
            pass
        self.stopping.set()

    def _stop_tree(self) -> None:
        """SIGTERM every process below the guard, SIGKILL what is left after the grace period.

        /proc is read without a snapshot, so a process forked while it is read (or a
        shell that forks and exits at that moment) can be missed once: the tree counts
        as gone only after it was seen empty several times in a row, with the command
        itself reaped (a dead command cannot fork any more).
        """
        me = os.getpid()
        termed: set[int] = set()
        deadline = time.monotonic() + self.grace
        empty_rounds = 0
        while True:
            self._reap()
            pids = descendants(me)
            if not pids:
                command_done = self.proc is None or self.proc.returncode is not None
                empty_rounds = empty_rounds + 1 if command_done else 0
                if empty_rounds >= 3:
                    return
            else:
                empty_rounds = 0
                if time.monotonic() < deadline:
                    new = [p for p in pids if p not in termed]
                    if new:  # each process gets one SIGTERM (a second one may cut its own cleanup short)
                        self._signal_all(new, signal.SIGTERM, group=not termed)
                        termed.update(new)
                else:
                    self._signal_all(pids, signal.SIGKILL, group=True)
            if time.monotonic() > deadline + 10:
                return
            time.sleep(0.05)

    def _signal_all(self, pids: list[int], sig: int, group: bool) -> None:
        if group and self.proc is not None:
            try:
                os.killpg(self.proc.pid, sig)
            except (ProcessLookupError, PermissionError):
                pass
        for pid in pids:
            try:
                os.kill(pid, sig)
            except (ProcessLookupError, PermissionError):
                pass

    def _reap(self) -> None:
        """Collect exited children, including orphans re-parented to us as subreaper."""
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            if self.proc is not None and pid == self.proc.pid and self.proc.returncode is None:
                self.proc.returncode = os.waitstatus_to_exitcode(status)


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    grace = DEFAULT_GRACE
    if args[:1] == ["--grace"] and len(args) >= 2:
        grace = float(args[1])
        args = args[2:]
    if args[:1] == ["--"]:
        args = args[1:]
    if not args:
        print("usage: python -m trainctl.cluster.guard [--grace S] -- COMMAND ARGS...", file=sys.stderr)
        return 2
    return Guard(args, grace).run()


if __name__ == "__main__":
    sys.exit(main())
