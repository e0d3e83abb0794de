"""Slurm node lists, placement from SLURM_* variables, sbatch scripts (pure)."""

from __future__ import annotations

import shlex

import pytest

from trainctl.errors import UserError
from trainctl.cluster.slurm import (
    default_master_port,
    expand_nodelist,
    gpus_from_env,
    in_slurm_step,
    placement_from_env,
    sbatch_script,
)


@pytest.mark.parametrize(
    "nodelist, hosts",
    [
        ("node1", ["node1"]),
        ("node1,node2", ["node1", "node2"]),
        ("gpu[01-03,07]", ["gpu01", "gpu02", "gpu03", "gpu07"]),
        ("gpu[08-10]", ["gpu08", "gpu09", "gpu10"]),
        ("n[1-2],m5", ["n1", "n2", "m5"]),
        ("n[9-11]", ["n9", "n10", "n11"]),
        ("a[1-2]b[3-4]", ["a1b3", "a1b4", "a2b3", "a2b4"]),
        ("rack[1-2]-node[01-02].ib", ["rack1-node01.ib", "rack1-node02.ib", "rack2-node01.ib", "rack2-node02.ib"]),
        ("x[5],y[001-002],z", ["x5", "y001", "y002", "z"]),
        ("c1 c2", ["c1", "c2"]),
    ],
)
def test_expand_nodelist(nodelist, hosts):
    assert expand_nodelist(nodelist) == hosts


@pytest.mark.parametrize("bad", ["gpu[01-03", "gpu]1[", "n[a-b]", "n[3-1]", "n[[1]]", "", "n[1-]"])
def test_bad_nodelists(bad):
    with pytest.raises(UserError, match="Slurm node list"):
        expand_nodelist(bad)


STEP = {
    "SLURM_JOB_ID": "123456",
    "SLURM_STEP_ID": "0",
    "SLURM_JOB_NODELIST": "gpu[01-04]",
    "SLURM_STEP_NODELIST": "gpu[02-03]",
    "SLURM_STEP_NUM_NODES": "2",
    "SLURM_NNODES": "4",
    "SLURM_NODEID": "1",
    "SLURM_STEP_NUM_TASKS": "2",
    "SLURMD_NODENAME": "gpu03",
    "CUDA_VISIBLE_DEVICES": "4,5,6,7",
}


def test_placement_uses_the_step_not_the_allocation():
    p = placement_from_env(STEP)
    assert p.hosts == ("gpu02", "gpu03")
    assert (p.nnodes, p.node_rank, p.node_name, p.master_host) == (2, 1, "gpu03", "gpu02")
    assert p.master == f"gpu02:{20000 + 123456 % 20000}"
    # paddle's --devices index into CUDA_VISIBLE_DEVICES
    assert p.gpus == (0, 1, 2, 3) and p.gpus_from == "CUDA_VISIBLE_DEVICES"


def test_placement_master_port_override_and_job_only_vars():
    env = {
        "SLURM_JOB_ID": "77",
        "SLURM_STEP_ID": "0",
        "SLURM_JOB_NODELIST": "n[1-2],m5",
        "SLURM_NNODES": "3",
        "SLURM_NODEID": "2",
        "SLURM_NTASKS": "3",
    }
    p = placement_from_env(env, master_port=29500)
    assert (p.nnodes, p.node_rank, p.node_name, p.master) == (3, 2, "m5", "n1:29500")
    assert p.gpus is None


@pytest.mark.parametrize(
    "change, needle",
    [
        ({"SLURM_STEP_NUM_TASKS": "8"}, "one task per node"),
        ({"SLURM_NODEID": "5"}, "outside 0..1"),
        ({"SLURM_STEP_NUM_NODES": "3"}, "has 2"),
        ({"SLURM_STEP_ID": None}, "outside srun"),
        ({"SLURM_JOB_ID": None}, "SLURM_JOB_ID is not set"),
        ({"SLURM_NODEID": "x"}, "not a number"),
    ],
)
def test_placement_errors(change, needle):
    env = dict(STEP)
    for key, value in change.items():
        if value is None:
            env.pop(key)
        else:
            env[key] = value
    with pytest.raises(UserError, match=needle):
        placement_from_env(env)


def test_single_node_allocation_without_srun_is_fine():
    env = {"SLURM_JOB_ID": "5", "SLURM_JOB_NODELIST": "cpu7", "SLURM_NNODES": "1"}
    assert not in_slurm_step(env)
    p = placement_from_env(env)
    assert (p.nnodes, p.node_rank, p.master_host) == (1, 0, "cpu7")


