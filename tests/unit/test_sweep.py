"""The sweep's pure parts: --vary parsing, the run list, GPU groups, skipping finished runs; and the
comparison helpers of trainctl.runs (flattening configs, final loss, mean ± std) and output.progress_mode."""

from __future__ import annotations

import json

import pytest

from trainctl import output, runs
from trainctl.runs import compare as runs_compare
from trainctl.config.yamlio import Tagged
from trainctl.errors import UserError
from trainctl import sweep


def test_values_split_on_top_level_commas_only():
    assert sweep.split_values("1,2") == ["1", "2"]
    assert sweep.split_values("[224,256],[320]") == ["[224,256]", "[320]"]
    assert sweep.split_values("'a,b',c") == ["'a,b'", "c"]


@pytest.mark.parametrize("spec", ["epoch", "epoch=", "=1,2", "epoch=1,,2", "epoch=2,2"])
def test_bad_vary_is_one_clear_error(spec):
    with pytest.raises(UserError) as info:
        sweep.parse_vary([spec])
    assert "--vary" in info.value.one_line()


def test_plan_is_every_combination_times_repeats():
    vary = sweep.parse_vary(["TrainReader.batch_size=2,4", "LearningRate.base_lr=0.001,0.002"])
    planned = sweep.plan_runs("out/sw", vary, repeats=3, seed=7)
    assert len(planned) == 12
    first = planned[0]
    assert first.overrides == ["TrainReader.batch_size=2", "LearningRate.base_lr=0.001"]
    assert [r.seed for r in planned[:3]] == [7, 8, 9]
    assert first.name == "batch_size=2,base_lr=0.001,seed=7"
    assert first.run_dir == "out/sw/batch_size=2,base_lr=0.001,seed=7"
    assert len({r.run_dir for r in planned}) == 12


def test_same_last_key_part_keeps_full_keys():
    vary = sweep.parse_vary(["TrainReader.batch_size=2", "EvalReader.batch_size=1"])
    (run,) = sweep.plan_runs("sw", vary)
    assert run.name == "TrainReader.batch_size=2,EvalReader.batch_size=1"


def test_gpu_groups():
    assert sweep.gpu_groups("0,1,2,3", 2) == ["0,1", "2,3"]
    assert sweep.gpu_groups("0,1", None) is None
    with pytest.raises(UserError):
        sweep.gpu_groups("0,1,2", 2)
    planned = sweep.plan_runs("sw", sweep.parse_vary(["epoch=1,2,3"]), gpu_groups=["0,1", "2,3"])
    assert [r.gpus for r in planned] == ["0,1", "2,3", "0,1"]


def test_run_status(tmp_path):
    assert sweep.run_status(str(tmp_path / "none")) == "new"
    (tmp_path / "run.json").write_text(json.dumps({"status": "interrupted"}))
    assert sweep.run_status(str(tmp_path)) == "started"
    (tmp_path / "run.json").write_text(json.dumps({"status": "done"}))
    assert sweep.run_status(str(tmp_path)) == "done"


def test_flatten_config():
    flat = runs.flatten_config({"a": {"b": [1, 2], "c": [{"d": 1}]}, "s": [Tagged("!CosineDecay", {"max_epochs": 4})]})
    assert flat == {"a.b": [1, 2], "a.c.0.d": 1, "s.0.!tag": "CosineDecay", "s.0.max_epochs": 4}


def test_final_loss_is_the_last_epochs_mean():
    history = [{"epoch": 1, "loss": 9.0}, {"epoch": 2, "loss": 3.0}, {"epoch": 2, "loss": 5.0}]
    assert runs.final_loss(history) == 4.0
    assert runs.final_loss([]) is None


def test_mean_std():
    assert runs_compare._mean_std([1.0, 3.0]) == {"mean": 2.0, "std": pytest.approx(2 ** 0.5), "n": 2}
    assert runs_compare._mean_std([5.0, None]) == {"mean": 5.0, "std": None, "n": 1}
    assert runs_compare._mean_std([None]) is None


@pytest.mark.parametrize("quiet, tty, ci, mode", [(True, True, False, "quiet"), (False, True, False, "tty"),
                                                   (False, False, False, "plain"), (False, True, True, "plain")])
def test_progress_mode_follows_the_launchers_terminal(monkeypatch, quiet, tty, ci, mode):
    monkeypatch.setitem(output._state, "quiet", quiet)
    monkeypatch.setattr(output.sys.stdout, "isatty", lambda: tty, raising=False)
    if ci:
        monkeypatch.setenv("CI", "1")
    else:
        monkeypatch.delenv("CI", raising=False)
    assert output.progress_mode() == mode
