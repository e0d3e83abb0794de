"""The deployment benchmark on the session's exported smoke model: every field, plausible values.

Paddle runs in a subprocess (the pytest process stays paddle-free, see conftest.py).
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import shutil
import subprocess
import sys

import pytest
import yaml

pytestmark = pytest.mark.paddle

FIELDS = {
    "environment": {"paddle_version", "paddle_commit", "python", "os", "cpu_model", "cpu_cores", "cpu_cores_available",
                    "device", "mkldnn", "mkldnn_source", "cpu_threads", "ir_optim", "memory_optim", "tensorrt"},
    "model": {"model_dir", "arch", "precision", "input_shape", "labels"},
    "data": {"source", "images", "batch_size", "batches_per_pass", "warmup_batches", "repeats", "timed_images",
             "threshold", "detections_per_pass"},
    "time_ms": {"preprocess", "inference", "postprocess", "total"},
    "batch_time_ms": {"preprocess", "inference", "postprocess", "total"},
    "throughput": {"images_per_s", "inference_images_per_s"},
    "wall_time_s": None,
    "memory": {"cpu_rss_mb", "cpu_rss_peak_mb", "cpu_rss_before_load_mb", "cpu_rss_after_load_mb", "gpu_memory_mb"},
}


@pytest.fixture(scope="module")
def bench_images(smoke_run, ptools, tmp_path_factory):
    """Three synthetic images and the real road-sign photo (a different size)."""
    d = tmp_path_factory.mktemp("bench_images")
    src = smoke_run.workdir / "dataset" / "roadsign_voc" / "images"
    for name in sorted(os.listdir(src))[:3]:
        shutil.copy(src / name, d / name)
    shutil.copy(ptools.road554, d / "road554.png")
    return d


def run_benchmark(cwd, **kwargs) -> dict:
    code = ("import json, sys\n"
            "from trainctl.runner.benchmark import run_benchmark, format_report\n"
            "report = run_benchmark(**json.loads(sys.argv[1]))\n"
            "print(format_report(report), file=sys.stderr)\n"
            "print(json.dumps(report))\n")
    proc = subprocess.run([sys.executable, "-c", code, json.dumps(kwargs)], cwd=cwd, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    report["_text"] = proc.stderr
    return report


def test_benchmark_report_has_every_field_with_plausible_values(exported_model, bench_images, smoke_run):
    r = run_benchmark(smoke_run.workdir, model_dir=str(exported_model), image_dir=str(bench_images),
                      batch_size=2, threads=2, warmup=1, repeats=2)
    text = r.pop("_text")
    assert set(r) == set(FIELDS)
    for section, keys in FIELDS.items():
        if keys is not None:
            assert set(r[section]) == keys, section

    env = r["environment"]
    assert env["paddle_version"] == importlib.metadata.version("paddlepaddle")
    assert env["cpu_cores"] == os.cpu_count() and 1 <= env["cpu_cores_available"] <= env["cpu_cores"]
    assert env["device"] == "cpu" and env["cpu_threads"] == 2 and isinstance(env["mkldnn"], bool)
    assert env["cpu_model"] and len(env["paddle_commit"]) == 40

    infer_cfg = yaml.safe_load((exported_model / "infer_cfg.yml").read_text())
    size = next(op["target_size"] for op in infer_cfg["Preprocess"] if op["type"] == "Resize")
    assert r["model"] == {"model_dir": str(exported_model), "arch": infer_cfg["arch"], "precision": "fp32",
                          "input_shape": [2, 3, *size], "labels": len(infer_cfg["label_list"])}
    assert r["data"]["images"] == 4 and r["data"]["batch_size"] == 2 and r["data"]["batches_per_pass"] == 2
    assert r["data"]["repeats"] == 2 and r["data"]["timed_images"] == 8 and r["data"]["warmup_batches"] == 1

    times = r["time_ms"]
    for stage, stats in times.items():
        assert stats["mean"] > 0 and 0 < stats["p50"] <= stats["p90"], (stage, stats)
    assert times["total"]["mean"] == pytest.approx(sum(times[s]["mean"] for s in ("preprocess", "inference", "postprocess")))
    assert times["inference"]["mean"] > times["postprocess"]["mean"]  # a YOLOv3 forward pass vs. filtering rows
    for stage in times:  # a batch of 2 takes twice the per-image time
        assert r["batch_time_ms"][stage]["mean"] == pytest.approx(2 * times[stage]["mean"])

    tp = r["throughput"]
    assert tp["inference_images_per_s"] == pytest.approx(1000.0 / times["inference"]["mean"])
    assert tp["images_per_s"] == pytest.approx(8 / r["wall_time_s"])
    assert tp["images_per_s"] <= tp["inference_images_per_s"]
    assert tp["images_per_s"] == pytest.approx(1000.0 / times["total"]["mean"], rel=0.2)  # wall = stages + loop overhead

    mem = r["memory"]
    assert mem["gpu_memory_mb"] is None
    assert 0 < mem["cpu_rss_before_load_mb"] < mem["cpu_rss_after_load_mb"] <= mem["cpu_rss_peak_mb"]
    assert 0 < mem["cpu_rss_mb"] <= mem["cpu_rss_peak_mb"]
    # the model's parameters alone are this big; the process holds at least that much once loaded
    assert mem["cpu_rss_after_load_mb"] - mem["cpu_rss_before_load_mb"] > (exported_model / "model.pdiparams").stat().st_size / 2**20 / 2

    assert "ms per image" in text and "inference" in text and "images/s" in text


def test_benchmark_bad_options_are_user_errors(exported_model, bench_images, smoke_run, tmp_path):
    code = ("import sys\n"
            "from trainctl.errors import UserError\n"
            "from trainctl.runner.benchmark import run_benchmark\n"
            "for kwargs in ({'batch_size': 0}, {'repeats': 0}, {'model_dir': sys.argv[3]}, {'image_dir': sys.argv[3]}):\n"
            "    args = dict(model_dir=sys.argv[1], image_dir=sys.argv[2]); args.update(kwargs)\n"
            "    try:\n"
            "        run_benchmark(**args)\n"
            "    except UserError as exc:\n"
            "        print(exc.one_line())\n"
            "print('paddle imported' if 'paddle' in sys.modules else 'paddle not imported')\n")
    (tmp_path / "empty").mkdir()
    proc = subprocess.run([sys.executable, "-c", code, str(exported_model), str(bench_images), str(tmp_path / "empty")],
                          cwd=smoke_run.workdir, capture_output=True, text=True, timeout=300)
    lines = proc.stdout.splitlines()
    assert proc.returncode == 0, proc.stderr
    assert lines[0].startswith("--batch-size must be at least 1") and lines[1].startswith("--repeats must be at least 1")
    assert "is not an exported model (no model.json or model.pdmodel)" in lines[2]
    assert lines[3].startswith("no images") and lines[4] == "paddle not imported"  # checked before paddle starts
