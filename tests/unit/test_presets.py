from __future__ import annotations

import pytest
from launch_helpers import facts

from trainctl.errors import UserError
from trainctl.launch import netpresets


@pytest.mark.parametrize("tree,device,nnodes,expected", [
    ("ib_peermem", "gpu", 2, "gpudirect"),
    ("ib_active", "gpu", 2, "rdma"),
    ("roce", "gpu", 2, "gpudirect"),  # nv_peer_mem via memory_peers
    ("ib_down", "gpu", 2, "tcp"),
    ("no_hca", "gpu", 2, "tcp"),
    ("ib_peermem", "gpu", 1, "nccl"),
    ("ib_peermem", "cpu", 2, "gloo"),
])
def test_choose_auto(tree, device, nnodes, expected):
    name, reason = netpresets.choose_auto(facts(tree), device=device, nnodes=nnodes)
    assert name == expected
    assert reason


def test_auto_reason_names_ports_and_module():
    name, reason = netpresets.choose_auto(facts("ib_peermem"), nnodes=2)
    assert "mlx5_0:1,mlx5_1:1" in reason and "nvidia_peermem" in reason and "mlx5_2" not in reason


def test_tcp_uses_default_route_or_ifname():
    env = netpresets.build_env("tcp", facts("no_hca"), nnodes=2).env
    assert env == {"NCCL_IB_DISABLE": "1", "NCCL_SOCKET_IFNAME": "eth0", "GLOO_SOCKET_IFNAME": "eth0"}
    env = netpresets.build_env("tcp", facts("no_hca"), nnodes=2, ifname="docker0").env
    assert env["NCCL_SOCKET_IFNAME"] == "docker0" and env["GLOO_SOCKET_IFNAME"] == "docker0"


def test_tcp_unknown_ifname_is_user_error_or_warning():
    with pytest.raises(UserError, match="no such interface"):
        netpresets.build_env("tcp", facts("no_hca"), ifname="bond7")
    net = netpresets.build_env("tcp", facts("no_hca"), ifname="bond7", strict=False)
    assert net.env["NCCL_SOCKET_IFNAME"] == "bond7" and any("bond7" in w for w in net.warnings)


def test_tcp_without_default_route_warns():
    net = netpresets.build_env("tcp", facts("no_hca", route="no_route"), nnodes=2)
    assert "NCCL_SOCKET_IFNAME" not in net.env and any("--ifname" in w for w in net.warnings)


def test_rdma_infiniband_lists_active_ports_only():
    net = netpresets.build_env("rdma", facts("ib_peermem"), nnodes=2)
    assert net.env == {"NCCL_IB_DISABLE": "0", "NCCL_IB_HCA": "mlx5_0:1,mlx5_1:1", "NCCL_NET_GDR_LEVEL": "0",
                       "NCCL_SOCKET_IFNAME": "eth0", "GLOO_SOCKET_IFNAME": "eth0"}


def test_rdma_hca_flag_wins():
    net = netpresets.build_env("rdma", facts("ib_peermem"), hca="mlx5_1:1", ifname="ib0")
    assert net.env["NCCL_IB_HCA"] == "mlx5_1:1" and net.env["NCCL_SOCKET_IFNAME"] == "ib0"


def test_rdma_without_active_port():
    with pytest.raises(UserError, match="no ACTIVE InfiniBand/RoCE port.*mlx5_0:1 DOWN"):
        netpresets.build_env("rdma", facts("ib_down"))
    with pytest.raises(UserError, match="no ACTIVE"):
        netpresets.build_env("rdma", facts("no_hca"))
    net = netpresets.build_env("rdma", facts("no_hca"), strict=False)
    assert "NCCL_IB_HCA" not in net.env and net.warnings
    # --hca names the ports even where this host has none (planning for another host)
    net = netpresets.build_env("rdma", facts("no_hca"), hca="mlx5_0:1")
    assert net.env["NCCL_IB_HCA"] == "mlx5_0:1" and not net.warnings


def test_roce_gid_index_depends_on_nccl_version():
    new = netpresets.build_env("rdma", facts("roce", route="route_ens1f0", nccl_code=22103))
    assert "NCCL_IB_GID_INDEX" not in new.env and any("2.21" in n for n in new.notes)
    old = netpresets.build_env("rdma", facts("roce", route="route_ens1f0", nccl_code=21804))
    assert old.env["NCCL_IB_GID_INDEX"] == "3"
    asked = netpresets.build_env("rdma", facts("roce", route="route_ens1f0"), gid_index=5)
    assert asked.env["NCCL_IB_GID_INDEX"] == "5"
    ib = netpresets.build_env("rdma", facts("ib_active", nccl_code=21804))
    assert "NCCL_IB_GID_INDEX" not in ib.env  # InfiniBand link layer needs no GID index