@pytest.mark.parametrize(
    "env, gpus, source",
    [
        ({"CUDA_VISIBLE_DEVICES": "2,3"}, (0, 1), "CUDA_VISIBLE_DEVICES"),
        ({"CUDA_VISIBLE_DEVICES": ""}, None, "CUDA_VISIBLE_DEVICES"),
        ({"SLURM_STEP_GPUS": "1,3", "SLURM_JOB_GPUS": "0,1,2,3"}, (1, 3), "SLURM_STEP_GPUS"),
        ({"SLURM_JOB_GPUS": "0,1"}, (0, 1), "SLURM_JOB_GPUS"),
        ({"SLURM_GPUS_ON_NODE": "4"}, (0, 1, 2, 3), "SLURM_GPUS_ON_NODE"),
        ({"SLURM_GPUS_ON_NODE": "0"}, None, ""),
        ({}, None, ""),
    ],
)
def test_gpus_from_env(env, gpus, source):
    assert gpus_from_env(env) == (gpus, source)


def test_default_master_port_is_stable_and_in_range():
    assert default_master_port("123456") == default_master_port("123456") == 23456
    assert 20000 <= default_master_port("99999999") < 40000
    assert default_master_port("4242_7") == 20000 + 42427 % 20000  # array job ids


def test_sbatch_script():
    text = sbatch_script(
        nodes=2,
        gpus_per_node=4,
        train_args=["-c", "my configs/roadsign.yml", "-o", "epoch=3"],
        python="/opt/env/bin/python",
        job_name="trainctl-roadsign",
        workdir="/home/me/project",
        time="01:00:00",
        partition="gpu",
    )
    lines = text.splitlines()
    assert lines[0] == "#!/bin/bash"
    for directive in ("--nodes=2", "--ntasks-per-node=1", "--gres=gpu:4", "--time=01:00:00", "--partition=gpu"):
        assert f"#SBATCH {directive}" in lines
    assert "cd /home/me/project" in lines
    srun = shlex.split(lines[-1])
    assert srun[:3] == ["srun", "--ntasks-per-node=1", "--kill-on-bad-exit=1"]
    assert srun[3:] == ["/opt/env/bin/python", "-m", "trainctl", "train", "--launcher", "slurm", "--resume", "auto",
                        "-c", "my configs/roadsign.yml", "-o", "epoch=3"]


def test_sbatch_script_cpu_adds_device_cpu():
    text = sbatch_script(nodes=1, gpus_per_node=0, train_args=["-c", "x.yml"], python="python", job_name="j")
    assert "--gres" not in text
    assert shlex.split(text.splitlines()[-1])[-6:] == ["--device", "cpu", "--resume", "auto", "-c", "x.yml"]
    with pytest.raises(UserError):
        sbatch_script(nodes=0, gpus_per_node=1, train_args=[], python="p", job_name="j")


def test_sbatch_script_resumes_and_restarts_like_the_k8s_manifest():
    """A requeued Slurm job continues from the newest checkpoint (--resume auto), as a restarted PaddleJob pod does."""
    from trainctl.cli.forward import train_words as pod_words_of
    from trainctl.cluster.k8s_manifest import ManifestSpec, build

    def train_words(**kw):
        text = sbatch_script(nodes=2, gpus_per_node=4, python="python", job_name="j", **kw)
        words = shlex.split(text.splitlines()[-1])
        return words[words.index("train"):]

    words = train_words(train_args=["-c", "x.yml"], max_restarts=3)
    assert words[words.index("--resume") + 1] == "auto" and words[words.index("--max-restarts") + 1] == "3"
    job = build(ManifestSpec(config="x.yml", nodes=2, gpus_per_node=4, image="img", name="j"), pod_words_of).data
    container = job["spec"]["paddleReplicaSpecs"]["Worker"]["template"]["spec"]["containers"][0]
    pod_words = [*container.get("command", []), *container.get("args", [])]
    assert pod_words[pod_words.index("--resume") + 1] == "auto"  # both resume the same way
    # no --max-restarts when not asked; the user's own --resume wins over auto
    assert "--max-restarts" not in train_words(train_args=["-c", "x.yml"])
    words = train_words(train_args=["-c", "x.yml", "--resume", "output/x/3"])
    assert words.count("--resume") == 1 and words[words.index("--resume") + 1] == "output/x/3"
    assert "--resume" not in train_words(train_args=["-c", "x.yml", "-r", "output/x/3"])[:-2]
    with pytest.raises(UserError, match="given twice"):
        train_words(train_args=["-c", "x.yml", "--max-restarts", "2"], max_restarts=3)
    with pytest.raises(UserError, match="0 or more"):
        train_words(train_args=["-c", "x.yml"], max_restarts=-1)
