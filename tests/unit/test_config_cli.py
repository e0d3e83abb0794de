"""`trainctl config show | layers | validate` through the real CLI entry point."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from trainctl.cli import main
from trainctl.config import load_yaml_text, resolve


def run(capsys, *argv: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit_info:
        main(list(argv))
    out, err = capsys.readouterr()
    return exit_info.value.code, out, err


@pytest.fixture
def layered(tmp_path: Path) -> Path:
    (tmp_path / "_base_").mkdir()
    (tmp_path / "_base_" / "runtime.yml").write_text("use_gpu: true\nlog_iter: 20\nsave_dir: output\n")
    (tmp_path / "_base_" / "reader.yml").write_text(
        "_BASE_: [runtime.yml]\nlog_iter: 10\nTrainReader:\n  batch_size: 8\n  shuffle: true\n")
    (tmp_path / "top.yml").write_text(
        "_BASE_: ['_base_/reader.yml']\nepoch: 3\nTrainReader:\n  batch_size: 2\n"
        "LearningRate:\n  base_lr: 0.01\n  schedulers:\n  - !PiecewiseDecay {gamma: 0.1, milestones: [2]}\n")
    return tmp_path / "top.yml"


def test_show_with_provenance_names_each_layer(capsys, layered: Path):
    code, out, _ = run(capsys, "config", "show", "-c", str(layered), "--provenance", "-o", "epoch=1")
    assert code == 0
    lines = {line.split(":")[0].strip(): line for line in out.splitlines() if not line.startswith("#")}
    assert lines["use_gpu"].endswith("# _base_/runtime.yml")
    assert lines["log_iter"].endswith("# _base_/reader.yml")  # the later layer won
    assert lines["shuffle"].endswith("# _base_/reader.yml")
    assert lines["batch_size"].endswith("# top.yml")
    assert lines["epoch"].endswith("# -o epoch=1")
    assert "- !PiecewiseDecay" in out
    # the printed YAML (comments and all) is the resolved config
    assert load_yaml_text(out) == resolve(layered, ["epoch=1"]).data


def test_show_accepts_ppdet_style_trailing_overrides(capsys, layered: Path):
    code, out, _ = run(capsys, "config", "show", "-c", str(layered), "-o", "epoch=5", "TrainReader.batch_size=4")
    assert code == 0
    data = load_yaml_text(out)
    assert data["epoch"] == 5 and data["TrainReader"] == {"batch_size": 4, "shuffle": True}


def test_show_bundled_config_by_name(capsys):
    code, out, _ = run(capsys, "config", "show", "-c", "roadsign")
    assert code == 0
    assert load_yaml_text(out)["filename"] == "roadsign"


def test_layers_prints_the_tree_and_merge_order(capsys, layered: Path):
    code, out, _ = run(capsys, "config", "layers", "-c", str(layered))
    assert code == 0
    lines = out.splitlines()
    assert lines[0].startswith("top.yml")
    assert lines[1] == "└── _base_/reader.yml"
    assert lines[2] == "    └── _base_/runtime.yml"
    assert "merge order (later wins): _base_/runtime.yml -> _base_/reader.yml -> top.yml" in out


def test_validate_reports_a_misspelled_key_with_the_right_suggestion(capsys, layered: Path):
    layered.write_text(layered.read_text().replace("  batch_size: 2", "  batch_sise: 2"))
    code, out, err = run(capsys, "config", "validate", "-c", str(layered))
    assert code == 1
    assert "TrainReader.batch_sise: unknown key for TrainReader; did you mean batch_size" in out
    assert "[top.yml]" in out  # where the bad key comes from
    assert "1 problem" in err


def test_validate_clean_config_exits_zero(capsys):
    code, out, _ = run(capsys, "config", "validate", "-c", "roadsign.yml")
    assert code == 0
    assert "OK" in out


@pytest.mark.parametrize("argv, words", [
    (["config", "show", "-c", "nope.yml"], "config not found: nope.yml"),
    (["config", "show", "-c", "roadsign", "-o", "TrainReader.batch_sise=4"], "did you mean batch_size"),
    (["config", "validate", "-c", "roadsign", "stray"], "unexpected argument 'stray'"),
])
def test_user_errors_are_one_line_exit_2(capsys, argv, words):
    code, _, err = run(capsys, *argv)
    assert code == 2
    assert words in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_broken_yaml_is_one_line_with_file_and_line(capsys, tmp_path: Path):
    (tmp_path / "bad.yml").write_text("a: 1\nb: [1,\n")
    code, _, err = run(capsys, "config", "show", "-c", str(tmp_path / "bad.yml"))
    assert code == 2
    assert "bad.yml:" in err and "invalid YAML" in err


def test_config_commands_do_not_import_paddle(tmp_path: Path):
    code = ("import sys\nfrom trainctl.cli import main\n"
            "try:\n    main(['config', 'show', '-c', 'roadsign', '--provenance'])\n"
            "except SystemExit:\n    pass\n"
            "assert 'paddle' not in sys.modules and 'ppdet' not in sys.modules, 'paddle imported'\n"
            "sys.stderr.write('clean')\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and proc.stderr.endswith("clean"), proc.stderr
