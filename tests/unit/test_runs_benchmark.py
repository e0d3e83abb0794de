"""The deployment benchmark's pure parts: statistics, batching, probes and the report text (no paddle)."""

from __future__ import annotations

import random

import numpy as np
import pytest

from trainctl.errors import UserError
from trainctl.runner import benchmark, predict


def test_percentile_matches_numpy():
    rng = random.Random(3)
    for n in (1, 2, 5, 17, 100):
        values = [rng.uniform(0, 50) for _ in range(n)]
        for q in (0, 50, 90, 100):
            assert benchmark.percentile(values, q) == pytest.approx(float(np.percentile(values, q)))
    assert benchmark.percentile([4, 1, 3, 2], 50) == 2.5
    with pytest.raises(ValueError):
        benchmark.percentile([], 50)


def test_summarize_weights_every_image_the_same():
    # two batches of 2 images (10 ms, 30 ms each) and a last batch of 1 image (40 ms)
    per_image = [10 / 2, 30 / 2, 40 / 1]
    stats = benchmark.summarize(per_image, total_ms=80, count=5)
    assert stats["mean"] == 16 and stats["p50"] == 15 and stats["p90"] == pytest.approx(35)


@pytest.mark.parametrize("kwargs,message", [
    ({"batch_size": 0}, "--batch-size must be at least 1"),
    ({"threads": 0}, "--threads must be at least 1"),
    ({"warmup": -1}, "--warmup must be 0 or more"),
    ({"repeats": 0}, "--repeats must be at least 1"),
])
def test_check_options(kwargs, message):
    args = {"batch_size": 1, "threads": 1, "warmup": 0, "repeats": 1} | kwargs
    with pytest.raises(UserError, match=message):
        benchmark.check_options(**args)
    benchmark.check_options(1, 1, 0, 1)


def test_benchmark_batches_pad_to_the_largest_image():
    """time_batch stacks with predict.stack_batch, as plain `trainctl infer --batch-size` does."""
    a = {"image": np.ones((1, 3, 4, 6), np.float32), "im_shape": np.array([[4, 6]], np.float32),
         "scale_factor": np.array([[1, 1]], np.float32)}
    b = {"image": np.full((1, 3, 5, 3), 2, np.float32), "im_shape": np.array([[5, 3]], np.float32),
         "scale_factor": np.array([[0.5, 0.5]], np.float32)}
    out = predict.stack_batch([a, b])
    assert out["image"].shape == (2, 3, 5, 6)
    assert (out["image"][0, :, :4, :6] == 1).all() and (out["image"][0, :, 4:, :] == 0).all()
    assert (out["image"][1, :, :5, :3] == 2).all() and (out["image"][1, :, :, 3:] == 0).all()
    assert out["im_shape"].tolist() == [[4, 6], [5, 3]] and out["scale_factor"].tolist() == [[1, 1], [0.5, 0.5]]
    assert predict.stack_batch([a]) is a


def test_cpu_model_and_memory_probes(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: Intel(R) Xeon(R) Gold 6271C CPU @ 2.60GHz\n")
    assert benchmark.cpu_model(str(cpuinfo)) == "Intel(R) Xeon(R) Gold 6271C CPU @ 2.60GHz"
    assert benchmark.cpu_model(str(tmp_path / "missing"))  # falls back to platform
    now, peak = benchmark.rss_mb(), benchmark.peak_rss_mb()
    assert 0 < now <= peak < 1 << 20


def report(device="cpu") -> dict:
    stage = {"mean": 12.5, "p50": 12.0, "p90": 14.25}
    return {
        "environment": {"paddle_version": "3.3.1", "paddle_commit": "7688495538f4d6c1893f084dd238a402e8f68ab6",
                        "python": "3.11.7", "cpu_model": "AMD EPYC", "cpu_cores": 2, "device": device,
                        "mkldnn": True if device == "cpu" else None, "cpu_threads": 2 if device == "cpu" else None},
        "model": {"model_dir": "exported", "arch": "YOLO", "precision": "fp32", "input_shape": [2, 3, 224, 224]},
        "data": {"images": 4, "source": "imgs", "batch_size": 2, "warmup_batches": 1, "repeats": 2, "timed_images": 8},
        "time_ms": {s: stage for s in benchmark.STAGES},
        "throughput": {"images_per_s": 70.0, "inference_images_per_s": 80.0},
        "memory": {"cpu_rss_mb": 512.25, "cpu_rss_peak_mb": 600.0, "gpu_memory_mb": 1234.0 if device != "cpu" else None},
    }


def test_format_report_cpu_and_gpu():
    text = benchmark.format_report(report())
    assert "device cpu, AMD EPYC, 2 cores, MKLDNN on, 2 threads" in text
    assert "precision fp32, input [2, 3, 224, 224]" in text and "batch size 2" in text
    rows = {line.split()[0]: line.split()[1:] for line in text.splitlines() if line.split()[:1] and line.split()[0] in benchmark.STAGES}
    assert rows == {s: ["12.50", "12.00", "14.25"] for s in benchmark.STAGES}
    assert "images/s 70.00 end to end, 80.00 inference only" in text
    assert "CPU RSS 512.2 MB now, 600.0 MB peak" in text and "GPU" not in text
    gpu = benchmark.format_report(report("gpu:0"))
    assert "MKLDNN" not in gpu and "GPU memory 1234 MB" in gpu


def cli_args(**kwargs) -> dict:
    args = dict(config=None, model_dir="deploy/m", img=None, directory="imgs", threshold=0.5, threads=2,
                benchmark=False, batch_size=None, warmup=None, repeats=None, as_json=False)
    args.update(kwargs)
    return args


def test_infer_flags_without_benchmark():
    assert benchmark.from_cli(**cli_args()) is False  # plain `trainctl infer`: not ours
    assert benchmark.from_cli(**cli_args(batch_size=4)) is False  # --batch-size is plain infer's too
    with pytest.raises(UserError, match="--warmup, --json only apply to --benchmark"):
        benchmark.from_cli(**cli_args(batch_size=4, warmup=1, as_json=True))
    with pytest.raises(UserError, match="--repeats only applies to --benchmark"):
        benchmark.from_cli(**cli_args(repeats=1))


def test_benchmark_needs_an_exported_model():
    with pytest.raises(UserError, match="measures an exported model") as exc:
        benchmark.from_cli(**cli_args(benchmark=True, config="roadsign.yml", model_dir=None))
    assert "--model-dir" in exc.value.hint
    with pytest.raises(UserError, match="between 0 and 1"):
        benchmark.from_cli(**cli_args(benchmark=True, threshold=1.5))
