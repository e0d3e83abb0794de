"""The live progress line reaches a real terminal: `trainctl train` under a pseudo-terminal (pty) shows it.
Through a pipe it does not (ppdet's plain lines instead): test_sweep_compare.py's interrupted sweep checks that."""

from __future__ import annotations

import os
import pty
import select
import subprocess
import sys
import time

import pytest

pytestmark = [pytest.mark.paddle, pytest.mark.slow]

# 3 training images at batch 2 (drop_last): one iteration per epoch, two epochs
ARGS = ["train", "-c", "roadsign_cpu_smoke.yml", "-o", "epoch=2", "-o", "log_iter=1", "--lr-scale", "none", "--seed", "0"]


def _env() -> dict:
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", "2")
    for name in ("TRAINCTL_DEBUG", "CI"):  # CI turns the live line off on purpose
        env.pop(name, None)
    return env


def _run_in_pty(argv, cwd, timeout=300) -> tuple[int, bytes]:
    master, slave = pty.openpty()
    proc = subprocess.Popen(argv, cwd=cwd, env=_env(), stdin=slave, stdout=slave, stderr=slave, close_fds=True)
    os.close(slave)
    out = b""
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.5)
            if ready:
                try:
                    chunk = os.read(master, 65536)
                except OSError:  # EIO: every writer closed the terminal
                    break
                if not chunk:
                    break
                out += chunk
            elif proc.poll() is not None:
                break
    finally:
        os.close(master)
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=30)
    return proc.returncode, out


@pytest.fixture(scope="module")
def tiny_work(tmp_path_factory):
    from trainctl.data.sample import write_sample_dataset

    work = tmp_path_factory.mktemp("tty")
    write_sample_dataset(work / "dataset" / "roadsign_voc", images=4, seed=2, valid_every=4)
    return work


def test_live_line_on_a_terminal(tiny_work):
    code, out = _run_in_pty([sys.executable, "-m", "trainctl", *ARGS, "--output", "out/tty"], tiny_work)
    text = out.decode(errors="replace")
    assert code == 0, text[-3000:]
    for epoch in (1, 2):
        assert f"\repoch {epoch}/2  iter 1/1  loss " in text  # rewritten in place, one line per epoch
    assert "img/s  ETA 0:" in text
    assert "Epoch: [" not in text  # ppdet's per-iteration lines give way to it

