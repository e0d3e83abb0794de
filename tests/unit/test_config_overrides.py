"""`-o key.sub=value` overrides: YAML typing, list indices, deep siblings, tags, checks."""

from __future__ import annotations

from pathlib import Path

import pytest

from trainctl.config import Tagged, resolve
from trainctl.errors import UserError

CONFIG = """\
epoch: 12
weights: output/x/model_final
LearningRate:
  base_lr: 0.001
  schedulers:
  - !PiecewiseDecay
    gamma: 0.1
    milestones: [8, 11]
  - !LinearWarmup {start_factor: 0.1, steps: 100}
TrainReader:
  batch_size: 8
  sample_transforms:
  - Decode: {}
  - Resize: {target_size: [608, 608], keep_ratio: false}
  batch_transforms:
  - BatchRandomResize: {target_size: [320, 416], random_size: true}
OptimizerBuilder:
  optimizer: {momentum: 0.9, type: Momentum}
TrainDataset: !VOCDataSet
  dataset_dir: dataset/voc
eval_size: &size [608, 608]
EvalReader:
  sample_transforms:
  - Resize: {target_size: *size}
"""


@pytest.fixture
def cfg(tmp_path: Path) -> Path:
    path = tmp_path / "cfg.yml"
    path.write_text(CONFIG)
    return path


def test_values_are_parsed_as_yaml(cfg: Path):
    rc = resolve(cfg, [
        "TrainReader.sample_transforms.1.Resize.target_size=[320,320]",
        "LearningRate.base_lr=0.001",
        "epoch=1",
        "TrainReader.sample_transforms.1.Resize.keep_ratio=true",
        "weights=",
        "OptimizerBuilder.optimizer.type='1'",
        "LearningRate.schedulers.0.milestones=[1, 2]",
    ])
    resize = rc.get("TrainReader.sample_transforms.1.Resize")
    assert resize["target_size"] == [320, 320]
    assert resize["keep_ratio"] is True
    assert isinstance(rc.get("LearningRate.base_lr"), float)
    assert rc.get("epoch") == 1
    assert rc.data["weights"] is None  # an empty value is None, as ppdet's yaml.load('') gives
    assert rc.get("OptimizerBuilder.optimizer.type") == "1"
    assert rc.get("LearningRate.schedulers.0.milestones") == [1, 2]


def test_list_items_by_index_and_negative_index(cfg: Path):
    rc = resolve(cfg, ["TrainReader.batch_transforms.0.BatchRandomResize.target_size=[224]",
                       "TrainReader.sample_transforms.-1.Resize.interp=2"])
    assert rc.get("TrainReader.batch_transforms.0.BatchRandomResize.target_size") == [224]
    assert rc.get("TrainReader.sample_transforms.1.Resize.interp") == 2
    assert rc.source_of("TrainReader.sample_transforms.1.Resize.interp") == "-o TrainReader.sample_transforms.-1.Resize.interp=2"


def test_deep_keys_keep_their_siblings(cfg: Path):
    """ppdet's own -o A.B.x=1 A.B.y=2 keeps only y; trainctl keeps both and the file's keys."""
    rc = resolve(cfg, ["OptimizerBuilder.optimizer.momentum=0.5", "OptimizerBuilder.optimizer.type=SGD"])
    assert rc.get("OptimizerBuilder.optimizer") == {"momentum": 0.5, "type": "SGD"}
    assert rc.source_of("OptimizerBuilder.optimizer.momentum") == "-o OptimizerBuilder.optimizer.momentum=0.5"
    assert rc.get("TrainReader.batch_size") == 8


def test_override_inside_a_tagged_value(cfg: Path):
    rc = resolve(cfg, ["LearningRate.schedulers.0.gamma=0.2", "TrainDataset.dataset_dir=/data/voc"])
    first = rc.get("LearningRate.schedulers.0")
    assert first == Tagged("PiecewiseDecay", {"gamma": 0.2, "milestones": [8, 11]})
    assert rc.get("TrainDataset") == Tagged("VOCDataSet", {"dataset_dir": "/data/voc"})


def test_a_whole_tagged_value_can_be_given(cfg: Path):
    rc = resolve(cfg, ["LearningRate.schedulers.0=!CosineDecay {max_epochs: 12}"])
    assert rc.get("LearningRate.schedulers.0") == Tagged("CosineDecay", {"max_epochs": 12})


def test_later_override_wins(cfg: Path):
    rc = resolve(cfg, ["epoch=2", "epoch=3"])
    assert rc.get("epoch") == 3 and rc.source_of("epoch") == "-o epoch=3"


def test_setting_one_alias_does_not_change_the_other(cfg: Path):
    rc = resolve(cfg, ["eval_size.0=320"])
    assert rc.get("eval_size") == [320, 608]
    assert rc.get("EvalReader.sample_transforms.0.Resize.target_size") == [608, 608]


