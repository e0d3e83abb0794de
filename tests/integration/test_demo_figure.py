"""The demo's figure, checked in CI: the demo recipe (roadsign_demo.yml on the demo's sample set, seed 0),
stopped after its first epochs to fit CI, reaches the VOC mAP@0.5 claimed below; then `eval --classwise`
on its best model gives one row per class, a PR curve PNG per class, and per-class APs whose mean is the
reported mAP. The whole demo's figure (scripts/demo.sh) is in docs/demo.md."""

from __future__ import annotations

import json

import pytest

pytestmark = [pytest.mark.paddle, pytest.mark.slow]

# The demo's first epochs: the same recipe, seed and schedule (cosine over all the demo's 16 epochs),
# stopped early, in the demo's environment (OMP_NUM_THREADS as the user has it: the demo sets none).
# Measured after 6 epochs of the whole demo (scripts/demo.sh), each the same to the hundredth when repeated
# on its machine: 28.87 % on a 2-core Intel Xeon (2026-12-01; 3.25, 23.38, 28.87 % after epochs 2, 4, 6) and
# 16.14 % on a 2-core AMD EPYC (2026-12-02; 2.95, 7.84, 16.14 %). Another thread count or CPU takes another
# path from the first steps on, so the claim is what every measured CPU reached with a margin, and far
# above a model that learned nothing (0 to 3 % after the first 2 epochs).
# EPOCHS: DEMO_EPOCHS in conftest.py, whose session fixture `demo_run` trains it (shared with test_onnx.py)
CLAIM = 0.10
CLASSES = ["speedlimit", "crosswalk", "trafficlight", "stop"]


def test_shortened_demo_recipe_reaches_its_figure(demo_run):
    _, run_dir = demo_run
    index = json.loads((run_dir / "checkpoints.json").read_text())
    curve = [(e["epoch"], round(100 * e["results"]["bbox"], 2)) for e in index["evals"]]
    best = max(e["results"]["bbox"] for e in index["evals"])
    assert best >= CLAIM, f"best VOC mAP {100 * best:.2f}% < claimed {100 * CLAIM:.0f}%; curve {curve}"


def test_classwise_rows_curves_and_mean(demo_run, ptools):
    work, run_dir = demo_run
    out = work / "eval-classwise"
    proc = ptools.run_cli(["eval", "-c", "roadsign_demo.yml", "--weights", str(run_dir / "best_model"), "--classwise", "--output", str(out)], work)
    assert proc.returncode == 0, proc.stderr[-3000:]
    data = json.loads((out / "classwise.json").read_text())
    assert [row["class"] for row in data["classes"]] == CLASSES  # one row per class, in label order
    table = [line.split() for line in proc.stdout.splitlines() if line.split()[:1] and line.split()[0] in CLASSES]
    assert [row[0] for row in table] == CLASSES
    for name in CLASSES:
        png = out / "pr_curves" / f"{name}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    reported = json.loads((out / "eval.json").read_text())["results"]["bbox"]
    mean = sum(row["ap"] for row in data["classes"]) / len(data["classes"])
    assert mean == pytest.approx(reported, abs=1e-9)  # VOC: the per-class APs average to the mAP
    best = json.loads((run_dir / "checkpoints.json").read_text())["best"]["results"]["bbox"]
    assert reported == pytest.approx(best, abs=1e-6)  # the same weights, the same figure as during training
