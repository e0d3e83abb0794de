"""Measurement primitives for the benchmark suite (no paddle here).

`run_timed` starts one command and measures it from outside, the way a user
experiences it: wall time from just before the process is created to its
exit (time.perf_counter), the arrival time of every output line (so "first
logged training iteration" is the moment that line reaches us), the peak RSS
of that one process (VmHWM from /proc/<pid>/status, polled while it runs:
the launcher's own memory, not its children's) and its rusage from wait4
(CPU time and the peak RSS of the biggest process in its tree).
"""

from __future__ import annotations

import os
import re
import signal
import statistics
import subprocess
import threading
import time
from dataclasses import asdict, dataclass, field

# ppdet's LogPrinter (ppdet/engine/callbacks.py, paddledet 2.6.0):
# "Epoch: [0] [ 3/13] learning_rate: ... batch_cost: 1.2345 data_cost: 0.0012 ips: 1.6201 images/s"
ITERATION_RE = re.compile(
    r"Epoch: \[(?P<epoch>\d+)\]\s*\[\s*(?P<step>\d+)/\s*(?P<steps>\d+)\]"
    r".*?batch_cost: (?P<batch_cost>[\d.]+)"
    r".*?ips: (?P<ips>[\d.]+) images/s"
)


@dataclass
class Iteration:
    epoch: int
    step: int
    steps: int
    batch_cost: float  # seconds; with log_iter=1 ppdet's window holds only this iteration
    ips: float
    arrived: float  # seconds after process start when the line reached us


@dataclass
class TimedRun:
    argv: list[str]
    exit_code: int
    wall: float  # seconds, process creation to exit
    lines: list[tuple[float, str]] = field(default_factory=list)  # (seconds after start, text)
    peak_rss_mb: float | None = None  # VmHWM of the started process itself
    tree_maxrss_mb: float | None = None  # ru_maxrss from wait4: biggest process of the tree
    cpu_seconds: float | None = None  # user + sys of the process and its waited-for children
    timed_out: bool = False

    def text(self) -> str:
        return "\n".join(line for _, line in self.lines)

    def tail(self, n: int = 15) -> str:
        return "\n".join(line for _, line in self.lines[-n:])

    def first_arrival(self, pattern: re.Pattern | str) -> float | None:
        rx = re.compile(pattern) if isinstance(pattern, str) else pattern
        for t, line in self.lines:
            if rx.search(line):
                return t
        return None

    def iterations(self) -> list[Iteration]:
        return parse_iterations(self.lines)

    def summary(self) -> dict:
        d = asdict(self)
        d.pop("lines")
        return d


def parse_iterations(lines: list[tuple[float, str]]) -> list[Iteration]:
    out = []
    for arrived, line in lines:
        m = ITERATION_RE.search(line)
        if m:
            out.append(Iteration(int(m["epoch"]), int(m["step"]), int(m["steps"]), float(m["batch_cost"]),
                                 float(m["ips"]), arrived))
    return out


