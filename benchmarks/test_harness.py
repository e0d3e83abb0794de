"""Checks of the benchmark harness itself (pure, no paddle): `pytest benchmarks/test_harness.py`."""

from __future__ import annotations

import os
import sys
from pathlib import Path

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

    newest = sorted(p for p in glob.glob(os.path.join(os.path.dirname(__file__), "results", "[0-9]*.json")))[-1]
    with open(newest) as f:
        results = json.load(f)
    with open(newest[: -len(".json")] + ".md") as f:
        table = f.read()
    assert run.render_markdown(results) == table
    for case in ("CLI latency", "Launcher memory", "Launch overhead", "Training throughput", "Inference vs dynamic graph",
                 "Inference vs bare Paddle Inference loop", "Same detections"):
        assert f"| {case}" in table, case


def _rows(*specs):
    return [{"class_id": c, "score": s, "box": list(b)} for c, s, b in specs]


REF = {"a.png": _rows((1, 0.50, (10, 10, 50, 50)), (0, 0.20, (60, 60, 90, 90)), (1, 0.20, (10, 60, 40, 90))),
       "b.png": _rows((2, 0.91, (5, 5, 100, 80))),
       "c.png": []}


def test_compare_detections_equal_inputs_are_the_same_in_any_order():
    result = harness.compare_detections(REF, REF, threshold=0.1)
    assert result["same"] and result["matched"] == 4 and result["first_difference"] is None
    # images listed in another order, rows in another order, float noise far below the tolerance
    shuffled = {"c.png": [], "b.png": REF["b.png"],
                "a.png": [dict(d, score=d["score"] + 2e-6) for d in reversed(REF["a.png"])]}
    result = harness.compare_detections(shuffled, REF, threshold=0.1)
    assert result["same"] and result["matched"] == 4 and result["max_score_diff"] < 1e-5


def test_compare_detections_a_shifted_box_is_a_difference_naming_its_image():
    shifted = dict(REF, **{"b.png": _rows((2, 0.91, (9, 5, 104, 80)))})  # 4 px to the right: IoU 0.919
    result = harness.compare_detections(shifted, REF)
    assert not result["same"] and result["first_difference"] == "b.png"
    assert (result["unmatched_ours"], result["unmatched_reference"]) == (1, 1)
    assert result["problems"][0].startswith("b.png: ours class 2 score 0.910000") and "IoU 0.9192" in result["problems"][0]
    # the same count of rows is not enough: equal counts with other values differ
    swapped = dict(REF, **{"a.png": _rows((1, 0.50, (10, 10, 50, 50)), (1, 0.20, (60, 60, 90, 90)), (0, 0.20, (10, 60, 40, 90)))})
    result = harness.compare_detections(swapped, REF)
    assert not result["same"] and result["first_difference"] == "a.png" and result["ours_rows"] == result["reference_rows"]


def test_compare_detections_missing_rows_other_scores_and_borderline_rows():
    missing = dict(REF, **{"a.png": REF["a.png"][:2]})
    result = harness.compare_detections(missing, REF)
    assert not result["same"] and result["unmatched_reference"] == 1 and result["first_difference"] == "a.png"
    off = dict(REF, **{"b.png": _rows((2, 0.905, (5, 5, 100, 80)))})  # 0.5 % off the score
    assert not harness.compare_detections(off, REF)["same"]
    # a row at the threshold itself, kept by one side (>=) and not by the other (>): borderline, not a difference
    edge = dict(REF, **{"b.png": REF["b.png"] + _rows((3, 0.50002, (0, 0, 9, 9)))})
    result = harness.compare_detections(edge, REF, threshold=0.5)
    assert result["same"] and result["borderline"] == 1
    assert not harness.compare_detections(edge, REF)["same"]  # without a threshold it is a difference
    # nothing on either side is not "the same": nothing was compared
    assert not harness.compare_detections({"c.png": []}, {"c.png": []})["same"]


def _deploy_results(dir_check: dict, video_check: dict) -> dict:
    """A results file with only the deploy case, around two detection checks (timings made up)."""
    timing = {"wall_all": {"median": 5.0}, "wall_few": {"median": 1.0}, "per_s": 7.0}
    return {"date": "2026-12-02 12:00 UTC", "suite_seconds": 60.0, "load_average_start": [0.1], "load_average_end": [0.2],
            "machine": {"cpus": 2, "cpu_model": "test", "memory_gib": 1, "versions": {}, "git_commit": None},
            "settings": {"repeats": 1, "quick": True, "goals": {"deploy_vs_peer": 1.0}},
            "cases": {"deploy": {"size": 224, "threshold": 0.5, "images": 3, "repeats": 1, "method": "m",
                                 "trainctl_dir": timing, "peer_dir": timing, "trainctl_video": timing, "peer_video": timing,
                                 "dir_vs_peer": 1.0, "dir_goal_met": True, "video_vs_peer": 1.0, "video_goal_met": True,
                                 "detections": {"dir": dir_check, "video": video_check},
                                 "slice": {"image": "896x896", "seconds_per_tile": 0.3, "wall_16_tiles": {"median": 6.0},
                                           "wall_4_tiles": {"median": 2.4}}}}}


