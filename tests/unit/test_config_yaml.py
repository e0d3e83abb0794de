"""Tagged YAML values and dump_yaml: what is written reads back to equal data."""

from __future__ import annotations

import datetime
import math
import os
import random

import pytest
import yaml

from trainctl.config import Tagged, dump_yaml, load_yaml_text, resolve
from trainctl.config.yamlio import format_scalar
from trainctl.errors import UserError


def test_local_tags_on_mappings_sequences_and_scalars_are_kept_as_data():
    data = load_yaml_text("""\
a: !PiecewiseDecay {gamma: 0.1, milestones: [8, 11]}
b: !Callable [x, y]
c: !Name scalar text
d:
- !LinearWarmup
  steps: 100
""")
    assert data["a"] == Tagged("PiecewiseDecay", {"gamma": 0.1, "milestones": [8, 11]})
    assert data["b"] == Tagged("Callable", ["x", "y"])
    assert data["c"] == Tagged("Name", "scalar text")
    assert data["d"] == [Tagged("!LinearWarmup", {"steps": 100})]  # a leading "!" is accepted
    assert data["a"].yaml_tag == "!PiecewiseDecay"
    assert data["a"] != Tagged("CosineDecay", {"gamma": 0.1, "milestones": [8, 11]})


TRICKY = {
    "strings": ["", "yes", "no", "on", "null", "~", "1.0", "0x10", "12:30", "a: b", "#x", "- x",
                "[1]", "{a}", "!Tag", "'q'", '"dq"', "line1\nline2", "tab\there", "ünï", " pad "],
    "numbers": [0, -1, 10**20, 0.1, 1e-05, 1e16, -2.5e-300, float("inf"), float("-inf")],
    "flags": [True, False, None],
    "nested": [[1, 2], [[3]], []],
    "empty_map": {},
    "empty_list": [],
    "list_of_maps": [{"Decode": {}}, {"Resize": {"target_size": [608, 608], "interp": 2}}, {}],
    "tagged_items": [Tagged("PiecewiseDecay", {"gamma": 0.1}), Tagged("Empty", {}), Tagged("Seq", [1, 2]),
                     Tagged("SeqOfMaps", [{"a": 1}]), Tagged("Scalar", "x"), Tagged("Number", "5"), Tagged("Blank", "")],
    "tagged_map": Tagged("COCODataSet", {"image_dir": "train2017", "data_fields": ["image", "gt_bbox"]}),
    "list_in_list_of_maps": [[{"a": 1}, {"b": 2}], [{"c": 3}]],
    "date": datetime.date(2020, 1, 2),
    1: "int key",
    "1": "str key",
    True: "bool key",
    "a key with spaces": {"deep": {"er": {"est": [1]}}},
}


def test_dump_then_load_gives_equal_data():
    text = dump_yaml(TRICKY)
    assert load_yaml_text(text) == TRICKY
    # and again: the text is stable
    assert dump_yaml(load_yaml_text(text)) == text


def test_dump_writes_tags_ppdet_style():
    text = dump_yaml({"LearningRate": {"schedulers": [Tagged("PiecewiseDecay", {"gamma": 0.1, "milestones": [8, 11]})]}})
    assert text == ("LearningRate:\n"
                    "  schedulers:\n"
                    "  - !PiecewiseDecay\n"
                    "    gamma: 0.1\n"
                    "    milestones: [8, 11]\n")


def test_dump_is_plain_yaml_for_a_full_loader_too():
    """Without tags the text is ordinary YAML any loader reads the same."""
    plain = {k: v for k, v in TRICKY.items() if k not in ("tagged_items", "tagged_map")}
    assert yaml.safe_load(dump_yaml(plain)) == plain


def test_floats_keep_their_type():
    for value in (1e-05, 1e16, 3.0, 0.1 + 0.2):
        text = format_scalar(value)
        assert isinstance(yaml.safe_load(text), float) and yaml.safe_load(text) == value, text
    assert math.isnan(yaml.safe_load(format_scalar(float("nan"))))


def test_bundled_config_round_trips():
    rc = resolve("roadsign.yml")
    assert load_yaml_text(rc.to_yaml()) == rc.data
    assert load_yaml_text(rc.to_yaml(provenance=True)) == rc.data  # the comments change nothing


def test_dump_refuses_objects_it_cannot_write():
    with pytest.raises(TypeError):
        dump_yaml({"x": object()})
    with pytest.raises(TypeError):
        dump_yaml([1, 2])  # type: ignore[arg-type]


def test_yaml_errors_carry_line_and_column():
    with pytest.raises(UserError) as err:
        load_yaml_text("a: 1\n  b: 2\n", origin="x.yml")
    assert err.value.message.startswith("x.yml:2:")


def _random_value(rng, depth: int):
    alphabet = "ab:#-[]{}!&*?|>'\"%@`, \t\n01.eE+~ü\u2028\x85\\/"
    kind = rng.randrange(9 if depth < 4 else 5)
    if kind == 0:
        return "".join(rng.choice(alphabet) for _ in range(rng.randrange(6)))
    if kind == 1:
        return rng.choice([0, -7, 2**40, 0.5, -1e-9, 123456789.125, True, False, None])
    if kind == 2:
        return rng.choice(["yes", "No", "NULL", "~", "0o17", "1_000", ".inf", "2001-12-14", "=", "<<"])
    if kind == 3:
        return rng.uniform(-1e6, 1e6)
    if kind == 4:
        return [_random_value(rng, depth + 1) for _ in range(rng.randrange(3))] if depth < 4 else 1
    if kind in (5, 6):
        return {str(_random_value(rng, 4)) if rng.random() < 0.8 else rng.randrange(5): _random_value(rng, depth + 1)
                for _ in range(rng.randrange(4))}
    if kind == 7:
        return [_random_value(rng, depth + 1) for _ in range(rng.randrange(4))]
    inner = _random_value(rng, depth + 1)
    if not isinstance(inner, (dict, list)):
        inner = "" if inner is None else str(inner)
    return Tagged(rng.choice(["PiecewiseDecay", "COCODataSet", "X_1"]), inner)


# 300 by default (fast); TRAINCTL_FUZZ_ROUNDS=30000 was run once when dump_yaml changed
FUZZ_ROUNDS = int(os.environ.get("TRAINCTL_FUZZ_ROUNDS", "300"))


def test_random_structures_round_trip():
    """Random nested data with YAML's special characters: dump then load gives it back."""
    rng = random.Random(20261123)
    for _ in range(FUZZ_ROUNDS):
        data = {f"k{i}": _random_value(rng, 0) for i in range(rng.randrange(1, 5))}
        text = dump_yaml(data)
        assert load_yaml_text(text) == data, text
