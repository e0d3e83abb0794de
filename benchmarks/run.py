"""trainctl benchmark suite: trainctl side by side with the plain alternative, in one run.

    python benchmarks/run.py                         # every case, 3 repetitions
    python benchmarks/run.py --cases cli,infer --repeats 5
    python benchmarks/run.py --quick                 # 1 repetition, small sizes: checks the harness

Run it with the Python that has paddle, ppdet and trainctl (e.g. /opt/tcenv/bin/python),
or pass --python and --trainctl. Everything it makes (sample data, runs, the exported
model) goes into benchmarks/work/ (not tracked); the results go to
benchmarks/results/<YYYY-MM-DD>.json and .md. Method and goals: docs/benchmarks.md.

Cases (each reports medians over the repetitions and the ratio to its baseline,
both measured in this run):
  cli         `trainctl --help`, `trainctl train -c roadsign.yml --dry-run`
              vs `python -c "import paddle, ppdet"`
  memory      peak RSS (VmHWM) of the trainctl process itself during a training run
  overhead    process start -> first logged training iteration, trainctl train
              vs benchmarks/baseline_train.py on the same resolved config
  throughput  images/s over iterations 3.. of the same runs; scaling: 2 CPU
              processes (paddle launch) vs 1
  restart     --max-restarts 1: the worker is killed in epoch 2; failure -> first
              iteration of the next attempt, vs a fresh start -> first iteration
              (same job) plus the time to load the checkpoint
  infer       trainctl infer --model-dir vs ppdet's dynamic-graph predict
              (benchmarks/baseline_dygraph.py) and a bare Paddle Inference loop
              (benchmarks/baseline_infer.py) at 608 px (roadsign.yml; --sizes),
              same images, detections compared
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import harness  # noqa: E402
from harness import median, run_timed, spread  # noqa: E402

CASES = ("cli", "memory", "overhead", "throughput", "scaling", "restart", "infer", "deploy")
TRAIN_CONFIG = "roadsign_cpu_smoke.yml"
TRAIN_SIZE = 160
# One fixed input size and fixed interpolation, so every iteration of every run
# does the same work (160 px: the launcher's share is the same at any size, and
# small iterations keep the suite short); log every iteration so batch_cost is
# per iteration. The near-zero learning rate keeps the model near its initial
# weights with BN statistics of real batches, so the trained model doubles as the
# inference case's model: a dozen iterations at the config's rate drive every
# score below the 0.01 NMS threshold (nothing to draw, nothing to compare).
TRAIN_OVERRIDES = [
    "log_iter=1",
    f"TrainReader.batch_transforms.0.BatchRandomResize.target_size=[{TRAIN_SIZE}]",
    "TrainReader.batch_transforms.0.BatchRandomResize.random_interp=false",
    "LearningRate.base_lr=0.000001",
]
# input size -> the bundled config whose TestReader (and export) has that size
INFER_CONFIGS = {224: TRAIN_CONFIG, 608: "roadsign.yml"}
FIRST_COUNTED_STEP = 3  # throughput over iterations 3..N (0-based), after warm-up
# Each goal compares trainctl with what a user would otherwise run, measured in the same run
# (docs/benchmarks.md, "Goals and their anchors"). The dynamic graph's figure is reported, not a
# goal: it measures paddle's dynamic graph on this CPU, not trainctl. A results file keeps the
# goals it was judged by (settings.goals), and its table is rendered from those.
GOALS = {
    "cli_seconds": 0.25,
    "cli_speedup": 15.0,
    "launcher_rss_mb": 100.0,
    "overhead_extra_s": 0.2,
    "throughput_ratio": 0.98,
    "infer_vs_bare": 0.98,
    "restart_vs_fresh_plus_load": 1.0,
    "deploy_vs_peer": 1.0,
}
# PaddleDetection's deploy/python/infer.py (release 2.7.1), the peer of the deploy case
PEER_DIR = HERE.parent.parent / "shared" / "reference" / "paddledetection-src" / "release-2.7.1" / "deploy" / "python"
# drives the peer's Detector and prints its rows at full precision (the test of the same comparison uses it too)
PEER_ROWS = HERE.parent / "tests" / "integration" / "peer_deploy.py"


class CaseNotRun(Exception):
    """A case cannot run (a step failed, something it needs is missing): reported, the suite goes on."""


def overhead_goal_met(goals: dict, ratio: float, extra: float) -> bool:
    """Start-up overhead: met when any of the criteria the goals define holds (ratio, seconds more)."""
    checks = []
    if "overhead_ratio" in goals:
        checks.append(ratio <= goals["overhead_ratio"])
    if "overhead_extra_s" in goals:
        checks.append(extra <= goals["overhead_extra_s"])
    return any(checks)


def trainctl_rows(ours_dir: Path, kind: str) -> dict[str, list[dict]]:
    """The rows `trainctl infer --output ours_dir` wrote: per image (detections.json, by file name, every
    image listed, in name order) or per frame of a video (its .jsonl, "frame N")."""
    ours: dict[str, list[dict]] = {}

    def row(d: dict) -> dict:
        return {"class_id": d["class_id"], "score": d["score"], "box": d["box"]}

    if kind == "dir":
        data = json.loads((ours_dir / "detections.json").read_text())
        for name in sorted(os.path.basename(p) for p in data["images"]):
            ours[name] = []
        for d in data["detections"]:
            ours.setdefault(os.path.basename(d["file"]), []).append(row(d))
    else:
        for line in next(ours_dir.glob("*.jsonl")).read_text().splitlines():
            x = json.loads(line)
            ours[f"frame {x['frame']}"] = [row(d) for d in x["detections"]]
    return ours


def deploy_same(peer: dict[str, list[dict]], ours_dir: Path, kind: str, threshold: float) -> dict:
    """trainctl's rows of a timed run against the peer's, matched one to one by class, score and IoU
    (harness.compare_detections): the order in which either lists images or rows does not matter.
    trainctl writes scores to 6 decimals and boxes to 4; both run the same model with the same settings."""
    return harness.compare_detections(trainctl_rows(ours_dir, kind), peer, score_atol=1e-4, score_rtol=1e-3,
                                      iou_min=0.99, threshold=threshold)


def _differences(earlier: list, later: list) -> dict:
    """spread() of later - earlier, run by run (runs where either moment is missing left out)."""
    return spread([y - x for x, y in zip(earlier, later) if x is not None and y is not None])


def _last_line(run: harness.TimedRun) -> str:
    """The last non-empty output line (where trainctl and Python put the reason), shortened."""
    last = next((line.strip() for _, line in reversed(run.lines) if line.strip()), "no output")
    return last if len(last) <= 200 else last[:197] + "..."


class Suite:
    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.python = args.python
        self.trainctl = args.trainctl
        self.work = Path(args.work).resolve()
        self.repeats = args.repeats
        self.quick = args.quick
        self.dataset_images = 24 if self.quick else 32
        self.infer_images = 16 if self.quick else 32
        self.infer_few = 4
        # ppdet's dynamic graph needs about 2.5 s per image at 608 px: one run over the same images
        # (its per-image rate averages all of them), not one per repetition
        self.dygraph_runs = 1
        self.infer_sizes = [int(x) for x in args.sizes.split(",")] if args.sizes else ([224] if self.quick else [608])
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(("PADDLE_", "FLAGS_"))}
        self.env["PYTHONUNBUFFERED"] = "1"  # what trainctl sets for its workers; the baselines get it too
        # a user's Python caches bytecode; without it every changed module is compiled on every start
        self.env.pop("PYTHONDONTWRITEBYTECODE", None)
        self.results: dict = {"cases": {}, "notes": []}
        self._train_runs: dict[str, list[harness.TimedRun]] = {}
        self._train_error: str | None = None

    # ------------------------------------------------------------ helpers --

    def log(self, message: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)

    def run(self, argv: list[str], what: str, check: bool = True, **kwargs) -> harness.TimedRun:
        kwargs.setdefault("cwd", str(self.work))
        kwargs.setdefault("env", self.env)
        result = run_timed(argv, **kwargs)
        self.log(f"  {what}: {result.wall:.2f} s, exit {result.exit_code}")
        if check and result.exit_code != 0:
            self.log(f"  $ {' '.join(argv)}\n{result.tail(30)}")
            raise CaseNotRun(f"step failed: {what} (exit {result.exit_code}): {_last_line(result)}")
        return result

    def tc(self, *args: str) -> list[str]:
        return [self.trainctl, *args]

    def py(self, *args: str) -> list[str]:
        return [self.python, *args]

    # ------------------------------------------------------------ environment --

    def describe_machine(self) -> dict:
        probe = (
            "import importlib.metadata as m, json, platform\n"
            "v = {}\n"
            "for d in ('paddlepaddle', 'paddledet', 'trainctl', 'numpy', 'opencv-python', 'click'):\n"
            "    try: v[d] = m.version(d)\n"
            "    except m.PackageNotFoundError: v[d] = None\n"
            "v['python'] = platform.python_version()\n"
            "print(json.dumps(v))\n"
        )
        versions = json.loads(subprocess.run(self.py("-c", probe), capture_output=True, text=True, check=True).stdout)
        model = ""
        try:
            for line in Path("/proc/cpuinfo").read_text().splitlines():
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
        except OSError:
            pass
        mem_gib = None
        try:
            kb = int(re.search(r"MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text()).group(1))
            mem_gib = round(kb / 1024 / 1024, 1)
        except (OSError, AttributeError):
            pass
        git = subprocess.run(["git", "-C", str(HERE.parent), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
        return {"cpus": os.cpu_count(), "cpu_model": model, "memory_gib": mem_gib, "kernel": platform.release(),
                "versions": versions, "git_commit": git.stdout.strip() or None}

    def prepare_data(self) -> None:
        self.work.mkdir(parents=True, exist_ok=True)
        dataset = self.work / "dataset" / "roadsign_voc"
        marker = dataset / ".bench_images"
        if not (marker.exists() and marker.read_text() == str(self.dataset_images)):
            shutil.rmtree(dataset, ignore_errors=True)
            self.run(self.tc("data", "sample", "--out", "dataset/roadsign_voc", "--images", str(self.dataset_images)),
                     f"trainctl data sample ({self.dataset_images} images)")
            marker.write_text(str(self.dataset_images))

    # ------------------------------------------------------------ case 1: CLI --

    def case_cli(self) -> None:
        self.log("case cli: trainctl --help, train --dry-run vs python -c 'import paddle, ppdet'")
        commands = {
            "help": self.tc("--help"),
            "dry_run": self.tc("train", "-c", "roadsign.yml", "--dry-run"),
            "baseline": self.py("-c", "import paddle, ppdet"),
        }
        for name, argv in commands.items():  # warm-up: page cache, .pyc files
            self.run(argv, f"warm-up {name}")
        samples: dict[str, list[float]] = {name: [] for name in commands}
        rss: dict[str, list[float]] = {name: [] for name in commands}
        n = max(self.repeats, 5 if not self.quick else 2)
        for i in range(n):
            for name, argv in commands.items():
                if name == "baseline" and i >= max(self.repeats, 2):
                    continue  # 6 s each and steady: fewer samples than the 0.1 s commands
                r = self.run(argv, f"{name} #{i + 1}")
                samples[name].append(r.wall)
                rss[name].append(r.tree_maxrss_mb)
        base = median(samples["baseline"])
        out = {"repeats": n, "baseline_repeats": len(samples["baseline"]), "baseline_command": "python -c 'import paddle, ppdet'",
               "baseline_seconds": spread(samples["baseline"]), "baseline_peak_rss_mb": median(rss["baseline"])}
        for name in ("help", "dry_run"):
            med = median(samples[name])
            out[name] = {"command": " ".join(["trainctl"] + commands[name][1:]), "seconds": spread(samples[name]),
                         "peak_rss_mb": median(rss[name]), "speedup": base / med,
                         "goal_met": med <= GOALS["cli_seconds"] and base / med >= GOALS["cli_speedup"]}
            if not out[name]["goal_met"]:
                out[name]["importtime_top"] = self.importtime(commands[name])
        self.results["cases"]["cli"] = out

    def importtime(self, argv: list[str]) -> list[dict]:
        """python -X importtime of a trainctl command: the imports that cost most (cumulative, microseconds)."""
        code = "import sys; from trainctl.cli import main; sys.argv = ['trainctl'] + sys.argv[1:]; main()"
        proc = subprocess.run(self.py("-X", "importtime", "-c", code, *argv[1:]), cwd=self.work, env=self.env,
                              capture_output=True, text=True)
        rows = []
        for line in proc.stderr.splitlines():
            m = re.match(r"import time:\s+(\d+) \|\s+(\d+) \| (\s*)(\S+)", line)
            if m:
                rows.append({"module": m.group(4), "self_us": int(m.group(1)), "cumulative_us": int(m.group(2)),
                             "depth": len(m.group(3)) // 2})
        top = sorted((r for r in rows if r["depth"] <= 1), key=lambda r: -r["cumulative_us"])[:12]
        return top

    # ------------------------------------------------------------ cases 2-4: training --

    def train_argv(self, run_dir: str, nproc: int = 1) -> list[str]:
        argv = self.tc("train", "-c", TRAIN_CONFIG, "--output", run_dir)
        if nproc > 1:
            argv += ["--nproc", str(nproc)]
        for o in TRAIN_OVERRIDES:
            argv += ["-o", o]
        return argv

    def training_pairs(self) -> tuple[list[harness.TimedRun], list[harness.TimedRun]]:
        """trainctl train and baseline_train.py, alternating (ABBA) so drift hits both alike."""
        if "trainctl" in self._train_runs:
            return self._train_runs["trainctl"], self._train_runs["baseline"]
        if self._train_error:  # one failure, reported by every case that needs these runs, not retried
            raise CaseNotRun(self._train_error)
        try:
            return self._training_pairs()
        except CaseNotRun as exc:
            self._train_error = f"the training runs failed: {exc}"
            raise CaseNotRun(self._train_error) from exc

    def _training_pairs(self) -> tuple[list[harness.TimedRun], list[harness.TimedRun]]:
        self.prepare_data()
        ours: list[harness.TimedRun] = []
        theirs: list[harness.TimedRun] = []
        resolved = self.work / "bench_resolved.yml"
        tc_dir, base_dir = "output/bench_trainctl", "output/bench_baseline"

        def run_ours(i: int) -> None:
            shutil.rmtree(self.work / tc_dir, ignore_errors=True)
            r = self.run(self.train_argv(tc_dir), f"trainctl train #{i + 1}", poll_rss=True)
            ours.append(r)
            shutil.copyfile(self.work / tc_dir / "config.yml", resolved)

        def run_theirs(i: int) -> None:
            shutil.rmtree(self.work / base_dir, ignore_errors=True)
            argv = self.py(str(HERE / "baseline_train.py"), "-c", str(resolved), "--save-dir", base_dir)
            theirs.append(self.run(argv, f"baseline_train.py #{i + 1}", poll_rss=True))

        for i in range(self.repeats):
            if i % 2 == 0:
                run_ours(i)
                run_theirs(i)
            else:
                run_theirs(i)
                run_ours(i)
        self._train_runs["trainctl"], self._train_runs["baseline"] = ours, theirs
        return ours, theirs

    @staticmethod
    def first_iteration(run: harness.TimedRun) -> float | None:
        its = run.iterations()
        return its[0].arrived if its else None

    @staticmethod
    def throughput(run: harness.TimedRun, batch_size: int, world_size: int = 1,
                   first_step: int = FIRST_COUNTED_STEP) -> dict:
        """images/s over epoch-0 iterations first_step.. from ppdet's per-iteration batch_cost (all ranks)."""
        its = [it for it in run.iterations() if it.epoch == 0 and it.step >= first_step]
        if not its:
            return {"images_per_s": None, "iterations": 0}
        seconds = sum(it.batch_cost for it in its)
        images = len(its) * batch_size * world_size
        return {"images_per_s": images / seconds, "iterations": len(its), "steps_per_epoch": its[0].steps,
                "first_step": first_step, "mean_batch_cost": seconds / len(its)}

    def case_memory(self) -> None:
        self.log("case memory: peak RSS of the trainctl process during training")
        ours, theirs = self.training_pairs()
        out = {
            "launcher_peak_rss_mb": spread([r.peak_rss_mb for r in ours]),
            "worker_tree_peak_rss_mb": spread([r.tree_maxrss_mb for r in ours]),
            "baseline_peak_rss_mb": spread([r.peak_rss_mb for r in theirs]),
        }
        out["goal_met"] = median([r.peak_rss_mb for r in ours]) <= GOALS["launcher_rss_mb"]
        self.results["cases"]["memory"] = out

    def case_overhead(self) -> None:
        self.log("case overhead: start -> first logged training iteration")
        ours, theirs = self.training_pairs()
        a = [self.first_iteration(r) for r in ours]
        b = [self.first_iteration(r) for r in theirs]
        ma, mb = median(a), median(b)
        # when trainctl echoes the worker command ("$ ..."), just before it starts the worker
        ready = [r.first_arrival(r"^\$ ") for r in ours]
        # the Trainer is built (and weights loaded): the worker's and the baseline's own log lines
        built_ours = [r.first_arrival(r"^\[trainctl worker\] (no pretrained weights|pretrained weights|fine-tuning|resumed)") for r in ours]
        built_theirs = [r.first_arrival(r"^\[baseline\] trainer ready") for r in theirs]
        out = {"trainctl_seconds": spread(a), "baseline_seconds": spread(b),
               "trainctl_worker_start_seconds": spread(ready),
               "trainctl_trainer_ready_seconds": spread(built_ours), "baseline_trainer_ready_seconds": spread(built_theirs),
               # the same runs cut in three: launcher (above), worker start -> Trainer ready, ready -> first iteration
               "trainctl_worker_to_ready_seconds": _differences(ready, built_ours),
               "trainctl_ready_to_first_iteration_seconds": _differences(built_ours, a),
               "baseline_ready_to_first_iteration_seconds": _differences(built_theirs, b),
               "trainctl_first_batch_cost": spread([r.iterations()[0].batch_cost for r in ours if r.iterations()]),
               "baseline_first_batch_cost": spread([r.iterations()[0].batch_cost for r in theirs if r.iterations()]),
               "trainctl_total_seconds": spread([r.wall for r in ours]),
               "baseline_total_seconds": spread([r.wall for r in theirs])}
        if ma is not None and mb is not None:
            out["ratio"] = ma / mb
            out["extra_seconds"] = ma - mb
            out["goal_met"] = overhead_goal_met(GOALS, out["ratio"], out["extra_seconds"])
        self.results["cases"]["overhead"] = out

    def case_throughput(self) -> None:
        self.log("case throughput: images/s over iterations 3..N")
        ours, theirs = self.training_pairs()
        ta = [self.throughput(r, 2) for r in ours]
        tb = [self.throughput(r, 2) for r in theirs]
        ma = median([t["images_per_s"] for t in ta])
        mb = median([t["images_per_s"] for t in tb])
        out = {"trainctl_images_per_s": spread([t["images_per_s"] for t in ta]),
               "baseline_images_per_s": spread([t["images_per_s"] for t in tb]),
               "iterations_counted": ta[0].get("iterations"), "steps_per_epoch": ta[0].get("steps_per_epoch"),
               "batch_size": 2, "input_size": TRAIN_SIZE,
               "trainctl_batch_costs": [[it.batch_cost for it in r.iterations()] for r in ours],
               "baseline_batch_costs": [[it.batch_cost for it in r.iterations()] for r in theirs],
               "trainctl_cpu_utilisation": median([r.cpu_seconds / r.wall for r in ours]),
               "baseline_cpu_utilisation": median([r.cpu_seconds / r.wall for r in theirs])}
        if ma and mb:
            out["ratio"] = ma / mb
            out["goal_met"] = out["ratio"] >= GOALS["throughput_ratio"]
        self.results["cases"]["throughput"] = out

    def case_scaling(self) -> None:
        self.log("case scaling: 2 CPU processes (paddle launch) vs 1")
        ours, _ = self.training_pairs()
        runs = []
        for i in range(max(1, self.repeats - 1)):  # a reported figure, not a goal: one run fewer
            run_dir = "output/bench_nproc2"
            shutil.rmtree(self.work / run_dir, ignore_errors=True)
            r = self.run(self.train_argv(run_dir, nproc=2), f"trainctl train --nproc 2 #{i + 1}", poll_rss=True)
            if not r.iterations():  # paddle launch did not echo rank 0's log: read it from the run dir
                log = self.work / run_dir / "logs" / "workerlog.0"
                r.lines = [(0.0, line) for line in log.read_text(errors="replace").splitlines()]
            runs.append(r)
        one = [self.throughput(r, 2, 1, first_step=2) for r in ours]
        two = [self.throughput(r, 2, 2, first_step=2) for r in runs]
        m1 = median([t["images_per_s"] for t in one])
        m2 = median([t["images_per_s"] for t in two])
        out = {"one_process_images_per_s": spread([t["images_per_s"] for t in one]),
               "two_processes_images_per_s": spread([t["images_per_s"] for t in two]),
               "iterations_counted_per_rank": two[0].get("iterations"), "first_step": 2,
               "one_process_mean_batch_cost": median([t.get("mean_batch_cost") for t in one]),
               "two_processes_mean_batch_cost": median([t.get("mean_batch_cost") for t in two]),
               "one_process_cpu_utilisation": median([r.cpu_seconds / r.wall for r in ours]),
               "two_processes_cpu_utilisation": median([r.cpu_seconds / r.wall for r in runs]),
               "two_processes_launcher_peak_rss_mb": median([r.peak_rss_mb for r in runs]),
               "omp_num_threads_per_worker": 1}
        if m1 and m2:
            out["scaling_factor"] = m2 / m1
        self.results["cases"]["scaling"] = out

    # ------------------------------------------------------------ case 5: inference --

    def infer_setup(self) -> dict:
        """The inference model's weights, its export at each input size, and the image directories.

        The weights are those of the training case's trainctl run when it ran (near-zero learning
        rate: see TRAIN_OVERRIDES), else of one such run made here.
        """
        self.prepare_data()
        run_dir = "output/bench_trainctl"
        if "trainctl" not in self._train_runs:
            shutil.rmtree(self.work / run_dir, ignore_errors=True)
            self.run(self.train_argv(run_dir), "trainctl train (the inference model)")
        kept = self.work / "infer_weights"  # fixed inputs for the inference case, whatever later runs write
        shutil.rmtree(kept, ignore_errors=True)
        kept.mkdir(parents=True)
        for name in ("model_final.pdparams", "config.yml", "label_list.txt"):
            if (self.work / run_dir / name).exists():
                shutil.copyfile(self.work / run_dir / name, kept / name)
        weights = kept / "model_final"
        models = {}
        for size in self.infer_sizes:
            name = f"model_{size}"
            shutil.rmtree(self.work / name, ignore_errors=True)
            self.run(self.tc("export", "-c", INFER_CONFIGS[size], "--weights", str(weights), "--output", name),
                     f"trainctl export -c {INFER_CONFIGS[size]} ({size} px)")
            models[size] = self.work / name
        images = sorted((self.work / "dataset" / "roadsign_voc" / "images").iterdir())
        paths = {}
        for tag, n in {"all": self.infer_images, "few": self.infer_few}.items():
            d = self.work / "infer_images" / tag
            shutil.rmtree(d, ignore_errors=True)
            d.mkdir(parents=True)
            for p in images[:n]:
                shutil.copyfile(p, d / p.name)
            paths[tag] = d
        return {"models": models, "weights": str(weights), "config": str(kept / "config.yml"), **paths}

    def case_restart(self) -> None:
        """Restart overhead: SIGKILL to the worker in epoch 2 of a --max-restarts 1 run; the time from
        the kill to the next attempt's first iteration (its first heartbeat), against a fresh start of
        the same job to its first iteration plus loading checkpoint 0 (weights and optimizer)."""
        self.log("case restart: failure -> first iteration of the next attempt vs fresh start + checkpoint load")
        self.prepare_data()
        run_dir = "output/bench_restart"
        beat = self.work / run_dir / "progress" / "rank0.json"
        index = self.work / run_dir / "checkpoints.json"
        fresh, restart, load = [], [], []

        def wait(predicate, timeout: float = 600.0) -> float:
            deadline = time.perf_counter() + timeout
            while time.perf_counter() < deadline:
                if predicate():
                    return time.perf_counter()
                time.sleep(0.05)
            raise CaseNotRun("timed out after 600 s waiting for the restarted worker's progress")

        def heartbeat_epoch() -> int:
            try:
                return json.loads(beat.read_text())["epoch"]
            except (OSError, ValueError, KeyError):
                return -1

        for i in range(self.repeats):
            shutil.rmtree(self.work / run_dir, ignore_errors=True)
            argv = self.train_argv(run_dir) + ["--max-restarts", "1", "-o", "epoch=2", "-o", "snapshot_epoch=1"]
            started = time.perf_counter()
            proc = subprocess.Popen(argv, cwd=self.work, env=self.env, stdin=subprocess.DEVNULL,
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
            try:
                fresh.append(wait(beat.exists) - started)
                wait(lambda: index.exists() and '"name": "0"' in index.read_text() and heartbeat_epoch() == 1)
                worker = subprocess.run(["pgrep", "-f", f"trainctl.runner.worker --job {run_dir}/job.json"],
                                        capture_output=True, text=True).stdout.split()
                os.kill(int(worker[0]), 9)
                killed = time.perf_counter()
                wait(lambda: (self.work / run_dir / "logs" / "attempt1").is_dir())
                restart.append(wait(beat.exists) - killed)
                proc.wait(timeout=600)
            finally:
                if proc.poll() is None:
                    proc.terminate()
                    proc.wait(timeout=60)
            self.log(f"  restart #{i + 1}: fresh start -> first iteration {fresh[-1]:.2f} s, "
                     f"kill -> first iteration of attempt 2 {restart[-1]:.2f} s, exit {proc.returncode}")
            code = ("import sys, time, paddle; t = time.perf_counter(); "
                    "paddle.load(sys.argv[1] + '.pdparams'); paddle.load(sys.argv[1] + '.pdopt'); "
                    "print(time.perf_counter() - t)")
            out = subprocess.run(self.py("-c", code, str(self.work / run_dir / "0")), capture_output=True, text=True,
                                 env=self.env, check=True).stdout.split()
            load.append(float(out[-1]))
        budget = median(fresh) + median(load)
        self.results["cases"]["restart"] = {
            "fresh_start_to_first_iteration_s": spread(fresh), "failure_to_next_first_iteration_s": spread(restart),
            "checkpoint_load_s": spread(load), "budget_s": budget, "ratio": median(restart) / budget,
            "goal_met": median(restart) <= budget * GOALS["restart_vs_fresh_plus_load"]}

    def case_infer(self) -> None:
        self.log("case infer: trainctl infer --model-dir vs dynamic graph vs bare Paddle Inference loop")
        s = self.infer_setup()
        out_dir = self.work / "infer_out"
        shutil.rmtree(out_dir, ignore_errors=True)
        out_dir.mkdir(parents=True)
        out: dict = {"threshold": self.args.threshold, "sizes": {}}
        for size in self.infer_sizes:
            out["sizes"][str(size)] = self.infer_size(s, size, out_dir)
        main_size = self.infer_sizes[0]
        out["detections"] = self.check_detections(s, main_size, out_dir)
        if self.args.sweep:
            r = self.run(self.py(str(HERE / "baseline_infer.py"), "--model-dir", str(s["models"][main_size]),
                                 "--dir", str(s["all"]), "--sweep"),
                         f"bare loop sweep at {main_size} px (threads x oneDNN x batch)")
            out["bare_sweep"] = {"size": main_size, "rows": self.json_line(r)["sweep"]}
        self.results["cases"]["infer"] = out

    @staticmethod
    def json_line(run: harness.TimedRun) -> dict:
        return json.loads([ln for _, ln in run.lines if ln.startswith("{")][-1])

    def infer_size(self, s: dict, size: int, out_dir: Path) -> dict:
        """Images/s of trainctl infer and the bare loop (whole processes, slope) and the dynamic graph (in process)."""
        model, threshold, batch = s["models"][size], self.args.threshold, self.args.infer_batch

        def command(tool: str, tag: str, rows: bool = False) -> list[str]:
            images = str(s[tag])
            if tool == "trainctl":
                return self.tc("infer", "--model-dir", str(model), "--dir", images, "--threads", "2",
                               "--batch-size", str(batch), "--threshold", str(threshold),
                               "--output", str(out_dir / f"trainctl_{size}_{tag}"))
            if tool == "bare":
                return self.py(str(HERE / "baseline_infer.py"), "--model-dir", str(model), "--dir", images,
                               "--threads", "2", "--batch", str(batch),
                               *(["--rows", str(out_dir / f"bare_{size}_{tag}.json")] if rows else []))
            return self.py(str(HERE / "baseline_dygraph.py"), "-c", s["config"], "--weights", s["weights"],
                           "--size", str(size), "--dir", images, "--warmup", "1", "--threshold", str(threshold),
                           "--output", str(out_dir / f"dygraph_{size}_{tag}"),
                           *(["--rows", str(out_dir / f"dygraph_{size}.json")] if rows else []))

        for tool in ("trainctl", "bare"):  # page cache, .pyc files, oneDNN's kernel cache on disk (if any)
            self.run(command(tool, "few"), f"warm-up {tool}")
        walls: dict[str, dict[str, list[float]]] = {k: {"all": [], "few": []} for k in ("trainctl", "bare")}
        bare_loop: list[float] = []
        for i in range(self.repeats):
            for tag in ("all", "few"):
                for tool in ("trainctl", "bare"):
                    r = self.run(command(tool, tag, rows=i == 0), f"{size} px: {tool} {tag} #{i + 1}")
                    walls[tool][tag].append(r.wall)
                    if tool == "bare" and tag == "all":
                        bare_loop.append(self.json_line(r)["images_per_s"])
        dygraph: list[float] = []
        dygraph_walls: list[float] = []
        for i in range(self.dygraph_runs):
            r = self.run(command("dygraph", "all", rows=i == 0), f"{size} px: dygraph #{i + 1}")
            dygraph.append(self.json_line(r)["images_per_s"])
            dygraph_walls.append(r.wall)
        n_all, n_few = self.infer_images, self.infer_few
        out: dict = {"config": INFER_CONFIGS[size], "images": n_all, "few_images": n_few, "repeats": self.repeats,
                     "batch_size": batch, "threads": 2,
                     "method": f"trainctl and bare loop: images/s = ({n_all} - {n_few}) / (median wall({n_all} images) "
                               f"- median wall({n_few} images)) of whole processes (startup, model load and warm-up "
                               f"cancel out); dynamic graph: its own timer around Trainer.predict on the same "
                               f"{n_all} images after one warm-up image (startup, model build and warm-up excluded: "
                               f"favours the baseline), {len(dygraph)} run(s)"}
        rate = {}
        for tool, w in walls.items():
            d = median(w["all"]) - median(w["few"])
            rate[tool] = (n_all - n_few) / d if d > 0 else None
            out[tool] = {"wall_all": spread(w["all"]), "wall_few": spread(w["few"]), "images_per_s": rate[tool],
                         "end_to_end_images_per_s": n_all / median(w["all"])}
        out["bare"]["in_process_images_per_s"] = spread(bare_loop)
        rate["dygraph"] = median(dygraph)
        out["dygraph"] = {"images": n_all, "images_per_s": rate["dygraph"],
                          "in_process_images_per_s": spread(dygraph), "wall": spread(dygraph_walls)}
        if rate["trainctl"] and rate["dygraph"]:
            out["vs_dygraph"] = rate["trainctl"] / rate["dygraph"]  # reported: the dynamic graph is not trainctl's anchor
        if rate["trainctl"] and rate["bare"]:
            out["vs_bare"] = rate["trainctl"] / rate["bare"]
            out["vs_bare_goal_met"] = out["vs_bare"] >= GOALS["infer_vs_bare"]
        return out

    def check_detections(self, s: dict, size: int, out_dir: Path) -> dict:
        """Same rows from trainctl infer, the bare loop and the dynamic graph on the first images.

        trainctl runs once more at threshold 0.01 (the NMS one: all rows); the bare loop's and the
        dynamic graph's rows were written by their first timed runs (after their timers stopped).
        """
        self.run(self.tc("infer", "--model-dir", str(s["models"][size]), "--dir", str(s["few"]), "--threshold", "0.01",
                         "--no-save-images", "--output", str(out_dir / "check_trainctl")), "check: trainctl infer (all rows)")

        def from_rows(path: Path) -> dict[str, list[dict]]:
            rows = json.loads(path.read_text())
            return {name: [{"class_id": int(r[0]), "score": float(r[1]), "box": [float(v) for v in r[2:6]]}
                           for r in rs if int(r[0]) >= 0] for name, rs in rows.items()}

        ours: dict[str, list[dict]] = {}
        data = json.loads((out_dir / "check_trainctl" / "detections.json").read_text())
        for name in data["images"]:
            ours.setdefault(os.path.basename(name), [])
        for d in data["detections"]:
            ours.setdefault(os.path.basename(d["file"]), []).append(
                {"class_id": d["class_id"], "score": d["score"], "box": d["box"]})

        def same_images(rows: dict[str, list[dict]]) -> dict[str, list[dict]]:
            return {name: rows.get(name, []) for name in ours}

        return {
            "images": len(ours), "size": size,
            "trainctl_vs_bare": harness.match_detections(ours, same_images(from_rows(out_dir / f"bare_{size}_few.json")),
                                                         top_k=20, score_rtol=1e-3, iou_min=0.95),
            "trainctl_vs_dygraph": harness.match_detections(ours, same_images(from_rows(out_dir / f"dygraph_{size}.json")),
                                                            top_k=20, score_rtol=1e-2, iou_min=0.9),
        }

    # ------------------------------------------------------------ deploy: the peer script --

    def case_deploy(self) -> None:
        """trainctl infer --model-dir vs PaddleDetection's deploy/python/infer.py: directory img/s, video frames/s,
        same detections; sliced inference's cost per tile."""
        self.log("case deploy: trainctl infer --model-dir vs deploy/python/infer.py (directory, video); sliced cost per tile")
        peer_dir = Path(self.args.peer_dir).resolve()  # checked before anything is trained or exported
        if not (peer_dir / "infer.py").is_file():
            raise CaseNotRun(f"no PaddleDetection deploy/python (infer.py) at --peer-dir {peer_dir}")
        import cv2

        s = self.infer_setup()
        size = self.infer_sizes[0]
        model = s["models"][size]
        peer = self.work / "peer_python"
        shutil.rmtree(peer, ignore_errors=True)
        shutil.copytree(peer_dir, peer)
        out_dir = self.work / "deploy_out"
        shutil.rmtree(out_dir, ignore_errors=True)
        out_dir.mkdir(parents=True)
        images = {tag: sorted(p for p in s[tag].iterdir()) for tag in ("all", "few")}
        videos = {}
        for tag, files in images.items():  # one frame per image, at one size
            videos[tag] = out_dir / f"video_{tag}.mp4"
            writer = cv2.VideoWriter(str(videos[tag]), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, (400, 300))
            for f in files:
                writer.write(cv2.resize(cv2.imread(str(f)), (400, 300)))
            writer.release()
        threshold = self.args.threshold

        def command(tool: str, kind: str, tag: str) -> tuple[list[str], str]:
            out = str(out_dir / f"{tool}_{kind}_{tag}")
            if tool == "trainctl":
                media = ["--dir", str(s[tag])] if kind == "dir" else ["--video", str(videos[tag])]
                return self.tc("infer", "--model-dir", str(model), *media, "--threads", "2", "--batch-size", "1",
                               "--threshold", str(threshold), "--output", out), str(self.work)
            media = ["--image_dir", str(s[tag])] if kind == "dir" else ["--video_file", str(videos[tag])]
            return self.py("infer.py", "--model_dir", str(model), *media, "--device", "CPU", "--cpu_threads", "2",
                           "--enable_mkldnn", "True", "--batch_size", "1", "--threshold", str(threshold),
                           "--output_dir", out), str(peer)

        for tool in ("trainctl", "peer"):
            argv, cwd = command(tool, "dir", "few")
            self.run(argv, f"warm-up {tool}", cwd=cwd)
        walls = {(tool, kind): {"all": [], "few": []} for tool in ("trainctl", "peer") for kind in ("dir", "video")}
        for i in range(self.repeats):
            for kind in ("dir", "video"):
                for tag in ("all", "few"):
                    for tool in ("trainctl", "peer"):
                        argv, cwd = command(tool, kind, tag)
                        r = self.run(argv, f"deploy {kind}: {tool} {tag} #{i + 1}", cwd=cwd)
                        walls[(tool, kind)][tag].append(r.wall)
        n_all, n_few = self.infer_images, self.infer_few
        out: dict = {"size": size, "threshold": threshold, "images": n_all, "few_images": n_few, "repeats": self.repeats,
                     "method": f"whole processes, both at 2 threads, oneDNN/MKLDNN on, batch 1: rate = ({n_all} - {n_few}) / "
                               f"(median wall({n_all}) - median wall({n_few})) (startup and model load cancel out); "
                               f"the video has one 400x300 frame per image; both write annotated images/video"}
        for kind in ("dir", "video"):
            rate = {}
            for tool in ("trainctl", "peer"):
                w = walls[(tool, kind)]
                d = median(w["all"]) - median(w["few"])
                rate[tool] = (n_all - n_few) / d if d > 0 else None
                out[f"{tool}_{kind}"] = {"wall_all": spread(w["all"]), "wall_few": spread(w["few"]), "per_s": rate[tool]}
            if rate["trainctl"] and rate["peer"]:
                out[f"{kind}_vs_peer"] = rate["trainctl"] / rate["peer"]
                out[f"{kind}_goal_met"] = out[f"{kind}_vs_peer"] >= GOALS["deploy_vs_peer"]
        peer_rows = self.peer_rows(peer, model, s["all"], videos["all"])
        out["detections"] = {kind: self.deploy_same(peer_rows, out_dir / f"trainctl_{kind}_all", kind)
                             for kind in ("dir", "video")}
        out["slice"] = self.slice_cost(model, images["all"], out_dir)
        self.results["cases"]["deploy"] = out

    def peer_rows(self, peer: Path, model: Path, images: Path, video: Path) -> dict:
        """The peer's detections on the timed runs' directory and video at full precision: its Detector driven
        by tests/integration/peer_deploy.py with the timed runs' settings (2 threads, MKLDNN on, batch 1)."""
        r = self.run(self.py(str(PEER_ROWS), "--threads", "2", "--mkldnn", str(model), str(self.args.threshold),
                             f"images:{images}", f"video:{video}"), "deploy: the peer's rows (its Detector)", cwd=str(peer))
        found = [json.loads(line[len("PEER-JSON "):]) for _, line in r.lines if line.startswith("PEER-JSON ")]
        if len(found) != 2:
            raise CaseNotRun(f"peer_deploy.py printed {len(found)} of 2 result lines: {_last_line(r)}")

        def rows(rs: list) -> list[dict]:
            return [{"class_id": int(x[0]), "score": float(x[1]), "box": [float(v) for v in x[2:6]]} for x in rs]

        return {"dir": {os.path.basename(path): rows(rs) for path, rs in sorted(found[0]["images"].items())},
                "video": {f"frame {i}": rows(rs) for i, rs in enumerate(found[1]["frames"])}}

    def deploy_same(self, peer: dict, ours_dir: Path, kind: str) -> dict:
        return deploy_same(peer[kind], ours_dir, kind, self.args.threshold)

    def slice_cost(self, model: Path, files: list[Path], out_dir: Path) -> dict:
        """Seconds per tile of --slice: one 4x4 grid of 224 px scenes cut into 16 tiles (224 px) and into 4 (448 px)."""
        import cv2
        import numpy as np

        grid, cell = 4, 224
        big = np.zeros((grid * cell, grid * cell, 3), dtype=np.uint8)
        for i, f in enumerate(files[: grid * grid]):
            y, x = divmod(i, grid)
            big[y * cell:(y + 1) * cell, x * cell:(x + 1) * cell] = cv2.resize(cv2.imread(str(f)), (cell, cell))
        path = out_dir / "grid.png"
        cv2.imwrite(str(path), big)
        walls: dict[int, list[float]] = {16: [], 4: []}
        for i in range(self.repeats):
            for tiles, tile in ((16, cell), (4, 2 * cell)):
                r = self.run(self.tc("infer", "--model-dir", str(model), "--img", str(path), "--slice", f"{tile}x{tile}",
                                     "--overlap", "0", "--threads", "2", "--no-save-images",
                                     "--output", str(out_dir / f"slice_{tiles}")), f"slice {tiles} tiles #{i + 1}")
                walls[tiles].append(r.wall)
        d = median(walls[16]) - median(walls[4])
        return {"image": f"{grid * cell}x{grid * cell}", "wall_16_tiles": spread(walls[16]), "wall_4_tiles": spread(walls[4]),
                "seconds_per_tile": d / 12 if d > 0 else None}

    # ------------------------------------------------------------ driver --

    def run_cases(self, cases: list[str], save=None) -> dict:
        start = time.perf_counter()
        self.results["date"] = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        self.results["machine"] = self.describe_machine()
        self.results["settings"] = {"repeats": self.repeats, "quick": self.quick, "cases": cases,
                                    "train_config": TRAIN_CONFIG, "train_overrides": TRAIN_OVERRIDES,
                                    "dataset_images": self.dataset_images, "goals": GOALS}
        self.results["load_average_start"] = harness.load_average()
        order = [c for c in CASES if c in cases]
        for case in order:
            try:
                getattr(self, f"case_{case}")()
            except CaseNotRun as exc:
                self.not_run(case, str(exc))
            except Exception as exc:  # a fault in the case itself: reported like the rest, the suite goes on
                self.log(traceback.format_exc().rstrip())
                self.not_run(case, f"{type(exc).__name__}: {exc}")
            self.results["load_average_end"] = harness.load_average()
            self.results["suite_seconds"] = time.perf_counter() - start
            if save is not None:  # after every case: a suite stopped later keeps what it measured
                save(self.results)
        return self.results

    def not_run(self, case: str, why: str) -> None:
        self.log(f"case {case} not run: {why}")
        self.results["cases"][case] = {"not_run": why}


# ---------------------------------------------------------------- report --


def _fmt(value, digits: int = 2, unit: str = "") -> str:
    if value is None:
        return "n/a"
    return f"{value:.{digits}f}{unit}"


def _signed(seconds) -> str:
    return "n/a" if seconds is None else f"{seconds:+.2f} s"


def _met(flag) -> str:
    if flag is None:
        return "n/a"
    return "**met**" if flag else "**missed**"


# the table's row label of a case that did not run
CASE_LABELS = {
    "cli": "CLI latency", "memory": "Launcher memory", "overhead": "Launch overhead: start to first logged iteration",
    "throughput": "Training throughput", "scaling": "Scaling: 2 CPU processes (paddle launch, gloo) vs 1",
    "restart": "Restart overhead (--max-restarts)", "infer": "Inference vs bare Paddle Inference loop",
    "deploy": "Deployment vs PaddleDetection's deploy/python/infer.py",
}


def goal_texts(goals: dict) -> dict[str, str]:
    """The goal column, from the goals a results file was judged by (its settings.goals)."""
    overhead = []
    if "overhead_ratio" in goals:
        overhead.append(f"<= {goals['overhead_ratio']:g}")
    if "overhead_extra_s" in goals:
        overhead.append(f"<= +{goals['overhead_extra_s']:g} s")
    return {
        "cli": f"<= {goals.get('cli_seconds', 0.25):g} s and >= {goals.get('cli_speedup', 15):g}x",
        "memory": f"<= {goals.get('launcher_rss_mb', 100):g} MB",
        "overhead": " or ".join(overhead) or "reported",
        "throughput": f">= {goals.get('throughput_ratio', 0.98):g}",
        "scaling": "reported",
        "restart": f"<= {goals.get('restart_vs_fresh_plus_load', 1.0):.1f}",
        "infer_dygraph": f">= {goals['infer_vs_dygraph']:g}x" if "infer_vs_dygraph" in goals else "reported",
        "infer": f">= {goals.get('infer_vs_bare', 0.98):g}x",
        "deploy": f">= {goals.get('deploy_vs_peer', 1.0):.1f}x",
    }


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render_markdown(res: dict) -> str:
    m = res["machine"]
    v = m["versions"]
    c = {case: x for case, x in res["cases"].items() if not x.get("not_run")}
    goal = goal_texts(res["settings"].get("goals", GOALS))
    lines = [
        f"Benchmarks of {res['date']} on {m['cpus']} CPU cores ({m['cpu_model']}, {m['memory_gib']} GiB), "
        f"Python {v.get('python')}, paddlepaddle {v.get('paddlepaddle')}, paddledet {v.get('paddledet')}, "
        f"trainctl {v.get('trainctl')} ({m.get('git_commit')}). "
        f"Medians of {res['settings']['repeats']} runs{' (quick mode)' if res['settings']['quick'] else ''}; "
        f"every baseline measured in the same run; load average "
        f"{res['load_average_start'][0]:.2f} at start, {res['load_average_end'][0]:.2f} at end; "
        f"suite time {res['suite_seconds'] / 60:.1f} min.",
        "",
        "| case | trainctl | baseline | ratio | goal | result |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    if "cli" in c:
        cli = c["cli"]
        base = cli["baseline_seconds"]["median"]
        for key, label in (("help", "`trainctl --help`"), ("dry_run", "`trainctl train -c roadsign.yml --dry-run`")):
            x = cli[key]
            lines.append(f"| CLI latency: {label} | {_fmt(x['seconds']['median'], 3, ' s')} | "
                         f"{_fmt(base, 2, ' s')} (`import paddle, ppdet`) | {_fmt(x['speedup'], 1, 'x faster')} | "
                         f"{goal['cli']} | {_met(x['goal_met'])} |")
    if "memory" in c:
        x = c["memory"]
        lines.append(f"| Launcher memory: peak RSS of the trainctl process while training | "
                     f"{_fmt(x['launcher_peak_rss_mb']['median'], 1, ' MB')} | "
                     f"{_fmt(x['baseline_peak_rss_mb']['median'], 0, ' MB')} (baseline_train.py; worker "
                     f"{_fmt(x['worker_tree_peak_rss_mb']['median'], 0, ' MB')}) | - | {goal['memory']} | {_met(x['goal_met'])} |")
    if "overhead" in c:
        x = c["overhead"]
        lines.append(f"| Launch overhead: start to first logged iteration | {_fmt(x['trainctl_seconds']['median'], 2, ' s')} | "
                     f"{_fmt(x['baseline_seconds']['median'], 2, ' s')} (baseline_train.py) | "
                     f"{_fmt(x.get('ratio'), 3)} ({_signed(x.get('extra_seconds'))}) | "
                     f"{goal['overhead']} | {_met(x.get('goal_met'))} |")
    if "throughput" in c:
        x = c["throughput"]
        lines.append(f"| Training throughput, iterations {FIRST_COUNTED_STEP}..{(x.get('steps_per_epoch') or 0) - 1}, "
                     f"batch 2 at {x.get('input_size', TRAIN_SIZE)} px | {_fmt(x['trainctl_images_per_s']['median'], 2, ' img/s')} | "
                     f"{_fmt(x['baseline_images_per_s']['median'], 2, ' img/s')} | {_fmt(x.get('ratio'), 3)} | "
                     f"{goal['throughput']} | {_met(x.get('goal_met'))} |")
    if "scaling" in c:
        x = c["scaling"]
        lines.append(f"| Scaling: 2 CPU processes (paddle launch, gloo) vs 1 | "
                     f"{_fmt(x['two_processes_images_per_s']['median'], 2, ' img/s')} | "
                     f"{_fmt(x['one_process_images_per_s']['median'], 2, ' img/s')} (1 process) | "
                     f"{_fmt(x.get('scaling_factor'), 2, 'x')} | reported | - |")
    if "restart" in c:
        x = c["restart"]
        lines.append(f"| Restart overhead (--max-restarts): worker killed -> first iteration of the next attempt | "
                     f"{_fmt(x['failure_to_next_first_iteration_s']['median'], 2, ' s')} | "
                     f"{_fmt(x['fresh_start_to_first_iteration_s']['median'], 2, ' s')} fresh start + "
                     f"{_fmt(x['checkpoint_load_s']['median'], 2, ' s')} checkpoint load | {_fmt(x.get('ratio'), 3)} | "
                     f"{goal['restart']} | {_met(x.get('goal_met'))} |")
    if "infer" in c:
        x = c["infer"]
        for size, y in x["sizes"].items():
            t = y["trainctl"]["images_per_s"]
            where = f"{size} px ({y['config']}), batch {y.get('batch_size', 1)}"
            lines.append(f"| Inference vs dynamic graph, {where} | {_fmt(t, 2, ' img/s')} | "
                         f"{_fmt(y['dygraph']['images_per_s'], 2, ' img/s')} (ppdet Trainer.predict) | "
                         f"{_fmt(y.get('vs_dygraph'), 2, 'x')} | {goal['infer_dygraph']} | "
                         f"{_met(y.get('vs_dygraph_goal_met')) if 'vs_dygraph_goal_met' in y else '-'} |")
            lines.append(f"| Inference vs bare Paddle Inference loop (oneDNN, 2 threads), {where} | {_fmt(t, 2, ' img/s')} | "
                         f"{_fmt(y['bare']['images_per_s'], 2, ' img/s')} | {_fmt(y.get('vs_bare'), 2, 'x')} | {goal['infer']} | "
                         f"{_met(y.get('vs_bare_goal_met'))} |")
        d = x["detections"]["trainctl_vs_bare"]
        lines.append(f"| Same detections as the bare loop ({x['detections']['images']} images at "
                     f"{x['detections'].get('size', '?')} px, top {d['top_k']} rows each) | "
                     f"{d['compared']} rows matched | {d['reference_rows']} rows | max score diff "
                     f"{_fmt(d['max_relative_score_diff'] * 100, 4, ' %')} | class, score ±{d['score_rtol'] * 100:g} %, "
                     f"IoU >= {d['iou_min']} | {_met(d['same'])} |")
    if "deploy" in c:
        x = c["deploy"]
        for kind, what, unit in (("dir", "directory", "img/s"), ("video", "video", "frames/s")):
            t, p = x[f"trainctl_{kind}"]["per_s"], x[f"peer_{kind}"]["per_s"]
            det = x["detections"][kind]
            lines.append(f"| Deployment vs PaddleDetection's deploy/python/infer.py, {what}, {x['size']} px, batch 1, 2 threads | "
                         f"{_fmt(t, 2, ' ' + unit)} | {_fmt(p, 2, ' ' + unit)} | {_fmt(x.get(f'{kind}_vs_peer'), 2, 'x')} | "
                         f"{goal['deploy']}, same detections ({_det_counts(det)}) | "
                         f"{_met(bool(x.get(f'{kind}_goal_met')) and det['same'])} |")
        sl = x["slice"]
        lines.append(f"| Sliced inference: cost per tile ({sl['image']} image, 16 vs 4 tiles) | "
                     f"{_fmt(sl['seconds_per_tile'], 3, ' s/tile')} | - | - | reported | - |")
    for case in CASES:  # a case that could not run: its reason, in the table
        why = res["cases"].get(case, {}).get("not_run")
        if why:
            g = goal.get(case, "-")
            lines.append(f"| {CASE_LABELS[case]} | not run: {_cell(why)} | - | - | {g} | **not run** |")
    lines.append("")
    lines += render_details(res)
    return "\n".join(lines) + "\n"


def _det_counts(det: dict) -> str:
    if "matched" in det:  # matched one to one at full precision (this version)
        return f"{det['ours_rows']} vs {det['reference_rows']}, {det['matched']} matched"
    return f"{det['ours']} vs {det['peer']}"  # results of 2026-12-01: counts of printed rows


def render_details(res: dict) -> list[str]:
    c = {case: x for case, x in res["cases"].items() if not x.get("not_run")}
    out = ["Details:", ""]
    if "cli" in c:
        for key in ("help", "dry_run"):
            x = c["cli"][key]
            s = x["seconds"]
            out.append(f"- `{x['command']}`: median {s['median']:.3f} s (min {s['min']:.3f}, max {s['max']:.3f}, "
                       f"n={s['n']}), peak RSS {_fmt(x['peak_rss_mb'], 0, ' MB')}.")
            if x.get("importtime_top"):
                top = ", ".join(f"{r['module']} {r['cumulative_us'] / 1000:.0f} ms" for r in x["importtime_top"][:8])
                out.append(f"  Costliest imports (python -X importtime, cumulative): {top}.")
        b = c["cli"]["baseline_seconds"]
        out.append(f"- `import paddle, ppdet`: median {b['median']:.2f} s (min {b['min']:.2f}, max {b['max']:.2f}), "
                   f"peak RSS {_fmt(c['cli']['baseline_peak_rss_mb'], 0, ' MB')}.")
    if "overhead" in c:
        x = c["overhead"]
        out.append(f"- Launch overhead: trainctl starts its worker {_fmt(x['trainctl_worker_start_seconds']['median'], 2, ' s')} "
                   f"after its own start (CLI, config resolution, plan, dataset check, run directory); ppdet's Trainer "
                   f"is ready at {_fmt(x['trainctl_trainer_ready_seconds']['median'], 2, ' s')} (baseline "
                   f"{_fmt(x['baseline_trainer_ready_seconds']['median'], 2, ' s')}); the first iteration's batch_cost is "
                   f"{_fmt(x['trainctl_first_batch_cost']['median'], 2, ' s')} (baseline "
                   f"{_fmt(x['baseline_first_batch_cost']['median'], 2, ' s')}). Whole training "
                   f"run (start to exit): trainctl {x['trainctl_total_seconds']['median']:.1f} s, "
                   f"baseline {x['baseline_total_seconds']['median']:.1f} s.")
        if "trainctl_worker_to_ready_seconds" in x:
            out.append(f"  Cut in three (medians of each part): trainctl's launcher "
                       f"{_fmt(x['trainctl_worker_start_seconds']['median'], 2, ' s')}, its worker's start to the Trainer ready "
                       f"{_fmt(x['trainctl_worker_to_ready_seconds']['median'], 2, ' s')}, ready to the first logged "
                       f"iteration {_fmt(x['trainctl_ready_to_first_iteration_seconds']['median'], 2, ' s')}; baseline: "
                       f"start to ready {_fmt(x['baseline_trainer_ready_seconds']['median'], 2, ' s')}, ready to the first "
                       f"logged iteration {_fmt(x['baseline_ready_to_first_iteration_seconds']['median'], 2, ' s')}.")
    if "throughput" in c:
        x = c["throughput"]
        out.append(f"- Throughput from ppdet's per-iteration batch_cost (log_iter=1), {x['iterations_counted']} "
                   f"iterations per run; CPU use (CPU seconds / wall): trainctl tree {_fmt(x['trainctl_cpu_utilisation'])}, "
                   f"baseline {_fmt(x['baseline_cpu_utilisation'])} cores.")
    if "scaling" in c:
        x = c["scaling"]
        out.append(f"- Scaling: per-rank iteration {_fmt(x['two_processes_mean_batch_cost'], 2, ' s')} with 2 processes "
                   f"(OMP_NUM_THREADS=1 each) vs {_fmt(x['one_process_mean_batch_cost'], 2, ' s')} with 1; CPU use "
                   f"{_fmt(x['two_processes_cpu_utilisation'])} vs {_fmt(x['one_process_cpu_utilisation'])} cores; "
                   f"launcher peak RSS with paddle launch {_fmt(x['two_processes_launcher_peak_rss_mb'], 0, ' MB')}.")
    if "restart" in c:
        x = c["restart"]
        f, r, l = (x[k] for k in ("fresh_start_to_first_iteration_s", "failure_to_next_first_iteration_s",
                                  "checkpoint_load_s"))
        out.append(f"- Restart (one process, --max-restarts 1, SIGKILL to the worker in epoch 2, n={r['n']}): kill -> "
                   f"first iteration of attempt 2 median {r['median']:.2f} s (min {r['min']:.2f}, max {r['max']:.2f}; "
                   f"includes noticing the failure and the 0.5 s backoff); fresh start -> first iteration "
                   f"{f['median']:.2f} s; loading checkpoint 0 (weights + optimizer) {l['median']:.2f} s.")
    if "infer" in c:
        x = c["infer"]
        for size, y in x["sizes"].items():
            out.append(f"- Inference at {size} px ({y['config']}), batch {y.get('batch_size', 1)}, {y.get('threads', 2)} "
                       f"threads, {y['repeats']} repetitions: {y['method']}.")
            for tool in ("trainctl", "bare"):
                t = y[tool]
                extra = ""
                if "in_process_images_per_s" in t:
                    extra = f", in-process loop {_fmt(t['in_process_images_per_s']['median'], 2, ' img/s')}"
                out.append(f"  - {tool}: {_fmt(t['images_per_s'], 2, ' img/s')}; {y['images']} images end to end "
                           f"{t['wall_all']['median']:.2f} s ({_fmt(t['end_to_end_images_per_s'], 2, ' img/s')}){extra}.")
            g = y["dygraph"]
            out.append(f"  - dygraph: {_fmt(g['images_per_s'], 2, ' img/s')} over {g['images']} images "
                       f"(whole process {g['wall']['median']:.1f} s).")
        d = x["detections"]["trainctl_vs_dygraph"]
        out.append(f"- Detections at {x['detections'].get('size', '?')} px, trainctl (exported model) vs ppdet's dynamic "
                   f"graph, top {d['top_k']} rows per image on {x['detections']['images']} images: "
                   f"{d['compared']} matched, max score diff {_fmt(d['max_relative_score_diff'] * 100, 4, ' %')}, "
                   f"min IoU {_fmt(d['min_iou'], 4)}: "
                   f"{'same' if d['same'] else 'differences: ' + '; '.join(d['problems'][:3])}.")
        bare = x["detections"]["trainctl_vs_bare"]
        if not bare["same"]:
            out.append(f"- trainctl vs bare loop differences: {'; '.join(bare['problems'][:5])}.")
        if x.get("bare_sweep"):
            sweep = x["bare_sweep"]["rows"]
            best = max(sweep, key=lambda r: r["images_per_s"])
            rows = ", ".join(f"{r['threads']}t/{'oneDNN' if r['onednn'] else 'no oneDNN'}/b{r['batch']} "
                             f"{r['images_per_s']:.2f}" for r in sweep)
            out.append(f"- Bare-loop settings at {x['bare_sweep']['size']} px (in-process img/s): {rows}; fastest: "
                       f"{best['threads']} threads, oneDNN {'on' if best['onednn'] else 'off'}, batch {best['batch']}.")
    if "deploy" in c:
        x = c["deploy"]
        out.append(f"- Deployment vs deploy/python/infer.py at {x['size']} px, {x['images']} images / frames, "
                   f"{x['repeats']} repetition(s): {x['method']}.")
        for kind in ("dir", "video"):
            t, p, det = x[f"trainctl_{kind}"], x[f"peer_{kind}"], x["detections"][kind]
            timing = (f"  - {kind}: trainctl {x['images']} end to end {t['wall_all']['median']:.2f} s, peer "
                      f"{p['wall_all']['median']:.2f} s; detections at threshold {x['threshold']}: ")
            if "matched" not in det:  # results of 2026-12-01: the peer's printed rows
                out.append(timing + f"{det['ours']} vs {det['peer']}, max difference of the printed values "
                                    f"{det['max_printed_diff']:.4f} (the peer prints scores to 4 decimals, boxes to 2).")
                continue
            if det["same"]:
                verdict = "the same"
            elif det["problems"]:
                verdict = (f"different: {det['unmatched_ours']} of trainctl's rows and {det['unmatched_reference']} of the "
                           f"peer's without a partner, the first in {det['first_difference']}: {det['problems'][0]}")
            else:
                verdict = "nothing to compare (no detection on either side)"
            out.append(timing + f"{det['ours_rows']} vs {det['reference_rows']} rows in {det['images']} "
                                f"{'images' if kind == 'dir' else 'frames'}, {det['matched']} matched one to one (same class, "
                                f"score within {det['score_atol']:g} + {det['score_rtol']:g} x score, IoU >= {det['iou_min']:g}; "
                                f"max score difference {_fmt(det['max_score_diff'], 6)}, min IoU {_fmt(det['min_iou'], 4)}"
                                + (f", {det['borderline']} at the threshold on one side only" if det["borderline"] else "")
                                + f"): {verdict}.")
        sl = x["slice"]
        out.append(f"- Sliced inference on a {sl['image']} image: 16 tiles {sl['wall_16_tiles']['median']:.2f} s, "
                   f"4 tiles {sl['wall_4_tiles']['median']:.2f} s (each tile is resized to the model's input).")
    for note in res.get("notes", []):
        out.append(f"- {note}")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="trainctl benchmark suite (see the module docstring)")
    parser.add_argument("--cases", default=",".join(CASES), help=f"comma-separated subset of {','.join(CASES)}")
    parser.add_argument("--repeats", type=int, help="repetitions per measurement (default 3, --quick 1)")
    parser.add_argument("--quick", action="store_true", help="1 repetition, smaller data: checks the harness")
    parser.add_argument("--python", default=sys.executable, help="Python with paddle and ppdet (default: this one)")
    parser.add_argument("--trainctl", help="trainctl executable (default: next to --python, else on PATH)")
    parser.add_argument("--work", default=str(HERE / "work"), help="scratch directory (default benchmarks/work)")
    parser.add_argument("--results", help="where <date>.json and .md go (default benchmarks/results; "
                                           "--quick: benchmarks/work/results)")
    parser.add_argument("--threshold", type=float, default=0.5,
                        help="score threshold of the timed inference runs (trainctl infer's default)")
    parser.add_argument("--sizes", help="inference input sizes, comma-separated, from 224 (roadsign_cpu_smoke.yml) and "
                                         "608 (roadsign.yml); the first one also gets the detection check "
                                         "(default 608, --quick 224)")
    parser.add_argument("--infer-batch", type=int, default=1, help="batch size of trainctl infer and the bare loop (default 1)")
    parser.add_argument("--sweep", action="store_true", help="also time the bare loop over threads x oneDNN x batch")
    parser.add_argument("--peer-dir", default=str(PEER_DIR), help="PaddleDetection's deploy/python for the deploy case "
                                                                  "(default: ../shared/reference/.../release-2.7.1/deploy/python)")
    parser.add_argument("--max-load", type=float, help="wait (up to 10 min) until the 1-min load average is below this")
    args = parser.parse_args(argv)
    if args.sizes and any(x.strip() not in ("224", "608") for x in args.sizes.split(",")):
        parser.error("--sizes takes 224 and/or 608")
    cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    unknown = [c for c in cases if c not in CASES]
    if unknown:
        parser.error(f"unknown case(s) {', '.join(unknown)}; choose from {', '.join(CASES)}")
    if args.repeats is None:
        args.repeats = 1 if args.quick else 3
    if not args.trainctl:
        beside = Path(args.python).parent / "trainctl"
        args.trainctl = str(beside) if beside.exists() else shutil.which("trainctl")
        if not args.trainctl:
            parser.error("trainctl not found next to --python nor on PATH; pass --trainctl")

    out = Path(args.results or (HERE / "work" / "results" if args.quick else HERE / "results")).resolve()
    for what, path in (("--work", Path(args.work)), ("--results", out)):
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            parser.error(f"{what} {path}: cannot create the directory ({exc.strerror or exc})")
    if args.max_load is not None:
        harness.wait_for_quiet(args.max_load, 600)
    stem = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d") + ("-quick" if args.quick else "")

    def save(results: dict) -> None:
        (out / f"{stem}.json").write_text(json.dumps(results, indent=2, default=str) + "\n")
        (out / f"{stem}.md").write_text(render_markdown(results))

    suite = Suite(args)
    results = suite.run_cases(cases, save=save)
    save(results)
    print()
    print(render_markdown(results))
    print(f"wrote {out / (stem + '.json')} and {out / (stem + '.md')}")
    skipped = [case for case, x in results["cases"].items() if x.get("not_run")]
    if skipped:
        print(f"not run: {', '.join(skipped)} (the reason is in the table)")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
