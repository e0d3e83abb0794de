"""Two "hosts" on one machine: two network namespaces joined by a veth pair.

    namespace tcn<id>0: tr<id>a 10.231.N.1/24   (node 0, hosts the master)
    namespace tcn<id>1: tr<id>b 10.231.N.2/24   (node 1)

Each runs the same `trainctl train --nnodes 2 --node-rank R --master 10.231.N.1:PORT
--host IP --net tcp --ifname VETH` (via `ip netns exec`); the filesystem is
shared, as on a cluster with NFS. Names are unique per run; the namespaces
are deleted in the fixture's finally, even when the test fails.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from netns_pair import NetnsPair

pytestmark = [pytest.mark.paddle, pytest.mark.netns]


@pytest.fixture
def two_hosts():
    with NetnsPair(prefix="tcn", second_octet=231) as pair:
        yield [{"netns": pair.ns[i], "ifname": pair.ifname[i], "addr": pair.addr[i]} for i in (0, 1)]


def test_two_nodes_over_tcp_in_network_namespaces(two_hosts, tmp_path):
    from trainctl.data.sample import write_sample_dataset

    write_sample_dataset(tmp_path / "data", images=8, seed=5)
    master = f"{two_hosts[0]['addr']}:8090"
    procs = []
    for rank, host in enumerate(two_hosts):
        argv = ["ip", "netns", "exec", host["netns"], sys.executable, "-m", "trainctl", "train",
                "-c", "roadsign_cpu_smoke.yml", "--nnodes", "2", "--node-rank", str(rank), "--master", master,
                "--host", host["addr"], "--net", "tcp", "--ifname", host["ifname"], "--output", "run",
                "-o", f"TrainDataset.dataset_dir={tmp_path / 'data'}"]
        procs.append(subprocess.Popen(argv, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                      text=True))
    outputs = []
    try:
        for proc in procs:
            outputs.append(proc.communicate(timeout=400)[0])
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
    for rank, (proc, out) in enumerate(zip(procs, outputs)):
        assert proc.returncode == 0, f"node {rank}:\n{out[-4000:]}"
    run = tmp_path / "run"
    assert (run / "model_final.pdparams").stat().st_size > 1_000_000
    assert "rank 0 of 2" in (run / "logs" / "node0" / "workerlog.0").read_text()
    assert "rank 1 of 2" in (run / "logs" / "node1" / "workerlog.0").read_text()
    node0 = json.loads((run / "run.json").read_text())
    node1 = json.loads((run / "run.node1.json").read_text())
    assert node0["status"] == node1["status"] == "done"
    assert node0["net"]["env"]["GLOO_SOCKET_IFNAME"] == two_hosts[0]["ifname"]
    assert node1["net"]["env"]["GLOO_SOCKET_IFNAME"] == two_hosts[1]["ifname"]
    assert f"--host {two_hosts[1]['addr']}" in node1["commands"][1]["command"]
    index = json.loads((run / "checkpoints.json").read_text())
    assert [c["name"] for c in index["checkpoints"]].count("model_final") == 1
