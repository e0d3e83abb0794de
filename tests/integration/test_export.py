"""`trainctl export` for real: paddle 3 + ppdet 2.6 need the compat shims (new IR, model.json); errors are one line."""

from __future__ import annotations

import pytest
import yaml

pytestmark = pytest.mark.paddle

EXPORTED = ("model.pdmodel", "model.pdiparams", "infer_cfg.yml")  # YOLOv3: the old IR (compat.old_ir_reason)


def test_export_writes_the_three_files(exported_model):
    for name in EXPORTED:
        assert (exported_model / name).stat().st_size > 0, name
    assert (exported_model / "model.pdiparams").stat().st_size > 1_000_000
    assert not [p for p in exported_model.iterdir() if p.name.startswith(".export.")]  # staging dir removed
    infer_cfg = yaml.safe_load((exported_model / "infer_cfg.yml").read_text())
    assert infer_cfg["arch"] == "YOLO"
    assert infer_cfg["label_list"] == ["speedlimit", "crosswalk", "trafficlight", "stop"]
    assert [op["type"] for op in infer_cfg["Preprocess"]] == ["Resize", "NormalizeImage", "Permute"]


def test_export_without_the_shims_fails_as_design_md_says(smoke_run, ptools, tmp_path):
    """The reason the shims exist: paddle 3 (new IR) + paddledet 2.6.0's plain Trainer.export fails
    (to_static's SOT default, then the NMS op built with append_op under PIR)."""
    import subprocess
    import sys

    code = (
        "import sys, paddle\n"
        "from trainctl.runner import session\n"
        "from ppdet.engine import Trainer\n"
        "cfg = session.load_flat_config(sys.argv[1]); session.setup_device(cfg, 'cpu'); session.ensure_test_labels(cfg)\n"
        "t = Trainer(cfg, mode='test'); session.load_weights_strict(t.model, sys.argv[2])\n"
        "t.export(sys.argv[3])\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, str(smoke_run.config), str(smoke_run.final), str(tmp_path / "plain")],
        cwd=smoke_run.workdir, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode != 0
    assert "full_graph" in proc.stderr or "multiclass_nms" in proc.stderr


def test_export_missing_weights_exit_2_one_line(smoke_run, ptools, tmp_path):
    proc = ptools.run_cli(["export", "-c", "roadsign_cpu_smoke.yml", "--weights", str(tmp_path / "missing"), "--output", str(tmp_path / "x")], smoke_run.workdir)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [f"trainctl: error: weights file not found: {tmp_path / 'missing'}.pdparams; "
                                                "pass the path of a .pdparams file written by training (e.g. output/<config>/model_final)"]
    assert not (tmp_path / "x").exists()


def test_export_from_a_process_that_already_imported_paddle(smoke_run, tmp_path):
    """Library use: paddle imported in the new IR, YOLOv3 exports in the old one -> export_model runs it in a child process."""
    import subprocess
    import sys

    code = (
        "import sys, paddle\n"
        "from trainctl.runner.export import export_model\n"
        "r = export_model(sys.argv[1], sys.argv[2], sys.argv[3], old_ir=True); print(sorted(r['files']))\n"
    )
    out = tmp_path / "lib"
    proc = subprocess.run([sys.executable, "-c", code, str(smoke_run.config), str(smoke_run.final), str(out)],
                          cwd=smoke_run.workdir, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for name in EXPORTED:
        assert (out / name).is_file(), name
