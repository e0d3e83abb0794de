"""train flags that only the worker acts on must reach job.json (the launcher->worker contract)."""

from __future__ import annotations

import json

import pytest

from trainctl import output
from trainctl.cli import main
from trainctl.data.sample import write_sample_dataset
from trainctl.launch import executor


class _Done:
    status = "done"
    exit_code = 0

    def failure_dict(self):
        return {}


@pytest.mark.parametrize("quiet, progress", [(False, "plain"), (True, "quiet")])  # stdout is not a terminal here
def test_keep_vdl_and_quiet_reach_the_job(tmp_path, monkeypatch, quiet, progress):
    monkeypatch.setitem(output._state, "quiet", False)  # restored after the test: -q sets it process-wide
    write_sample_dataset(tmp_path / "dataset" / "roadsign_voc", images=4, seed=1)
    monkeypatch.chdir(tmp_path)
    started = []
    monkeypatch.setattr(executor, "run_node", lambda plan, node, **kw: started.append(node) or _Done())
    argv = (["-q"] if quiet else []) + ["train", "-c", "roadsign_cpu_smoke.yml", "--keep", "2", "--vdl",
                                        "--output", "out/run"]
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 0
    assert len(started) == 1
    job = json.loads((tmp_path / "out" / "run" / "job.json").read_text())
    assert job["keep_checkpoints"] == 2
    assert job["vdl"] is True
    assert job["progress"] == progress


def test_keep_must_be_positive(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "-c", "roadsign_cpu_smoke.yml", "--keep", "0", "--dry-run"])
    assert exit_info.value.code == 2
    assert "--keep" in capsys.readouterr().err
