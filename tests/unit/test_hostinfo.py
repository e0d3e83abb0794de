from __future__ import annotations

from launch_helpers import proc_tree, sys_tree

from trainctl.core import hostinfo


def test_interfaces_read_operstate_and_loopback():
    found = {i.name: i for i in hostinfo.interfaces(sys_tree("ib_peermem"))}
    assert sorted(found) == ["eth0", "ib0", "lo"]
    assert found["lo"].loopback and not found["lo"].usable
    assert found["eth0"].operstate == "up" and found["eth0"].usable and found["eth0"].mtu == 1500
    assert not found["ib0"].loopback


def test_interfaces_missing_tree_is_empty(tmp_path):
    assert hostinfo.interfaces(tmp_path) == []


def test_default_route_picks_lowest_metric_default():
    # route_eth0 has eth0 (metric 100) and ens1f0 (metric 200) default routes and non-default ones
    assert hostinfo.default_route_interface(proc_tree("route_eth0")) == "eth0"
    assert hostinfo.default_route_interface(proc_tree("route_ens1f0")) == "ens1f0"
    assert hostinfo.default_route_interface(proc_tree("no_route")) is None


def test_ib_ports_state_link_layer():
    ports = hostinfo.ib_ports(sys_tree("ib_peermem"))
    assert [(p.hca, p.port, p.state, p.active) for p in ports] == [
        ("mlx5_0", 1, "ACTIVE", True), ("mlx5_1", 1, "ACTIVE", True), ("mlx5_2", 1, "DOWN", False)]
    assert ports[0].nccl_name == "mlx5_0:1" and not ports[0].roce
    roce = hostinfo.ib_ports(sys_tree("roce"))
    assert len(roce) == 1 and roce[0].roce and roce[0].link_layer == "Ethernet"
    assert hostinfo.ib_ports(sys_tree("no_hca")) == []


def test_gpudirect_module_variants():
    assert hostinfo.gpudirect_module(sys_tree("ib_peermem")) == "nvidia_peermem"
    assert hostinfo.gpudirect_module(sys_tree("roce")) == "nv_peer_mem"  # via memory_peers/nv_mem
    assert hostinfo.gpudirect_module(sys_tree("ib_active")) is None


def test_parse_nvidia_smi():
    text = "0, NVIDIA A100-SXM4-80GB, GPU-aaaa, 81920\n1, NVIDIA A100-SXM4-80GB, GPU-bbbb, 81920\n"
    gpus = hostinfo.parse_nvidia_smi(text)
    assert [(g.index, g.uuid, g.memory_mib) for g in gpus] == [(0, "GPU-aaaa", 81920), (1, "GPU-bbbb", 81920)]
    assert hostinfo.parse_nvidia_smi("No devices were found\n") == []


def test_gpus_without_nvidia_smi_is_empty(tmp_path):
    missing = tmp_path / "nvidia-smi"
    assert hostinfo.gpus(nvidia_smi=str(missing)) == []
    failing = tmp_path / "fail-smi"
    failing.write_text("#!/bin/sh\necho 'NVIDIA-SMI has failed' >&2\nexit 9\n")
    failing.chmod(0o755)
    assert hostinfo.gpus(nvidia_smi=str(failing)) == []
    fake = tmp_path / "fake-smi"
    fake.write_text("#!/bin/sh\necho '0, Tesla T4, GPU-1234, 15360'\n")
    fake.chmod(0o755)
    assert [g.name for g in hostinfo.gpus(nvidia_smi=str(fake))] == ["Tesla T4"]


def test_cpu_count_is_this_process_affinity():
    """What --threads defaults to in infer and what OMP_NUM_THREADS is derived from."""
    import os

    expected = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    assert hostinfo.cpu_count() == expected >= 1


def test_cpu_count_falls_back_to_os_cpu_count(monkeypatch):
    import os

    monkeypatch.delattr(os, "sched_getaffinity", raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 7)
    assert hostinfo.cpu_count() == 7
