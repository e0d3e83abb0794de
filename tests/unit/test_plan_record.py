from __future__ import annotations

import json

from launch_helpers import context, plan

from trainctl import runrecord


def test_run_record_lifecycle(tmp_path):
    p = plan(context(), gpus="0,1", env=("HF_TOKEN=abc", "NCCL_P2P_DISABLE=1"))
    argv = ["trainctl", "train", "-c", "roadsign.yml", "--env", "HF_TOKEN=abc", "-o", "db.password=hunter2"]
    record = runrecord.RunRecord(tmp_path, argv, p.to_dict(mask=True), extra={"config": "roadsign.yml"})
    record.start()
    data = json.loads((tmp_path / "run.json").read_text())
    assert data["status"] == "running" and data["exit_code"] is None and data["end_time"] is None
    assert data["argv"][-3:] == ["HF_TOKEN=***", "-o", "db.password=***"]
    assert data["net"]["env"]["HF_TOKEN"] == "***" and data["net"]["env"]["NCCL_P2P_DISABLE"] == "1"
    assert "abc" not in (tmp_path / "run.json").read_text() and "hunter2" not in (tmp_path / "run.json").read_text()
    assert data["commands"][0]["command"] == p.local_node.shell_command(mask=True)
    assert data["versions"]["trainctl"] and data["hostname"] and data["config"] == "roadsign.yml"
    record.finish(1, "failed", {"rank": 1, "code": -9})
    data = json.loads((tmp_path / "run.json").read_text())
    assert data["status"] == "failed" and data["exit_code"] == 1 and data["failure"]["rank"] == 1 and data["end_time"]
    assert [f.name for f in tmp_path.iterdir()] == ["run.json"]  # atomic writes leave no temporary files


def test_record_names_per_node():
    assert runrecord.record_name(0, 1) == "run.json"
    assert runrecord.record_name(0, 4) == "run.json"
    assert runrecord.record_name(3, 4) == "run.node3.json"
