"""`trainctl train --hostfile/--hosts --dry-run` and `--launcher slurm` through the real CLI (no hosts)."""

from __future__ import annotations

import shlex
import sys
from dataclasses import replace

import pytest

from launch_helpers import cli_run
from trainctl.errors import UserError
from trainctl.launch.plan import LaunchOptions
from trainctl.cluster.dispatch import apply_slurm

PY = sys.executable


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch):
    """NCCL_*/GLOO_* of the shell running the tests would be forwarded to the hosts."""
    import os

    for key in list(os.environ):
        if key.startswith(("NCCL_", "GLOO_", "SLURM_")):
            monkeypatch.delenv(key)


run = cli_run  # (exit code, stdout, stderr) of `trainctl ARGV` run in this process


def _ssh_lines(out):
    return [shlex.split(line) for line in out.splitlines() if line.startswith("ssh ")]


def test_dry_run_prints_one_exact_ssh_command_per_host(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "hosts.txt").write_text("10.0.0.1 slots=2 ifname=ib0\nbob@10.0.0.2:2222 gpus=1,3  # two GPUs\n")
    code, out, err = run(capsys, "train", "-c", "my cfg;x.yml", "-o", "epoch=3", "--hostfile", "hosts.txt",
                         "--net", "tcp", "--env", "NCCL_DEBUG=INFO", "--ssh-option", "IdentityFile=/k", "--dry-run")
    assert code == 0, err
    assert "master 10.0.0.1:8090" in out
    first, second = _ssh_lines(out)
    assert first[:3] == ["ssh", "-o", "BatchMode=yes"] and "IdentityFile=/k" in first
    assert second[second.index("-p") + 1] == "2222" and second[second.index("-l") + 1] == "bob"
    for argv, rank, devices, extra in ((first, 0, "0,1", ["--ifname", "ib0"]), (second, 1, "1,3", [])):
        remote = argv[-1]
        assert argv[-2] == f"10.0.0.{rank + 1}"
        # the remote login shell splits the one string back into exactly these words
        words = shlex.split(remote)
        assert words[:3] == ["cd", str(tmp_path), "&&"]
        assert words[3:7] == ["exec", "env", "NCCL_DEBUG=INFO", "PYTHONUNBUFFERED=1"]
        node = words[words.index("--") + 1:]
        assert node == [PY, "-m", "trainctl", "train", "--config", "my cfg;x.yml", "--override", "epoch=3",
                        "--net", "tcp", "--env", "NCCL_DEBUG=INFO", "--gpus", devices, "--nnodes", "2",
                        "--node-rank", str(rank), "--master", "10.0.0.1:8090", "--host", f"10.0.0.{rank + 1}"] + extra