def test_unknown_key_gets_a_did_you_mean(cfg: Path):
    with pytest.raises(UserError) as err:
        resolve(cfg, ["TrainReader.batch_sise=4"])
    assert "unknown key TrainReader.batch_sise" in err.value.message
    assert "did you mean batch_size" in err.value.hint
    with pytest.raises(UserError) as err:
        resolve(cfg, ["LearningRate.base_lrr=0.1"])
    assert "did you mean base_lr" in err.value.hint


@pytest.mark.parametrize("override", ["use_gpu=false", "pretrain_weights=", "snapshot_epoch=5",
                                      "log_iter=5", "TrainReader.shuffle=false",
                                      "LearningRate.schedulers.0.use_warmup=false",
                                      "TrainReader.sample_transforms.1.Resize.interp=2",
                                      "TrainDataset.anno_path=train.txt"])
def test_new_keys_known_for_their_place_are_accepted(cfg: Path, override: str):
    key, value = override.split("=", 1)
    rc = resolve(cfg, [override])
    assert rc.has(key)
    assert rc.source_of(key) == f"-o {override}"


@pytest.mark.parametrize("override, hint_word", [
    ("use_gpuu=false", "use_gpu"),
    ("TrainReader.sample_transforms.1.Resize.interpp=2", "interp"),
    ("LearningRate.schedulers.0.gama=0.2", "gamma"),
    ("TrainDataset.dataset_dri=x", "dataset_dir"),
])
def test_new_keys_unknown_for_their_place_are_refused(cfg: Path, override: str, hint_word: str):
    with pytest.raises(UserError) as err:
        resolve(cfg, [override])
    assert hint_word in err.value.hint


def test_keys_below_a_newly_created_known_key_are_free(cfg: Path):
    rc = resolve(cfg, ["OptimizerBuilder.regularizer.factor=0.0005", "OptimizerBuilder.regularizer.type=L2"])
    assert rc.get("OptimizerBuilder.regularizer") == {"factor": 0.0005, "type": "L2"}
    with pytest.raises(UserError, match="unknown key OptimizerBuilder.optimizer.typo"):
        resolve(cfg, ["OptimizerBuilder.regularizer.factor=0.0005", "OptimizerBuilder.optimizer.typo=1"])


def test_an_empty_value_can_become_a_mapping(tmp_path: Path):
    path = tmp_path / "c.yml"
    path.write_text("OptimizerBuilder:\n  regularizer:\n  optimizer: {type: SGD}\n")
    rc = resolve(path, ["OptimizerBuilder.regularizer.factor=0.0005", "OptimizerBuilder.regularizer.type=L2"])
    assert rc.get("OptimizerBuilder") == {"regularizer": {"factor": 0.0005, "type": "L2"}, "optimizer": {"type": "SGD"}}


@pytest.mark.parametrize("override, words", [
    ("epoch", "has no '='"),
    ("=3", "has no key"),
    ("TrainReader..batch_size=3", "bad key"),
    ("TrainReader.sample_transforms.5.Resize.interp=2", "index 5 out of range"),
    ("TrainReader.sample_transforms.-3=x", "index -3 out of range"),
    ("TrainReader.sample_transforms.Resize.interp=2", "is a list; address its items by index"),
    ("epoch.sub=1", "epoch holds int 12, not a mapping or list"),
    ("epoch=[1, 2", "invalid YAML"),
])
def test_malformed_overrides(cfg: Path, override: str, words: str):
    with pytest.raises(UserError, match=words.replace("[", r"\[")):
        resolve(cfg, [override])


def test_bundled_roadsign_accepts_the_documented_overrides():
    rc = resolve("roadsign.yml", ["use_gpu=false", "pretrain_weights=", "snapshot_epoch=5",
                                  "TrainReader.batch_size=4", "LearningRate.schedulers.0.gamma=0.2"])
    assert rc.get("use_gpu") is False and rc.get("pretrain_weights") is None
    assert rc.get("snapshot_epoch") == 5 and rc.get("TrainReader.batch_size") == 4
    assert rc.get("LearningRate.schedulers.0").tag == "PiecewiseDecay"
    assert rc.overrides[-1] == "LearningRate.schedulers.0.gamma=0.2"


def test_scientific_notation_is_a_number_but_quoted_text_stays_text():
    from trainctl.config.resolve import parse_override

    assert parse_override("LearningRate.base_lr=1e-3") == (["LearningRate", "base_lr"], 0.001)
    assert parse_override("LearningRate.base_lr=5E-4")[1] == 0.0005
    assert parse_override("LearningRate.base_lr=-2.5e+2")[1] == -250.0
    assert parse_override("name='1e-3'")[1] == "1e-3"
    assert parse_override("name=1e")[1] == "1e"
