"""The ssh test cluster itself, and the fan-out over real OpenSSH (no paddle).

Two network namespaces, each with its own sshd (see netns_ssh.py).
"""

from __future__ import annotations

import subprocess

import pytest

import netns_ssh

pytestmark = [pytest.mark.netns]

why_not = netns_ssh.available()
if why_not:
    pytestmark.append(pytest.mark.skip(reason=why_not))


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    c = netns_ssh.SshCluster.start(tmp_path_factory.mktemp("sshcluster"), n=2)
    try:
        yield c
    finally:
        c.close()


def test_ssh_true_reaches_each_namespace(cluster):
    for host in cluster.hosts:
        out = subprocess.run(
            cluster.ssh_argv(host, "ip -o -4 addr show; echo user=$(id -un)"),
            capture_output=True, text=True, timeout=30,
        )
        assert out.returncode == 0, out.stderr
        # the session runs inside that host's namespace: it sees its own veth and address
        assert host.ifname in out.stdout and host.addr in out.stdout
        assert "user=root" in out.stdout
        others = [h for h in cluster.hosts if h is not host]
        assert all(o.ifname not in out.stdout for o in others)


def test_password_login_is_refused(cluster):
    host = cluster.hosts[0]
    out = subprocess.run(
        ["ssh", "-o", "BatchMode=yes", "-o", "ConnectTimeout=5", "-o", "IdentitiesOnly=yes",
         "-o", "IdentityFile=/dev/null", "-o", f"UserKnownHostsFile={cluster.tmp}/keys/known_hosts",
         "-o", "PubkeyAuthentication=no", "--", host.addr, "true"],
        capture_output=True, text=True, timeout=30,
    )
    assert out.returncode == 255 and "Permission denied" in out.stderr