def test_ppdet_style_overrides_are_forwarded(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for args in (["-o", "epoch=3", "log_iter=7"], ["epoch=3", "log_iter=7"]):
        code, out, err = run(capsys, "train", "-c", "roadsign.yml", *args, "--hosts", "10.0.0.1", "--dry-run")
        assert code == 0, err
        node = shlex.split(_ssh_lines(out)[0][-1])
        assert node[node.index("--config"):node.index("--nnodes")] == [
            "--config", "roadsign.yml", "--override", "epoch=3", "--override", "log_iter=7"]


def test_dry_run_json_and_remote_options(capsys, tmp_path, monkeypatch):
    import json

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("NCCL_IB_HCA", "mlx5_0:1")  # forwarded from the launching shell
    monkeypatch.setenv("NCCL_DEBUG", "WARN")
    monkeypatch.setenv("PADDLE_TRAINER_ID", "3")  # never forwarded
    code, out, err = run(capsys, "train", "-c", "roadsign.yml", "--hosts", "10.0.0.5,10.0.0.6", "--gpus", "0",
                         "--env", "NCCL_DEBUG=INFO", "--remote-workdir", "/srv/job dir", "--remote-python", "/opt/env/bin/python",
                         "--master-port", "9100", "--ssh-port", "2200", "--dry-run=json")
    assert code == 0, err
    plan = json.loads(out)
    assert plan["master"] == "10.0.0.5:9100"
    node = plan["nodes"][1]
    assert node["workdir"] == "/srv/job dir" and node["rank"] == 1
    assert node["env"] == {"NCCL_DEBUG": "INFO", "NCCL_IB_HCA": "mlx5_0:1", "PYTHONUNBUFFERED": "1"}
    assert node["argv"][:4] == ["/opt/env/bin/python", "-m", "trainctl", "train"]
    assert node["argv"][node["argv"].index("--gpus") + 1] == "0"
    assert node["ssh_argv"][node["ssh_argv"].index("-p") + 1] == "2200"
    assert shlex.split(node["remote_command"])[:2] == ["cd", "/srv/job dir"]


@pytest.mark.parametrize(
    "args, needle",
    [
        (["--hosts", "a,b", "--node-rank", "1"], "--node-rank cannot be combined"),
        (["--hosts", "a,b", "--hostfile", "h.txt"], "both given"),
        (["--hosts", "a,b", "--launcher", "slurm"], "two ways to start nodes"),
        (["--hosts", "10.0.0.1", "--ssh-option", "-i key"], "is not Key=Value"),
        (["--hostfile", "missing.txt"], "hostfile missing.txt not found"),
        (["--hosts", "10.0.0.1", "--master", "10.0.0.1:1", "--master-port", "2"], "both given"),
    ],
)
def test_bad_combinations(capsys, tmp_path, monkeypatch, args, needle):
    monkeypatch.chdir(tmp_path)
    code, _, err = run(capsys, "train", "-c", "roadsign.yml", *args, "--dry-run")
    assert code == 2 and needle in err


def test_unresolvable_host_is_a_warning_in_dry_run_and_an_error_otherwise(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, out, err = run(capsys, "train", "-c", "roadsign.yml", "--hosts", "no-such-host.invalid", "--dry-run")
    assert code == 0 and "cannot resolve no-such-host.invalid here" in err
    code, _, err = run(capsys, "train", "-c", "roadsign.yml", "--hosts", "no-such-host.invalid", "--no-preflight")
    assert code == 2 and "--hosts: cannot resolve no-such-host.invalid" in err


STEP = {"SLURM_JOB_ID": "55", "SLURM_STEP_ID": "0", "SLURM_JOB_NODELIST": "gpu[1-2]", "SLURM_NNODES": "2",
        "SLURM_NODEID": "1", "SLURM_NTASKS": "2", "SLURMD_NODENAME": "gpu2", "CUDA_VISIBLE_DEVICES": "3,5"}
BASE = LaunchOptions(launcher="paddle", nnodes=1, node_rank=0, master=None, host=None, ips=None,
                     gpus=None, nproc=None, device="auto")
ADDRS = {"gpu1": "10.1.0.1", "gpu2": "10.1.0.2"}


def test_apply_slurm_fills_node_and_device_flags():
    kwargs = apply_slurm(replace(BASE, launcher="slurm"), env=STEP, resolve=ADDRS.__getitem__)
    assert kwargs.launcher == "paddle"
    assert (kwargs.nnodes, kwargs.node_rank, kwargs.master, kwargs.host, kwargs.gpus) == (
        2, 1, "10.1.0.1:20055", "10.1.0.2", "0,1")
    # auto-detected inside an srun step when no node flags are given
    assert apply_slurm(BASE, env=STEP, resolve=ADDRS.__getitem__).nnodes == 2
    # the user's own devices and port win
    kwargs = apply_slurm(replace(BASE, launcher="slurm", gpus="1"), master_port=29500, env=STEP,
                         resolve=ADDRS.__getitem__)
    assert kwargs.gpus == "1" and kwargs.master == "10.1.0.1:29500"


def test_apply_slurm_leaves_other_runs_alone():
    assert apply_slurm(BASE, env={}) == BASE
    assert apply_slurm(replace(BASE, nnodes=2, master="1.2.3.4:5"), env=STEP).master == "1.2.3.4:5"
    allocation_only = {k: v for k, v in STEP.items() if k != "SLURM_STEP_ID"}  # salloc shell, not srun
    assert apply_slurm(BASE, env=allocation_only) == BASE
    with pytest.raises(UserError, match="drop --nnodes"):
        apply_slurm(replace(BASE, launcher="slurm", nnodes=2), env=STEP)

    def unresolvable(name):
        raise OSError("unknown host")

    with pytest.raises(UserError, match="cannot resolve the Slurm node name gpu1"):
        apply_slurm(replace(BASE, launcher="slurm"), env=STEP, resolve=unresolvable)


def test_srun_dry_run_through_the_cli(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for key, value in dict(STEP, SLURM_JOB_NODELIST="10.0.0.[1-2]", SLURMD_NODENAME="10.0.0.2").items():
        monkeypatch.setenv(key, value)
    code, out, err = run(capsys, "train", "-c", "roadsign.yml", "--launcher", "slurm", "--dry-run")
    assert code == 0, err
    assert "Slurm job 55: node 1 of 2 (10.0.0.2), master 10.0.0.1:20055" in err
    assert "--master 10.0.0.1:20055 --nnodes 2 --rank 1 --host 10.0.0.2 --devices 0,1" in out


def test_slurm_script_command(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, out, err = run(capsys, "slurm-script", "--nodes", "2", "--gpus-per-node", "4", "-c", "roadsign.yml",
                         "--time", "01:00:00", "--", "--net", "rdma", "-o", "epoch=3")
    assert code == 0, err
    assert "#SBATCH --nodes=2" in out and "#SBATCH --gres=gpu:4" in out and f"cd {tmp_path}" in out
    # the train arguments as train's parser read them, written again by cli.forward.option_words
    assert shlex.split(out.splitlines()[-1])[-13:] == ["-m", "trainctl", "train", "--launcher", "slurm", "--resume", "auto",
                                                        "-c", "roadsign.yml", "--override", "epoch=3", "--net", "rdma"]
    code, out, err = run(capsys, "slurm-script", "--nodes", "2", "--gpus-per-node", "4", "-c", "roadsign.yml",
                         "--max-restarts", "3")
    assert code == 0 and shlex.split(out.splitlines()[-1])[-5:] == ["auto", "--max-restarts", "3", "-c", "roadsign.yml"]
    code, _, err = run(capsys, "slurm-script", "--nodes", "2", "--gpus-per-node", "4", "-c", "roadsgn.yml")
    assert code == 2 and "did you mean roadsign.yml" in err
    code, _, err = run(capsys, "slurm-script", "--nodes", "2", "--gpus-per-node", "1", "-c", "roadsign.yml",
                       "--node-rank", "1")
    assert code == 2 and "set by Slurm" in err
    code, out, err = run(capsys, "slurm-script", "--nodes", "2", "--gpus-per-node", "1", "-c", "roadsign.yml",
                         "--", "--evl")
    assert code == 2 and out == "" and "--evl" in err  # a typo fails here, not on the cluster
    code, _, err = run(capsys, "slurm-script", "--nodes", "2", "--gpus-per-node", "1", "-c", "roadsign.yml",
                       "--", "-c", "other.yml")
    assert code == 2 and "given twice" in err
    code, _, err = run(capsys, "slurm-script", "--nodes", "1", "--gpus-per-node", "0", "-c", "roadsign.yml",
                       "--out", "job.sbatch")
    assert code == 0 and (tmp_path / "job.sbatch").read_text().startswith("#!/bin/bash")


def test_multi_host_code_never_imports_paddle(tmp_path):
    import subprocess

    (tmp_path / "hosts.txt").write_text("10.0.0.1\n10.0.0.2\n")
    code = (
        "import sys\n"
        "import trainctl.cluster.dispatch, trainctl.cluster.ssh, trainctl.cluster.preflight, trainctl.cluster.guard\n"
        "import trainctl.cluster.slurm, trainctl.cluster.hostfile, trainctl.cli.slurm, trainctl.cli.multihost\n"
        "from trainctl.cli import main\n"
        "try:\n"
        "    main(['train', '-c', 'roadsign.yml', '--hostfile', 'hosts.txt', '--dry-run'])\n"
        "except SystemExit as exc:\n"
        "    assert exc.code == 0, exc.code\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('paddle', 'ppdet'))\n"
        "assert not bad, bad\n"
    )
    out = subprocess.run([PY, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.count("ssh -o BatchMode=yes") == 2
