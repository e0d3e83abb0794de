"""What a single-node `trainctl train --dry-run` loads: a structural start-up check.

Start-up time is spent mostly on imports, so the multi-host layer (ssh, hostfile,
cluster, Slurm, preflight), process handling, JSON and urllib are imported only on
the code paths that use them. Each case runs in a fresh interpreter and lists
`sys.modules` after the command; timing itself belongs to benchmarks/.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from dataclasses import replace

import pytest

from trainctl.cluster.dispatch import apply_slurm
from trainctl.cluster.options import slurm_may_apply
from trainctl.launch.plan import LaunchOptions

# loaded by a single-node dry run only if an import went back to the top of a module
NOT_FOR_SINGLE_NODE = (
    "trainctl.cluster.ssh",
    "trainctl.cluster.dispatch",
    "trainctl.cluster.slurm",
    "trainctl.cluster.hostfile",
    "trainctl.cluster.preflight",
    "trainctl.cluster.guard",
    "trainctl.cluster.kubeflow",
    "trainctl.cluster.k8s_manifest",
    "trainctl.launch.executor",
    "trainctl.runrecord",
    "trainctl.runner.worker",
    "paddle",
    "ppdet",
    "urllib.request",
    "subprocess",
    "json",
)

PROBE = textwrap.dedent("""
    import json, sys
    out_path, argv = sys.argv[1], json.loads(sys.argv[2])
    for name in ("json", "json.decoder", "json.encoder", "json.scanner", "_json"):
        del sys.modules[name]  # this probe's own json: the command must load it itself to count
    from trainctl.cli import main
    try:
        main(argv)
    except SystemExit as exc:
        code = exc.code
    else:
        code = 0
    with open(out_path, "w") as f:
        f.write(repr((code, sorted(sys.modules))))
""")


def loaded_after(argv: list[str], tmp_path, env: dict[str, str] | None = None) -> tuple[int, set[str], str]:
    """Run `trainctl ARGV` in a fresh interpreter: (exit code, modules loaded at the end, stdout)."""
    import ast
    import os

    out_path = tmp_path / "modules.txt"
    child_env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "PADDLE_"))}
    child_env.update(env or {})
    proc = subprocess.run([sys.executable, "-c", PROBE, str(out_path), json.dumps(argv)], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120, env=child_env)
    assert out_path.exists(), proc.stderr
    code, modules = ast.literal_eval(out_path.read_text())
    return code, set(modules), proc.stdout + proc.stderr


def _present(modules: set[str], names) -> list[str]:
    return sorted(n for n in names if n in modules or any(m.startswith(n + ".") for m in modules))


@pytest.mark.parametrize("argv", [
    ["train", "-c", "roadsign.yml", "--dry-run"],
    ["train", "-c", "roadsign.yml", "--nproc", "2", "--dry-run"],
    ["eval", "-c", "roadsign.yml", "--dry-run"],
])
def test_single_node_dry_run_leaves_the_multi_host_layer_unloaded(argv, tmp_path):
    code, modules, text = loaded_after(argv, tmp_path)
    assert code == 0, text
    assert "trainctl plan:" in text  # the plan really was made and printed
    assert "trainctl.launch.plan" in modules and "trainctl.config.resolve" in modules
    assert _present(modules, NOT_FOR_SINGLE_NODE) == []


def test_help_loads_no_command_and_no_layer(tmp_path):
    code, modules, text = loaded_after(["--help"], tmp_path)
    assert code == 0 and "Commands:" in text
    assert _present(modules, ("trainctl.cli.train", "trainctl.config", "trainctl.launch", "yaml")) == []


@pytest.mark.parametrize("command", ["eval", "infer"])
def test_command_help_loads_no_pipeline(command, tmp_path):
    code, modules, text = loaded_after([command, "--help"], tmp_path)
    assert code == 0 and "Examples:" in text
    heavy = ("trainctl.launch.flow", "trainctl.launch.plan", "trainctl.cluster.ssh", "trainctl.cluster.dispatch",
             "trainctl.config", "trainctl.runner", "paddle", "ppdet", "yaml", "json", "subprocess")
    assert _present(modules, heavy) == []  # eval's flags come from cli.train and the light clusteropts only


def test_the_probe_sees_lazy_modules_when_a_run_needs_them(tmp_path):
    """Control: a fan-out dry run does load ssh and hostfile (and --dry-run=json loads json)."""
    code, modules, text = loaded_after(["train", "-c", "roadsign.yml", "--hosts", "10.0.0.1,10.0.0.2",
                                        "--dry-run=json"], tmp_path)
    assert code == 0, text
    assert _present(modules, ("trainctl.cluster.ssh", "trainctl.cluster.hostfile", "trainctl.cluster.dispatch",
                              "json")) == ["json", "trainctl.cluster.dispatch", "trainctl.cluster.hostfile",
                                           "trainctl.cluster.ssh"]


def test_srun_step_still_reaches_the_slurm_layer(tmp_path):
    """Inside an srun step (no --launcher given) the lazily loaded Slurm layer still fills the node flags."""
    env = {"SLURM_JOB_ID": "55", "SLURM_STEP_ID": "0", "SLURM_JOB_NODELIST": "10.0.0.[1-2]", "SLURM_NNODES": "2",
           "SLURM_NODEID": "1", "SLURMD_NODENAME": "10.0.0.2", "SLURM_PROCID": "1", "SLURM_NTASKS": "2"}
    code, modules, text = loaded_after(["train", "-c", "roadsign.yml", "--device", "cpu", "--dry-run"],
                                       tmp_path, env)
    assert code == 0, text
    assert "Slurm job 55: node 1 of 2" in text and "--nnodes 2 --rank 1" in text
    assert "trainctl.cluster.slurm" in modules


BASE = LaunchOptions(device="auto", gpus=None, nproc=None, launcher="paddle", nnodes=1, node_rank=0, master=None,
                     host=None, ips=None)
STEP = {"SLURM_JOB_ID": "55", "SLURM_STEP_ID": "0", "SLURM_JOB_NODELIST": "10.0.0.[1-2]", "SLURM_NNODES": "2",
        "SLURM_NODEID": "1", "SLURMD_NODENAME": "10.0.0.2", "SLURM_PROCID": "1", "SLURM_NTASKS": "2"}


@pytest.mark.parametrize("kwargs", [BASE, replace(BASE, launcher="fleetrun"), replace(BASE, nnodes=2, master="1.2.3.4:5"),
                                    replace(BASE, gpus="0,1")])
@pytest.mark.parametrize("env", [{}, {k: v for k, v in STEP.items() if k != "SLURM_STEP_ID"},
                                 {"SLURM_STEP_ID": "0"}])
def test_skipping_the_slurm_layer_is_exactly_its_no_op(kwargs, env):
    """`slurm_may_apply` False (the CLI then skips the import) only where apply_slurm changes nothing."""
    assert not slurm_may_apply(kwargs, env)
    assert apply_slurm(kwargs, env=env) == kwargs


def test_slurm_may_apply_in_a_step_or_with_launcher_slurm():
    assert slurm_may_apply(BASE, STEP)
    assert slurm_may_apply(replace(BASE, launcher="slurm"), {})
    assert apply_slurm(BASE, env=STEP, resolve=lambda name: name).nnodes == 2  # where it may, it does
