"""A two-node job (two network namespaces joined by a veth pair) where one node dies.

Each namespace runs `trainctl train --nnodes 2 --node-rank R --master A:P --net tcp
--ifname IF --host ADDR` on the shared sample, two "machines" on one host. When
training is under way, every process in node 1's namespace gets SIGKILL (a
machine losing power). Node 0 must then exit non-zero by itself within a bound,
leaving no process behind, instead of waiting for its peer forever.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from conftest import processes_matching, wait_for

pytestmark = [pytest.mark.paddle, pytest.mark.netns]

SMOKE = "roadsign_cpu_smoke.yml"
PEER_LOSS_SECONDS = int(os.environ.get("TRAINCTL_TEST_PEER_LOSS_S", "120"))  # node 0 has exited this long after node 1 died


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], check=check, capture_output=True, text=True, timeout=30)


class NetnsPair:
    """Two namespaces, veth ends `<tag>a`/`<tag>b` holding 10.233.N.1 and 10.233.N.2."""

    def __init__(self) -> None:
        tag = uuid.uuid4().hex[:6]
        self.ns = [f"tcrel{tag}0", f"tcrel{tag}1"]
        self.ifname = [f"tr{tag}a", f"tr{tag}b"]
        net = 100 + int(tag[:2], 16) % 100
        self.addr = [f"10.233.{net}.1", f"10.233.{net}.2"]

    def up(self) -> None:
        for ns in self.ns:
            _ip("netns", "add", ns)
            _ip("-n", ns, "link", "set", "lo", "up")
        _ip("link", "add", self.ifname[0], "type", "veth", "peer", "name", self.ifname[1])
        for i in (0, 1):
            _ip("link", "set", self.ifname[i], "netns", self.ns[i])
            _ip("-n", self.ns[i], "addr", "add", f"{self.addr[i]}/24", "dev", self.ifname[i])
            _ip("-n", self.ns[i], "link", "set", self.ifname[i], "up")

    def pids(self, i: int) -> list[int]:
        out = _ip("netns", "pids", self.ns[i], check=False).stdout
        return [int(p) for p in out.split()]

    def kill_all(self, i: int) -> None:
        for pid in self.pids(i):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def cut(self, i: int) -> None:
        """Take node i off the network (no RST or FIN reaches the peer, as when a machine loses power)."""
        _ip("-n", self.ns[i], "link", "set", self.ifname[i], "down")

    def down(self) -> None:
        for i in (0, 1):
            self.kill_all(i)
        for ns in self.ns:
            _ip("netns", "del", ns, check=False)


@pytest.fixture
def pair():
    if os.geteuid() != 0 or shutil.which("ip") is None:
        pytest.skip("needs root and iproute2 for network namespaces")
    pair = NetnsPair()
    try:
        pair.up()
        yield pair
    finally:
        pair.down()


def _start_node(pair: NetnsPair, rank: int, work: Path, port: int) -> subprocess.Popen:
    env = dict(os.environ)
    env.pop("TRAINCTL_DEBUG", None)
    args = ["ip", "netns", "exec", pair.ns[rank], sys.executable, "-m", "trainctl", "train", "-c", SMOKE,
            "--output", str(work / f"node{rank}"), "-o", "epoch=60", "-o", "snapshot_epoch=1000", "--nnodes", "2", "--node-rank", str(rank),
            "--master", f"{pair.addr[0]}:{port}", "--host", pair.addr[rank], "--net", "tcp",
            "--ifname", pair.ifname[rank]]
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
        for proc in nodes:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
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
