"""What `trainctl smoke` prints and saves: the stage table, a failure's command and log tail,
and a TIPC-style environment and performance block (no paddle import here).

The environment comes from the launcher side (package metadata, /proc, nvidia-smi: the
facts `trainctl doctor` reads) and from the inference benchmark's own report (oneDNN,
TensorRT, threads, memory); the performance from the lite training's iteration
timer (lite_train.json) and `trainctl infer --benchmark --json` on each device.
"""

from __future__ import annotations

import os
import platform
import re
from pathlib import Path

from trainctl.output import table
from trainctl.output import fmt_value as _f  # "-" for None, on/off for booleans, fixed digits


def nvidia_driver(path: str = "/proc/driver/nvidia/version") -> str | None:
    try:
        text = Path(path).read_text(errors="replace")
    except OSError:
        return None
    match = re.search(r"Kernel Module\s+(?:for\s+\S+\s+)?([\d.]+)", text)
    return match.group(1) if match else None


def environment(plan, device_env) -> dict:
    from trainctl import __version__, doctor
    from trainctl.core.hostinfo import cpu_model

    paddle = doctor.paddle_facts()
    ppdet = doctor.package_facts()["paddledet"]
    return {
        "os": platform.platform(),
        "python": platform.python_version(),
        "trainctl": __version__,
        "paddle": paddle.get("version"),
        "paddle_commit": paddle.get("commit"),
        "paddle_distribution": paddle.get("distribution"),
        "cuda": paddle.get("cuda"),
        "cudnn": paddle.get("cudnn"),
        "nccl": paddle.get("nccl"),
        "paddledet": ppdet.get("version"),
        "driver": nvidia_driver(),
        "gpus": [g.name for g in device_env.gpus],
        "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
        "cpu_model": cpu_model(),
        "cpu_cores": os.cpu_count(),
        "device": plan.device.describe(),
        "world_size": plan.world_size,
        "nnodes": plan.nnodes,
        "node_rank": plan.node_rank,
        "network": plan.net.name,
        "omp_num_threads": plan.local_node.env.get("OMP_NUM_THREADS") or os.environ.get("OMP_NUM_THREADS"),
    }


def performance(lite: dict | None, infer: dict[str, dict]) -> dict:
    perf: dict = {"train": None, "infer": {}}
    if lite:
        perf["train"] = {k: lite.get(k) for k in ("iterations", "batch_size_per_process", "world_size",
                                                 "median_seconds_after_first", "images_per_s")}
    for name, report in infer.items():
        env, data, mem = report.get("environment", {}), report.get("data", {}), report.get("memory", {})
        perf["infer"][name] = {
            "device": env.get("device"),
            "batch_size": data.get("batch_size"),
            "images": data.get("timed_images"),
            "cpu_threads": env.get("cpu_threads"),
            "mkldnn": env.get("mkldnn"),
            "tensorrt": env.get("tensorrt"),
            "precision": (report.get("model") or {}).get("precision"),
            "ms_per_image": {stage: (report.get("time_ms", {}).get(stage) or {}).get("mean")
                             for stage in ("preprocess", "inference", "postprocess", "total")},
            "images_per_s": (report.get("throughput") or {}).get("images_per_s"),
            "cpu_rss_peak_mb": mem.get("cpu_rss_peak_mb"),
            "gpu_memory_mb": mem.get("gpu_memory_mb"),
        }
    return perf


def environment_lines(env: dict, perf: dict) -> list[str]:
    """The TIPC-style block: environment, then performance."""
    build = "CPU build" if not env.get("cuda") else f"CUDA {env['cuda']}, cuDNN {_f(env.get('cudnn'))}, NCCL {_f(env.get('nccl'))}"
    rows = [
        ["OS", env["os"]],
        ["python", env["python"]],
        ["paddle", f"{_f(env.get('paddle'))} (commit {(env.get('paddle_commit') or '-')[:10]}, {env.get('paddle_distribution') or '-'}), {build}"],
        ["paddledet", _f(env.get("paddledet"))],
        ["trainctl", env["trainctl"]],
        ["GPU driver", env.get("driver") or "- (no NVIDIA driver)"],
        ["GPUs", ", ".join(env.get("gpus") or []) or "-"],
        ["CPU", f"{env['cpu_model']}, {env['cpu_cores']} cores"],
        ["placement", f"{env['device']}, {env['nnodes']} node(s), world size {env['world_size']}, network {env['network']}"
         + (f", OMP_NUM_THREADS {env['omp_num_threads']}" if env.get("omp_num_threads") else "")],
    ]
    lines = ["environment", *("  " + line for line in table(rows).splitlines())]
    perf_rows = []
    train = perf.get("train")
    if train:
        perf_rows.append(["train", f"batch {train['batch_size_per_process']} per process x {train['world_size']}, "
                                   f"{_f(train['median_seconds_after_first'], 3)} s/iteration, "
                                   f"{_f(train['images_per_s'], 2)} images/s ({train['iterations']} iterations)"])
    for name, item in perf.get("infer", {}).items():
        ms = item["ms_per_image"]
        text = (f"{item['device']}, batch {item['batch_size']}, {item['precision'] or 'fp32'}"
                + (f", {item['cpu_threads']} threads, oneDNN {_f(item['mkldnn'])}" if item["device"] == "cpu" else "")
                + f", TensorRT {_f(item['tensorrt'])}: preprocess {_f(ms['preprocess'], 2)} ms, inference "
                  f"{_f(ms['inference'], 2)} ms, postprocess {_f(ms['postprocess'], 2)} ms per image; "
                  f"{_f(item['images_per_s'], 2)} images/s; CPU RSS peak {_f(item['cpu_rss_peak_mb'], 1)} MB"
                + (f"; GPU memory {_f(item['gpu_memory_mb'], 0)} MB" if item["device"] != "cpu" else ""))
        perf_rows.append([name, text])
    if perf_rows:
        lines += ["performance", *("  " + line for line in table(perf_rows).splitlines())]
    return lines


def seconds_text(value) -> str:
    return f"{value:.1f} s" if value is not None else ""


def stage_rows(stages) -> list[list[str]]:
    rows = []
    for stage in stages:
        result = {"pass": "pass", "fail": "FAIL", "skipped": "skipped", "n/a": "n/a"}.get(stage.status, stage.status)
        detail = stage.detail if stage.status == "pass" else stage.reason
        rows.append([stage.name, result, seconds_text(stage.seconds), detail])
    return rows


def format_text(report: dict, stages, comm_text: str | None) -> str:
    lines = [report["title"], "", table(stage_rows(stages), headers=["stage", "result", "time", "detail"])]
    for stage in stages:
        if stage.status == "fail":
            lines += ["", f"{stage.name} failed: {stage.reason}", f"  command: {stage.command}",
                      f"  log: {stage.log}" + (f" (last {len(stage.tail)} lines)" if stage.tail else "")]
            lines += [f"  | {line}" for line in stage.tail]
    if comm_text:
        lines += ["", comm_text]
    lines += ["", *environment_lines(report["environment"], report["performance"])]
    lines += ["", f"saved: {report['files']['json']}, {report['files']['text']}; stage logs in {report['files']['logs']}"]
    return "\n".join(lines)
