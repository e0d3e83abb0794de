"""The lite chain of one PaddleDetection config on one ppdet source, as a user runs it through trainctl.

Shared by tests/integration/test_zoo.py and scripts/zoo_matrix.py (docs/models.md): PaddleDetection's
own config, the COCO sample (`trainctl data sample --format coco`), `num_classes: 4`, no pretrained
weights, and the input sizes made small (`small_overrides`), then train (N iterations), eval,
export, `infer --model-dir`. Every command runs in a fresh `python -m trainctl` process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TREES = REPO.parent / "shared" / "reference" / "paddledetection-src"
SOURCES = ("wheel", "release-2.7.1", "develop")

# family -> its PaddleDetection config (same path in release-2.7.1 and develop; the wheel is run with
# develop's config files, as a user of the wheel takes them from the repository)
FAMILIES = {
    "PP-YOLOE+": "configs/ppyoloe/ppyoloe_plus_crn_s_80e_coco.yml",
    "RT-DETR": "configs/rtdetr/rtdetr_r18vd_6x_coco.yml",
    "PicoDet": "configs/picodet/picodet_s_320_coco_lcnet.yml",
    "Faster R-CNN": "configs/faster_rcnn/faster_rcnn_r50_fpn_1x_coco.yml",
    "Mask R-CNN": "configs/mask_rcnn/mask_rcnn_r50_fpn_1x_coco.yml",
    "YOLOX": "configs/yolox/yolox_nano_300e_coco.yml",
    "SSDLite": "configs/ssd/ssdlite_mobilenet_v1_300_coco.yml",
    "GFL": "configs/gfl/gfl_r18vd_1x_coco.yml",
    "TOOD": "configs/tood/tood_r50_fpn_1x_coco.yml",
    "PP-YOLO tiny": "configs/ppyolo/ppyolo_tiny_650e_coco.yml",
    "RetinaNet": "configs/retinanet/retinanet_r50_fpn_1x_coco.yml",
    "FCOS": "configs/fcos/fcos_r50_fpn_1x_coco.yml",
    "YOLOv3": "configs/yolov3/yolov3_mobilenet_v1_270e_coco.yml",
}

SIZE = 128  # every input side (a multiple of 32 and of 64 for the FPNs)
# ATSS takes the top 9 anchors per level: at 128 px a stride-64 level has only 4 (PicoDet), at 256 px
# TOOD's stride-128 level
FAMILY_SIZE = {"PicoDet": 256, "TOOD": 384}

# the transforms whose sizes are set to SIZE, and how each spells its size
_SIZE_KEYS = {
    "Resize": lambda s, v: {"target_size": [s, s]},
    "BatchRandomResize": lambda s, v: {"target_size": [s]},
    "RandomResize": lambda s, v: {"target_size": [[s, s]]},
    "RandomShortSideResize": lambda s, v: {"short_side_sizes": [s], "max_size": s},
    "Pad": lambda s, v: {"size": [s, s]},  # YOLOX's TestReader pads to its eval size after Resize
}


def _yaml_flow(value) -> str:
    return json.dumps(value).replace(" ", "")


def small_overrides(config: Path, size: int = SIZE) -> list[str]:
    """`-o` values that make a config train and infer at size x size, 4 classes, batch 2, no workers."""
    from trainctl.config import resolve

    rc = resolve(str(config))
    out = ["num_classes=4", "worker_num=0", "pretrain_weights=", "TrainReader.batch_size=2",
           "EvalReader.batch_size=1", "TrainReader.use_shared_memory=false", "log_iter=1", "snapshot_epoch=1"]
    for reader in ("TrainReader", "EvalReader", "TestReader"):
        for part in ("sample_transforms", "batch_transforms"):
            ops = rc.get(f"{reader}.{part}", None) or []
            for i, op in enumerate(ops):
                if not isinstance(op, dict) or len(op) != 1:
                    continue
                (name, args), = op.items()
                make = _SIZE_KEYS.get(name)
                if make:
                    for key, value in make(size, args).items():
                        out.append(f"{reader}.{part}.{i}.{name}.{key}={_yaml_flow(value)}")
    shape = rc.get("TestReader.inputs_def.image_shape", None)
    if isinstance(shape, list):
        out.append(f"TestReader.inputs_def.image_shape={_yaml_flow(shape[:-2] + [size, size])}")
    for key in ("eval_size", "eval_height", "eval_width"):  # top-level anchors some heads read
        if rc.get(key, None) is not None:
            out.append(f"{key}={_yaml_flow([size, size] if key == 'eval_size' else size)}")
    for head in ("PPYOLOEHead", "PicoHeadV2", "PicoHead"):
        if isinstance(rc.get(f"{head}.eval_size", None), list):
            out.append(f"{head}.eval_size=[{size},{size}]")
    return out


@dataclass
class Stage:
    name: str
    ok: bool
    seconds: float
    detail: str = ""


@dataclass
class ChainResult:
    family: str
    source: str
    config: str
    stages: list[Stage] = field(default_factory=list)
    detections: int | None = None

    @property
    def ok(self) -> bool:
        return bool(self.stages) and all(s.ok for s in self.stages)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["ok"] = self.ok
        return d


def _env(source: str) -> dict:
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", "2")
    env.pop("TRAINCTL_DEBUG", None)
    env.pop("TRAINCTL_PPDET", None)
    if source != "wheel":
        env["TRAINCTL_PPDET"] = str(TREES / source)
    return env


def last_error(proc: subprocess.CompletedProcess) -> str:
    lines = [line for line in (proc.stderr or "").splitlines() if line.startswith("trainctl: error:")]
    if lines:
        return lines[-1]
    tail = [line for line in (proc.stderr or "").splitlines() if line.strip()]
    return tail[-1] if tail else f"exit {proc.returncode}"


def run_chain(family: str, source: str, work: Path, iters: int = 2, timeout: int = 600,
              stages: tuple[str, ...] = ("train", "eval", "export", "infer")) -> ChainResult:
    """The lite chain in `work` (which holds dataset/coco); stops at the first failing stage."""
    rel = FAMILIES[family]
    config = TREES / ("develop" if source == "wheel" else source) / rel
    result = ChainResult(family, source, rel)
    name = f"{source}-{Path(rel).stem}"
    out = work / "output" / name
    overrides = small_overrides(config, FAMILY_SIZE.get(family, SIZE))
    env = _env(source)
    common = ["-c", str(config), "-o", *overrides]
    commands = {
        "train": ["train", *common, f"trainctl.max_iters={iters}", "epoch=1", "--no-pretrained", "--device", "cpu",
                  "--output", str(out / "train"), "--no-data-check"],
        "eval": ["eval", *common, "--weights", str(out / "train" / "model_final"), "--device", "cpu",
                 "--output", str(out / "eval")],
        "export": ["export", *common, "--weights", str(out / "train" / "model_final"), "--output", str(out / "model")],
        "infer": ["infer", "--model-dir", str(out / "model"), "--dir", str(work / "dataset" / "coco" / "val2017"),
                  "--output", str(out / "infer"), "--threshold", "0.0", "--no-save-images"],
    }
    for stage in stages:
        started = time.monotonic()
        proc = subprocess.run([sys.executable, "-m", "trainctl", *commands[stage]], cwd=work, env=env,
                              capture_output=True, text=True, timeout=timeout)
        seconds = time.monotonic() - started
        (out / "logs").mkdir(parents=True, exist_ok=True)
        (out / "logs" / f"{stage}.log").write_text(proc.stdout + "\n--- stderr ---\n" + proc.stderr)
        ok = proc.returncode == 0
        result.stages.append(Stage(stage, ok, round(seconds, 1), "" if ok else f"exit {proc.returncode}: {last_error(proc)}"))
        if not ok:
            break
        if stage == "infer":
            found = out / "infer" / "detections.json"
            if found.exists():
                result.detections = len(json.loads(found.read_text())["detections"])
    return result
