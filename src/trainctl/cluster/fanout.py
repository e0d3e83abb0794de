"""Run an ssh fan-out plan (cluster/ssh.py): `FanOut` starts one ssh session per host, prefixes
their output, and closes every session when one host fails or on Ctrl-C/SIGTERM; `run_fanout`
reports per-host outcomes and restarts every host for --max-restarts (core/restart.py).
"""

from __future__ import annotations

import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

from trainctl import output
from trainctl.cluster.ssh import FanoutPlan, RemoteNode
from trainctl.errors import RuntimeFailure, UserError
from trainctl.launch import rootcause

# a host verdict at least this strong names a rank that failed on its own (launch/rootcause.py)
STRONG_VERDICT = rootcause.STRENGTH[rootcause.EXIT]
# how long the controller waits for a host's stronger verdict when the first failure is a victim's
PEER_REPORT_SECONDS = 30.0


@dataclass
class HostResult:
    node: RemoteNode
    returncode: int | None = None
    finished_at: float | None = None
    stopped: bool = False  # stopped by trainctl because another host failed or on Ctrl-C
    root_cause: dict | None = None  # the host's own verdict (its REPORT_PREFIX line), if it sent one
    readers: list = field(default_factory=list)  # the threads copying its output

    @property
    def failed(self) -> bool:
        return self.returncode not in (0, None) and not self.stopped

    @property
    def strength(self) -> int:
        """How strongly this host's failure is its own: its verdict's strength. A host that failed
        without a verdict (ssh failed, the input was rejected, trainctl failed before any worker
        ran) failed on its own."""
        if self.root_cause and isinstance(self.root_cause.get("strength"), int):
            return self.root_cause["strength"]
        return STRONG_VERDICT


