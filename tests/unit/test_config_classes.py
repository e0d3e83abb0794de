"""A config whose model the chosen ppdet lacks is refused before launch (static scan, no paddle)."""

from __future__ import annotations

import pytest

from trainctl.errors import UserError
from trainctl.core import ppdet_checks
from trainctl.core.ppdet_source import PpdetSource


def _tree(tmp_path, classes):
    pkg = tmp_path / "site" / "ppdet" / "modeling"
    pkg.mkdir(parents=True)
    (pkg / "a.py").write_text("".join(f"class {c}(object):\n    pass\n" for c in classes))
    return PpdetSource(kind="installed", dir=str(tmp_path / "site"), rule="the installed paddledet", version="2.6.0")


def test_config_classes_are_architecture_and_class_sections():
    data = {"architecture": "DETR", "DETR": {"backbone": "PResNet"}, "HybridEncoder": {"hidden_dim": 256},
            "TrainReader": {"batch_size": 2}, "EvalDataset": {"name": "COCODataSet"}, "num_classes": 4, "use_gpu": False}
    assert ppdet_checks.config_classes(data) == ["DETR", "HybridEncoder"]


def test_missing_model_classes_refused_in_one_line(tmp_path):
    src = _tree(tmp_path, ["DETR", "YOLOv3"])
    data = {"architecture": "DETR", "HybridEncoder": {}, "RTDETRTransformer": {}}
    with pytest.raises(UserError) as err:
        ppdet_checks.check_config_classes(src, data, "rtdetr_r18vd_6x_coco")
    assert err.value.exit_code == 2
    assert err.value.one_line() == ("rtdetr_r18vd_6x_coco needs HybridEncoder, RTDETRTransformer, which paddledet 2.6.0, "
                                    "installed does not have; use a PaddleDetection checkout that has it: --ppdet DIR "
                                    "(release-2.7.1 or develop; docs/models.md)")
    ppdet_checks.check_config_classes(src, {"architecture": "YOLOv3"}, "yolov3")  # has it: no error


def test_rtdetr_on_the_wheel_is_refused_before_launch(tmp_path):
    """The measured case: develop's RT-DETR config with the installed paddledet 2.6.0 (exit 2, one line, no worker)."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    config = Path(__file__).resolve().parents[3] / "shared/reference/paddledetection-src/develop/configs/rtdetr/rtdetr_r18vd_6x_coco.yml"
    if not config.is_file():
        pytest.skip("the develop checkout is not here")
    env = {k: v for k, v in os.environ.items() if k != "TRAINCTL_PPDET"}
    proc = subprocess.run([sys.executable, "-m", "trainctl", "train", "-c", str(config), "-o", "num_classes=4",
                           "--no-pretrained", "--output", str(tmp_path / "run")], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert lines == ["trainctl: error: rtdetr_r18vd_6x_coco needs HybridEncoder, RTDETRTransformer, DETRPostProcess, "
                     "which paddledet 2.6.0, installed does not have; use a PaddleDetection checkout that has it: "
                     "--ppdet DIR (release-2.7.1 or develop; docs/models.md)"]
    assert not (tmp_path / "run" / "logs").exists()


def test_rcnn_export_refused_on_a_ppdet_with_the_measured_rcnnbox(tmp_path):
    from trainctl.runner import compat

    pkg = tmp_path / "ppdet"
    (pkg / "modeling" / "proposal_generator").mkdir(parents=True)
    rpn = pkg / "modeling" / "proposal_generator" / "rpn_head.py"
    rpn.write_text("                bs_rois_num_collect.append(paddle.shape(topk_rois)[0])\n")  # paddledet 2.6.0
    with pytest.raises(UserError) as err:
        compat.check_export_supported(str(pkg), "FasterRCNN", "paddledet 2.6.0, installed")
    assert err.value.exit_code == 2
    assert err.value.one_line().startswith("R-CNN (Faster/Mask/Cascade) does not export on paddledet 2.6.0, installed")
    assert "--ppdet DIR (develop" in err.value.one_line()
    compat.check_export_supported(str(pkg), "YOLOv3", "paddledet 2.6.0, installed")  # another family: no refusal
    rpn.write_text("                bs_rois_num_collect.append(paddle.shape(topk_rois)[0:1])\n")  # develop's code
    compat.check_export_supported(str(pkg), "FasterRCNN", "ppdet from source")


def test_old_ir_only_for_yolov3_with_its_fpn():
    from trainctl.config import resolve
    from trainctl.runner import compat

    assert compat.old_ir_reason(resolve("roadsign_cpu_smoke.yml").data)  # YOLOv3 + YOLOv3FPN
    assert compat.old_ir_reason(resolve("roadsign_ppyoloe.yml").data) is None  # architecture YOLOv3, CustomCSPPAN neck
    assert compat.old_ir_reason({"architecture": "DETR", "DETR": {"neck": "HybridEncoder"}}) is None
