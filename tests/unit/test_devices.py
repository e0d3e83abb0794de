from __future__ import annotations

import pytest
from launch_helpers import cpu_env, cuda_env

from trainctl.errors import UserError
from trainctl.launch import devices


def test_cpu_default_and_nproc():
    assert devices.choose_devices(cpu_env()).kind == "cpu"
    choice = devices.choose_devices(cpu_env(), nproc=2)
    assert (choice.kind, choice.ids, choice.nproc_per_node) == ("cpu", None, 2)


def test_auto_picks_gpu_on_cuda_host():
    choice = devices.choose_devices(cuda_env(2))
    assert (choice.kind, choice.ids, choice.nproc_per_node) == ("gpu", [0], 1)


def test_gpu_list():
    choice = devices.choose_devices(cuda_env(8), gpus="0,1,2,3")
    assert choice.ids == [0, 1, 2, 3] and choice.nproc_per_node == 4 and choice.kind == "gpu"


def test_duplicate_and_malformed_ids():
    with pytest.raises(UserError, match="more than once"):
        devices.choose_devices(cuda_env(), gpus="0,1,1")
    with pytest.raises(UserError, match="not a GPU index"):
        devices.choose_devices(cuda_env(), gpus="0,a")
    with pytest.raises(UserError, match="more than once"):  # a flag mistake, even in a dry run
        devices.choose_devices(cuda_env(), gpus="2,2", strict=False)


def test_nonexistent_gpu():
    with pytest.raises(UserError, match="GPU 4 does not exist: nvidia-smi lists 4"):
        devices.choose_devices(cuda_env(4), gpus="0,4")


def test_cuda_visible_devices_limits_ids():
    env = cuda_env(8, visible="4,5")
    assert env.visible_gpus() == ["4", "5"]
    assert devices.choose_devices(env, gpus="0,1").ids == [0, 1]
    with pytest.raises(UserError, match="CUDA_VISIBLE_DEVICES=4,5 makes 2 visible"):
        devices.choose_devices(env, gpus="2")


def test_gpus_on_cpu_only_paddle():
    with pytest.raises(UserError, match="CPU-only build"):
        devices.choose_devices(cpu_env(), gpus="0,1")
    choice = devices.choose_devices(cpu_env(), gpus="0,1", strict=False)
    assert choice.kind == "gpu" and choice.ids == [0, 1] and "CPU-only" in choice.warnings[0]


def test_conflicts():
    with pytest.raises(UserError, match="contradict"):
        devices.choose_devices(cuda_env(), device="cpu", gpus="0")
    with pytest.raises(UserError, match="does not match"):
        devices.choose_devices(cuda_env(), gpus="0,1", nproc=3)
    with pytest.raises(UserError, match="at least 1"):
        devices.choose_devices(cpu_env(), nproc=0)


def test_paddle_build_detection_reads_version_file(tmp_path, monkeypatch):
    pkg = tmp_path / "paddle"
    (pkg / "version").mkdir(parents=True)
    (pkg / "__init__.py").write_text("raise RuntimeError('must not be imported')\n")
    (pkg / "version" / "__init__.py").write_text(
        "full_version     = '3.3.1'\nnccl_version     = '22103'\ncuda_version     = '12.6'\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    build = devices.detect_paddle_build()
    assert (build.version, build.cuda, build.nccl_code, build.nccl_version) == ("3.3.1", "12.6", 22103, "2.21.3")
    (pkg / "version" / "__init__.py").write_text(
        "full_version     = '3.3.1'\nnccl_version     = '0'\ncuda_version     = 'False'\n")
    build = devices.detect_paddle_build()
    assert build.installed and build.cuda is None and build.nccl_code is None


def test_nccl_version_old_encoding():
    assert devices.PaddleBuild(True, nccl_code=2708).nccl_version == "2.7.8"
