from __future__ import annotations

import math

import pytest

from trainctl.config import Tagged, resolve
from trainctl.errors import UserError
from trainctl.launch import lr


def config(base_lr=0.001, batch=8, warmup=None, ref=None):
    schedulers = [Tagged("PiecewiseDecay", {"gamma": 0.1, "milestones": [216, 243]})]
    if warmup is not None:
        schedulers.append(Tagged("LinearWarmup", dict(warmup)))
    data = {"LearningRate": {"base_lr": base_lr, "schedulers": schedulers},
            "TrainReader": {"batch_size": batch}}
    if ref is not None:
        data["trainctl"] = {"ref_gpus": ref}
    return data


@pytest.mark.parametrize("mode,world,factor", [
    ("linear", 1, 1 / 8), ("linear", 2, 2 / 8), ("linear", 8, 1.0), ("linear", 16, 2.0),
    ("sqrt", 2, math.sqrt(2 / 8)), ("sqrt", 32, 2.0), ("none", 2, 1.0),
])
def test_factors(mode, world, factor):
    report = lr.compute(config(base_lr=0.01, batch=8), world, mode)
    assert report.factor == pytest.approx(factor)
    assert report.scaled_lr == pytest.approx(0.01 * factor)
    assert (report.ref_batch, report.actual_batch) == (64, 8 * world)


def test_warmup_covers_same_images():
    report = lr.compute(config(batch=8, warmup={"start_factor": 0.1, "steps": 1000}), 2, "linear")
    # 1000 iterations at 64 images = 64000 images; at 16 images per iteration that is 4000 iterations
    assert (report.warmup_steps_before, report.warmup_steps_after) == (1000, 4000)
    assert report.warmup_path == "LearningRate.schedulers.1.steps"
    sqrt = lr.compute(config(batch=8, warmup={"steps": 1000}), 16, "sqrt")
    assert sqrt.warmup_steps_after == 500  # images, not the LR factor, decide warmup
    none = lr.compute(config(batch=8, warmup={"steps": 1000}), 2, "none")
    assert none.warmup_steps_after == 1000


def test_warmup_default_steps_and_epochs_and_minimum():
    default = lr.compute(config(batch=2, warmup={"start_factor": 0.3}), 1, "linear")
    assert default.warmup_steps_before == 500 and default.warmup_steps_after == 4000  # LinearWarmup's default 500
    epochs = lr.compute(config(warmup={"epochs": 2}), 2, "linear")
    assert epochs.warmup_steps_before is None and epochs.warmup_epochs == 2.0
    tiny = lr.compute(config(batch=1, warmup={"steps": 1}), 64, "linear")
    assert tiny.warmup_steps_after == 1


def test_ref_gpus_flag_and_config_key():
    assert lr.compute(config(), 4, "linear", ref_gpus=4).factor == 1.0
    report = lr.compute(config(ref=2), 4, "linear")
    assert report.factor == 2.0 and report.ref_gpus_source == "config trainctl.ref_gpus"
    assert lr.compute(config(ref=2), 4, "linear", ref_gpus=8).factor == 0.5  # the flag wins
    with pytest.raises(UserError, match="positive integer"):
        lr.compute(config(ref=0), 4)


def test_missing_keys_are_user_errors():
    with pytest.raises(UserError, match="base_lr"):
        lr.compute({"TrainReader": {"batch_size": 2}}, 1)
    with pytest.raises(UserError, match="batch_size"):
        lr.compute({"LearningRate": {"base_lr": 0.1}}, 1)
    with pytest.raises(UserError, match=r"batch_size is 0 \(set by -o TrainReader.batch_size=0\)") as err:
        lr.compute(config(batch=0), 1, source_of=lambda key: "-o TrainReader.batch_size=0")
    assert "-o TrainReader.batch_size=N" in err.value.one_line()
    with pytest.raises(UserError, match="positive integer"):
        lr.compute(config(batch="8"), 1)
    with pytest.raises(UserError, match="lr-scale"):
        lr.compute(config(), 1, "cubic")


def test_report_lines():
    text = "\n".join(lr.compute(config(base_lr=0.001, batch=8, warmup={"steps": 100}), 2).lines())
    assert "8 GPUs × 8 images = 64" in text and "2 processes × 8 images = 16" in text
    assert "0.25 = 16/64" in text and "0.001 -> 0.00025" in text and "100 -> 400" in text
    one = "\n".join(lr.compute(config(batch=2, ref=1), 1).lines())
    assert "reference: 1 GPU," in one and "1 GPU × 2 images = 2" in one and "1 process × 2 images" in one
    assert "1 process × 1 image = 1" in "\n".join(lr.compute(config(batch=1), 1).lines())


def test_apply_records_provenance_in_resolved_config():
    rc = resolve("roadsign.yml")
    before_lr = rc.get("LearningRate.base_lr")
    report = lr.compute(rc.data, 2, "linear")
    lr.apply(report, lambda key, value, source: rc.set(key, value, source=source))
    assert rc.get("LearningRate.base_lr") == pytest.approx(before_lr * report.factor)
    assert rc.source_of("LearningRate.base_lr").startswith("trainctl: lr scaling")
    if report.warmup_path:
        assert rc.get(report.warmup_path) == report.warmup_steps_after
        assert rc.source_of(report.warmup_path).startswith("trainctl: lr scaling")


def test_apply_reference_setup_changes_nothing():
    data = config(base_lr=0.01, batch=8, warmup={"steps": 100})
    calls = []
    lr.apply(lr.compute(data, 8), lambda *args: calls.append(args))
    assert calls == []
