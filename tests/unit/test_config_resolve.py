"""Layering (`_BASE_`), provenance, layer tree and the errors of config resolution."""

from __future__ import annotations

from pathlib import Path

import pytest

from trainctl.config import BUNDLED_DIR, Tagged, find_config, resolve
from trainctl.errors import UserError


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


@pytest.fixture
def three_layers(tmp_path: Path) -> Path:
    """top.yml -> [base/model.yml -> [base/common.yml], optim.yml]: three levels, four files."""
    write(tmp_path / "base" / "common.yml", """\
epoch: 10
use_gpu: true
TrainReader:
  batch_size: 8
  shuffle: true
  sample_transforms:
  - Decode: {}
  - Resize: {target_size: [608, 608]}
model:
  depth: 50
  extra: {a: 1}
""")
    write(tmp_path / "base" / "model.yml", """\
_BASE_: [common.yml]
model:
  depth: 101
  extra: {b: 2}
TrainReader:
  sample_transforms:
  - Decode: {}
""")
    write(tmp_path / "optim.yml", """\
epoch: 20
LearningRate:
  base_lr: 0.01
  schedulers:
  - !PiecewiseDecay {gamma: 0.1, milestones: [8, 11]}
  - !LinearWarmup {start_factor: 0.1, steps: 100}
""")
    return write(tmp_path / "top.yml", """\
_BASE_: ['base/model.yml', 'optim.yml']
TrainReader:
  batch_size: 2
""")


def test_merge_semantics(three_layers: Path):
    data = resolve(three_layers).data
    assert "_BASE_" not in data
    assert data["filename"] == "top"
    assert data["epoch"] == 20  # the later base wins over the earlier one
    assert data["TrainReader"]["batch_size"] == 2  # the including file wins over its bases
    assert data["TrainReader"]["shuffle"] is True  # dicts are deep-merged: siblings kept
    assert data["TrainReader"]["sample_transforms"] == [{"Decode": {}}]  # lists are replaced whole
    assert data["model"] == {"depth": 101, "extra": {"a": 1, "b": 2}}
    assert data["LearningRate"]["schedulers"][0] == Tagged("PiecewiseDecay", {"gamma": 0.1, "milestones": [8, 11]})
    assert list(data)[:2] == ["epoch", "use_gpu"]  # keys keep the order ppdet's merge gives them


def test_merge_order_is_ppdets_single_accumulator(tmp_path: Path):
    """ppdet merges every layer into one dict in depth-first order, so a scalar set by a
    later base's own base replaces an earlier mapping before the later base merges in."""
    write(tmp_path / "a.yml", "x: {a: 1}\n")
    write(tmp_path / "b1.yml", "x: 5\n")
    write(tmp_path / "b.yml", "_BASE_: [b1.yml]\nx: {b: 2}\n")
    top = write(tmp_path / "top.yml", "_BASE_: [a.yml, b.yml]\ny: 1\n")
    assert resolve(top).data == {"x": {"b": 2}, "y": 1, "filename": "top"}


def test_tagged_value_replaces_a_mapping_whole(tmp_path: Path):
    write(tmp_path / "base.yml", "TrainDataset:\n  name: VOCDataSet\n  dataset_dir: d\n")
    top = write(tmp_path / "top.yml", "_BASE_: [base.yml]\nTrainDataset: !COCODataSet\n  image_dir: img\n")
    assert resolve(top).data["TrainDataset"] == Tagged("COCODataSet", {"image_dir": "img"})


