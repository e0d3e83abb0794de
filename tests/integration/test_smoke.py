"""`trainctl smoke` for real on CPU: one process, `--nproc 2`, two nodes in two network namespaces,
a stage broken by an override, and the collective probe's figures.

Kept small for CI: a 10-image sample dataset (8 train: 2 iterations of batch 2 on each of 2
ranks; 2 eval), 2 training iterations at the smoke config's 160-224 px, the inference
benchmark on the 2 eval images, probe sizes 8 KB..4 MB.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest

from netns_pair import NetnsPair

pytestmark = [pytest.mark.paddle, pytest.mark.slow]

CONFIG = "roadsign_cpu_smoke.yml"
SIZES = "8K..4M"


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    from trainctl.data.sample import write_sample_dataset

    work = tmp_path_factory.mktemp("smoke")
    write_sample_dataset(work / "dataset" / "roadsign_voc", images=10, seed=3)
    return work


def _env() -> dict:
    env = dict(os.environ)
    env.pop("TRAINCTL_DEBUG", None)
    env.pop("OMP_NUM_THREADS", None)  # trainctl sets it per worker, as for a user
    return env


def smoke(args: list[str], cwd: Path, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "trainctl", "smoke", *args], cwd=cwd, env=_env(),
                          capture_output=True, text=True, timeout=timeout)


def table_rows(text: str) -> dict[str, str]:
    """stage -> result, from the printed stage table (smoke.txt)."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("stage "))
    rows = {}
    for line in lines[start + 2:]:
        if not line.strip():
            break
        name, result = line.split()[:2]
        rows[name] = result
    return rows


def check_agreement(report: dict, workdir: Path, run_dir: str) -> None:
    """The JSON on stdout, smoke.json and the printed table say the same."""
    saved = json.loads((workdir / report["files"]["json"]).read_text())
    assert saved == report
    text = (workdir / report["files"]["text"]).read_text()
    shown = {"pass": "pass", "fail": "FAIL", "skipped": "skipped", "n/a": "n/a"}
    assert table_rows(text) == {s["name"]: shown[s["status"]] for s in report["stages"]}
    for stage in report["stages"]:
        if stage["status"] in ("pass", "fail"):
            log = workdir / stage["log"]
            assert log.is_file() and stage["seconds"] > 0, stage
            assert stage["command"] in log.read_text().splitlines()[0]
    assert report["environment"]["paddle"] == version("paddlepaddle")
    assert report["environment"]["paddledet"] == version("paddledet")
    assert report["run_dir"] == run_dir


def check_full_chain(report: dict, workdir: Path, world_size: int) -> None:
    names = [s["name"] for s in report["stages"]]
    assert names[-4:] == ["train", "eval", "export", "infer-cpu"], names
    assert report["ok"] is True and report["failed_stage"] is None
    assert all(s["status"] == "pass" for s in report["stages"]), report["stages"]
    train = report["performance"]["train"]
    assert train["iterations"] == 2 and train["world_size"] == world_size and train["images_per_s"] > 0
    infer = report["performance"]["infer"]["infer-cpu"]
    assert infer["device"] == "cpu" and infer["images"] == 4  # 2 eval images, 2 timed passes
    assert all(infer["ms_per_image"][k] > 0 for k in ("preprocess", "inference", "total"))
    assert "oneDNN" in (workdir / report["files"]["text"]).read_text()


def check_probe(comm: dict, world_size: int) -> list[dict]:
    """Sizes as asked; times and bandwidths positive; bus bandwidth by nccl-tests' formula; growth with size."""
    results = comm["results"]
    assert [r["bytes"] for r in results] == [8192 << i for i in range(10)]  # 8 KB .. 4 MB
    assert comm["world_size"] == world_size
    for r in results:
        assert r["correct"] and r["iters"] >= 1 and r["time_us"] > 0
        assert r["algbw_gbps"] == pytest.approx(r["bytes"] / (r["time_us"] * 1e-6) / 1e9, rel=1e-6)
        assert r["busbw_gbps"] == pytest.approx(r["algbw_gbps"] * 2 * (world_size - 1) / world_size, rel=1e-9)
    busbw = [r["busbw_gbps"] for r in results]
    # Grows with size: 8 KB is latency-bound (~0.1 ms per all-reduce idle, 0.01-0.09 GB/s), megabytes move at
    # 0.2-2 GB/s; the best of the 3 largest sizes must be at least twice the 8 KB figure (it was 2.3x to 420x in
    # the sweeps measured here, at load averages 4 to 13 on 2 cores).
    assert max(busbw[-3:]) >= 2 * busbw[0], busbw
    # Monotone-ish: at least 65 % of the size pairs (i < j) have busbw[j] > busbw[i] (Kendall's tau >= 0.3).
    # Not strictly monotone on a shared CPU: a descheduled rank turns a ~0.1 ms operation into a scheduler quantum
    # (1-2 ms) and gloo's larger messages suffer more from it, so the curve may dip after the cache-sized peak
    # (~64 KB-1 MB). Of 10 sweeps measured here at load averages 4 to 13, 9 kept 67-86 % of the pairs in order and
    # one (8 KB..512 KB at load 5) 57 %; a flat curve keeps ~50 %, a falling one less.
    pairs = [(a, b) for i, a in enumerate(busbw) for b in busbw[i + 1:]]
    assert sum(b > a for a, b in pairs) >= 0.65 * len(pairs), busbw
    assert comm["transport"]["backend"] == "gloo"
    return results


