"""`trainctl board`'s pure part: which VisualDL log directories a list of runs means."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from trainctl import board
from trainctl.errors import UserError
from trainctl.runrecord import RunRecord


def run(root: Path, name: str, vdl=True) -> Path:
    d = root / "output" / name
    d.mkdir(parents=True)
    RunRecord(d, ["trainctl", "train"], {"task": "train", "nodes": []}).start()
    if vdl:
        (d / "vdl").mkdir()
        (d / "vdl" / "vdlrecords.1700000000.log").write_bytes(b"\0")
    return d


def test_runs_side_by_side_and_runs_without_logs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run(tmp_path, "bs2")
    run(tmp_path, "bs8")
    run(tmp_path, "plain", vdl=False)
    found = board.resolve_targets(["output/bs2", "output/bs8", "output/plain"])
    assert found.logdirs == ["output/bs2/vdl", "output/bs8/vdl"]
    assert found.without_vdl == ["output/plain"]
    # a directory that holds runs expands to them; the default is ./output; duplicates once
    assert board.resolve_targets(["output"]).logdirs == ["output/bs2/vdl", "output/bs8/vdl"]
    assert board.resolve_targets([]).logdirs == ["output/bs2/vdl", "output/bs8/vdl"]
    assert board.resolve_targets(["output/bs2", "output"]).logdirs == ["output/bs2/vdl", "output/bs8/vdl"]


def test_a_vdl_dir_or_a_tree_of_logs_without_records(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    logs = tmp_path / "vdl_log_dir" / "scalar"
    logs.mkdir(parents=True)
    (logs / "vdlrecords.1.log").write_bytes(b"\0")
    assert board.resolve_targets(["vdl_log_dir/scalar"]).logdirs == ["vdl_log_dir/scalar"]
    assert board.resolve_targets(["vdl_log_dir"]).logdirs == ["vdl_log_dir"]  # VisualDL walks it


def test_paths_outside_the_working_dir_stay_absolute(tmp_path, monkeypatch):
    d = run(tmp_path / "elsewhere", "r")
    (tmp_path / "cwd").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")
    assert board.resolve_targets([str(d)]).logdirs == [str(d / "vdl")]


def test_user_errors(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UserError, match="no such directory: output") as exc:
        board.resolve_targets([])
    assert "trainctl board output/RUN" in exc.value.hint
    with pytest.raises(UserError, match="no such directory: missing"):
        board.resolve_targets(["missing"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="holds no run and no VisualDL logs"):
        board.resolve_targets(["empty"])
    run(tmp_path, "plain", vdl=False)
    with pytest.raises(UserError, match="no VisualDL logs in output/plain") as exc:
        board.resolve_targets(["output/plain"])
    assert "--vdl" in exc.value.hint


@pytest.mark.parametrize("host,port,url", [
    ("127.0.0.1", 8040, "http://127.0.0.1:8040/app"),
    ("0.0.0.0", 8080, "http://127.0.0.1:8080/app"),
    ("::1", 8040, "http://[::1]:8040/app"),
    ("::", 9000, "http://localhost:9000/app"),
])
def test_url(host, port, url):
    assert board.url_for(host, port) == url


def test_board_help_and_targets_import_neither_paddle_nor_visualdl(tmp_path):
    run(tmp_path, "bs2")
    code = ("import sys\n"
            "from trainctl import board\n"
            "from trainctl.cli import main\n"
            "assert board.resolve_targets(['output/bs2']).logdirs == ['output/bs2/vdl']\n"
            "try:\n"
            "    main(['board', '--help'])\n"
            "except SystemExit as exc:\n"
            "    assert exc.code == 0\n"
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'paddle', 'ppdet', 'visualdl', 'flask'}))\n")
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "Compare two batch sizes" in proc.stdout and proc.stdout.strip().splitlines()[-1] == "[]"