def test_home_expansion_and_absolute_bases(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    write(tmp_path / "home" / "cfg" / "h.yml", "from_home: 1\n")
    absolute = write(tmp_path / "elsewhere" / "abs.yml", "from_abs: 2\n")
    top = write(tmp_path / "proj" / "top.yml", f"_BASE_: ['~/cfg/h.yml', '{absolute}']\n")
    data = resolve(top).data
    assert data["from_home"] == 1 and data["from_abs"] == 2


def test_provenance_for_leaves_mappings_overrides_and_adjustments(three_layers: Path):
    rc = resolve(three_layers, ["model.extra.a=5"])
    assert rc.source_of("TrainReader.batch_size") == "top.yml"
    assert rc.source_of("TrainReader.shuffle") == "base/common.yml"
    assert rc.source_of("TrainReader.sample_transforms") == "base/model.yml"
    assert rc.source_of("TrainReader.sample_transforms.0.Decode") == "base/model.yml"
    assert rc.source_of("epoch") == "optim.yml"
    assert rc.source_of("use_gpu") == "base/common.yml"
    assert rc.source_of("LearningRate.schedulers.0.gamma") == "optim.yml"
    assert rc.source_of("model.depth") == "base/model.yml"
    assert rc.source_of("model.extra.b") == "base/model.yml"
    assert rc.source_of("model.extra.a") == "-o model.extra.a=5"
    # a mapping: the newest layer that changed anything inside it
    assert rc.source_of("TrainReader") == "top.yml"
    assert rc.source_of("model") == "-o model.extra.a=5"
    assert rc.source_of("filename").startswith("trainctl:")
    rc.set("LearningRate.base_lr", 0.0025, source="trainctl: lr scaling")
    assert rc.get("LearningRate.base_lr") == 0.0025
    assert rc.source_of("LearningRate.base_lr") == "trainctl: lr scaling"
    assert rc.source_of("LearningRate.schedulers") == "optim.yml"
    assert rc.source_of("no.such.key") is None


def test_set_creates_missing_mappings(three_layers: Path):
    rc = resolve(three_layers)
    rc.set("Extra.deep.key", 3, source="trainctl: test")
    assert rc.data["Extra"] == {"deep": {"key": 3}}
    assert rc.source_of("Extra") == "trainctl: test"


def test_layers_tree(three_layers: Path):
    rc = resolve(three_layers)
    tree = [(depth, layer.name) for depth, layer in rc.layers.walk()]
    assert tree == [(0, "top.yml"), (1, "base/model.yml"), (2, "base/common.yml"), (1, "optim.yml")]


def test_get_by_index_negative_index_and_through_tags(three_layers: Path):
    rc = resolve(three_layers)
    assert rc.get("LearningRate.schedulers.0.milestones") == [8, 11]
    assert rc.get("LearningRate.schedulers.-1.steps") == 100
    assert rc.get("TrainReader.missing", "dflt") == "dflt"
    assert rc.has("LearningRate.schedulers.1") and not rc.has("LearningRate.schedulers.2")


def test_cycle_is_reported(tmp_path: Path):
    write(tmp_path / "a.yml", "_BASE_: [b.yml]\nx: 1\n")
    write(tmp_path / "b.yml", "_BASE_: [a.yml]\ny: 1\n")
    with pytest.raises(UserError) as err:
        resolve(tmp_path / "a.yml")
    assert "cycle" in err.value.message
    assert "a.yml -> b.yml -> a.yml" in err.value.message


def test_self_include_is_a_cycle(tmp_path: Path):
    top = write(tmp_path / "self.yml", "_BASE_: [self.yml]\n")
    with pytest.raises(UserError, match="cycle"):
        resolve(top)


def test_diamond_is_not_a_cycle(tmp_path: Path):
    write(tmp_path / "common.yml", "c: 1\n")
    write(tmp_path / "l.yml", "_BASE_: [common.yml]\nl: 1\n")
    write(tmp_path / "r.yml", "_BASE_: [common.yml]\nr: 1\n")
    top = write(tmp_path / "top.yml", "_BASE_: [l.yml, r.yml]\n")
    assert resolve(top).data == {"c": 1, "l": 1, "r": 1, "filename": "top"}


def test_missing_base_names_the_including_file(tmp_path: Path):
    write(tmp_path / "mid.yml", "_BASE_: [gone.yml]\n")
    top = write(tmp_path / "top.yml", "_BASE_: [mid.yml]\n")
    with pytest.raises(UserError) as err:
        resolve(top)
    assert err.value.message.startswith("mid.yml: _BASE_ entry 'gone.yml' not found")
    assert "mid.yml" in err.value.hint


def test_malformed_yaml_reports_file_and_line(tmp_path: Path):
    write(tmp_path / "broken.yml", "a: 1\nb: [1, 2\nc: 3\n")
    top = write(tmp_path / "top.yml", "_BASE_: [broken.yml]\n")
    with pytest.raises(UserError) as err:
        resolve(top)
    assert "broken.yml:" in err.value.message and "invalid YAML" in err.value.message
    line = int(err.value.message.split("broken.yml:")[1].split(":")[0])
    assert line in (2, 3)


@pytest.mark.parametrize("text, words", [
    ("", "is empty"),
    ("# only a comment\n", "is empty"),
    ("- a\n- b\n", "not a mapping"),
    ("just a string\n", "not a mapping"),
    ("_BASE_: base.yml\n", "_BASE_ must be a list"),
])
def test_config_that_is_not_a_mapping(tmp_path: Path, text: str, words: str):
    top = write(tmp_path / "c.yml", text)
    with pytest.raises(UserError, match=words):
        resolve(top)


def test_python_tags_are_refused_not_executed(tmp_path: Path):
    marker = tmp_path / "pwned"
    top = write(tmp_path / "evil.yml", f"x: !!python/object/apply:os.system ['touch {marker}']\n")
    with pytest.raises(UserError, match="invalid YAML"):
        resolve(top)
    assert not marker.exists()


def test_find_config(tmp_path: Path, monkeypatch):
    mine = write(tmp_path / "mine.yml", "a: 1\n")
    assert find_config(str(mine)) == mine
    assert find_config("roadsign") == BUNDLED_DIR / "roadsign.yml"
    assert find_config("roadsign.yml") == BUNDLED_DIR / "roadsign.yml"
    assert find_config("optimizers/optimizer_40e.yml") == BUNDLED_DIR / "optimizers" / "optimizer_40e.yml"
    # a file in the working directory wins over a bundled config of the same name
    write(tmp_path / "roadsign.yml", "local: true\n")
    monkeypatch.chdir(tmp_path)
    assert find_config("roadsign.yml") == Path("roadsign.yml")
    with pytest.raises(UserError) as err:
        find_config("roadsing.yml")
    assert "did you mean" in err.value.hint and "roadsign.yml" in err.value.hint
    with pytest.raises(UserError, match="is a directory"):
        find_config(str(tmp_path))


def test_bundled_roadsign_resolves_with_relative_provenance():
    rc = resolve("roadsign.yml")
    assert rc.data["filename"] == "roadsign"
    assert rc.source_of("LearningRate.base_lr") == "optimizers/optimizer_40e.yml"
    assert rc.source_of("pretrain_weights") == "roadsign.yml"
    assert [layer.name for _, layer in rc.layers.walk()][0] == "roadsign.yml"
