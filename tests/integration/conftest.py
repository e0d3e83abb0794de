"""Session fixtures for the real-paddle tests: the sample dataset and one smoke training.

Everything that imports paddle runs in subprocesses (the worker, the trainctl
CLI), as it does for users; the pytest process itself stays paddle-free, so
in-process tests elsewhere see a clean interpreter.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SHARED = REPO.parent / "shared"
ROAD554 = SHARED / "reference" / "images" / "road554.png"
SMOKE_CONFIG = "roadsign_cpu_smoke.yml"


def _env() -> dict:
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", "2")
    env.pop("TRAINCTL_DEBUG", None)
    return env


def run_cli(args: list[str], cwd: Path, timeout: int = 900) -> subprocess.CompletedProcess:
    """`trainctl ARGS` in a fresh process, as a user runs it."""
    return subprocess.run([sys.executable, "-m", "trainctl", *args], cwd=cwd, env=_env(), capture_output=True, text=True, timeout=timeout)


def run_worker(job: Path, cwd: Path, timeout: int = 900) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "trainctl.runner.worker", "--job", str(job)], cwd=cwd, env=_env(), capture_output=True, text=True, timeout=timeout
    )


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("trainctl: error:")]


def write_run(workdir: Path, run_dir: Path, task: str, overrides: list[str] = (), **job_fields) -> Path:
    """config.yml + job.json as the launcher writes them; returns the job path."""
    from trainctl.config import dump_yaml, resolve
    from trainctl.core.job import CONFIG_FILE, JOB_FILE, Job

    run_dir.mkdir(parents=True, exist_ok=True)
    rc = resolve(SMOKE_CONFIG, overrides=list(overrides))
    (run_dir / CONFIG_FILE).write_text(dump_yaml(rc.data))
    job = Job(task=task, config=str(run_dir / CONFIG_FILE), run_dir=str(run_dir), **job_fields)
    job.save(run_dir / JOB_FILE)
    return run_dir / JOB_FILE


@pytest.fixture(scope="session")
def sample_dataset(tmp_path_factory) -> Path:
    """A working directory holding dataset/roadsign_voc (12 synthetic images), where the smoke config looks."""
    from trainctl.data.sample import write_sample_dataset

    work = tmp_path_factory.mktemp("work")
    write_sample_dataset(work / "dataset" / "roadsign_voc", images=12, seed=0)
    return work


@dataclass
class SmokeRun:
    workdir: Path
    run_dir: Path
    log: str  # stdout + stderr
    stderr: str  # as written, with the live line's carriage returns
    seconds: float

    @property
    def config(self) -> Path:
        return self.run_dir / "config.yml"

    @property
    def final(self) -> Path:
        return self.run_dir / "model_final"


@pytest.fixture(scope="session")
def smoke_run(sample_dataset) -> SmokeRun:
    """The smoke config trained for one epoch (5 iterations) with --eval, once per session, through the worker.

    `use_gpu=true` and device auto on purpose: a GPU config must not crash a CPU-only machine.
    VisualDL is on and the live progress line is forced (as on a terminal), for test_runner_monitor.
    """
    run_dir = sample_dataset / "output" / "roadsign_cpu_smoke"
    # base_lr and warmup as `trainctl train` scales them for one CPU process at batch 2 (the config's values are for
    # 8 x 2 images per step); unscaled, one epoch from scratch leaves BatchNorm statistics that suppress every box
    lr = ["LearningRate.base_lr=0.000125", "LearningRate.schedulers.1.steps=40"]
    job = write_run(sample_dataset, run_dir, "train", ["use_gpu=true", *lr], device="auto",
                    eval_during_train=True, seed=0, vdl=True, progress="tty")
    start = time.monotonic()
    # bytes, not text: universal newlines would turn the live line's \r into \n
    proc = subprocess.run([sys.executable, "-m", "trainctl.runner.worker", "--job", str(job)], cwd=sample_dataset, env=_env(),
                          capture_output=True, timeout=900)
    seconds = time.monotonic() - start
    stdout, stderr = proc.stdout.decode(errors="replace"), proc.stderr.decode(errors="replace")
    log = stdout + stderr
    if proc.returncode != 0:
        pytest.fail(f"smoke training failed (exit {proc.returncode}):\n{log[-4000:]}")
    return SmokeRun(sample_dataset, run_dir, log, stderr, seconds)


@pytest.fixture(scope="session")
def exported_model(smoke_run, ptools) -> Path:
    """`trainctl export` of the smoke run's model_final, once per session."""
    out = smoke_run.workdir / "exported"
    proc = ptools.run_cli(["export", "-c", "roadsign_cpu_smoke.yml", "--weights", str(smoke_run.final), "--output", str(out)], smoke_run.workdir)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"to {out}" in proc.stdout
    for noise in ("New Executor is Running", "Unable to use numba"):  # paddle's glog INFO line, ppdet's import print
        assert noise not in proc.stdout + proc.stderr, noise
    return out


DEMO_EPOCHS = 6  # the demo recipe's first epochs (test_demo_figure.py: the figure they reach)


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory):
    """The demo recipe (scripts/demo.sh: its sample set, roadsign_demo.yml, seed 0) trained for its first
    DEMO_EPOCHS epochs, once per session: (work dir, run dir). A model that finds signs."""
    work = tmp_path_factory.mktemp("demo")
    made = run_cli(["data", "sample", "--out", "dataset/roadsign_voc", "--images", "500", "--sign-size", "0.35,0.7", "--max-signs", "1"], work)
    assert made.returncode == 0, made.stderr
    env = _env()
    env.pop("OMP_NUM_THREADS", None)  # as scripts/demo.sh runs it
    proc = subprocess.run([sys.executable, "-m", "trainctl", "-q", "train", "-c", "roadsign_demo.yml", "--eval", "--seed", "0",
                           "-o", f"epoch={DEMO_EPOCHS}"], cwd=work, env=env, capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    return work, work / "output" / "roadsign_demo"


class Tools:
    """The helpers above, handed to tests as the `ptools` fixture (tests do not import conftest)."""

    run_cli = staticmethod(run_cli)
    env = staticmethod(_env)
    run_worker = staticmethod(run_worker)
    write_run = staticmethod(write_run)
    error_lines = staticmethod(error_lines)
    road554 = ROAD554


@pytest.fixture(scope="session")
def ptools() -> Tools:
    return Tools()
