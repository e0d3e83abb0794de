"""`trainctl board`: VisualDL on one or several runs, side by side.

The worker writes VisualDL scalars to `<run_dir>/vdl/` (train --vdl; see
runner/worker.py). Each run's vdl directory is handed to VisualDL as one
`logdir`; VisualDL names a run after its directory, so the curves of
`output/bs2` and `output/bs8` appear as `output/bs2/vdl` and `output/bs8/vdl`.

The server is VisualDL's own Flask app (`visualdl.server.app.create_app`) run
by werkzeug in a child process; the port is bound before the URL is printed
(a busy port is a clear error, `--port 0` picks a free one) and Ctrl-C or
SIGTERM end the child and return. Telemetry is off and every page asset ships
with the visualdl package, so it works offline. visualdl (not paddle) is
imported only in the server process.
"""

from __future__ import annotations

import errno
import os
import signal
import socket
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from trainctl.errors import RuntimeFailure, UserError
from trainctl.runs import VDL_DIR, find_run_dirs

DEFAULT_PORT = 8040  # VisualDL's own default
PUBLIC_PATH = "/app"  # where VisualDL serves its page (its default outside API-only mode)


@dataclass
class BoardTargets:
    logdirs: list[str] = field(default_factory=list)  # what VisualDL reads, one per run
    without_vdl: list[str] = field(default_factory=list)  # runs that have no vdl/ (trained without --vdl)


def _has_vdl_records(directory: Path) -> bool:
    try:
        return any(p.name.startswith("vdlrecords.") for p in directory.iterdir() if p.is_file())
    except OSError:
        return False


def _vdl_records_below(directory: Path, max_depth: int = 4) -> bool:
    for root, dirs, files in os.walk(directory):
        if any(name.startswith("vdlrecords.") for name in files):
            return True
        if len(Path(root).relative_to(directory).parts) >= max_depth:
            dirs[:] = []
    return False


def _display(path: Path) -> str:
    rel = os.path.relpath(path)
    return str(path) if rel.startswith("..") else rel


def resolve_targets(targets: list[str] | None) -> BoardTargets:
    """The VisualDL log directories for the given runs (default: every run under ./output).

    A target may be a run dir (its vdl/ is used), a VisualDL log dir itself
    (holds vdlrecords.* files), or a directory that holds runs.
    """
    out = BoardTargets()
    given = list(targets) if targets else ["output"]
    for target in given:
        path = Path(target)
        if not path.is_dir():
            hint = ("run trainctl where you trained, or name the runs: trainctl board output/RUN ..."
                    if not targets else "pass run directories (they hold run.json and vdl/)")
            raise UserError(f"no such directory: {target}", hint=hint)
        if (path / VDL_DIR).is_dir():
            candidates = [(path, path / VDL_DIR)]
        elif _has_vdl_records(path):
            candidates = [(path, path)]
        else:
            runs = find_run_dirs(path)
            if runs:
                candidates = [(run, run / VDL_DIR) for run in runs]
            elif _vdl_records_below(path):  # logs without run records (e.g. PaddleDetection's --use_vdl): VisualDL walks the tree
                candidates = [(path, path)]
            else:
                raise UserError(f"{target} holds no run and no VisualDL logs",
                                hint="pass run directories written by `trainctl train --vdl`")
        for run, logdir in candidates:
            if logdir.is_dir():
                shown = _display(logdir)
                if shown not in out.logdirs:
                    out.logdirs.append(shown)
            elif _display(run) not in out.without_vdl:
                out.without_vdl.append(_display(run))
    if not out.logdirs:
        names = ", ".join(out.without_vdl) or ", ".join(given)
        raise UserError(f"no VisualDL logs in {names}",
                        hint="train with --vdl (scalars go to <run dir>/vdl), e.g. trainctl train -c CFG --vdl")
    return out


def url_for(host: str, port: int) -> str:
    shown = "127.0.0.1" if host in ("0.0.0.0", "") else ("localhost" if host == "::" else host)
    if ":" in shown:
        shown = f"[{shown}]"
    return f"http://{shown}:{port}{PUBLIC_PATH}"


class _Stop(Exception):
    """Raised in the main thread by SIGTERM, to leave the wait like Ctrl-C does."""


def _die_with_parent() -> None:
    """Linux: the server gets SIGTERM when trainctl dies, even by SIGKILL (best effort elsewhere)."""
    from trainctl.core.procutil import parent_death_signal

    parent_death_signal(signal.SIGTERM)


