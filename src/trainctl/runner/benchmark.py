"""Deployment benchmark: Paddle Inference on an exported model, timed per stage.

Reports what PaddlePaddle's TIPC benchmark logs report (PaddleDetection's
deploy/python `--run_benchmark`): the environment (paddle version, CPU,
MKLDNN, threads, device), precision, batch size, number of images, the
preprocess / inference / postprocess time in ms per image (mean, p50, p90),
images/s, CPU RSS and GPU memory.

The model, its preprocessing and the output decoding are the runner's
(`runner/predict.py`: ExportedModel; runner/preprocess.py: its Preprocessor; runner/results.py: rows_to_detections);
this module only times them. The stages, per batch:

- preprocess: read and decode each image, the infer_cfg.yml steps, stack the
  batch (images of different sizes are zero-padded to the largest, as
  PaddleDetection's deploy code does);
- inference: copy inputs in, `predictor.run()`, copy outputs out;
- postprocess: split the output rows per image and keep boxes >= threshold.

`warmup` untimed batches run first; then every image is processed `repeats`
times (whole passes over the image directory). Times are per image: a batch's
stage time divided by its number of images, one sample per batch.
"""

from __future__ import annotations

import os
import platform
import resource
import shutil
import subprocess
import time
from pathlib import Path

from trainctl.core.hostinfo import cpu_model
from trainctl.errors import UserError
from trainctl.output import fmt_value

STAGES = ("preprocess", "inference", "postprocess", "total")