def read_vmhwm_kb(pid: int, proc_root: str = "/proc") -> int | None:
    """Peak resident set size (kB) of one process, or None once it is gone or a zombie."""
    try:
        with open(f"{proc_root}/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


class _RssPoller(threading.Thread):
    def __init__(self, pid: int, interval: float):
        super().__init__(daemon=True)
        self.pid, self.interval = pid, interval
        self.peak_kb: int | None = None
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            kb = read_vmhwm_kb(self.pid)
            if kb is not None and (self.peak_kb is None or kb > self.peak_kb):
                self.peak_kb = kb
            self.stop.wait(self.interval)


def run_timed(argv: list[str], cwd: str | None = None, env: dict[str, str] | None = None, timeout: float = 900.0,
              poll_rss: bool = False, rss_interval: float = 0.02, keep_output: bool = True) -> TimedRun:
    """Run argv to completion and measure it (see the module docstring).

    On timeout the process gets SIGTERM (trainctl forwards it to its workers and
    cleans up), then SIGKILL to its process group after 20 s.
    """
    lines: list[tuple[float, str]] = []
    start = time.perf_counter()
    proc = subprocess.Popen(argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, start_new_session=True)
    poller = _RssPoller(proc.pid, rss_interval) if poll_rss else None
    if poller:
        poller.start()

    def pump() -> None:
        for raw in iter(proc.stdout.readline, b""):
            now = time.perf_counter() - start
            if keep_output:
                lines.append((now, raw.decode("utf-8", "replace").rstrip("\n")))
        proc.stdout.close()

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()

    timed_out = False
    deadline = start + timeout

    def watchdog() -> None:
        nonlocal timed_out
        while proc.returncode is None and time.perf_counter() < deadline:
            time.sleep(0.2)
        if proc.returncode is None:
            timed_out = True
            try:
                os.kill(proc.pid, signal.SIGTERM)
                time.sleep(20)
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    dog = threading.Thread(target=watchdog, daemon=True)
    dog.start()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if poller:
        poller.stop.set()
        poller.join()
    reader.join(timeout=30)
    return TimedRun(
        argv=list(argv), exit_code=proc.returncode, wall=wall, lines=lines,
        peak_rss_mb=(poller.peak_kb / 1024.0) if poller and poller.peak_kb is not None else None,
        tree_maxrss_mb=usage.ru_maxrss / 1024.0, cpu_seconds=usage.ru_utime + usage.ru_stime, timed_out=timed_out,
    )


def median(values: list[float]) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def spread(values: list[float]) -> dict:
    """median, min, max and all samples, for the JSON record."""
    values = [v for v in values if v is not None]
    if not values:
        return {"median": None, "min": None, "max": None, "n": 0, "samples": []}
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "n": len(values),
            "samples": [round(v, 6) for v in values]}


def load_average() -> tuple[float, float, float]:
    return os.getloadavg()


def wait_for_quiet(max_load: float, max_wait: float, log=print) -> float:
    """Wait (up to max_wait seconds) until the 1-minute load average is below max_load; return it."""
    deadline = time.monotonic() + max_wait
    load = os.getloadavg()[0]
    while load >= max_load and time.monotonic() < deadline:
        log(f"  load average {load:.2f} >= {max_load}: waiting")
        time.sleep(10)
        load = os.getloadavg()[0]
    return load


def _iou(a: list[float], b: list[float]) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else (1.0 if list(a) == list(b) else 0.0)


def match_detections(ours: dict[str, list[dict]], reference: dict[str, list[dict]], top_k: int = 20,
                     score_rtol: float = 1e-3, score_atol: float = 0.0, iou_min: float = 0.95) -> dict:
    """Compare two detection sets image by image.

    ours / reference: {image file name: [{"class_id", "score", "box": [x1, y1, x2, y2]}]}.
    Each of the top_k detections (by score) of either side must have a partner
    among all detections of the other side: same class, score within
    score_atol + score_rtol * score, IoU >= iou_min. Searching all rows of the
    other side lets near-equal scores swap places around rank top_k.
    """
    def close(a: dict, b: dict) -> bool:
        tol = score_atol + score_rtol * max(abs(a["score"]), abs(b["score"]))
        return a["class_id"] == b["class_id"] and abs(a["score"] - b["score"]) <= tol and _iou(a["box"], b["box"]) >= iou_min

    compared, max_rel, min_iou = 0, 0.0, 1.0
    problems = []
    names = sorted(set(ours) | set(reference))
    for name in names:
        a, b = ours.get(name, []), reference.get(name, [])
        for side, other, label in ((a, b, "ours"), (b, a, "reference")):
            for d in sorted(side, key=lambda d: -d["score"])[:top_k]:
                partner = next((o for o in other if close(d, o)), None)
                if partner is None:
                    problems.append(f"{name}: no partner for {label} class {d['class_id']} score {d['score']:.6g} box "
                                    f"{[round(v, 1) for v in d['box']]}")
                    continue
                compared += 1
                denom = max(abs(d["score"]), abs(partner["score"])) or 1.0
                max_rel = max(max_rel, abs(d["score"] - partner["score"]) / denom)
                min_iou = min(min_iou, _iou(d["box"], partner["box"]))
    return {"top_k": top_k, "score_rtol": score_rtol, "score_atol": score_atol, "iou_min": iou_min,
            "images": len(names), "ours_rows": sum(len(v) for v in ours.values()),
            "reference_rows": sum(len(v) for v in reference.values()), "compared": compared,
            "max_relative_score_diff": max_rel, "min_iou": min_iou if compared else None,
            "same": compared > 0 and not problems, "problems": problems[:20]}