def _listen(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # a restart right after a stop works
        sock.bind((host, port))
        sock.listen(128)
    except BaseException:
        sock.close()
        raise
    return sock


def _serve_child(logdirs: list[str], host: str, port: int, language: str, cache_timeout: int, conn, parent_pid: int) -> None:
    """The server process: VisualDL's app under werkzeug; reports ("ready", port) or an error on conn.

    The port is bound first (werkzeug would print its own message and exit on
    a busy port). Once VisualDL's app exists this process must leave through
    os._exit: the app's never-ending thread would block a normal exit.
    """
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # not the parent's handler (inherited by fork)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches both; the parent ends this process
    _die_with_parent()
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        return
    try:
        sock = _listen(host, port)
    except OSError as exc:
        conn.send(("oserror", exc.errno, exc.strerror or str(exc)))
        return
    try:
        from visualdl.server.app import create_app
        from visualdl.server.args import ParseArgs
        from werkzeug.serving import make_server
    except ImportError as exc:
        conn.send(("missing", str(exc)))
        return
    import logging
    import traceback

    for name in ("werkzeug", "vdl_logger", "visualdl.info"):
        logging.getLogger(name).setLevel(logging.ERROR)  # no line per request, no cache notices
    try:
        args = ParseArgs(logdir=list(logdirs), host=host, port=port, model="", cache_timeout=cache_timeout,
                         language=language, public_path=PUBLIC_PATH, api_only=False, open_browser=False,
                         telemetry=False, theme=None, component_tabs=None)
        app = create_app(args)
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # create_app set it back to the default
        server = make_server(host, port, app, threaded=False, fd=sock.fileno())
        conn.send(("ready", sock.getsockname()[1]))
        conn.close()
        server.serve_forever()
    except BaseException:
        traceback.print_exc()
    finally:
        sys.stderr.flush()
        os._exit(1)


def _start_error(message: tuple, host: str, port: int) -> Exception:
    if message[0] == "missing":
        return UserError(f"VisualDL is not installed ({message[1]})", hint="pip install visualdl")
    if message[0] == "oserror":
        code, text = message[1], message[2]
        if code == errno.EADDRINUSE:
            return UserError(f"port {port} on {host} is in use", hint="pick another with --port P, or --port 0 for a free one")
        if code == errno.EACCES:
            return UserError(f"cannot listen on {host}:{port}: {text}", hint="ports below 1024 need root; use a port above 1023")
        if code == errno.EADDRNOTAVAIL or (isinstance(code, int) and code < 0):  # negative: getaddrinfo's codes
            return UserError(f"cannot listen on {host}:{port}: {text}", hint="pass an address of this machine with --host, e.g. 127.0.0.1")
        return RuntimeFailure(f"cannot start VisualDL on {host}:{port}: {text}")
    return RuntimeFailure(f"VisualDL did not start: {message!r}")


def serve(logdirs: list[str], host: str, port: int, ready: Callable[[str], None], language: str = "en",
          cache_timeout: int = 20, start_timeout: float = 180.0) -> None:
    """Serve VisualDL on logdirs until Ctrl-C or SIGTERM; `ready(url)` is called once the port is bound.

    VisualDL runs in a child process: its app starts a thread that never ends
    and resets SIGINT, so it cannot share trainctl's process and still stop
    cleanly. The child is ended (SIGTERM, then SIGKILL) whatever way this returns.
    """
    import multiprocessing

    receiver, sender = multiprocessing.Pipe(duplex=False)
    child = multiprocessing.Process(target=_serve_child, name="trainctl-board",
                                    args=(list(logdirs), host, port, language, cache_timeout, sender, os.getpid()))

    def on_term(signum, frame):
        raise _Stop()

    previous_term = signal.signal(signal.SIGTERM, on_term)
    try:
        child.start()
        sender.close()
        deadline = time.monotonic() + start_timeout
        while not receiver.poll(0.2):
            if not child.is_alive():
                raise RuntimeFailure(f"VisualDL exited while starting (exit code {child.exitcode})")
            if time.monotonic() > deadline:
                raise RuntimeFailure(f"VisualDL did not start within {start_timeout:.0f} s")
        try:
            message = receiver.recv()
        except EOFError:
            child.join(5)
            raise RuntimeFailure(f"VisualDL exited while starting (exit code {child.exitcode})") from None
        if message[0] != "ready":
            raise _start_error(message, host, port)
        ready(url_for(host, message[1]))
        child.join()
        if child.exitcode not in (0, None, -signal.SIGTERM, -signal.SIGINT):
            raise RuntimeFailure(f"VisualDL stopped unexpectedly (exit code {child.exitcode})")
    except (KeyboardInterrupt, _Stop):
        pass
    finally:
        signal.signal(signal.SIGTERM, previous_term)
        receiver.close()
        _stop_child(child)


def _stop_child(child) -> None:
    if child.pid is None:
        return
    if child.is_alive():
        child.terminate()
        child.join(10)
    if child.is_alive():
        child.kill()
        child.join(5)
