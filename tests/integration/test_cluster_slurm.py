"""`--launcher slurm` for real, under a faked srun environment (no Slurm installed here).

One node: the smoke config trains with the placement read from SLURM_* variables.
Two nodes: two network namespaces play the allocation's nodes (their addresses are the
node names, written as a Slurm host list), each runs the same `trainctl train
--launcher slurm` with only SLURM_NODEID differing, as srun would start them.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

import netns_ssh

PY = sys.executable


def _env(**slurm):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "PADDLE_"))}
    env.update(slurm)
    return env


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    work = tmp_path_factory.mktemp("slurm")
    out = subprocess.run([PY, "-m", "trainctl", "data", "sample", "--images", "12"], cwd=work,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return work


@pytest.mark.paddle
def test_single_node_step(workdir):
    env = _env(SLURM_JOB_ID="4242", SLURM_STEP_ID="0", SLURM_JOB_NODELIST="cn[07]", SLURM_NNODES="1",
               SLURM_NODEID="0", SLURM_PROCID="0", SLURM_NTASKS="1", SLURMD_NODENAME="cn07")
    out = subprocess.run([PY, "-m", "trainctl", "train", "-c", "roadsign_cpu_smoke.yml", "--launcher", "slurm",
                          "--device", "cpu", "--output", "output/slurm1"],
                         cwd=workdir, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "Slurm job 4242: node 0 of 1 (cn07)" in out.stderr
    assert (workdir / "output" / "slurm1" / "model_final.pdparams").stat().st_size > 1_000_000


@pytest.mark.netns
@pytest.mark.paddle
def test_two_node_step_in_namespaces(workdir, tmp_path):
    why = netns_ssh.available()
    if why:
        pytest.skip(why)
    cluster = netns_ssh.SshCluster.start(tmp_path / "ns", n=2)
    try:
        a, b = cluster.hosts
        prefix, last = a.addr.rsplit(".", 1)
        nodelist = f"{prefix}.[{last}-{int(last) + 1}]"  # e.g. 10.231.7.[10-11]
        procs = []
        for rank, host in enumerate(cluster.hosts):
            env = _env(SLURM_JOB_ID="777", SLURM_STEP_ID="0", SLURM_JOB_NODELIST=nodelist,
                       SLURM_STEP_NODELIST=nodelist, SLURM_NNODES="2", SLURM_STEP_NUM_NODES="2",
                       SLURM_NODEID=str(rank), SLURM_PROCID=str(rank), SLURM_STEP_NUM_TASKS="2",
                       SLURMD_NODENAME=host.addr)
            procs.append(subprocess.Popen(
                ["ip", "netns", "exec", host.netns, PY, "-m", "trainctl", "train", "-c", "roadsign_cpu_smoke.yml",
                 "--launcher", "slurm", "--device", "cpu", "--ifname", host.ifname, "--output", "output/slurm2"],
                cwd=workdir, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            ))
        outputs = []
        deadline = time.monotonic() + 600
        for proc in procs:
            text, _ = proc.communicate(timeout=max(10, deadline - time.monotonic()))
            outputs.append(text)
        for proc, text in zip(procs, outputs):
            assert proc.returncode == 0, text[-3000:]
        port = 20000 + 777
        assert f"Slurm job 777: node 0 of 2 ({a.addr}), master {a.addr}:{port}" in outputs[0]
        assert f"Slurm job 777: node 1 of 2 ({b.addr}), master {a.addr}:{port}" in outputs[1]
        assert (workdir / "output" / "slurm2" / "model_final.pdparams").stat().st_size > 1_000_000
        assert cluster.wait_no_job_processes(timeout=20) == {}
    finally:
        for proc in locals().get("procs", []):
            if proc.poll() is None:
                proc.kill()
        cluster.close()
