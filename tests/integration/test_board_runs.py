"""`trainctl runs` on the files a real training wrote (the session's smoke run, trained with --eval).

The smoke run is made by the worker directly, without the launcher's run.json;
the test links its files into a fresh run dir and adds a record written by the
launcher's RunRecord, so checkpoints.json, config.yml and the checkpoint files
are the real ones.
"""

from __future__ import annotations

import json
import os

import pytest

from trainctl.runrecord import RunRecord

pytestmark = pytest.mark.paddle


def test_runs_reads_a_real_training(smoke_run, ptools, tmp_path):
    run = tmp_path / "output" / "smoke"
    run.mkdir(parents=True)
    for name in os.listdir(smoke_run.run_dir):
        os.symlink(smoke_run.run_dir / name, run / name)
    record = RunRecord(run, ["trainctl", "train", "-c", "roadsign_cpu_smoke.yml", "--eval"],
                       {"task": "train", "config_name": "roadsign_cpu_smoke.yml", "nodes": [],
                        "device": {"kind": "cpu", "ids": [], "nproc_per_node": 1}, "world_size": 1, "nnodes": 1})
    record.start()
    record.finish(0, "done")

    proc = ptools.run_cli(["runs", "--json"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    (info,) = json.loads(proc.stdout)
    index = json.loads((smoke_run.run_dir / "checkpoints.json").read_text())
    assert info["status"] == "done" and info["task"] == "train" and info["config"] == "roadsign_cpu_smoke.yml"
    assert info["epochs_total"] == 1 and info["epochs_done"] == 1 and info["final"] is True  # smoke: one epoch
    assert info["checkpoint_source"] == "checkpoints.json" and "model_final" in info["checkpoints"]
    assert "best_model" not in info["checkpoints"]
    best = index["best"]
    assert info["best"]["metric"] == "bbox" and info["best"]["value"] == pytest.approx(best["results"]["bbox"])
    assert info["best"]["epoch"] == best["epoch"] == 1
    assert info["vdl_dir"] == "output/smoke/vdl"  # the smoke run trains with VisualDL on

    table = ptools.run_cli(["runs"], tmp_path)
    assert table.returncode == 0, table.stderr
    row = table.stdout.splitlines()[2].split()
    assert row[:4] == ["output/smoke", "train", "done", "roadsign_cpu_smoke.yml"] and "1/1" in row
