"""Learning-rate scaling for the number of devices actually used (pure).

PaddleDetection's convention: the `LearningRate.base_lr` in a config is tuned
for a reference setup of 8 GPUs, each with the config's
`TrainReader.batch_size`. When a run uses a different total batch,

    ref_batch    = ref_gpus × per-device batch
    actual_batch = world size × per-device batch
    linear:  factor = actual_batch / ref_batch          (the FAQ's rule)
    sqrt:    factor = sqrt(actual_batch / ref_batch)
    none:    factor = 1

and LinearWarmup `steps` (iterations) become
`round(steps × ref_batch / actual_batch)` (at least 1 when it was positive),
so warmup covers the same number of images. A warmup given in `epochs`
already covers the same images and is left alone.

The reference GPU count is `--ref-gpus N`, else the config key
`trainctl.ref_gpus`, else 8.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

from trainctl.errors import UserError

MODES = ("linear", "sqrt", "none")
DEFAULT_REF_GPUS = 8
REF_GPUS_KEY = "trainctl.ref_gpus"
SOURCE = "trainctl: lr scaling"


@dataclass
class LRReport:
    mode: str
    ref_gpus: int
    ref_gpus_source: str  # "--ref-gpus", "config trainctl.ref_gpus" or "default"
    per_device_batch: int
    world_size: int
    ref_batch: int
    actual_batch: int
    factor: float
    base_lr: float
    scaled_lr: float
    warmup_steps_before: int | None = None
    warmup_steps_after: int | None = None
    warmup_epochs: float | None = None
    warmup_path: str | None = None  # dotted key of the LinearWarmup steps that were changed
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)

    def lines(self) -> list[str]:
        """The one-screen report printed before launch."""
        rows = [
            ("scaling", f"{self.mode} (reference: {self.ref_gpus} GPUs, from {self.ref_gpus_source})"),
            ("reference batch", f"{self.ref_gpus} × {self.per_device_batch} = {self.ref_batch}"),
            ("actual batch", f"{self.world_size} × {self.per_device_batch} = {self.actual_batch}"),
            ("factor", f"{self.factor:.6g}"),
            ("base_lr", f"{self.base_lr:.6g} -> {self.scaled_lr:.6g}"),
        ]
        if self.warmup_steps_before is not None:
            rows.append(("warmup steps", f"{self.warmup_steps_before} -> {self.warmup_steps_after}"
                         f" (same number of images: × {self.ref_batch}/{self.actual_batch})"))
        elif self.warmup_epochs is not None:
            rows.append(("warmup", f"{self.warmup_epochs:g} epochs (unchanged: epochs cover the same images)"))
        width = max(len(k) for k, _ in rows)
        out = [f"  {k.ljust(width)}  {v}" for k, v in rows]
        out.extend(f"  note: {n}" for n in self.notes)
        return out


def _tag_parts(node: Any) -> tuple[str | None, Any]:
    """(tag, fields) of a trainctl.config.Tagged value, or (None, node)."""
    tag = getattr(node, "tag", None)
    if tag is not None and hasattr(node, "value"):
        return str(tag).lstrip("!"), node.value
    return None, node


def _find_linear_warmup(lr_section: Any) -> tuple[int, dict] | None:
    """Index and fields of the LinearWarmup in LearningRate.schedulers."""
    _, fields = _tag_parts(lr_section)
    if not isinstance(fields, dict):
        return None
    schedulers = fields.get("schedulers")
    if not isinstance(schedulers, list):
        return None
    for index, item in enumerate(schedulers):
        tag, value = _tag_parts(item)
        if tag == "LinearWarmup" and isinstance(value, dict):
            return index, value
        if tag is None and isinstance(value, dict) and value.get("name") == "LinearWarmup":
            return index, value
    return None


def _get(data: dict, dotted: str) -> Any:
    node: Any = data
    for part in dotted.split("."):
        _, node = _tag_parts(node)
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return None
    return node


def compute(
    data: dict,
    world_size: int,
    mode: str = "linear",
    ref_gpus: int | None = None,
) -> LRReport:
    """The LR report for a resolved config mapping and a world size."""
    if mode not in MODES:
        raise UserError(f"--lr-scale {mode!r} is not one of {', '.join(MODES)}")
    if ref_gpus is not None:
        source = "--ref-gpus"
    elif _get(data, REF_GPUS_KEY) is not None:
        ref_gpus, source = _get(data, REF_GPUS_KEY), f"config {REF_GPUS_KEY}"
    else:
        ref_gpus, source = DEFAULT_REF_GPUS, "default"
    if not isinstance(ref_gpus, int) or isinstance(ref_gpus, bool) or ref_gpus < 1:
        raise UserError(f"reference GPU count {ref_gpus!r} ({source}) must be a positive integer",
                        hint="e.g. --ref-gpus 8, the GPU count the config's LR was tuned for")

    base_lr = _get(data, "LearningRate.base_lr")
    if not isinstance(base_lr, (int, float)) or isinstance(base_lr, bool):
        raise UserError("the config has no numeric LearningRate.base_lr to scale",
                        hint="add LearningRate.base_lr or pass --lr-scale none")
    batch = _get(data, "TrainReader.batch_size")
    if not isinstance(batch, int) or isinstance(batch, bool) or batch < 1:
        raise UserError("the config has no positive integer TrainReader.batch_size",
                        hint="set it with -o TrainReader.batch_size=N")

    ref_batch = ref_gpus * batch
    actual_batch = world_size * batch
    ratio = actual_batch / ref_batch
    factor = {"linear": ratio, "sqrt": math.sqrt(ratio), "none": 1.0}[mode]
    report = LRReport(
        mode=mode, ref_gpus=ref_gpus, ref_gpus_source=source, per_device_batch=batch,
        world_size=world_size, ref_batch=ref_batch, actual_batch=actual_batch,
        factor=factor, base_lr=float(base_lr), scaled_lr=float(base_lr) * factor,
    )

    warmup = _find_linear_warmup(data.get("LearningRate"))
    if warmup is not None:
        index, fields = warmup
        if fields.get("epochs") is not None:
            report.warmup_epochs = float(fields["epochs"])
        else:
            steps = fields.get("steps", 500)  # LinearWarmup's own default
            if isinstance(steps, int) and not isinstance(steps, bool):
                report.warmup_steps_before = steps
                if mode == "none":
                    report.warmup_steps_after = steps
                else:
                    scaled = round(steps * ref_batch / actual_batch)
                    report.warmup_steps_after = max(1, scaled) if steps > 0 else steps
                report.warmup_path = f"LearningRate.schedulers.{index}.steps"
    if mode == "none":
        report.notes.append("--lr-scale none: the config's LR and warmup are used as written")
    elif world_size == ref_gpus:
        report.notes.append("the run matches the reference setup; nothing changes")
    return report


def apply(report: LRReport, set_value: Callable[[str, Any, str], None]) -> None:
    """Write the scaled values back through `set_value(key, value, source)`.

    With a ResolvedConfig: `apply(report, lambda k, v, s: rc.set(k, v, source=s))`
    so `config trace` shows that trainctl changed them.
    """
    if report.factor != 1.0:
        set_value("LearningRate.base_lr", report.scaled_lr, f"{SOURCE} ({report.mode}, × {report.factor:.6g})")
    if (report.warmup_path and report.warmup_steps_after is not None
            and report.warmup_steps_after != report.warmup_steps_before):
        set_value(report.warmup_path, report.warmup_steps_after,
                  f"{SOURCE} (warmup × {report.ref_batch}/{report.actual_batch})")