# ------------------------------------------------------------------ pure helpers


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0..100) with linear interpolation between closest ranks (numpy's default)."""
    if not values:
        raise ValueError("percentile of no values")
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100.0
    low = int(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def summarize(samples_ms: list[float], total_ms: float, count: int) -> dict:
    """mean (total over count: every image weighs the same), p50 and p90 of the per-batch samples."""
    return {"mean": total_ms / count, "p50": percentile(samples_ms, 50), "p90": percentile(samples_ms, 90)}


def check_options(batch_size: int, threads: int, warmup: int, repeats: int) -> None:
    if batch_size < 1:
        raise UserError(f"--batch-size must be at least 1 (got {batch_size})")
    if threads < 1:
        raise UserError(f"--threads must be at least 1 (got {threads})", hint=f"this machine has {os.cpu_count()} cores")
    if warmup < 0:
        raise UserError(f"--warmup must be 0 or more (got {warmup})")
    if repeats < 1:
        raise UserError(f"--repeats must be at least 1 (got {repeats})")


# ------------------------------------------------------------------ environment probes


def _status_kib(field: str, status: str = "/proc/self/status") -> int | None:
    try:
        for line in Path(status).read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return None


def rss_mb() -> float | None:
    """Resident memory of this process now (VmRSS), MiB."""
    kib = _status_kib("VmRSS")
    return kib / 1024 if kib is not None else None


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far (VmHWM, or getrusage's ru_maxrss), MiB."""
    kib = _status_kib("VmHWM")
    if kib is None:
        kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    return kib / 1024


def gpu_memory_mb(pid: int | None = None) -> float | None:
    """GPU memory used by this process (nvidia-smi's per-process figure), MiB; None without nvidia-smi."""
    exe = shutil.which("nvidia-smi")
    if not exe:
        return None
    pid = os.getpid() if pid is None else pid
    try:
        out = subprocess.run([exe, "--query-compute-apps=pid,used_memory", "--format=csv,noheader,nounits"],
                             capture_output=True, text=True, timeout=20).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    used = [float(cols[1]) for cols in (line.split(",") for line in out.splitlines())
            if len(cols) == 2 and cols[0].strip() == str(pid) and cols[1].strip().replace(".", "", 1).isdigit()]
    return sum(used) if used else None


def _mkldnn(model) -> tuple[bool | None, str]:
    """Whether the predictor runs with MKLDNN (oneDNN), read back from its config, and why."""
    enabled = model.onednn_enabled()
    if enabled:
        return True, "predictor config: enabled by trainctl (default; --no-onednn turns it off)"
    if model.onednn_requested:
        return False, "predictor config: off although requested (this paddle build has no oneDNN)"
    if getattr(model, "options", None) is not None and model.options.onednn is None:
        return False, "predictor config: off (the default for a model.json; --onednn turns it on)"
    return False, "predictor config: disabled by --no-onednn"


def environment(model, threads: int, use_gpu: bool) -> dict:
    import paddle

    try:
        commit = paddle.version.commit
    except AttributeError:
        commit = None
    mkldnn, mkldnn_source = (None, "not used on GPU") if use_gpu else _mkldnn(model)
    from trainctl.core.hostinfo import cpu_count

    available = cpu_count()
    return {
        "paddle_version": paddle.__version__,
        "paddle_commit": commit,
        "python": platform.python_version(),
        "os": platform.platform(),
        "cpu_model": cpu_model(),
        "cpu_cores": os.cpu_count(),
        "cpu_cores_available": available,
        "device": "gpu:0" if use_gpu else "cpu",
        "mkldnn": mkldnn,
        "mkldnn_source": mkldnn_source,
        "cpu_threads": None if use_gpu else threads,
        "ir_optim": True,  # paddle.inference.Config's default; ExportedModel keeps it
        "memory_optim": True,  # ExportedModel calls enable_memory_optim()
        "tensorrt": False,
    }


# ------------------------------------------------------------------ timing


def time_batch(model, paths: list[str], threshold: float) -> tuple[dict, list, tuple]:
    """Run one batch through the three stages; returns (seconds per stage, detections, input shape)."""
    from trainctl.runner.preprocess import split_rows, stack_batch
    from trainctl.runner.results import rows_to_detections

    t0 = time.perf_counter()
    inputs = stack_batch([model.preprocess(model.read_rgb(p)) for p in paths])  # as `trainctl infer --batch-size` stacks
    t1 = time.perf_counter()
    rows, counts = model.run(inputs)
    t2 = time.perf_counter()
    detections = []
    for path, image_rows in zip(paths, split_rows(rows, counts, len(paths))):
        detections += rows_to_detections(path, image_rows, model.labels, threshold)
    t3 = time.perf_counter()
    return {"preprocess": t1 - t0, "inference": t2 - t1, "postprocess": t3 - t2}, detections, tuple(inputs["image"].shape)


def run_benchmark(model_dir: str, image_dir: str | None = None, batch_size: int = 1, threads: int = 2, warmup: int = 2,
                  repeats: int = 3, threshold: float = 0.5, use_gpu: bool | None = None, img: str | None = None,
                  onednn: bool = True) -> dict:
    """Benchmark an exported model on the images of image_dir (or one image, img); returns the report (docs/runs.md)."""
    from trainctl.runner import predict, session
    from trainctl.runner.compat import quiet_ppdet_warnings
    from trainctl.runner.preprocess import batches_of, load_infer_cfg

    check_options(batch_size, threads, warmup, repeats)
    images = predict.list_images(img, image_dir)
    load_infer_cfg(model_dir)  # a clear error before paddle starts
    quiet_ppdet_warnings()
    rss_before = rss_mb()
    if use_gpu is None:
        use_gpu = session.cuda_available()
    model = predict.ExportedModel(model_dir, threads=threads, use_gpu=use_gpu, onednn=onednn)
    rss_loaded = rss_mb()
    batches = batches_of(images, batch_size)

    for i in range(warmup):
        time_batch(model, batches[i % len(batches)], threshold)

    samples: dict[str, list[float]] = {stage: [] for stage in STAGES}  # ms per image, one per batch
    batch_samples: dict[str, list[float]] = {stage: [] for stage in STAGES}  # ms per batch
    totals = {stage: 0.0 for stage in STAGES}  # ms
    timed_images = 0
    detections_per_pass = 0
    input_shape = None
    wall_start = time.perf_counter()
    for rep in range(repeats):
        for paths in batches:
            seconds, detections, shape = time_batch(model, paths, threshold)
            input_shape = input_shape or shape
            seconds["total"] = sum(seconds.values())
            for stage in STAGES:
                ms = seconds[stage] * 1000.0
                samples[stage].append(ms / len(paths))
                batch_samples[stage].append(ms)
                totals[stage] += ms
            timed_images += len(paths)
            if rep == 0:
                detections_per_pass += len(detections)
    wall_s = time.perf_counter() - wall_start

    gpu_mb = gpu_memory_mb() if use_gpu else None
    return {
        "environment": environment(model, threads, use_gpu),
        "model": {
            "model_dir": str(model_dir),
            "arch": model.infer_cfg.get("arch"),
            "precision": "fp32",
            "input_shape": list(input_shape) if input_shape else None,
            "labels": len(model.labels),
        },
        "data": {
            "source": str(image_dir or img),
            "images": len(images),
            "batch_size": batch_size,
            "batches_per_pass": len(batches),
            "warmup_batches": warmup,
            "repeats": repeats,
            "timed_images": timed_images,
            "threshold": threshold,
            "detections_per_pass": detections_per_pass,
        },
        "time_ms": {stage: summarize(samples[stage], totals[stage], timed_images) for stage in STAGES},
        "batch_time_ms": {stage: summarize(batch_samples[stage], totals[stage], len(batch_samples[stage])) for stage in STAGES},
        "throughput": {
            "images_per_s": timed_images / wall_s,
            "inference_images_per_s": timed_images / (totals["inference"] / 1000.0),
        },
        "wall_time_s": wall_s,
        "memory": {
            "cpu_rss_mb": rss_mb(),
            "cpu_rss_peak_mb": peak_rss_mb(),
            "cpu_rss_before_load_mb": rss_before,
            "cpu_rss_after_load_mb": rss_loaded,
            "gpu_memory_mb": gpu_mb,
        },
    }


# ------------------------------------------------------------------ report


def format_report(report: dict) -> str:
    """The human form: key facts, then one row per stage (ms per image)."""
    from trainctl.output import table

    env, model, data, mem = report["environment"], report["model"], report["data"], report["memory"]
    lines = [
        f"paddle {env['paddle_version']} ({(env['paddle_commit'] or '')[:10]}), python {env['python']}",
        f"device {env['device']}, {env['cpu_model']}, {env['cpu_cores']} cores"
        + (f", MKLDNN {fmt_value(env['mkldnn'])}, {env['cpu_threads']} threads" if env["device"] == "cpu" else ""),
        f"model {model['model_dir']} ({model['arch']}), precision {model['precision']}, input {model['input_shape']}",
        f"images {data['images']} from {data['source']}, batch size {data['batch_size']}, "
        f"warmup {data['warmup_batches']} batches, {data['repeats']} timed passes ({data['timed_images']} images)",
        "",
    ]
    rows = [[stage] + [fmt_value(report["time_ms"][stage][k]) for k in ("mean", "p50", "p90")] for stage in STAGES]
    lines.append(table(rows, headers=["ms per image", "mean", "p50", "p90"]))
    lines += [
        "",
        f"images/s {fmt_value(report['throughput']['images_per_s'])} end to end, "
        f"{fmt_value(report['throughput']['inference_images_per_s'])} inference only",
        f"CPU RSS {fmt_value(mem['cpu_rss_mb'], 1)} MB now, {fmt_value(mem['cpu_rss_peak_mb'], 1)} MB peak"
        + (f"; GPU memory {fmt_value(mem['gpu_memory_mb'], 0)} MB" if env["device"] != "cpu" else ""),
    ]
    return "\n".join(lines)


# ------------------------------------------------------------------ `trainctl infer --benchmark`

DEFAULTS = {"batch_size": 1, "warmup": 2, "repeats": 3}


def from_cli(config: str | None, model_dir: str | None, img: str | None, directory: str | None, threshold: float,
             threads: int | None, benchmark: bool, batch_size: int | None, warmup: int | None, repeats: int | None,
             as_json: bool, onednn: bool = True) -> bool:
    """`trainctl infer`'s benchmark flags: run and print the benchmark and return True, or return False.

    The benchmark-only options without --benchmark are a user error rather than
    silently ignored (--batch-size and --threads apply to plain infer too).
    """
    import json

    from trainctl import output
    from trainctl.core.hostinfo import cpu_count

    given = {name: value for name, value in (("--warmup", warmup), ("--repeats", repeats),
                                            ("--json", as_json or None)) if value is not None}
    if not benchmark:
        if given:
            verb = "apply" if len(given) > 1 else "applies"
            raise UserError(f"{', '.join(given)} only {verb} to --benchmark", hint="add --benchmark, or drop them")
        return False
    if config or not model_dir:
        raise UserError("--benchmark measures an exported model", hint="pass --model-dir DIR (made by `trainctl export`), not -c")
    if not 0.0 <= threshold <= 1.0:
        raise UserError(f"--threshold {threshold} is not between 0 and 1")
    cores = cpu_count()
    threads = threads or cores
    if threads > cores:
        output.warn(f"--threads {threads} is more than the {cores} cores this process may use; expect slower, noisier times")
    report = run_benchmark(model_dir, directory, img=img, threshold=threshold, threads=threads,
                           batch_size=DEFAULTS["batch_size"] if batch_size is None else batch_size,
                           warmup=DEFAULTS["warmup"] if warmup is None else warmup,
                           repeats=DEFAULTS["repeats"] if repeats is None else repeats, onednn=onednn)
    output.echo(json.dumps(report, indent=2) if as_json else format_report(report))
    return True
