"""`trainctl train --hostfile` over real OpenSSH into two network namespaces.

Each "host" is a namespace with its own sshd and its own view of the working
directory (a private bind mount), as separate machines would have. The root
namespace runs trainctl; the hosts run what it sends over ssh.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

import netns_ssh
from sigutil import default_sigint

pytestmark = [pytest.mark.netns]
why_not = netns_ssh.available()
if why_not:
    pytestmark.append(pytest.mark.skip(reason=why_not))

PY = sys.executable
CONFIG = "my cfg; v1/smoke run.yml"  # a config path with a space and a `;`, relative to the workdir


def _trainctl(args, cwd, timeout=600, **kw):
    return subprocess.run([PY, "-m", "trainctl", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, **kw)


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """Two hosts; each sees its own copy of WORK (dataset + flat smoke config)."""
    from trainctl.config import dump_yaml, resolve

    base = tmp_path_factory.mktemp("fanout")
    work = base / "work dir"  # the same path on every host, as typed in the root shell
    work.mkdir()
    sample = base / "sample"
    out = _trainctl(["data", "sample", "--out", str(sample), "--images", "12"], cwd=base, timeout=120)
    assert out.returncode == 0, out.stderr
    flat = dump_yaml(resolve("roadsign_cpu_smoke.yml").data)
    views = []
    for i in range(2):
        host_dir = base / f"host{i}"
        (host_dir / "dataset").mkdir(parents=True)
        subprocess.run(["cp", "-a", str(sample), str(host_dir / "dataset" / "roadsign_voc")], check=True)
        (host_dir / CONFIG).parent.mkdir(parents=True)
        (host_dir / CONFIG).write_text(flat)
        views.append({str(work): str(host_dir)})
    cluster = netns_ssh.SshCluster.start(base / "ssh", n=2, private=views)
    try:
        hostfile = base / "hosts.txt"
        hostfile.write_text("# two namespaces, each with its own interface name\n" + cluster.hostfile_text())
        yield {"base": base, "work": work, "cluster": cluster, "hostfile": hostfile,
               "host_dirs": [base / "host0", base / "host1"]}
    finally:
        cluster.close()


def _wait(predicate, timeout=120.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.2)
    return False


def _is_worker(cmd: str) -> bool:
    """A training worker itself (paddle launch's command line names the worker module too)."""
    return "-m trainctl.runner.worker" in cmd and "paddle.distributed.launch" not in cmd


def _common(site):
    return ["--hostfile", str(site["hostfile"]), *site["cluster"].trainctl_ssh_args()]


def test_arguments_reach_the_host_unchanged(site, tmp_path):
    """The config path (space, `;`), an override with `$(...)` and the workdir arrive as typed; nothing runs."""
    recorder = tmp_path / "record argv.py"
    recorder.write_text(textwrap.dedent(f"""\
        #!{PY}
        import json, os, sys
        rank = sys.argv[sys.argv.index("--node-rank") + 1]
        with open("argv-%s.json" % rank, "w") as f:
            json.dump({{"argv": sys.argv[1:], "cwd": os.getcwd(), "env": os.environ.get("MY_NOTE")}}, f)
        """))
    recorder.chmod(0o755)
    override = "log_iter=$(touch PWNED)"
    out = _trainctl(["train", "-c", CONFIG, "-o", override, "--env", "MY_NOTE=a b;c", *_common(site),
                     "--no-preflight", "--remote-python", str(recorder)], cwd=site["work"], timeout=120)
    assert out.returncode == 0, out.stderr
    for rank, host_dir in enumerate(site["host_dirs"]):
        record = json.loads((host_dir / f"argv-{rank}.json").read_text())
        argv = record["argv"]
        # the guard's own command line, then the node's trainctl command
        assert argv[:4] == ["-m", "trainctl.cluster.guard", "--grace", "10"]
        node = argv[argv.index("--") + 1:]
        assert node[:4] == [str(recorder), "-m", "trainctl", "train"]
        assert node[node.index("--config") + 1] == CONFIG
        assert node[node.index("--override") + 1] == override
        assert node[node.index("--node-rank") + 1] == str(rank)
        assert record["cwd"] == str(site["work"]) and record["env"] == "a b;c"
        assert not list(host_dir.rglob("PWNED")) and not (site["work"] / "PWNED").exists()
        (host_dir / f"argv-{rank}.json").unlink()
    # every line a host printed would carry its prefix; here the hosts print nothing, trainctl sums up
    assert "exit" in out.stderr


def test_preflight_names_the_host_with_a_broken_dataset(site):
    cluster, bad_dir = site["cluster"], site["host_dirs"][1]
    dataset = bad_dir / "dataset" / "roadsign_voc"
    dataset.rename(dataset.with_name("moved_away"))
    try:
        out = _trainctl(["train", "-c", CONFIG, "--device", "cpu", *_common(site)], cwd=site["work"], timeout=180)
    finally:
        dataset.with_name("moved_away").rename(dataset)
    assert out.returncode == 2, out.stderr
    bad, good = cluster.hosts[1], cluster.hosts[0]
    error = [line for line in out.stderr.splitlines() if line.startswith("trainctl: error:")]
    assert len(error) == 1 and "preflight failed" in error[0]
    assert f"{bad.addr} r1:" in error[0] and "dataset/roadsign_voc" in error[0]
    assert f"{good.addr} r0:" not in error[0]
    table = out.stderr.split("trainctl: error:")[0]
    assert "paddledet" in table and "FAIL" in table
    # nothing was started anywhere
    for host_dir in site["host_dirs"]:
        assert not (host_dir / "output").exists()
    assert cluster.wait_no_job_processes(timeout=5) == {}


@pytest.mark.paddle
def test_one_command_trains_on_both_hosts(site):
    cluster = site["cluster"]
    start = time.monotonic()
    out = _trainctl(["train", "-c", CONFIG, "--device", "cpu", "-o", "epoch=1", *_common(site)],
                    cwd=site["work"], timeout=900)
    elapsed = time.monotonic() - start
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-5000:]
    lines = (out.stdout + out.stderr).splitlines()
    for rank, host in enumerate(cluster.hosts):
        assert any(line.startswith(f"[{host.addr} r{rank}] ") for line in lines), f"no output from {host.addr}"
    # the preflight ran first and passed
    assert "preflight" in out.stderr and "FAIL" not in out.stderr
    rank0, rank1 = site["host_dirs"]
    run0, run1 = rank0 / "output" / "smoke run", rank1 / "output" / "smoke run"
    assert (run0 / "model_final.pdparams").stat().st_size > 1_000_000  # rank 0 saves the model
    assert not (run1 / "model_final.pdparams").exists()  # only rank 0 does
    # each host planned its own node: rank, master and its own gloo interface
    for run, record_name, host in ((run0, "run.json", cluster.hosts[0]), (run1, "run.node1.json", cluster.hosts[1])):
        record = json.loads((run / record_name).read_text())
        text = json.dumps(record)
        assert host.ifname in text and f"{cluster.hosts[0].addr}:8090" in text
    assert cluster.wait_no_job_processes(timeout=20) == {}
    print(f"2-host training took {elapsed:.0f} s")


