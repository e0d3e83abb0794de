"""A two-node job (two network namespaces joined by a veth pair) where one node dies.

Each namespace runs `trainctl train --nnodes 2 --node-rank R --master A:P --net tcp
--ifname IF --host ADDR` on the shared sample, two "machines" on one host. When
training is under way, every process in node 1's namespace gets SIGKILL (a
machine losing power). Node 0 must then exit non-zero by itself within a bound,
leaving no process behind, instead of waiting for its peer forever.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import processes_matching, terminate_all, wait_for
from netns_pair import NetnsPair

pytestmark = [pytest.mark.paddle, pytest.mark.netns]

SMOKE = "roadsign_cpu_smoke.yml"
PEER_LOSS_SECONDS = int(os.environ.get("TRAINCTL_TEST_PEER_LOSS_S", "120"))  # node 0 has exited this long after node 1 died


@pytest.fixture
def pair():
    with NetnsPair() as pair:
        yield pair


def _start_node(pair: NetnsPair, rank: int, work: Path, port: int) -> subprocess.Popen:
    env = dict(os.environ)
    env.pop("TRAINCTL_DEBUG", None)
    netns_exec, node_flags = pair.node_argv(rank, port)
    args = [*netns_exec, sys.executable, "-m", "trainctl", "train", "-c", SMOKE,
            "--output", str(work / f"node{rank}"), "-o", "epoch=60", "-o", "snapshot_epoch=1000", *node_flags]
    return subprocess.Popen(args, cwd=work, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            stdin=subprocess.DEVNULL)


@pytest.mark.parametrize("how", ["killed", "power-loss"])
def test_node_lost_mid_training_ends_the_other_node(pair, work, how, record_property):
    """killed: node 1's processes die (its kernel closes the connections: node 0 sees a reset).
    power-loss: node 1 drops off the network first, then dies; nothing tells node 0."""
    port = 20000 + os.getpid() % 20000
    nodes = [_start_node(pair, 0, work, port), _start_node(pair, 1, work, port)]
    run0 = work / "node0"
    try:
        log0 = run0 / "logs" / "node0" / "workerlog.0"  # multi-node runs log per node
        wait_for(lambda: log0.exists() and "Epoch: [" in log0.read_text(errors="replace"), 400,
                 "the two-node job to train")
        killed_at = time.monotonic()
        if how == "power-loss":
            pair.cut(1)
        pair.kill_all(1)  # node 1's trainctl, launcher and worker: a machine gone
        try:
            out, err = nodes[0].communicate(timeout=PEER_LOSS_SECONDS + 60)
        except subprocess.TimeoutExpired:
            out, err = "", ""
        seconds = time.monotonic() - killed_at
        exited = nodes[0].returncode is not None
        record_property("node0_exit_after_peer_loss_s", round(seconds, 1) if exited else None)
        assert exited, f"node 0 still running {seconds:.0f}s after node 1 died"
        leftovers = processes_matching(str(run0))
    finally:
        terminate_all(nodes)
        for pid, _ in processes_matching(str(work)):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    assert nodes[0].returncode not in (0, None), err[-3000:]
    assert seconds <= PEER_LOSS_SECONDS, f"node 0 took {seconds:.0f}s to give up"
    own = [line for line in err.splitlines() if not line.startswith("  | ")]  # "  | " lines: the worker's log tail
    assert not any("Traceback" in line for line in own), err[-3000:]
    errors = [line for line in own if line.startswith("trainctl: error:")]
    assert errors and "rank 0" in errors[-1], err[-3000:]
    assert "  | " in err  # the failed worker's log tail is shown
    assert leftovers == [], leftovers
