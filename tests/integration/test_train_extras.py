"""tools/train.py's flags through `trainctl train`, with real paddle and ppdet on CPU (issue 23):
--to-static (trains and resumes), --fleet with 2 processes, --profile (its files and its summary
line), and the CPU refusal of the mixed precision flags. Each run is 2 iterations of the smoke config."""

from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.paddle

TINY = ["-o", "trainctl.max_iters=2", "-o", "log_iter=1", "--lr-scale", "none"]


def _train(ptools, workdir, run_dir, *flags):
    return ptools.run_cli(["train", "-c", "roadsign_cpu_smoke.yml", *TINY, "--output", str(run_dir), *flags], workdir)


ONE_SIZE = ["-o", "TrainReader.batch_transforms.0.BatchRandomResize.target_size=[192]"]  # to_static compiles per input shape


@pytest.mark.slow
def test_to_static_trains_and_resumes(sample_dataset, ptools, tmp_path):
    run_dir = tmp_path / "static"
    proc = _train(ptools, sample_dataset, run_dir, "--to-static", *ONE_SIZE)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    assert "Successfully to apply @to_static" in out  # ppdet's Trainer converted the model
    assert json.loads((run_dir / "run.json").read_text())["plan"]["train_extras"]["config_keys"] == {"to_static": True}
    assert (run_dir / "model_final.pdparams").exists()
    proc = _train(ptools, sample_dataset, run_dir, "--to-static", *ONE_SIZE, "-o", "epoch=2", "-r", str(run_dir / "model_final"))
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    assert f"resumed from {run_dir / 'model_final'} at epoch 1" in out and "Successfully to apply @to_static" in out
    assert "train done: epochs 1..2" in out


@pytest.mark.slow
def test_fleet_with_two_processes(sample_dataset, ptools, tmp_path):
    run_dir = tmp_path / "fleet"
    proc = _train(ptools, sample_dataset, run_dir, "--fleet", "--nproc", "2")
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    logs = "".join(p.read_text() for p in sorted((run_dir / "logs").rglob("workerlog.*")))
    assert "rank 0 of 2" in logs and "rank 1 of 2" in logs
    assert logs.count("train done") == 2 and (run_dir / "model_final.pdparams").exists()
    assert json.loads((run_dir / "run.json").read_text())["plan"]["train_extras"]["fleet"] is True


@pytest.mark.slow
def test_profile_writes_its_files_and_prints_the_summary(sample_dataset, ptools, tmp_path):
    run_dir = tmp_path / "prof"
    proc = _train(ptools, sample_dataset, run_dir, "-o", "trainctl.max_iters=4",
                  "--profiler-options", "batch_range=[1,3];timer_only=False")
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    line = next(l for l in out.splitlines() if "profile: 2 iterations" in l)
    for part in ("data", "forward", "backward", "optimizer", "other"):
        assert f"{part} " in line and "%" in line
    summary = (run_dir / "profile" / "summary.txt").read_text()
    assert summary.startswith("2 iterations") and "Operator Summary" in summary  # paddle's own tables
    steps = json.loads((run_dir / "profile" / "steps.json").read_text())
    assert [s["iteration"] for s in steps] == [1, 2] and all(s["forward"] > 0 and s["optimizer"] > 0 for s in steps)
    assert (run_dir / "profile" / "trace.json").stat().st_size > 1000


@pytest.mark.slow
def test_amp_dtype_is_refused_on_cpu_before_launch(sample_dataset, ptools, tmp_path):
    proc = _train(ptools, sample_dataset, tmp_path / "amp", "--amp-dtype", "bfloat16")
    assert proc.returncode == 2
    assert ptools.error_lines(proc.stderr) == [line for line in proc.stderr.strip().splitlines()]
    assert "mixed precision needs a GPU" in proc.stderr and not (tmp_path / "amp").exists()


SLIM_QAT = "../shared/reference/paddledet-2.6-configs/slim/quant/yolov3_mobilenet_v1_qat.yml"  # PaddleDetection's own


@pytest.mark.slow
def test_qat_from_a_trained_float_model(smoke_run, ptools, tmp_path):
    from pathlib import Path

    slim = Path(__file__).resolve().parents[2] / SLIM_QAT
    if not slim.exists():
        pytest.skip(f"{SLIM_QAT} (the shared reference configs) is not next to this checkout")
    pytest.importorskip("paddleslim", reason="PaddleSlim: pip install --no-deps paddleslim==2.6.0 (scripts/test.sh does)")
    run_dir = tmp_path / "qat"
    # the slim file names a COCO download: without -o it would be the weights to quantize
    proc = _train(ptools, smoke_run.workdir, run_dir, "--slim-config", str(slim), "-o", "pretrain_weights=")
    assert proc.returncode == 2 and "pretrain_weights is empty (from -o pretrain_weights)" in proc.stderr
    assert not run_dir.exists()
    proc = _train(ptools, smoke_run.workdir, run_dir, "--slim-config", str(slim),
                  "-o", f"pretrain_weights={smoke_run.final}")
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    assert "Quantized model:" in out and f"float weights {smoke_run.final}" in out
    import paddle

    state = paddle.load(str(run_dir / "model_final.pdparams"))
    scales = [k for k in state if k.endswith("_fake_quant_weight._scale")]
    assert len(scales) > 10  # the trained model carries the fake-quant ops' scales
    assert json.loads((run_dir / "run.json").read_text())["plan"]["train_extras"]["slim"]["method"] == "QAT"


def test_cpu_auto_cast_has_no_effect_on_this_paddle():
    """The measured premise of the CPU refusal: paddle's auto_cast (float16 or bfloat16) leaves a CPU layer in float32."""
    import paddle

    paddle.set_device("cpu")
    layer = paddle.nn.Linear(4, 4)
    for dtype in ("float16", "bfloat16"):
        with pytest.warns(UserWarning, match="amp_guard can only be enabled on CUDAPlace"):
            with paddle.amp.auto_cast(level="O1", dtype=dtype):
                out = layer(paddle.rand([2, 4]))
        assert out.dtype == paddle.float32


def test_amp_settings_passes_what_ppdet_drops(monkeypatch):
    import paddle

    from trainctl.runner import compat

    calls = []
    monkeypatch.setattr(paddle.amp, "decorate", lambda *a, **k: calls.append(("decorate", k)))
    monkeypatch.setattr(paddle.amp, "auto_cast", lambda *a, **k: calls.append(("auto_cast", k)))
    recorder = paddle.amp.decorate
    with compat.amp_settings(master_grad=True, dtype="bfloat16"):
        paddle.amp.decorate(models=None, optimizers=None, level="O2")  # ppdet 2.6.0, and develop on paddle 3.x
        paddle.amp.decorate(models=None, optimizers=None, level="O2", master_grad=False)  # where ppdet passes it
        paddle.amp.auto_cast(enable=True, level="O1")
    assert calls == [("decorate", {"models": None, "optimizers": None, "level": "O2", "master_grad": True, "dtype": "bfloat16"}),
                     ("decorate", {"models": None, "optimizers": None, "level": "O2", "master_grad": False, "dtype": "bfloat16"}),
                     ("auto_cast", {"enable": True, "level": "O1", "dtype": "bfloat16"})]
    assert paddle.amp.decorate is recorder  # the block restores what it replaced
    calls.clear()
    with compat.amp_settings(master_grad=False, dtype="float16"):  # nothing ppdet lacks: nothing changes
        paddle.amp.decorate(models=None, level="O2")
    assert calls == [("decorate", {"models": None, "level": "O2"})]
