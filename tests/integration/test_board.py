"""`trainctl board` serves VisualDL on real scalar logs over http://127.0.0.1, and stops cleanly.

Scalars are written with VisualDL's own LogWriter (in a subprocess) into the
run layout the worker uses (<run_dir>/vdl); the board runs as a user runs it,
`python -m trainctl board ...`, and the test talks to it over HTTP.
"""

from __future__ import annotations

import json
import os
import select
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from sigutil import default_sigint

from trainctl.runrecord import RunRecord

pytestmark = pytest.mark.paddle

LOSSES = {"bs2": [4.0, 3.0, 2.5, 2.0, 1.8], "bs4": [4.0, 2.5, 1.5, 1.2, 1.0]}


def make_runs(root: Path, names=("bs2", "bs4"), with_vdl=True) -> None:
    for name in names:
        run = root / "output" / name
        run.mkdir(parents=True)
        RunRecord(run, ["trainctl", "train", "--vdl"], {"task": "train", "nodes": []}).start()
    if not with_vdl:
        return
    code = (
        "import json, sys\n"
        "from visualdl import LogWriter\n"
        "for name, losses in json.loads(sys.argv[1]).items():\n"
        "    with LogWriter(logdir=f'output/{name}/vdl') as w:\n"
        "        for step, loss in enumerate(losses):\n"
        "            w.add_scalar('loss', loss, step)\n"
        "            w.add_scalar('lr', 0.001 * (step + 1), step)\n"
    )
    subprocess.run([sys.executable, "-c", code, json.dumps({n: LOSSES[n] for n in names})], cwd=root, check=True, timeout=120)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_board(cwd: Path, *args: str) -> subprocess.Popen:
    env = dict(os.environ)
    env.pop("TRAINCTL_DEBUG", None)
    return subprocess.Popen([sys.executable, "-m", "trainctl", "board", *args], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=default_sigint)


def read_url(proc: subprocess.Popen, timeout: float = 180) -> str:
    """The first stdout line (the URL), or fail with what the board printed."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([proc.stdout], [], [], 0.5)
        if ready:
            line = proc.stdout.readline()
            if line:
                return line.strip()
        if proc.poll() is not None:
            break
    proc.kill()
    out, err = proc.communicate()
    pytest.fail(f"board printed no URL (exit {proc.returncode}):\n{out}\n{err}")


def get(url: str) -> tuple[int, bytes]:
    with urllib.request.urlopen(url, timeout=60) as response:  # follows VisualDL's redirects
        return response.status, response.read()


def api(base: str, method: str) -> object:
    status, body = get(f"{base}/app/api/{method}")
    data = json.loads(body)
    assert status == 200 and data["status"] == 0, data
    return data["data"]


def children(pid: int) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    out.append(int(entry.name))
            except (OSError, IndexError, ValueError):
                pass
    return out


def gone(pid: int, timeout: float = 15) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, ProcessLookupError):
            return True
        if state == "Z":  # exited; only waiting to be reaped
            return True
        time.sleep(0.2)
    return False


def port_closed(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(2)
        return s.connect_ex(("127.0.0.1", port)) != 0


def test_board_serves_two_runs_side_by_side_and_stops(tmp_path):
    make_runs(tmp_path)
    make_runs(tmp_path, names=("novdl",), with_vdl=False)
    port = free_port()
    proc = start_board(tmp_path, "output/bs2", "output/bs4", "output/novdl", "--port", str(port))
    try:
        url = read_url(proc)
        assert url == f"http://127.0.0.1:{port}/app"
        base = url[: -len("/app")]

        status, page = get(url)  # the page itself, as a browser loads it
        assert status == 200 and b"<!DOCTYPE html>" in page[:200] and b"/app/_dist_/index.js" in page
        assert get(f"{base}/app/_dist_/index.js")[0] == 200  # its assets are served locally (offline)

        runs = ["output/bs2/vdl", "output/bs4/vdl"]
        assert sorted(api(base, "runs")) == runs
        tags = api(base, "scalar/tags")
        assert sorted(tags["runs"]) == runs
        for run_tags in tags["tags"]:
            assert sorted(run_tags) == ["loss", "lr"]
        for name in ("bs2", "bs4"):
            points = api(base, f"scalar/list?run=output/{name}/vdl&tag=loss")
            assert [p[1] for p in points] == list(range(5))
            assert [round(p[2], 4) for p in points] == LOSSES[name]
        workers = children(proc.pid)
        assert workers, "the VisualDL server process was not found"
    finally:
        proc.terminate()
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "Traceback" not in err
    assert "output/novdl has no VisualDL logs" in err and "VisualDL stopped" in err
    assert all(gone(pid) for pid in workers + [proc.pid])
    assert port_closed(port)


def test_board_stops_on_ctrl_c_and_port_zero(tmp_path):
    make_runs(tmp_path, names=("bs2",))
    proc = start_board(tmp_path, "--port", "0")  # default: every run under ./output
    try:
        url = read_url(proc)
        port = int(url.rsplit(":", 1)[1].split("/")[0])
        assert port > 0 and api(url[: -len("/app")], "runs") == ["output/bs2/vdl"]
        workers = children(proc.pid)
    finally:
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "VisualDL stopped" in err and "Traceback" not in err
    assert all(gone(pid) for pid in workers)
    assert port_closed(port)


def test_board_server_dies_with_a_killed_board(tmp_path):
    """SIGKILL leaves the board no chance to clean up; the server must not outlive it."""
    make_runs(tmp_path, names=("bs2",))
    proc = start_board(tmp_path, "output/bs2", "--port", "0")
    url = read_url(proc)
    port = int(url.rsplit(":", 1)[1].split("/")[0])
    workers = children(proc.pid)
    assert workers
    proc.kill()
    proc.communicate(timeout=60)
    assert all(gone(pid) for pid in workers)
    assert port_closed(port)


def test_board_busy_port_is_one_line(tmp_path):
    make_runs(tmp_path, names=("bs2",))
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        proc = start_board(tmp_path, "output/bs2", "--port", str(port))
        out, err = proc.communicate(timeout=180)
    assert proc.returncode == 2, err
    assert err.strip().splitlines()[-1] == (f"trainctl: error: port {port} on 127.0.0.1 is in use; "
                                            "pick another with --port P, or --port 0 for a free one")
    assert out == ""


def test_board_on_the_scalars_a_real_training_wrote(smoke_run):
    """The session's smoke training ran with VisualDL on; the board shows what the worker wrote."""
    run = smoke_run.run_dir.relative_to(smoke_run.workdir).as_posix()
    proc = start_board(smoke_run.workdir, run, "--port", "0")
    try:
        base = read_url(proc)[: -len("/app")]
        tags = api(base, "scalar/tags")
        assert tags["runs"] == [f"{run}/vdl"]
        assert {"train/loss", "train/lr", "eval/bbox_mAP"} <= set(tags["tags"][0]), tags
        loss = api(base, f"scalar/list?run={run}/vdl&tag=train/loss")
        assert loss and all(p[2] > 0 for p in loss)
        steps = [p[1] for p in loss]
        assert steps == sorted(steps)
    finally:
        proc.terminate()
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
