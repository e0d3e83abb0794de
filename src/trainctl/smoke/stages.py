"""The stages of `trainctl smoke`: which real trainctl command each runs, where its files go, and running them.

Every stage is the user-facing trainctl command in a child process (`python -m
trainctl train|eval|export|infer|smoke --comm-only`), with train's own device,
node and network flags forwarded as the user typed them, so the smoke proves
what `trainctl train` would do on that placement. Pure planning here; the
commands run in `run_stage` (subprocess, log file, timeout).

Layout of a smoke run directory (default output/smoke/<config name>):

    train/         the lite training's run dir (config.yml, job.json, run.json, logs/, model_final.*,
                   lite_train.json)
    comm/          the collective probe's run dir (job.json, logs/, comm.json)
    eval/ export/  evaluation record, exported model
    infer_images/  links to the eval images the benchmark runs on
    logs/<stage>.log, <stage>.json   each stage's output (the .json: its --json report)
    smoke.json  smoke.txt            the verdict, environment and performance (JSON and as printed)

Several nodes: train/ and comm/ are shared (each rank's logs go to logs/node<R>/
inside them, as training does); everything node-specific goes under node<R>/
for node R > 0, so nodes on one shared filesystem never write the same file.
Evaluation, export and inference run on node 0, where rank 0 saved the weights.
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from trainctl.smoke.comm import DEFAULT_MAX_ITERS, DEFAULT_SIZES

TAIL_LINES = 20
KILL_GRACE = 30.0  # seconds between SIGTERM and SIGKILL for a stage past its timeout
INFER_IMAGES = 4
BENCH_ARGS = ["--warmup", "1", "--repeats", "2", "--batch-size", "1"]


@dataclass
class SmokeOptions:
    config: str | None
    overrides: list[str] = field(default_factory=list)
    sample_data: bool = False
    no_pretrained: bool = False
    no_data_check: bool = False
    amp: bool = False
    iters: int = 5
    output: str | None = None
    comm: bool = False
    comm_only: bool = False
    comm_sizes: str = DEFAULT_SIZES
    comm_iters: int = DEFAULT_MAX_ITERS
    stage_timeout: float = 1800.0
    as_json: bool = False
    dry_run: str | None = None


@dataclass
class Layout:
    root: Path  # the smoke run dir, shared by the nodes
    node_rank: int = 0
    nnodes: int = 1

    @classmethod
    def make(cls, output: str | None, config_name: str, node_rank: int, nnodes: int) -> "Layout":
        return cls(Path(output) if output else Path("output") / "smoke" / config_name, node_rank, nnodes)

    @property
    def node(self) -> Path:
        return self.root if self.node_rank == 0 or self.nnodes == 1 else self.root / f"node{self.node_rank}"

    train = property(lambda self: self.root / "train")
    comm = property(lambda self: self.root / "comm")
    eval = property(lambda self: self.node / "eval")
    export = property(lambda self: self.node / "export")
    images = property(lambda self: self.node / "infer_images")
    logs = property(lambda self: self.node / "logs")
    report = property(lambda self: self.node / "smoke.json")
    text = property(lambda self: self.node / "smoke.txt")


@dataclass
class Stage:
    name: str
    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)  # set for this stage, on top of the inherited environment
    log: str = ""  # stdout + stderr, or stderr alone when `report` takes stdout
    report: str | None = None  # the stage's --json output (stdout)
    status: str = "pending"  # then pass, fail, skipped (after a failure) or n/a (not on this placement or node)
    reason: str = ""  # why n/a or skipped; for a failure the error line
    seconds: float | None = None
    exit_code: int | None = None
    detail: str = ""
    tail: list[str] = field(default_factory=list)

    @property
    def command(self) -> str:
        head = [f"{k}={v}" for k, v in self.env.items()]
        return shlex.join(head + self.argv)

    def to_dict(self) -> dict:
        data = asdict(self)
        data["command"] = self.command
        return data


@dataclass
class Flags:
    """The user's flags to forward, as typed: placement (train, comm) and devices only (eval on node 0)."""

    placement: list[str] = field(default_factory=list)
    devices: list[str] = field(default_factory=list)
    ppdet: list[str] = field(default_factory=list)  # --ppdet DIR as typed, for export (eval has it in devices)


