"""train's tools/train.py flags (launch/train_extras.py, cli/train_extras.py): planning only, no paddle.

GPU plans are faked with launch_helpers.cuda_env (a CUDA paddle and 8 A100s), as the plan tests do."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from launch_helpers import context, cpu_env

from trainctl.errors import UserError
from trainctl.launch import flow
from trainctl.launch.plan import LaunchOptions
from trainctl.launch.train_extras import TrainExtras, parse_profiler_options, record_line


def prepare(extras: TrainExtras | None, gpus: str | None = "0,1", amp: bool = False, overrides=(), ctx=None,
            dry="json"):
    topts = flow.TaskOptions(config="roadsign.yml", overrides=list(overrides), amp=amp, dry_run=dry,
                             no_data_check=True, extras=extras)
    lopts = LaunchOptions(device="gpu" if gpus else "cpu", gpus=gpus)
    ctx = ctx or context(strict=False)
    if not gpus:
        ctx.device_env = cpu_env()
    return flow.prepare("train", topts, lopts, ctx)


def test_each_amp_flag_is_a_ppdet_config_key_on_a_gpu_plan():
    rc, plan = prepare(TrainExtras(amp_level="O2", master_grad=True, init_loss_scaling=65536))
    assert rc.get("amp") is True and rc.source_of("amp") == "--amp-level (implies --amp)"
    assert rc.get("amp_level") == "O2" and rc.source_of("amp_level") == "--amp-level O2"
    assert rc.get("master_grad") is True and rc.get("init_loss_scaling") == 65536.0
    data = plan.to_dict()["train_extras"]  # what --dry-run=json prints and run.json keeps
    assert data["precision"] == {"amp": True, "level": "O2", "dtype": "float16", "master_grad": True,
                                 "init_loss_scaling": 65536.0, "loss_scaling": True}
    assert data["config_keys"] == {"amp": True, "amp_level": "O2", "master_grad": True, "init_loss_scaling": 65536.0}
    assert record_line(data).startswith("AMP O2 float16, master_grad, init loss scaling 65536")


def test_plain_amp_keeps_its_meaning_and_is_recorded():
    rc, plan = prepare(None, amp=True)
    assert rc.get("amp") is True and rc.get("amp_level") is None  # ppdet's default level O1
    assert plan.extras["precision"]["level"] == "O1" and plan.extras["precision"]["dtype"] == "float16"


def test_bfloat16_needs_no_loss_scaling():
    _, plan = prepare(TrainExtras(amp_dtype="bfloat16"))
    assert plan.extras["precision"]["dtype"] == "bfloat16" and plan.extras["precision"]["loss_scaling"] is False


@pytest.mark.parametrize("extras,message", [
    (TrainExtras(amp_level="O1"), "--amp-level O1: mixed precision needs a GPU"),
    (TrainExtras(amp_dtype="bfloat16"), "--amp-dtype bfloat16: mixed precision needs a GPU"),
    (TrainExtras(init_loss_scaling=512), "--init-loss-scaling 512: mixed precision needs a GPU"),
])
def test_precision_flags_are_refused_on_cpu(extras, message):
    with pytest.raises(UserError, match=message):
        prepare(extras, gpus=None)


def test_plain_amp_on_cpu_warns_and_records_float32():
    rc, plan = prepare(None, gpus=None, amp=True)
    assert any("no effect on CPU" in w for w in plan.warnings)
    assert plan.extras["precision"] == {"amp": False, "dtype": "float32",
                                        "why": "CPU: ppdet enables auto_cast only on GPU"}


def test_master_grad_needs_o2_and_scaling_positive():
    with pytest.raises(UserError, match="--master-grad applies to --amp-level O2 only"):
        prepare(TrainExtras(master_grad=True))
    with pytest.raises(UserError, match="must be positive"):
        prepare(TrainExtras(init_loss_scaling=0))


def test_to_static_and_fleet_are_config_keys():
    rc, plan = prepare(TrainExtras(to_static=True, fleet=True), gpus=None)
    assert rc.get("to_static") is True and rc.get("fleet") is True
    assert plan.extras["config_keys"] == {"to_static": True, "fleet": True}


def test_profiler_options():
    assert parse_profiler_options("batch_range=[3, 7]; timer_only=False;sorted_key=ave") == {
        "batch_range": [3, 7], "timer_only": False, "sorted_key": "ave"}
    for bad in ("batch_range=[5,2]", "bogus=1", "batch_range"):
        with pytest.raises(UserError, match="--profiler-options"):
            parse_profiler_options(bad)
    _, plan = prepare(TrainExtras(profile=True), gpus=None)
    assert plan.extras["profile"]["batch_range"] == [2, 5] and plan.extras["profile"]["path"] == "output/roadsign/profile"


def test_slim_config_checks_pretrained_weights(tmp_path):
    slim = tmp_path / "qat.yml"
    slim.write_text("pretrain_weights:\nslim: QAT\nQAT:\n  quant_config: {}\n")
    with pytest.raises(UserError, match=r"--slim-config \(QAT\) loads pretrain_weights .* is empty"):
        prepare(TrainExtras(slim_config=str(slim)), gpus=None, dry=None)
    with pytest.raises(UserError, match="does not exist"):
        prepare(TrainExtras(slim_config=str(slim)), gpus=None, overrides=[f"pretrain_weights={tmp_path}/none"],
                dry=None)
    (tmp_path / "float.pdparams").write_bytes(b"x")
    _, plan = prepare(TrainExtras(slim_config=str(slim)), gpus=None, overrides=[f"pretrain_weights={tmp_path}/float"])
    assert plan.extras["slim"]["method"] == "QAT" and plan.extras["slim"]["pretrain_weights"] == f"{tmp_path}/float"
    with pytest.raises(UserError, match="no 'slim' key"):
        (tmp_path / "bad.yml").write_text("a: 1\n")
        prepare(TrainExtras(slim_config=str(tmp_path / "bad.yml")), gpus=None)


def trainctl(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "trainctl", *args], capture_output=True, text=True, timeout=60, cwd=cwd)


def test_gpu_dry_run_json_and_text_show_the_precision(tmp_path):
    proc = trainctl("train", "-c", "roadsign.yml", "--gpus", "0,1", "--amp-level", "O2", "--master-grad",
                    "--init-loss-scaling", "4096", "--to-static", "--dry-run=json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    extras = json.loads(proc.stdout)["train_extras"]
    assert extras["config_keys"] == {"amp": True, "amp_level": "O2", "master_grad": True, "init_loss_scaling": 4096.0,
                                     "to_static": True}
    proc = trainctl("train", "-c", "roadsign.yml", "--gpus", "0,1", "--amp-dtype", "bfloat16", "--dry-run", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "training    AMP O1 bfloat16" in proc.stdout


def test_cpu_refusal_is_one_line_exit_2(tmp_path):
    proc = trainctl("train", "-c", "roadsign_cpu_smoke.yml", "--amp-level", "O2", "--dry-run", cwd=tmp_path)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "mixed precision needs a GPU" in lines[0], proc.stderr
