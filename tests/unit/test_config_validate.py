"""`validate`: unknown keys with did-you-mean and wrong value types, from the shipped ppdet schema."""

from __future__ import annotations

from pathlib import Path

import pytest

from trainctl.config import bundled_configs, resolve
from trainctl.config.schema import load_schema
from trainctl.config.validate import validate


def problems_for(tmp_path: Path, text: str) -> dict[str, str]:
    path = tmp_path / "c.yml"
    path.write_text(text)
    return {p.path: str(p) for p in validate(resolve(path))}


def test_schema_is_shipped_and_small():
    schema = load_schema()
    assert {"YOLOv3", "TrainReader", "LearningRate", "OptimizerBuilder"} <= set(schema["components"])
    assert {"PiecewiseDecay", "COCODataSet", "VOCDataSet", "Resize", "BatchRandomResize"} <= set(schema["serializable"])
    assert schema["top_level"]["use_gpu"] == "bool" and schema["top_level"]["epoch"] == "int"
    from trainctl.config.schema import SCHEMA_PATH

    assert SCHEMA_PATH.stat().st_size < 200_000


# ppdet_schema.json describes paddledet 2.6.0; these bundled recipes need a PaddleDetection checkout
# (RT-DETR is not in 2.6.0), so the keys the newer tree adds are what the wheel's schema flags
CHECKOUT_ONLY = {"roadsign_rtdetr.yml": {"ema_filter_no_grad", "DETR.neck", "HybridEncoder", "RTDETRTransformer",
                                         "DETRPostProcess", "TrainReader.sample_transforms.1.RandomDistort.prob",
                                         "TrainReader.sample_transforms.3.RandomCrop.prob"}}


@pytest.mark.parametrize("name", [n for n in bundled_configs() if "/" not in n])
def test_bundled_top_configs_are_clean(name: str):
    assert {p.path for p in validate(resolve(name))} == CHECKOUT_ONLY.get(name, set())


def test_misspelled_keys_get_the_right_suggestion(tmp_path: Path):
    found = problems_for(tmp_path, """\
epoch: 1
use_gpuu: false
TrainReader:
  batch_sise: 4
  sample_transforms:
  - Resize: {target_size: [320, 320], keep_ration: false}
  - RandomFlipp: {}
YOLOv3:
  backbone: MobileNet
  neckk: YOLOv3FPN
LearningRate:
  schedulers:
  - !PiecewiseDecay {gama: 0.1, milestones: [1]}
  - !LinearWarmupp {steps: 1}
""")
    assert "did you mean use_gpu" in found["use_gpuu"]
    assert "did you mean batch_size" in found["TrainReader.batch_sise"]
    assert "did you mean keep_ratio" in found["TrainReader.sample_transforms.0.Resize.keep_ration"]
    assert "did you mean RandomFlip or" in found["TrainReader.sample_transforms.1.RandomFlipp"]
    assert "did you mean neck" in found["YOLOv3.neckk"]
    assert "did you mean gamma" in found["LearningRate.schedulers.0.gama"]
    assert "unknown tag !LinearWarmupp" in found["LearningRate.schedulers.1"]
    assert len(found) == 7, found


def test_wrong_types(tmp_path: Path):
    found = problems_for(tmp_path, """\
epoch: ten
use_gpu: 'yes'
snapshot_epoch: 1
TrainReader:
  batch_size: [2]
  shuffle: maybe
  drop_last: 1
YOLOv3Loss:
  ignore_thresh: 0.7
""")
    assert "expects int, got str 'ten'" in found["epoch"]
    assert "expects bool" in found["use_gpu"]
    assert "expects int, got list" in found["TrainReader.batch_size"]
    assert "expects bool, got str" in found["TrainReader.shuffle"]
    assert set(found) == {"epoch", "use_gpu", "TrainReader.batch_size", "TrainReader.shuffle"}


def test_injected_components_may_be_names_or_mappings(tmp_path: Path):
    found = problems_for(tmp_path, """\
BBoxPostProcess:
  decode: {name: YOLOBox, conf_thresh: 0.005}
  nms: MultiClassNMS
""")
    assert found == {}


REFERENCE = Path(__file__).resolve().parents[3] / "shared" / "reference" / "paddledet-2.6-configs"

# What validate finds in PaddleDetection 2.6's own configs: the four that ppdet 2.6.0
# cannot build (dataset arguments and transforms from a newer version) and six that
# spell a flag 'Fasle' (a non-empty string, so ppdet reads it as True).
REFERENCE_FINDINGS = {
    "keypoint/higherhrnet/higherhrnet_hrnet_w32_512.yml": "TrainDataset.return_bbox",
    "keypoint/higherhrnet/higherhrnet_hrnet_w32_512_swahr.yml": "TrainDataset.return_bbox",
    "keypoint/higherhrnet/higherhrnet_hrnet_w32_640.yml": "TrainDataset.return_bbox",
    "keypoint/petr/petr_resnet50_16x2_coco.yml": "TrainReader.sample_transforms.1.PhotoMetricDistortion",
    "ssd/_base_/ssdlite300_reader.yml": "TrainReader.sample_transforms.3.RandomCrop.allow_no_crop",
    "ssd/_base_/ssdlite320_reader.yml": "TrainReader.sample_transforms.3.RandomCrop.allow_no_crop",
    "ssd/ssdlite_ghostnet_320_coco.yml": "TrainReader.sample_transforms.3.RandomCrop.allow_no_crop",
    "ssd/ssdlite_mobilenet_v1_300_coco.yml": "TrainReader.sample_transforms.3.RandomCrop.allow_no_crop",
    "ssd/ssdlite_mobilenet_v3_large_320_coco.yml": "TrainReader.sample_transforms.3.RandomCrop.allow_no_crop",
    "ssd/ssdlite_mobilenet_v3_small_320_coco.yml": "TrainReader.sample_transforms.3.RandomCrop.allow_no_crop",
}


def test_reference_configs_validate_clean_except_real_findings():
    if not REFERENCE.is_dir():
        pytest.skip(f"reference configs not found at {REFERENCE}")
    flagged = {}
    count = 0
    for path in sorted(REFERENCE.rglob("*.yml")):
        count += 1
        problems = validate(resolve(path))
        if problems:
            flagged[path.relative_to(REFERENCE).as_posix()] = [p.path for p in problems]
    assert count == 685
    assert set(flagged) == set(REFERENCE_FINDINGS), flagged
    for name, path in REFERENCE_FINDINGS.items():
        assert path in flagged[name]


def test_trainctl_section_is_known_and_checked(tmp_path):
    from trainctl.config import resolve
    from trainctl.config.validate import validate

    cfg = tmp_path / "c.yml"
    cfg.write_text("epoch: 1\ntrainctl:\n  ref_gpus: 1\n")
    assert [p for p in validate(resolve(str(cfg))) if p.path.startswith("trainctl")] == []
    cfg.write_text("epoch: 1\ntrainctl:\n  ref_gpu: 0\n")
    problems = [str(p) for p in validate(resolve(str(cfg))) if p.path.startswith("trainctl")]
    assert problems == ["trainctl.ref_gpu: unknown trainctl key; did you mean ref_gpus?"]
    # an override may add the section and its known key, but not a misspelt one
    rc = resolve(str(cfg), overrides=["trainctl.ref_gpus=2"])
    assert rc.get("trainctl.ref_gpus") == 2
