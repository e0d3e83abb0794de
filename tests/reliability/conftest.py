"""Shared helpers for the reliability suite, and the figures hook.

Every case runs the real CLI as a subprocess (`python -m trainctl ...`), the way a
user meets it. After a run of the whole suite (every file, no -k/-m) the hook below writes
benchmarks/results/reliability_last_run.json (a generated result, kept out of tests/):
per case class (bad input, faults, security) how many cases were tried and passed,
and every case's outcome; docs/reliability.md quotes those figures
(`python tests/reliability/figures.py` prints the table).
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
FIGURES_FILE = HERE.parents[1] / "benchmarks" / "results" / "reliability_last_run.json"
# test module -> case class in docs/reliability.md
CLASSES = {
    "test_bad_input.py": "bad input",
    "test_bad_input_worker.py": "bad input",
    "test_faults.py": "faults",
    "test_faults_multinode.py": "faults",
    "test_restarts.py": "restarts and hangs",
    "test_root_cause.py": "faults",
    "test_security.py": "security",
}


@dataclass
class Result:
    args: list[str]
    returncode: int
    stdout: str
    stderr: str
    seconds: float

    @property
    def output(self) -> str:
        return self.stdout + self.stderr

    def error_lines(self) -> list[str]:
        return [line for line in self.stderr.splitlines() if line.strip()]

    def explain(self) -> str:
        return (f"$ trainctl {' '.join(self.args)}\nexit {self.returncode}\n--- stdout\n{self.stdout[-3000:]}"
                f"\n--- stderr\n{self.stderr[-3000:]}")


def run_cli(args: list[str], cwd: str | os.PathLike, env: dict | None = None, timeout: float = 300) -> Result:
    """`python -m trainctl ARGS` in cwd, as a user would run it (no terminal, no debug)."""
    full_env = dict(os.environ)
    full_env.pop("TRAINCTL_DEBUG", None)
    full_env.update(env or {})
    started = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-m", "trainctl", *args], cwd=cwd, env=full_env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        # SIGTERM first: trainctl stops its workers (a SIGKILL would orphan them)
        proc.terminate()
        try:
            stdout, stderr = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            stdout, stderr = proc.communicate()
        raise AssertionError(f"trainctl {' '.join(args)} still running after {timeout}s (stopped)\n"
                             f"--- stdout\n{stdout[-3000:]}\n--- stderr\n{stderr[-3000:]}") from None
    return Result(list(args), proc.returncode, stdout, stderr, time.monotonic() - started)


def assert_one_line_error(res: Result, code: int, *words: str) -> str:
    """Exactly one line on stderr, `trainctl: error: <problem>; <fix>`, the exit code, no traceback."""
    assert "Traceback" not in res.output, res.explain()
    assert res.returncode == code, res.explain()
    lines = res.error_lines()
    assert len(lines) == 1, res.explain()
    line = lines[0]
    assert line.startswith("trainctl: error: "), res.explain()
    assert "; " in line, f"no fix in the message: {line}"
    for word in words:
        assert word.lower() in line.lower(), f"{word!r} not in: {line}"
    return line


def sample_dataset(root: Path, images: int = 8, seed: int = 11) -> Path:
    """The built-in synthetic VOC dataset, written by the real CLI."""
    target = root / "dataset" / "roadsign_voc"
    res = run_cli(["data", "sample", "--out", str(target), "--images", str(images), "--seed", str(seed)], cwd=root)
    assert res.returncode == 0, res.explain()
    return target


def processes_matching(marker: str) -> list[tuple[int, str]]:
    """Live processes (not zombies) whose command line contains `marker` (e.g. a run directory)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode("utf-8", "replace")
            state = (entry / "stat").read_text().rsplit(")", 1)[-1].split()[0]
        except OSError:
            continue
        if marker in cmdline and state not in ("Z", "X"):
            found.append((int(entry.name), cmdline.strip()))
    return found


def worker_pid(run: Path, rank: int) -> int | None:
    """The worker process of global rank `rank` of the run in `run` (one process: rank 0)."""
    for pid, cmdline in processes_matching(str(run / "job.json")):
        if "trainctl.runner.worker" not in cmdline or "paddle.distributed.launch" in cmdline:
            continue
        try:
            environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        trainer = [item for item in environ if item.startswith(b"PADDLE_TRAINER_ID=")]
        if (trainer and trainer[0] == f"PADDLE_TRAINER_ID={rank}".encode()) or (not trainer and rank == 0):
            return pid
    return None


