"""Shared builders for the launch-plan unit tests (no paddle, no GPUs needed)."""

from __future__ import annotations

from pathlib import Path

from trainctl.core import hostinfo
from trainctl.launch import netpresets
from trainctl.launch.devices import DeviceEnv, PaddleBuild
from trainctl.launch.plan import LaunchOptions, PlanContext, build_plan

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
PY = "/opt/py/bin/python"


def sys_tree(name: str) -> str:
    return str(FIXTURES / "sys" / name)


def proc_tree(name: str) -> str:
    return str(FIXTURES / "proc" / name)


def cuda_env(n_gpus: int = 8, cpus: int = 64, visible: str | None = None, nccl_code: int | None = 22103) -> DeviceEnv:
    """A host with a CUDA build of paddle and n GPUs (as nvidia-smi would list them)."""
    return DeviceEnv(
        paddle=PaddleBuild(installed=True, version="3.3.1", cuda="12.6", nccl_code=nccl_code),
        gpus=[hostinfo.GPU(i, "NVIDIA A100-SXM4-80GB", f"GPU-{i:04d}", 81920) for i in range(n_gpus)],
        cuda_visible_devices=visible,
        cpus=cpus,
    )


def cpu_env(cpus: int = 2) -> DeviceEnv:
    return DeviceEnv(paddle=PaddleBuild(installed=True, version="3.3.1"), cpus=cpus)


def facts(tree: str = "no_hca", route: str = "route_eth0", nccl_code: int | None = 22103) -> netpresets.HostFacts:
    return netpresets.HostFacts.probe(sys_tree(tree), proc_tree(route), nccl_code=nccl_code)


def context(device_env=None, host_facts=None, environ=None, strict=True, local=("10.0.0.1",), port_busy=False,
            route_source="10.0.0.2") -> PlanContext:
    return PlanContext(
        device_env=device_env or cuda_env(),
        host_facts=host_facts or facts(),
        environ=dict(environ or {}),
        python=PY,
        cwd="/home/user/project",
        strict=strict,
        free_port=lambda: 45678,
        is_local_address=lambda host: host in local or host.startswith("127."),
        port_in_use=lambda host, port: port_busy,
        route_source_address=lambda host: route_source,
        fleetrun="/opt/py/bin/fleetrun",
    )


def plan(ctx=None, task="train", run_dir="output/roadsign", **options):
    return build_plan(LaunchOptions(**options), task=task, run_dir=run_dir, ctx=ctx or context())


def cli_run(capsys, *argv):
    """`trainctl ARGV` in this process: (exit code, stdout, stderr)."""
    import pytest

    from trainctl.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(list(argv))
    out, err = capsys.readouterr()
    return exit_info.value.code, out, err