@pytest.mark.paddle
def test_killed_worker_fails_the_job_and_stops_the_other_host(site):
    cluster = site["cluster"]
    victim_host, other_host = cluster.hosts[1], cluster.hosts[0]
    proc = subprocess.Popen(
        [PY, "-m", "trainctl", "train", "-c", CONFIG, "--device", "cpu", "-o", "epoch=20",
         "--output", "output/killed", *_common(site)],
        cwd=site["work"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        victim = None
        deadline = time.monotonic() + 240
        while victim is None and time.monotonic() < deadline and proc.poll() is None:
            for pid in victim_host.other_pids():
                if _is_worker(netns_ssh.cmdline(pid)):
                    victim = pid
                    break
            time.sleep(0.2)
        assert victim is not None, "no worker appeared on the second host"
        # the other host's worker is running too: it is the one that must be stopped
        assert _wait(lambda: any(_is_worker(netns_ssh.cmdline(p)) for p in other_host.other_pids()))
        time.sleep(3)  # let both get into training
        os.kill(victim, signal.SIGKILL)
        text, _ = proc.communicate(timeout=240)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode not in (0, None), text[-3000:]
    assert f"host {victim_host.addr} r1" in text
    assert f"stopped {other_host.addr} r0" in text or f"host {other_host.addr} r0" in text
    left = cluster.wait_no_job_processes(timeout=30)
    assert left == {}, f"processes left behind: {left}"


@pytest.mark.paddle
def test_ctrl_c_stops_every_host(site):
    cluster = site["cluster"]
    proc = subprocess.Popen(
        [PY, "-m", "trainctl", "train", "-c", CONFIG, "--device", "cpu", "-o", "epoch=20",
         "--output", "output/interrupted", *_common(site)],
        cwd=site["work"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, preexec_fn=default_sigint,
    )
    try:
        assert _wait(lambda: all(any(_is_worker(netns_ssh.cmdline(p)) for p in h.other_pids())
                                 for h in cluster.hosts), timeout=240), "workers did not start on both hosts"
        proc.send_signal(signal.SIGINT)  # what Ctrl-C sends to trainctl
        start = time.monotonic()
        text, _ = proc.communicate(timeout=120)
        stop_seconds = time.monotonic() - start
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, text[-3000:]
    assert "trainctl: error: interrupted" in text
    for rank, host in enumerate(cluster.hosts):
        assert f"[{host.addr} r{rank}] stopping (closing the ssh session)" in text
    assert stop_seconds < 60
    left = cluster.wait_no_job_processes(timeout=30)
    assert left == {}, f"processes left behind: {left}"


def test_preflight_unreachable_host_and_busy_master_port(site, tmp_path):
    cluster = site["cluster"]
    master = cluster.hosts[0]
    # a third host nobody answers for (no sshd at that address)
    prefix = master.addr.rsplit(".", 1)[0]
    hostfile = tmp_path / "hosts.txt"
    hostfile.write_text(cluster.hostfile_text() + f"{prefix}.99\n")
    # something already listens on the master port of the first host
    listener = subprocess.Popen(
        ["ip", "netns", "exec", master.netns, PY, "-c",
         "import socket, sys, time; s = socket.socket(); "
         "s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(('', 8090)); s.listen(); "
         "print('ready', flush=True); time.sleep(120)"],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        assert listener.stdout.readline().strip() == "ready"
        out = _trainctl(["train", "-c", CONFIG, "--device", "cpu", "--hostfile", str(hostfile),
                         "--connect-timeout", "3", *cluster.trainctl_ssh_args()], cwd=site["work"], timeout=180)
    finally:
        listener.kill()
        listener.wait()
    assert out.returncode == 2, out.stderr  # the busy port is the user's to fix; with it, a user error
    error = out.stderr.split("trainctl: error:")[1]
    assert f"{master.addr} r0: master port 8090 is in use" in error
    assert f"{prefix}.99 r2: not reachable by ssh" in error
    assert f"{cluster.hosts[1].addr} r1:" not in error
    # only the unreachable host: a runtime failure (exit 1)
    hostfile.write_text(f"{prefix}.99\n")
    out = _trainctl(["train", "-c", CONFIG, "--hostfile", str(hostfile), "--connect-timeout", "3",
                     *cluster.trainctl_ssh_args()], cwd=site["work"], timeout=180)
    assert out.returncode == 1 and "not reachable by ssh" in out.stderr
    assert cluster.wait_no_job_processes(timeout=10) == {}