def kill_run(proc: subprocess.Popen, run: Path) -> None:
    """SIGKILL trainctl (if still running) and every process whose command line names the run."""
    if proc.poll() is None:
        proc.kill()
        proc.wait()
    for pid, _ in processes_matching(str(run)):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def terminate_all(procs) -> None:
    """SIGTERM each still running process (trainctl then stops its workers), SIGKILL after 30 s."""
    for proc in procs:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def wait_for(predicate, timeout: float, what: str, interval: float = 0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


@pytest.fixture(scope="session")
def shared_dataset(tmp_path_factory) -> Path:
    """One small sample dataset for the whole suite (8 images: 7 train, 1 valid)."""
    return sample_dataset(tmp_path_factory.mktemp("reliability-data"))


@pytest.fixture
def work(tmp_path, shared_dataset) -> Path:
    """A fresh working directory where `dataset/roadsign_voc` is the shared sample (as the configs expect)."""
    (tmp_path / "dataset").mkdir()
    (tmp_path / "dataset" / "roadsign_voc").symlink_to(shared_dataset)
    return tmp_path


@pytest.fixture
def own_dataset(tmp_path, shared_dataset) -> Path:
    """A working directory with a private copy of the sample dataset (for cases that damage it)."""
    import shutil

    shutil.copytree(shared_dataset, tmp_path / "dataset" / "roadsign_voc")
    return tmp_path


# ---------------------------------------------------------------- figures

_outcomes: dict[str, dict] = {}


def _case_class(nodeid: str) -> str | None:
    path = nodeid.split("::", 1)[0]
    if "tests/reliability/" not in path.replace(os.sep, "/") and not path.startswith("test_"):
        return None
    return CLASSES.get(Path(path).name)


def pytest_runtest_logreport(report):
    klass = _case_class(report.nodeid)
    if klass is None:
        return
    entry = _outcomes.setdefault(report.nodeid, {"class": klass, "outcome": None, "seconds": 0.0})
    entry["seconds"] += report.duration
    for name, value in report.user_properties:  # measured figures (record_property)
        entry.setdefault("measured", {})[name] = value
    if report.when == "call" or (report.when == "setup" and report.outcome != "passed"):
        if hasattr(report, "wasxfail"):
            outcome = "xfailed" if report.skipped else "xpassed"
        else:
            outcome = report.outcome  # passed, failed, skipped
        entry["outcome"] = outcome
    elif report.when == "teardown" and report.outcome == "failed":
        entry["outcome"] = "failed"


def _whole_suite(session) -> bool:
    """Every reliability test file ran, unfiltered: only such a run may replace the figures."""
    option = session.config.option
    if getattr(option, "keyword", "") or getattr(option, "markexpr", "") or getattr(option, "deselect", None):
        return False
    ran = {nodeid.split("::")[0].rsplit("/", 1)[-1] for nodeid in _outcomes}
    return {p.name for p in HERE.glob("test_*.py")} <= ran


def pytest_sessionfinish(session, exitstatus):
    if not _outcomes or os.environ.get("TRAINCTL_NO_FIGURES") or not _whole_suite(session):
        return
    classes: dict[str, dict] = {}
    for entry in _outcomes.values():
        c = classes.setdefault(entry["class"], {"tried": 0, "passed": 0, "failed": 0, "skipped": 0,
                                                "xfailed": 0, "xpassed": 0, "seconds": 0.0})
        outcome = entry["outcome"] or "failed"
        c[outcome] = c.get(outcome, 0) + 1
        c["seconds"] = round(c["seconds"] + entry["seconds"], 1)
        if outcome != "skipped":
            c["tried"] += 1
    summary = {
        "finished": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "python": sys.version.split()[0],
        "selection": " ".join(session.config.invocation_params.args),
        "classes": classes,
        "total": {k: sum(c[k] for c in classes.values()) for k in ("tried", "passed", "failed", "skipped",
                                                                   "xfailed", "xpassed")},
        "cases": {nodeid: {"class": e["class"], "outcome": e["outcome"] or "failed", "seconds": round(e["seconds"], 1),
                           **({"measured": e["measured"]} if e.get("measured") else {})}
                  for nodeid, e in sorted(_outcomes.items())},
    }
    try:
        FIGURES_FILE.write_text(json.dumps(summary, indent=2) + "\n")
    except OSError:
        pass