def trainctl(*words: str) -> list[str]:
    return [sys.executable, "-m", "trainctl", *words]


def overrides_words(overrides: list[str]) -> list[str]:
    words: list[str] = []
    for item in overrides:
        words += ["-o", item]
    return words


def plan_stages(sopts: SmokeOptions, layout: Layout, flags: Flags, world_size: int, device: str,
                gpu_env: dict[str, str] | None = None) -> list[Stage]:
    """The stages in order, with their commands; n/a stages carry their reason."""
    logs = layout.logs
    stages: list[Stage] = []

    def stage(name: str, argv: list[str], report: bool = False, **kw) -> Stage:
        item = Stage(name, argv, log=str(logs / f"{name}.log"), report=str(logs / f"{name}.json") if report else None,
                     **kw)
        stages.append(item)
        return item

    if sopts.comm or sopts.comm_only:
        comm = stage("comm", trainctl("smoke", "--comm-only", "--json", "--output", str(layout.root),
                                      "--comm-sizes", sopts.comm_sizes, "--comm-iters", str(sopts.comm_iters),
                                      "--stage-timeout", f"{sopts.stage_timeout:g}", *flags.placement), report=True)
        if world_size < 2:
            comm.status, comm.reason = "n/a", "one process: no peer to exchange with (use --nproc 2, several GPUs or nodes)"
    if sopts.comm_only:
        return stages

    user = overrides_words(sopts.overrides)
    train = ["train", "-c", str(sopts.config), *user, "-o", "epoch=1", "-o", f"trainctl.max_iters={sopts.iters}",
             "--output", str(layout.train)]
    for flag, given in (("--sample-data", sopts.sample_data), ("--no-pretrained", sopts.no_pretrained),
                        ("--no-data-check", sopts.no_data_check), ("--amp", sopts.amp)):
        if given:
            train.append(flag)
    stage("train", trainctl(*train, *flags.placement))

    weights = str(layout.train / "model_final")
    stage("eval", trainctl("eval", "-c", str(sopts.config), *user, "--weights", weights, "--output", str(layout.eval),
                           *flags.devices))
    stage("export", trainctl("export", "-c", str(sopts.config), *user, "--weights", weights,
                             "--output", str(layout.export), *flags.ppdet))
    bench = ["infer", "--model-dir", str(layout.export), "--dir", str(layout.images), "--benchmark", "--json", *BENCH_ARGS]
    # trainctl infer picks the GPU when paddle sees one: hiding them is how the CPU run is forced
    stage("infer-cpu", trainctl(*bench), report=True, env={"CUDA_VISIBLE_DEVICES": ""} if device == "gpu" else {})
    if device == "gpu":
        stage("infer-gpu", trainctl(*bench), report=True, env=dict(gpu_env or {}))
    if layout.nnodes > 1 and layout.node_rank > 0:
        for item in stages:
            if item.name in ("eval", "export", "infer-cpu", "infer-gpu"):
                item.status, item.reason = "n/a", "runs on node 0, where rank 0 saved the weights"
    return stages


# ------------------------------------------------------------------ running one stage


def _tail(path: str, lines: int = TAIL_LINES) -> list[str]:
    try:
        with open(path, "rb") as f:
            f.seek(0, 2)
            f.seek(max(0, f.tell() - 32 * 1024))
            text = f.read().decode("utf-8", "replace")
    except OSError:
        return []
    return [line.rstrip("\r") for line in text.replace("\r", "\n").splitlines() if line.strip()][-lines:]


