"""Checks of the benchmark harness itself (pure, no paddle): `pytest benchmarks/test_harness.py`."""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(__file__))

import harness  # noqa: E402

# a line as paddledet 2.6.0's LogPrinter writes it (copied from a real run's output)
LINE = ("[11/23 15:17:47] ppdet.engine INFO: Epoch: [0] [ 1/10] learning_rate: 0.000044 loss_xy: 9.927843 "
        "loss_wh: 18.750340 loss_obj: 1597.049927 loss_cls: 11.360596 loss: 1637.088745 eta: 0:01:12 "
        "batch_cost: 9.2409 data_cost: 0.0107 ips: 0.2164 images/s")


def test_parse_iterations_reads_ppdet_log_lines():
    its = harness.parse_iterations([(0.5, "[trainctl worker] task train"), (12.25, LINE)])
    assert len(its) == 1
    it = its[0]
    assert (it.epoch, it.step, it.steps) == (0, 1, 10)
    assert it.batch_cost == 9.2409 and it.ips == 0.2164 and it.arrived == 12.25


def test_run_timed_measures_lines_exit_code_and_own_rss():
    # b"\1" * n writes every page (a zeroed bytearray may stay untouched, outside RSS); the sleep
    # after it gives the 20 ms poller samples of the peak before the process exits
    code = ("import time; print('a', flush=True); time.sleep(0.3); x = b'\\1' * (64 << 20); time.sleep(0.2); "
            "print('b'); raise SystemExit(3)")
    r = harness.run_timed([sys.executable, "-c", code], poll_rss=True)
    assert r.exit_code == 3
    assert [line for _, line in r.lines] == ["a", "b"]
    assert r.lines[1][0] - r.lines[0][0] >= 0.25  # arrival times are real
    assert r.wall >= 0.3
    assert r.peak_rss_mb is not None and r.peak_rss_mb >= 64  # VmHWM of that process saw the 64 MiB


def test_run_timed_rss_is_the_process_not_its_children():
    child = "x = b'\\1' * (200 << 20); import time; time.sleep(0.5)"  # every page written
    code = f"import subprocess, sys; subprocess.run([sys.executable, '-c', {child!r}])"
    r = harness.run_timed([sys.executable, "-c", code], poll_rss=True)
    assert r.exit_code == 0
    assert r.peak_rss_mb < 100  # the parent stays small ...
    assert r.tree_maxrss_mb >= 200  # ... while wait4's maxrss includes the child


def test_match_detections_tolerates_small_differences_only():
    ref = {"a.png": [{"class_id": 1, "score": 0.50, "box": [10, 10, 50, 50]},
                     {"class_id": 0, "score": 0.20, "box": [60, 60, 90, 90]}]}
    close = {"a.png": [{"class_id": 1, "score": 0.50004, "box": [10, 10, 50.2, 50]},
                       {"class_id": 0, "score": 0.20001, "box": [60, 60, 90, 90]}]}
    result = harness.match_detections(close, ref, score_rtol=1e-3, iou_min=0.95)
    assert result["same"] and result["compared"] == 4
    other_class = {"a.png": [dict(ref["a.png"][0], class_id=2), ref["a.png"][1]]}
    result = harness.match_detections(other_class, ref, score_rtol=1e-3, iou_min=0.95)
    assert not result["same"] and len(result["problems"]) == 2
    shifted = {"a.png": [dict(ref["a.png"][0], box=[30, 30, 70, 70]), ref["a.png"][1]]}
    assert not harness.match_detections(shifted, ref, score_rtol=1e-3, iou_min=0.95)["same"]
    off_score = {"a.png": [dict(ref["a.png"][0], score=0.51), ref["a.png"][1]]}
    assert not harness.match_detections(off_score, ref, score_rtol=1e-3, iou_min=0.95)["same"]
    # only the top_k rows of each side must match; the rest may differ
    extra = {"a.png": ref["a.png"] + [{"class_id": 3, "score": 0.01, "box": [0, 0, 5, 5]}]}
    assert harness.match_detections(extra, ref, top_k=2)["same"]
    assert not harness.match_detections(extra, ref, top_k=3)["same"]
    # nothing to compare is not "the same"
    assert not harness.match_detections({"a.png": []}, {"a.png": []})["same"]


def test_the_committed_results_render_to_their_committed_table():
    """run.py's report renderer reads every field the suite writes: the newest committed
    results/<date>.json renders to exactly the table committed beside it."""
    import glob
    import json

    import run

    newest = sorted(p for p in glob.glob(os.path.join(os.path.dirname(__file__), "results", "*.json")))[-1]
    with open(newest) as f:
        results = json.load(f)
    with open(newest[: -len(".json")] + ".md") as f:
        table = f.read()
    assert run.render_markdown(results) == table
    for case in ("CLI latency", "Launcher memory", "Launch overhead", "Training throughput", "Inference vs dynamic graph",
                 "Inference vs bare Paddle Inference loop", "Same detections"):
        assert f"| {case}" in table, case