def test_gpudirect_needs_peermem():
    net = netpresets.build_env("gpudirect", facts("ib_peermem"))
    assert net.env["NCCL_NET_GDR_LEVEL"] == "PHB" and net.env["NCCL_IB_DISABLE"] == "0"
    assert netpresets.build_env("gpudirect", facts("ib_peermem"), gdr_level="SYS").env["NCCL_NET_GDR_LEVEL"] == "SYS"
    with pytest.raises(UserError, match="nvidia_peermem"):
        netpresets.build_env("gpudirect", facts("ib_active"))
    with pytest.raises(UserError, match="gdr-level"):
        netpresets.build_env("gpudirect", facts("ib_peermem"), gdr_level="FAR")


def test_nccl_and_gloo():
    assert netpresets.build_env("nccl", facts("ib_peermem")).env == {}
    assert netpresets.build_env("gloo", facts("no_hca"), device="cpu").env == {}
    assert netpresets.build_env("gloo", facts("no_hca"), device="cpu", nnodes=2).env == {"GLOO_SOCKET_IFNAME": "eth0"}
    with pytest.raises(UserError, match="CPU"):
        netpresets.build_env("rdma", facts("ib_active"), device="cpu")
    cpu_tcp = netpresets.build_env("tcp", facts("no_hca"), device="cpu", nnodes=2, ifname="eth0")
    assert cpu_tcp.env["GLOO_SOCKET_IFNAME"] == "eth0" and any("inert" in n for n in cpu_tcp.notes)


def test_nccl_debug_and_env_overrides():
    net = netpresets.build_env("tcp", facts("no_hca"), nccl_debug=True,
                               extra_env={"NCCL_IB_DISABLE": "0", "NCCL_P2P_DISABLE": "1"})
    assert net.env["NCCL_DEBUG"] == "INFO" and net.env["NCCL_DEBUG_SUBSYS"] == "INIT,NET"
    assert net.env["NCCL_IB_DISABLE"] == "0" and net.env["NCCL_P2P_DISABLE"] == "1"


def test_unknown_preset():
    with pytest.raises(UserError, match="not a preset"):
        netpresets.build_env("infiniband", facts())


def test_user_preset_file(tmp_path):
    path = tmp_path / "cluster-a.yml"
    path.write_text("name: cluster-a\nbase: rdma\nenv:\n  NCCL_IB_HCA: mlx5_7:1\n  NCCL_NET_GDR_LEVEL:\n"
                    "  NCCL_IB_TIMEOUT: 22\n")
    net = netpresets.build_env(str(path), facts("ib_peermem"))
    assert net.name == "cluster-a" and net.source == str(path)
    assert net.env["NCCL_IB_HCA"] == "mlx5_7:1" and net.env["NCCL_IB_TIMEOUT"] == "22"
    assert "NCCL_NET_GDR_LEVEL" not in net.env  # an empty value removes the base preset's key
    assert net.env["NCCL_IB_DISABLE"] == "0"


def test_user_preset_file_errors(tmp_path):
    with pytest.raises(UserError, match="cannot read"):
        netpresets.build_env(str(tmp_path / "missing.yml"), facts())
    bad = tmp_path / "bad.yml"
    bad.write_text("base: warp\nenv: {}\n")
    with pytest.raises(UserError, match="base 'warp'"):
        netpresets.build_env(str(bad), facts())
    typo = tmp_path / "typo.yml"
    typo.write_text("envs: {A: 1}\n")
    with pytest.raises(UserError, match="unknown key"):
        netpresets.build_env(str(typo), facts())


def test_parse_env_pairs():
    assert netpresets.parse_env_pairs(["A=1", "B_C=x=y", "D="]) == {"A": "1", "B_C": "x=y", "D": ""}
    for bad in ("NOEQUALS", "=1", "1A=2", "A-B=1"):
        with pytest.raises(UserError):
            netpresets.parse_env_pairs([bad])


def test_named_presets_bundled_and_user_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("TRAINCTL_PRESETS", str(tmp_path))
    bundled = netpresets.build_env("consumer-gpu", facts())
    assert bundled.name == "consumer-gpu" and bundled.env == {"NCCL_P2P_DISABLE": "1", "NCCL_IB_DISABLE": "1"}
    assert bundled.source.endswith("presets/consumer-gpu.yml")
    (tmp_path / "lab.yml").write_text("base: tcp\nenv:\n  NCCL_SOCKET_NTHREADS: 4\n")
    lab = netpresets.build_env("lab", facts(), nnodes=2)
    assert lab.name == "lab" and lab.env["NCCL_IB_DISABLE"] == "1" and lab.env["NCCL_SOCKET_NTHREADS"] == "4"
    with pytest.raises(UserError, match="'nope' is not a preset") as excinfo:
        netpresets.build_env("nope", facts())
    assert "consumer-gpu" in excinfo.value.hint and "lab" in excinfo.value.hint