def test_deploy_check_reads_trainctl_files_and_the_verdict_follows_the_detections(tmp_path):
    """The deploy case's equality check end to end, from the files trainctl infer writes to the table:
    the peer's rows in another order -> met; one box shifted -> missed, naming that image."""
    import json

    import run

    peer = {"a.png": REF["a.png"][::-1], "b.png": REF["b.png"], "c.png": []}
    detections = [dict(d, file=f"/data/{name}", class_name="x") for name in ("b.png", "a.png") for d in REF[name]]
    (tmp_path / "dir").mkdir()
    (tmp_path / "dir" / "detections.json").write_text(json.dumps(
        {"images": ["/data/c.png", "/data/b.png", "/data/a.png"], "detections": detections}))
    frames = [{"frame": i, "detections": REF[name]} for i, name in enumerate(("a.png", "b.png", "c.png"))]
    (tmp_path / "video").mkdir()
    (tmp_path / "video" / "clip.jsonl").write_text("".join(json.dumps(f) + "\n" for f in frames))
    peer_frames = {f"frame {i}": rows for i, rows in enumerate((REF["a.png"], REF["b.png"], []))}

    same_dir = run.deploy_same(peer, tmp_path / "dir", "dir", 0.1)
    same_video = run.deploy_same(peer_frames, tmp_path / "video", "video", 0.1)
    assert same_dir["same"] and same_dir["matched"] == 4 and same_video["same"] and same_video["matched"] == 4
    table = run.render_markdown(_deploy_results(same_dir, same_video))
    rows = [line for line in table.splitlines() if line.startswith("| Deployment")]
    assert len(rows) == 2 and all(row.endswith("| **met** |") for row in rows), rows
    assert "4 vs 4, 4 matched" in rows[0]

    shifted_peer = dict(peer, **{"b.png": _rows((2, 0.91, (9, 5, 104, 80)))})
    differs = run.deploy_same(shifted_peer, tmp_path / "dir", "dir", 0.1)
    assert not differs["same"] and differs["first_difference"] == "b.png"
    table = run.render_markdown(_deploy_results(differs, same_video))
    rows = [line for line in table.splitlines() if line.startswith("| Deployment")]
    assert rows[0].endswith("| **missed** |") and rows[1].endswith("| **met** |"), rows
    assert "the first in b.png: b.png: ours class 2 score 0.910000" in table


def test_a_case_that_cannot_run_is_reported_and_the_others_are_written(tmp_path, monkeypatch):
    """--work and --results are created; a case that cannot run (no peer tree) is 'not run: why' in the
    table, and a case measured before it is still in the results, written after every case."""
    import argparse
    import json

    import run

    committed = json.loads((Path(__file__).parent / "results" / "2026-11-23.json").read_text())
    saved = []

    def fake_cli(self):
        self.results["cases"]["cli"] = committed["cases"]["cli"]

    monkeypatch.setattr(run.Suite, "case_cli", fake_cli)
    args = argparse.Namespace(python=sys.executable, trainctl="trainctl", work=str(tmp_path / "w" / "x"), repeats=1,
                              quick=True, sizes=None, threshold=0.5, infer_batch=1, sweep=False,
                              peer_dir=str(tmp_path / "no-such-tree"))
    Path(args.work).mkdir(parents=True)
    suite = run.Suite(args)
    results = suite.run_cases(["cli", "deploy"], save=lambda r: saved.append(run.render_markdown(r)))
    assert len(saved) == 2  # after each case
    assert results["cases"]["deploy"] == {"not_run": f"no PaddleDetection deploy/python (infer.py) at --peer-dir "
                                                      f"{tmp_path / 'no-such-tree'}"}
    table = saved[-1]
    assert "| CLI latency: `trainctl --help` | 0.101 s |" in table
    assert "| Deployment vs PaddleDetection's deploy/python/infer.py | not run: no PaddleDetection deploy/python" in table

    # main(): directories that do not exist yet are made, the results are written, the exit status says a case did not run
    work, out = tmp_path / "new" / "work", tmp_path / "new" / "results"
    code = run.main(["--cases", "deploy", "--quick", "--work", str(work), "--results", str(out),
                     "--trainctl", sys.executable, "--peer-dir", str(tmp_path / "no-such-tree")])
    assert code == 1 and work.is_dir()
    written = list(out.glob("*.md"))
    assert len(written) == 1 and "**not run**" in written[0].read_text()
    assert json.loads(written[0].with_suffix(".json").read_text())["cases"]["deploy"]["not_run"]


def test_overhead_case_cuts_start_to_first_iteration_in_three(monkeypatch):
    """Launcher, worker to Trainer ready, ready to first iteration: from the lines' arrival times."""
    import argparse

    import run

    def timed(lines):
        return harness.TimedRun(argv=[], exit_code=0, wall=30.0, lines=lines)

    ours = [timed([(0.1 + d, "$ python -m trainctl.runner.worker --job j"), (2.3 + d, "[trainctl worker] no pretrained weights: x"),
                   (2.9 + d, LINE)]) for d in (0.0, 0.2, 0.1)]
    theirs = [timed([(2.2 + d, "[baseline] trainer ready"), (2.7 + d, LINE)]) for d in (0.0, 0.2, 0.3)]
    monkeypatch.setattr(run.Suite, "training_pairs", lambda self: (ours, theirs))
    args = argparse.Namespace(python=sys.executable, trainctl="trainctl", work=".", repeats=3, quick=False, sizes=None)
    suite = run.Suite(args)
    suite.case_overhead()
    x = suite.results["cases"]["overhead"]
    assert abs(x["extra_seconds"] - 0.1) < 1e-9 and x["goal_met"]  # 3.0 s vs 2.9 s: within +0.2 s
    assert abs(x["trainctl_worker_to_ready_seconds"]["median"] - 2.2) < 1e-9
    assert abs(x["trainctl_ready_to_first_iteration_seconds"]["median"] - 0.6) < 1e-9
    assert abs(x["baseline_ready_to_first_iteration_seconds"]["median"] - 0.5) < 1e-9
    assert run.overhead_goal_met(run.GOALS, 1.2, 0.25) is False
    assert run.overhead_goal_met({"overhead_ratio": 1.05, "overhead_extra_s": 1.0}, 1.2, 0.9) is True  # the old goals
