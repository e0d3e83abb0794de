"""`trainctl infer --model-dir ... --benchmark` as a user runs it: JSON, the table, and bad flags."""

from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.paddle


def test_infer_benchmark_json_and_table(exported_model, smoke_run, ptools, tmp_path):
    images = smoke_run.workdir / "dataset" / "roadsign_voc" / "images"
    proc = ptools.run_cli(["infer", "--model-dir", str(exported_model), "--dir", str(images), "--benchmark",
                           "--batch-size", "4", "--threads", "1", "--warmup", "1", "--repeats", "1", "--json",
                           "--output", str(tmp_path / "out")], smoke_run.workdir)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout)
    n = len(list(images.iterdir()))
    assert report["data"]["images"] == n and report["data"]["batch_size"] == 4 and report["data"]["timed_images"] == n
    assert report["data"]["batches_per_pass"] == -(-n // 4) and report["model"]["input_shape"][0] == 4
    assert report["environment"]["cpu_threads"] == 1 and report["model"]["precision"] == "fp32"
    assert 0 < report["time_ms"]["inference"]["p50"] <= report["time_ms"]["inference"]["p90"]
    assert report["throughput"]["images_per_s"] > 0 and report["memory"]["cpu_rss_peak_mb"] > 0
    assert not (tmp_path / "out").exists()  # a benchmark writes no annotated images

    text = ptools.run_cli(["infer", "--model-dir", str(exported_model), "--img", str(ptools.road554), "--benchmark",
                           "--warmup", "0", "--repeats", "2"], smoke_run.workdir)
    assert text.returncode == 0, text.stderr[-3000:]
    rows = {line.split()[0]: line.split()[1:] for line in text.stdout.splitlines() if line.split()[:1] in
            (["preprocess"], ["inference"], ["postprocess"], ["total"])}
    assert set(rows) == {"preprocess", "inference", "postprocess", "total"}
    assert all(len(v) == 3 and float(v[0]) > 0 for v in rows.values())
    assert "batch size 1" in text.stdout and "2 timed passes (2 images)" in text.stdout


@pytest.mark.parametrize("args,message", [
    (["--warmup", "1"], "trainctl: error: --warmup only applies to --benchmark; add --benchmark, or drop them"),
    (["--benchmark", "-c", "roadsign_cpu_smoke.yml"],
     "trainctl: error: --benchmark measures an exported model; pass --model-dir DIR (made by `trainctl export`), not -c"),
])
def test_infer_benchmark_flag_errors(args, message, smoke_run, ptools):
    proc = ptools.run_cli(["infer", "--img", str(ptools.road554), *args], smoke_run.workdir, timeout=120)
    assert proc.returncode == 2
    assert ptools.error_lines(proc.stderr) == [message]