def _error_line(tail: list[str]) -> str:
    """The child's own one-line error (trainctl: error: ...), else its last line."""
    for line in reversed(tail):
        if line.startswith("trainctl: error: "):
            return line[len("trainctl: error: "):]
    return tail[-1] if tail else ""


def run_stage(stage: Stage, timeout: float, cwd: str | None = None) -> None:
    """Run the stage's command, its output to its log (stdout to its report file when it has one)."""
    from trainctl.core.procutil import parent_death_signal

    Path(stage.log).parent.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    env.update(stage.env)
    env.setdefault("PYTHONUNBUFFERED", "1")
    start = time.monotonic()
    with open(stage.log, "wb") as log:
        log.write(f"$ {stage.command}\n".encode())
        log.flush()
        out = open(stage.report, "wb") if stage.report else log
        try:
            child = subprocess.Popen(stage.argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=out,
                                     stderr=log if stage.report else subprocess.STDOUT,
                                     preexec_fn=parent_death_signal)
            timed_out = False
            try:
                code = child.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                timed_out = True
                child.send_signal(signal.SIGTERM)  # trainctl stops its workers on SIGTERM
                try:
                    code = child.wait(timeout=KILL_GRACE)
                except subprocess.TimeoutExpired:
                    child.kill()
                    code = child.wait()
            except BaseException:  # Ctrl-C reached the child too (same process group); let it stop first
                try:
                    child.wait(timeout=KILL_GRACE)
                except subprocess.TimeoutExpired:
                    child.kill()
                    child.wait()
                stage.status, stage.reason = "fail", "interrupted"
                stage.seconds = time.monotonic() - start
                raise
        finally:
            if out is not log:
                out.close()
    stage.seconds = time.monotonic() - start
    stage.exit_code = code
    stage.tail = _tail(stage.log)
    if timed_out:
        stage.status, stage.reason = "fail", f"timed out after {timeout:.0f} s (--stage-timeout)"
    elif code != 0:
        stage.status = "fail"
        stage.reason = f"exit {code}: {_error_line(stage.tail)}" if code > 0 else f"killed by signal {-code}"
    else:
        stage.status = "pass"


def fail(stage: Stage, reason: str) -> None:
    """A stage that exited 0 but did not produce what it should."""
    stage.status, stage.reason = "fail", reason
    stage.tail = stage.tail or _tail(stage.log)


# ------------------------------------------------------------------ what the benchmark runs on


def eval_images(rc, limit: int = INFER_IMAGES) -> list[str]:
    """The first images of the config's eval dataset (VOC list or COCO json), as ppdet would find them."""
    import json

    from trainctl.data.check import dataset_spec

    spec = dataset_spec(rc, "eval")
    if spec is None or not spec.anno_file or not os.path.isfile(spec.anno_file):
        return []
    found: list[str] = []
    if spec.kind == "COCO":
        try:
            images = json.loads(Path(spec.anno_file).read_text()).get("images") or []
        except (OSError, ValueError):
            return []
        names = [str(item.get("file_name")) for item in images if isinstance(item, dict) and item.get("file_name")]
    else:
        with open(spec.anno_file, errors="replace") as f:
            names = [line.split()[0] for line in f if line.strip()]
    for name in names:
        path = os.path.join(spec.image_root, name)
        if os.path.isfile(path):
            found.append(path)
        if len(found) >= limit:
            break
    return found


def link_images(paths: list[str], directory: Path) -> None:
    """A fresh directory of links to `paths` (copies where links are not possible)."""
    import shutil

    if directory.is_dir():
        for item in directory.iterdir():
            if item.is_symlink() or item.is_file():
                item.unlink()
    directory.mkdir(parents=True, exist_ok=True)
    for path in paths:
        target = directory / os.path.basename(path)
        try:
            target.symlink_to(os.path.abspath(path))
        except OSError:
            shutil.copyfile(path, target)
