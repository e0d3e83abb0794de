"""Hostfile and --hosts parsing (pure)."""

from __future__ import annotations

import pytest

from trainctl.errors import UserError
from trainctl.cluster.hostfile import HostSpec, parse_host_entry, parse_hostfile_text, parse_hosts_arg, read_hostfile


def test_hostfile_all_forms(tmp_path):
    path = tmp_path / "hosts.txt"
    path.write_text(
        "# cluster A\n"
        "\n"
        "gpu-node-01 slots=4\n"
        "gpu-node-02 gpus=0,1,3   # not GPU 2\n"
        "alice@10.0.0.3:2222 slots=8\n"
        "  10.0.0.4 ifname=ens1f0 addr=192.168.7.4  \n"
        "[fe80::1]:22\n"
    )
    hosts = read_hostfile(path)
    assert [h.host for h in hosts] == ["gpu-node-01", "gpu-node-02", "10.0.0.3", "10.0.0.4", "fe80::1"]
    assert hosts[0].slots == 4 and hosts[0].workers == 4 and hosts[0].gpus is None
    assert hosts[1].gpus == (0, 1, 3) and hosts[1].workers == 3
    assert hosts[2].user == "alice" and hosts[2].port == 2222 and hosts[2].ssh_target == "alice@10.0.0.3"
    assert hosts[2].label == "10.0.0.3:2222"
    assert hosts[3].ifname == "ens1f0" and hosts[3].addr == "192.168.7.4" and hosts[3].workers is None
    assert hosts[4].port == 22
    assert hosts[1].source == f"{path}:4"


@pytest.mark.parametrize(
    "line, needle",
    [
        ("node1 slots=0", "slots must be a positive integer"),
        ("node1 slots=two", "slots must be a positive integer"),
        ("node1 gpus=0,x", "not a list of GPU ids"),
        ("node1 gpus=0,0", "repeats a GPU id"),
        ("node1 slots=2 gpus=0,1,2", "slots=2 but gpus= lists 3"),
        ("node1 cores=4", "unknown key `cores`"),
        ("node1 slots", "is not key=value"),
        ("node1 slots=1 slots=2", "given twice"),
        ("node1:99999", "not a port number"),
        ("node1:", "not a port number"),
        ("bad! slots=1", "not a host name"),
        ("no;de", "not a host name"),
        ("node1 ifname=this-name-is-way-too-long", "not a network interface name"),
        ("[fe80::1", "unbalanced"),
    ],
)
def test_bad_lines_name_file_and_line(line, needle):
    with pytest.raises(UserError) as exc:
        parse_hostfile_text(f"# header\n{line}\n", "hosts.txt")
    assert "hosts.txt:2" in exc.value.message
    assert needle in exc.value.message
    assert exc.value.hint


def test_duplicate_and_empty():
    with pytest.raises(UserError, match="already listed at hosts.txt:1"):
        parse_hostfile_text("a slots=1\nb\na\n", "hosts.txt")
    # the same host on two ssh ports counts as two hosts (e.g. containers behind one address)
    assert len(parse_hostfile_text("a:2201\na:2202\n", "h")) == 2
    with pytest.raises(UserError, match="lists no hosts"):
        parse_hostfile_text("# nothing\n\n", "hosts.txt")


def test_missing_hostfile(tmp_path):
    with pytest.raises(UserError, match="not found"):
        read_hostfile(tmp_path / "nope.txt")


def test_hosts_arg():
    hosts = parse_hosts_arg("a, bob@b:2200,10.1.2.3")
    assert hosts == [
        HostSpec(host="a", source="--hosts"),
        HostSpec(host="b", user="bob", port=2200, source="--hosts"),
        HostSpec(host="10.1.2.3", source="--hosts"),
    ]
    with pytest.raises(UserError, match="empty entry"):
        parse_hosts_arg("a,,b")
    with pytest.raises(UserError, match="has keys"):
        parse_hosts_arg("a slots=2")
    with pytest.raises(UserError, match="already listed"):
        parse_hosts_arg("a,a")


def test_entry_without_keys():
    h = parse_host_entry("node7", "x")
    assert (h.host, h.user, h.port, h.slots, h.gpus, h.workers) == ("node7", None, None, None, None, None)