def test_smoke_one_process(workdir):
    proc = smoke(["-c", CONFIG, "--iters", "2", "--json", "--output", "out/one"], workdir)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = json.loads(proc.stdout)
    check_agreement(report, workdir, "out/one")
    check_full_chain(report, workdir, world_size=1)
    assert [s["name"] for s in report["stages"]] == ["train", "eval", "export", "infer-cpu"]
    run = workdir / "out" / "one"
    config = (run / "train" / "config.yml").read_text()
    assert "max_iters: 2" in config and "epoch: 1" in config
    assert "lite training: at most 2 iterations" in (run / "train" / "logs" / "workerlog.0").read_text()
    assert (run / "export" / "model.pdmodel").is_file()


def test_smoke_two_processes_with_probe(workdir):
    proc = smoke(["-c", CONFIG, "--iters", "2", "--nproc", "2", "--comm", "--comm-sizes", SIZES, "--json",
                  "--output", "out/two"], workdir)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = json.loads(proc.stdout)
    check_agreement(report, workdir, "out/two")
    check_full_chain(report, workdir, world_size=2)
    assert report["stages"][0]["name"] == "comm"
    check_probe(report["comm"], world_size=2)
    text = (workdir / report["files"]["text"]).read_text()
    assert "busbw (GB/s)" in text and "gloo over TCP" in text
    logs = workdir / "out" / "two" / "train" / "logs"
    assert "rank 1 of 2" in (logs / "workerlog.1").read_text()


def test_smoke_broken_export_stops_the_chain(workdir):
    # export traces TestReader's input shape; [3, 224] (no width) breaks it and nothing before it
    proc = smoke(["-c", CONFIG, "--iters", "1", "--output", "out/broken",
                  "-o", "TestReader.inputs_def.image_shape=[3,224]"], workdir)
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-3000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("trainctl: error:")]
    assert len(errors) == 1 and "smoke failed at stage export" in errors[0], proc.stderr[-2000:]
    report = json.loads((workdir / "out" / "broken" / "smoke.json").read_text())
    assert {s["name"]: s["status"] for s in report["stages"]} == {
        "train": "pass", "eval": "pass", "export": "fail", "infer-cpu": "skipped"}
    assert report["failed_stage"] == "export" and report["ok"] is False
    export = report["stages"][2]
    assert export["exit_code"] not in (0, None) and export["tail"]
    # the printed report names the command and shows the log tail
    assert f"export failed: {export['reason']}" in proc.stdout
    assert f"command: {export['command']}" in proc.stdout and "trainctl export" in export["command"]
    assert all(f"  | {line}" in proc.stdout for line in export["tail"])
    assert table_rows(proc.stdout) == {"train": "pass", "eval": "pass", "export": "FAIL", "infer-cpu": "skipped"}


@pytest.mark.netns
def test_smoke_two_nodes_in_namespaces(workdir):
    with NetnsPair(prefix="tcs7", second_octet=235) as pair:
        master = f"{pair.addr[0]}:8090"
        procs = []
        for rank in (0, 1):
            argv = ["ip", "netns", "exec", pair.ns[rank], sys.executable, "-m", "trainctl", "smoke", "-c", CONFIG,
                    "--iters", "2", "--nnodes", "2", "--node-rank", str(rank), "--master", master,
                    "--host", pair.addr[rank], "--net", "tcp", "--ifname", pair.ifname[rank],
                    "--comm", "--comm-sizes", SIZES, "--json", "--output", "out/nodes"]
            procs.append(subprocess.Popen(argv, cwd=workdir, env=_env(), stdout=subprocess.PIPE,
                                          stderr=subprocess.PIPE, text=True))
        outputs = []
        try:
            for proc in procs:
                outputs.append(proc.communicate(timeout=600))
        finally:
            for proc in procs:
                if proc.poll() is None:
                    proc.kill()
    for rank, (proc, (out, err)) in enumerate(zip(procs, outputs)):
        assert proc.returncode == 0, f"node {rank}:\n{out[-3000:]}\n{err[-3000:]}"
    node0, node1 = (json.loads(out) for out, _ in outputs)
    run = workdir / "out" / "nodes"
    check_agreement(node0, workdir, "out/nodes")
    check_full_chain(node0, workdir, world_size=2)
    assert node0["stages"][0]["name"] == "comm"
    check_probe(node0["comm"], world_size=2)
    assert node0["comm"]["transport"]["devices"] == pair.ifname[0]  # GLOO_SOCKET_IFNAME from --ifname
    assert node0["comm"]["master"] == f"{pair.addr[0]}:8091"  # the probe's own port, next to training's
    # node 1 trains and probes with node 0; evaluation, export and inference are node 0's
    assert {s["name"]: s["status"] for s in node1["stages"]} == {
        "comm": "pass", "train": "pass", "eval": "n/a", "export": "n/a", "infer-cpu": "n/a"}
    assert node1["files"]["json"] == "out/nodes/node1/smoke.json"
    assert (run / "node1" / "smoke.txt").is_file()
    assert "rank 1 of 2" in (run / "train" / "logs" / "node1" / "workerlog.0").read_text()
