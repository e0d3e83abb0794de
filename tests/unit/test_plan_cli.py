"""`trainctl train/eval --dry-run` end to end through the CLI (no paddle, no GPUs, no dataset)."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys

import pytest


def trainctl(*args, cwd=None, env=None):
    return subprocess.run([sys.executable, "-m", "trainctl", *args], capture_output=True, text=True, timeout=60,
                          cwd=cwd, env=env)


def test_done_when_command_prints_a_runnable_paddle_plan(tmp_path):
    proc = trainctl("train", "-c", "roadsign.yml", "--gpus", "0,1,2,3", "--nnodes", "2", "--node-rank", "0",
                    "--master", "10.0.0.1:8090", "--net", "rdma", "--hca", "mlx5_0:1", "--dry-run", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "world size  8" in out and "base_lr" in out and "nothing written" in out
    # the node-0 command, joined back from its backslash-continued lines, is one shell command
    block = out.split("node 0 (this host)")[1].split("\n\n")[0].split(":\n", 1)[1]
    words = shlex.split(block.replace("\\\n", " "))
    assert "NCCL_IB_HCA=mlx5_0:1" in words and "NCCL_IB_DISABLE=0" in words and "NCCL_NET_GDR_LEVEL=0" in words
    i = words.index("paddle.distributed.launch")
    assert words[i + 1:i + 13] == ["--master", "10.0.0.1:8090", "--nnodes", "2", "--rank", "0", "--host", "10.0.0.1",
                                   "--devices", "0,1,2,3", "--log_dir", "output/roadsign/logs/node0"]
    assert words[-4:] == ["-m", "trainctl.runner.worker", "--job", "output/roadsign/job.json"]
    assert not (tmp_path / "output").exists()  # a dry run writes nothing


def test_dry_run_json(tmp_path):
    proc = trainctl("train", "-c", "roadsign.yml", "--gpus", "0,1", "--lr-scale", "sqrt", "--env", "WANDB_API_KEY=s3cr3t",
                    "--dry-run=json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["world_size"] == 2 and data["launcher"] == "paddle" and data["lr"]["mode"] == "sqrt"
    assert data["lr"]["factor"] == pytest.approx(0.5)
    assert data["nodes"][0]["env"]["WANDB_API_KEY"] == "***" and "s3cr3t" not in proc.stdout
    assert data["config"].endswith("roadsign.yml")


def test_stale_paddle_variables_listed(tmp_path):
    import os

    env = dict(os.environ, PADDLE_TRAINER_ID="1", PADDLE_MASTER="1.2.3.4:5")
    proc = trainctl("train", "-c", "roadsign.yml", "--gpus", "0,1", "--dry-run", cwd=tmp_path, env=env)
    assert proc.returncode == 0
    assert "env -u PADDLE_MASTER -u PADDLE_TRAINER_ID" in proc.stdout


@pytest.mark.parametrize("args,message", [
    (["--gpus", "0,0", "--dry-run"], "more than once"),
    (["--nnodes", "2"], "needs --master"),
    (["--nnodes", "2", "--node-rank", "5", "--master", "h:1"], "out of range"),
    (["--nnodes", "2", "--master", "10.0.0.1"], "not HOST:PORT"),
    (["--gpus", "0,1"], "CPU-only build"),  # this machine's paddle has no CUDA; a real launch refuses
    (["--lr-scale", "cubic"], "Invalid value"),
    (["--net", "warp", "--dry-run"], "not a preset"),
])
def test_user_errors_are_one_line_exit_2(tmp_path, args, message):
    proc = trainctl("train", "-c", "roadsign.yml", *args, cwd=tmp_path)
    assert proc.returncode == 2
    assert message in proc.stderr and "Traceback" not in proc.stderr


def test_real_launch_checks_the_dataset(tmp_path):
    proc = trainctl("train", "-c", "roadsign_cpu_smoke.yml", cwd=tmp_path)
    assert proc.returncode == 2
    assert "trainctl data sample --out dataset/roadsign_voc" in proc.stderr
    assert not (tmp_path / "output").exists()


def test_eval_dry_run_and_missing_weights(tmp_path):
    proc = trainctl("eval", "-c", "roadsign.yml", "--gpus", "0,1", "--dry-run", cwd=tmp_path)
    assert proc.returncode == 0 and "output/roadsign/eval/job.json" in proc.stdout
    assert "learning rate" not in proc.stdout
    proc = trainctl("eval", "-c", "roadsign_cpu_smoke.yml", "--weights", "nowhere/model", "--no-data-check", cwd=tmp_path)
    assert proc.returncode == 2 and "nowhere/model.pdparams" in proc.stderr


def test_ppdet_style_overrides(tmp_path):
    proc = trainctl("train", "-c", "roadsign.yml", "-o", "TrainReader.batch_size=4", "epoch=3", "--gpus", "0,1",
                    "--dry-run=json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["overrides"] == ["TrainReader.batch_size=4", "epoch=3"]
    assert data["lr"]["per_device_batch"] == 4 and data["lr"]["actual_batch"] == 8
    proc = trainctl("train", "-c", "roadsign.yml", "stray", "--dry-run", cwd=tmp_path)
    assert proc.returncode == 2 and "unexpected argument 'stray'" in proc.stderr