def compare_detections(ours: dict[str, list[dict]], reference: dict[str, list[dict]], score_atol: float = 1e-4,
                       score_rtol: float = 1e-3, iou_min: float = 0.99, threshold: float | None = None) -> dict:
    """Are two detection sets the same? One to one, image by image (or frame by frame).

    ours / reference: {image or frame name: [{"class_id", "score", "box": [x1, y1, x2, y2]}]},
    compared in the order of ours' keys (then any only in reference): the first image with a
    difference is the first reported. Within an image, rows are taken by falling score and each is
    paired with an unused row of the other side that has the same class, a score within
    score_atol + score_rtol * score and IoU >= iou_min (the best IoU among those): the order in
    which either side lists its rows, or its images, does not matter. A row left without a partner
    is a difference, unless `threshold` is given and its score is within the tolerance of it
    (kept by one side's `>=` and dropped by the other's `>`): those are counted as borderline.
    Nothing to compare (no row on either side) is not "the same".
    """
    def tol(a: float, b: float) -> float:
        return score_atol + score_rtol * max(abs(a), abs(b))

    def show(d: dict) -> str:
        return f"class {d['class_id']} score {d['score']:.6f} box {[round(float(v), 2) for v in d['box']]}"

    names = list(ours) + [name for name in reference if name not in ours]
    matched, borderline, max_diff, min_iou = 0, 0, 0.0, 1.0
    unmatched = {"ours": 0, "reference": 0}
    problems: list[str] = []
    first = None
    for name in names:
        a = sorted(ours.get(name, []), key=lambda d: -d["score"])
        unused = sorted(reference.get(name, []), key=lambda d: -d["score"])
        left: list[tuple[str, dict, list[dict]]] = []
        for d in a:
            fits = [(_iou(d["box"], o["box"]), o) for o in unused
                    if o["class_id"] == d["class_id"] and abs(o["score"] - d["score"]) <= tol(d["score"], o["score"])]
            fits = [(iou, o) for iou, o in fits if iou >= iou_min]
            if not fits:
                left.append(("ours", d, reference.get(name, [])))
                continue
            iou, o = max(fits, key=lambda f: (f[0], -abs(f[1]["score"] - d["score"])))
            unused.remove(o)
            matched += 1
            max_diff = max(max_diff, abs(o["score"] - d["score"]))
            min_iou = min(min_iou, iou)
        left += [("reference", o, ours.get(name, [])) for o in unused]
        for side, d, other in left:
            if threshold is not None and abs(d["score"] - threshold) <= tol(d["score"], threshold):
                borderline += 1
                continue
            unmatched[side] += 1
            same_class = [o for o in other if o["class_id"] == d["class_id"]]
            nearest = max(same_class, key=lambda o: _iou(d["box"], o["box"]), default=None)
            near = (f"; nearest of the same class on the other side: {show(nearest)}, IoU "
                    f"{_iou(d['box'], nearest['box']):.4f}" if nearest else "; no row of that class on the other side")
            problems.append(f"{name}: {side} {show(d)} has no partner{near}")
            if first is None:
                first = name
    return {"images": len(names), "ours_rows": sum(len(v) for v in ours.values()),
            "reference_rows": sum(len(v) for v in reference.values()), "matched": matched,
            "unmatched_ours": unmatched["ours"], "unmatched_reference": unmatched["reference"], "borderline": borderline,
            "max_score_diff": max_diff if matched else None, "min_iou": min_iou if matched else None,
            "score_atol": score_atol, "score_rtol": score_rtol, "iou_min": iou_min, "threshold": threshold,
            "same": matched > 0 and not problems, "first_difference": first, "problems": problems[:20]}