class FanOut:
    """Runs a FanoutPlan: one ssh per host, prefixed output, stop everything on failure."""

    def __init__(self, plan: FanoutPlan, emit: Callable[[str, bool], None] | None = None, popen=subprocess.Popen):
        self.plan = plan
        self._emit = emit or (lambda line, err: output.echo(line, err=err))
        self._lock = threading.Lock()
        self._popen = popen
        self.procs: list[subprocess.Popen] = []
        self.results: list[HostResult] = []
        self._readers: list[threading.Thread] = []
        self._interrupted = threading.Event()
        self._stopping = False

    def emit(self, line: str, err: bool) -> None:
        with self._lock:
            self._emit(line, err)

    def run(self) -> list[HostResult]:
        """Start every host and wait. RuntimeFailure when any host fails; re-raises Ctrl-C."""
        restore = self._install_sigterm()
        try:
            self._start_all()
            first_failure = self._wait()
        except KeyboardInterrupt:
            self._interrupted.set()
            first_failure = None
        finally:
            self._stop_all()
            self._join_readers()
            if restore is not None:
                signal.signal(signal.SIGTERM, restore)
        if self._interrupted.is_set():
            raise KeyboardInterrupt
        if first_failure is not None:
            message = self._failure_message(first_failure)
            failed = [r for r in self.results if r.failed]
            if failed and all(r.returncode == 2 for r in failed):  # the remote trainctl rejected the input
                raise UserError(message, hint="see that host's error line above")
            raise RuntimeFailure(message)
        return self.results

    # --- internals

    def _install_sigterm(self):
        if threading.current_thread() is not threading.main_thread():
            return None

        def on_term(signum, frame):
            first = not self._interrupted.is_set()
            self._interrupted.set()
            if first and not self._stopping:
                raise KeyboardInterrupt

        return signal.signal(signal.SIGTERM, on_term)

    def _start_all(self) -> None:
        for node in self.plan.nodes:
            argv = node.ssh_argv(self.plan.settings, self.plan.python, self.plan.grace)
            # own session: Ctrl-C reaches trainctl only, which then stops the hosts in order
            proc = self._popen(
                argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True
            )
            result = HostResult(node)
            self.procs.append(proc)
            self.results.append(result)
            for stream, err in ((proc.stdout, False), (proc.stderr, True)):
                reader = threading.Thread(target=self._pump, args=(stream, result, err), daemon=True)
                reader.start()
                self._readers.append(reader)
                result.readers.append(reader)

    def _pump(self, stream, result: HostResult, err: bool) -> None:
        prefix = f"[{result.node.label}] "
        for raw in iter(stream.readline, b""):
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            report = rootcause.parse_report_line(line) if err else None
            if report is not None:
                result.root_cause = report  # for the controller, not for the user
                continue
            self.emit(prefix + line, err)
        stream.close()

    def _wait(self) -> HostResult | None:
        """Wait until all hosts are done or one fails; return the failure that caused the others.

        A host whose ranks only lost a peer (its verdict is a victim's) does not decide at once:
        the host whose rank really failed usually reports within seconds, so the controller
        waits up to PEER_REPORT_SECONDS for a stronger verdict before choosing."""
        first_failure_at = None
        while True:
            running = 0
            for proc, result in zip(self.procs, self.results):
                if result.returncode is not None:
                    continue
                code = proc.poll()
                if code is None:
                    running += 1
                    continue
                result.returncode = code
                result.finished_at = time.monotonic()
                if code != 0:
                    for reader in result.readers:  # its last lines, the verdict among them
                        reader.join(timeout=2)
                    first_failure_at = first_failure_at or result.finished_at
            failed = [r for r in self.results if r.failed]
            if failed:
                best = max(failed, key=lambda r: (r.strength, -r.finished_at))
                waited = time.monotonic() - first_failure_at
                if best.strength >= STRONG_VERDICT or not running or waited >= PEER_REPORT_SECONDS:
                    return best
            elif not running:
                return None
            if self._interrupted.is_set():
                raise KeyboardInterrupt
            time.sleep(0.1)

    def _stop_all(self) -> None:
        """Close every running session (the remote guard then ends its tree), then kill ssh.

        Closing ssh's stdin sends end-of-file to the remote guard, which stops its process
        tree (SIGTERM, then SIGKILL after the grace period) and exits, which ends ssh. A
        second Ctrl-C kills the ssh clients at once; the remote guards then see the
        connection drop and stop their trees the same way.
        """
        self._stopping = True
        live = [(p, r) for p, r in zip(self.procs, self.results) if p.poll() is None]
        if not live:
            self._collect()
            return
        for proc, result in live:
            result.stopped = True
            self.emit(f"[{result.node.label}] stopping (closing the ssh session)", True)
            try:
                proc.stdin.close()
            except OSError:
                pass
        try:
            self._wait_exit(live, self.plan.grace + 5)
            for proc, _ in live:
                if proc.poll() is None:
                    proc.terminate()
            self._wait_exit(live, 5)
        except KeyboardInterrupt:
            self.emit("trainctl: stopping now (second interrupt)", True)
        for proc, _ in live:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        self._collect()

    @staticmethod
    def _wait_exit(live, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and any(p.poll() is None for p, _ in live):
            time.sleep(0.1)

    def _collect(self) -> None:
        for proc, result in zip(self.procs, self.results):
            if result.returncode is None:
                result.returncode = proc.wait()
                result.finished_at = time.monotonic()
            if proc.stdin and not proc.stdin.closed:
                try:
                    proc.stdin.close()
                except OSError:
                    pass

    def _join_readers(self) -> None:
        for reader in self._readers:
            reader.join(timeout=5)

    def _failure_message(self, first: HostResult) -> str:
        code = first.returncode
        what = (
            f"ssh to {first.node.host.ssh_target} failed (exit 255)"
            if code == 255
            else f"exited with code {code}"
        )
        if first.root_cause and first.root_cause.get("summary"):
            what += f": {first.root_cause['summary']}"
        others = [r for r in self.results if r is not first and r.failed and r.root_cause]
        if others:
            what += "; " + "; ".join(f"host {r.node.label}: {r.root_cause.get('why')}" for r in others)
        stopped = [r.node.label for r in self.results if r.stopped]
        tail = f"; stopped {', '.join(stopped)}" if stopped else ""
        return f"host {first.node.label} {what}{tail}"


def with_resume_auto(plan: FanoutPlan) -> FanoutPlan:
    """The same plan with every host's command resuming from the newest complete checkpoint
    (`--resume auto` replaces a `--resume`/`-r` the user gave)."""
    import dataclasses

    nodes = []
    for node in plan.nodes:
        argv, words, skip = [], list(node.argv), False
        for word in words:
            if skip:
                skip = False
                continue
            if word in ("--resume", "-r"):
                skip = True
                continue
            if word.startswith("--resume="):
                continue
            argv.append(word)
        nodes.append(dataclasses.replace(node, argv=tuple(argv + ["--resume", "auto"])))
    return dataclasses.replace(plan, nodes=tuple(nodes))


def run_fanout(plan: FanoutPlan, max_restarts: int = 0, sleep: Callable[[float], None] = time.sleep) -> None:
    """Run the plan and report per-host outcomes (RuntimeFailure on any failure).

    --max-restarts N: when a host fails, every host is stopped (FanOut), and after a
    backoff the controller starts every host again with `--resume auto`, up to N times.
    The hosts themselves run without --max-restarts, so one party decides.
    """
    from trainctl.core import restart
    from trainctl.core.restart import run_with_restarts

    def run_once(attempt: int):
        output.info(f"starting {len(plan.nodes)} hosts, master {plan.master}"
                    + (f" (attempt {attempt + 1} of {max_restarts + 1})" if max_restarts else ""))
        try:
            return FanOut(plan).run()
        except UserError:
            raise  # bad input fails the same way again
        except RuntimeFailure as exc:
            return exc

    def before_wait(attempt: int, wait: float, exc: RuntimeFailure) -> None:
        nonlocal plan
        output.warn(f"attempt {attempt} of {max_restarts + 1} failed: {exc.message}; restarting every host "
                    f"{restart.when(wait)} from the newest complete checkpoint (--resume auto)")
        plan = with_resume_auto(plan)

    results, attempt, _ = run_with_restarts(run_once, lambda result, _n: isinstance(result, RuntimeFailure),
                                            max_restarts, before_wait, sleep)
    if isinstance(results, RuntimeFailure):
        if attempt:
            raise RuntimeFailure(f"after {attempt} restart{'s' if attempt > 1 else ''} "
                                 f"(--max-restarts {max_restarts}), the last attempt failed: {results.message}",
                                 hint=results.hint) from None
        raise results
    rows = [[r.node.label, r.node.addr, str(r.returncode)] for r in results]
    output.info(output.table(rows, headers=["host", "address", "exit"]))
