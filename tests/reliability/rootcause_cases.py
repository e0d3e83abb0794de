"""Kill-one-rank cases for the root-cause judgement, shared by tests/reliability/test_root_cause.py
(each case once, in CI) and scripts/stress_rootcause.py (each case N times, under load).

A case runs the real CLI, `trainctl train --nproc 2` on the smoke config at 128 px (paddle launch,
gloo on CPU), waits until the target rank has completed an iteration (plus a random delay, so the
fault lands anywhere in an iteration), makes that rank fail, and reads run.json: which rank
trainctl names, and whether it called the evidence ambiguous.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
FAULT_DIR = HERE / "faultinject"  # sitecustomize.py: SIGUSR2 -> raise / os._exit(3) in a worker
SMALL = ["-o", "TrainReader.batch_transforms.0.BatchRandomResize.target_size=[128]", "-o", "log_iter=1",
         "-o", "epoch=1000", "-o", "snapshot_epoch=1000"]


@dataclass(frozen=True)
class Case:
    name: str
    rank: int  # the rank made to fail: the expected root cause
    signal: int  # what is sent to it
    fault: str | None = None  # TRAINCTL_TEST_FAULT for SIGUSR2 (raise, exit3)
    expect: str = ""  # a word the verdict's reason must contain


CASES = {
    "sigkill-rank1": Case("sigkill-rank1", 1, signal.SIGKILL, expect="SIGKILL"),
    "sigsegv-rank1": Case("sigsegv-rank1", 1, signal.SIGSEGV, expect="SIGSEGV"),
    "exit3-rank1": Case("exit3-rank1", 1, signal.SIGUSR2, "exit3", expect="code 3"),
    "exception-rank1": Case("exception-rank1", 1, signal.SIGUSR2, "raise", expect="injected fault"),
    "sigkill-rank0": Case("sigkill-rank0", 0, signal.SIGKILL, expect="SIGKILL"),
}


@dataclass
class Outcome:
    case: str
    expected: int
    named: int | None  # the rank run.json names
    ambiguous: bool
    why: str  # the cause's reason
    returncode: int
    seconds: float
    error: str = ""  # set when the run itself went wrong (no verdict to judge)

    @property
    def verdict(self) -> str:
        if self.error:
            return "error"
        if self.ambiguous:
            return "ambiguous"
        return "right" if self.named == self.expected else "wrong"


def _heartbeat(run: Path, rank: int) -> dict | None:
    try:
        return json.loads((run / "progress" / f"rank{rank}.json").read_text())
    except (OSError, ValueError):
        return None


def _worker_pid(run: Path, rank: int) -> int | None:
    needle = str(run / "job.json").encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
            if needle not in cmdline or b"trainctl.runner.worker" not in cmdline or b"paddle.distributed" in cmdline:
                continue
            environ = (entry / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if f"PADDLE_TRAINER_ID={rank}".encode() in environ:
            return int(entry.name)
    return None


def run_case(case: Case, workdir: Path, run_name: str, timeout: float = 300, rng: random.Random | None = None,
             python: str = sys.executable) -> Outcome:
    """Run one case in workdir (which holds dataset/roadsign_voc); the run directory is workdir/run_name."""
    rng = rng or random.Random()
    run = workdir / run_name
    env = dict(os.environ)
    env.pop("TRAINCTL_DEBUG", None)
    env["PYTHONPATH"] = str(FAULT_DIR) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    if case.fault:
        env["TRAINCTL_TEST_FAULT"] = case.fault
    args = [python, "-m", "trainctl", "train", "-c", "roadsign_cpu_smoke.yml", "--output", str(run), "--nproc", "2",
            *SMALL]
    started = time.monotonic()
    proc = subprocess.Popen(args, cwd=workdir, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + timeout
        pid = None
        while time.monotonic() < deadline and proc.poll() is None:
            beat = _heartbeat(run, case.rank)
            if beat and beat.get("iter", 0) >= 1:
                pid = _worker_pid(run, case.rank)
                if pid:
                    break
            time.sleep(0.2)
        if pid is None:
            return Outcome(case.name, case.rank, None, False, "", proc.poll() or -1, time.monotonic() - started,
                           error="the target rank never iterated")
        time.sleep(rng.uniform(0, 1.5))  # anywhere in an iteration (about 1-3 s here)
        os.kill(pid, case.signal)
        _, err = proc.communicate(timeout=max(30.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
        return Outcome(case.name, case.rank, None, False, "", proc.returncode, time.monotonic() - started,
                       error="trainctl did not end after the fault")
    seconds = time.monotonic() - started
    try:
        failure = json.loads((run / "run.json").read_text())["failure"] or {}
    except (OSError, ValueError, KeyError) as exc:
        return Outcome(case.name, case.rank, None, False, "", proc.returncode, seconds, error=f"no run.json: {exc}")
    root = failure.get("root_cause") or {}
    cause = next((r for r in root.get("ranks", []) if r.get("rank") == failure.get("rank")), {})
    why = cause.get("why", "") + (f" ({cause['line']})" if cause.get("line") else "")
    error = "" if proc.returncode == 1 else f"exit {proc.returncode}: {err[-500:]}"
    return Outcome(case.name, case.rank, failure.get("rank"), bool(root.get("ambiguous")), why, proc.returncode,
                   seconds, error=error)


def make_workdir(base: Path, python: str = sys.executable) -> Path:
    """base/dataset/roadsign_voc: the 8-image sample set the smoke config reads."""
    data = base / "dataset" / "roadsign_voc"
    if not (data / "train.txt").exists():
        subprocess.run([python, "-m", "trainctl", "data", "sample", "--out", str(data), "--images", "8"],
                       check=True, capture_output=True)
    return base
