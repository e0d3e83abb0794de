"""Two "hosts" on one machine: two network namespaces joined by a veth pair.

    namespace <prefix><tag>0: veth <tag>a  10.N.M.1/24
    namespace <prefix><tag>1: veth <tag>b  10.N.M.2/24

Shared by every test that needs two machines (multi-node training, node failures,
Kubernetes pods, smoke runs). Names and the subnet are random per pair, so tests (and
developers' runs) in parallel do not collide. Needs root and iproute2:
`NetnsPair.skip_unless_possible()` skips the test otherwise.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import uuid

import pytest


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], check=check, capture_output=True, text=True, timeout=30)


class NetnsPair:
    """Two namespaces, veth ends `<tag>a`/`<tag>b` holding 10.<second>.N.1 and 10.<second>.N.2."""

    def __init__(self, prefix: str = "tcrel", second_octet: int = 233) -> None:
        tag = uuid.uuid4().hex[:6]
        self.ns = [f"{prefix}{tag}0", f"{prefix}{tag}1"]
        self.ifname = [f"tr{tag}a", f"tr{tag}b"]
        net = 1 + int(tag[:4], 16) % 250
        self.addr = [f"10.{second_octet}.{net}.1", f"10.{second_octet}.{net}.2"]

    @staticmethod
    def skip_unless_possible() -> None:
        if os.geteuid() != 0:
            pytest.skip("needs root for network namespaces")
        if shutil.which("ip") is None:
            pytest.skip("needs iproute2 (ip)")

    def __enter__(self) -> "NetnsPair":
        self.skip_unless_possible()
        try:
            self.up()
        except BaseException:
            self.down()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.down()

    def up(self) -> None:
        for ns in self.ns:
            _ip("netns", "add", ns)
            _ip("-n", ns, "link", "set", "lo", "up")
        _ip("link", "add", self.ifname[0], "type", "veth", "peer", "name", self.ifname[1])
        for i in (0, 1):
            _ip("link", "set", self.ifname[i], "netns", self.ns[i])
            _ip("-n", self.ns[i], "addr", "add", f"{self.addr[i]}/24", "dev", self.ifname[i])
            _ip("-n", self.ns[i], "link", "set", self.ifname[i], "up")

    def node_argv(self, rank: int, port: int) -> tuple[list[str], list[str]]:
        """`ip netns exec NS`, and the trainctl flags that make namespace `rank` node `rank` of a
        two-node job over TCP (node 0 hosts the master on `port`); the trainctl command goes between."""
        return ["ip", "netns", "exec", self.ns[rank]], [
            "--nnodes", "2", "--node-rank", str(rank), "--master", f"{self.addr[0]}:{port}",
            "--host", self.addr[rank], "--net", "tcp", "--ifname", self.ifname[rank]]

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
