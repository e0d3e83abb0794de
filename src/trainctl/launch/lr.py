"""Learning-rate scaling for the total batch actually used (pure).

PaddleDetection's convention: the `LearningRate.base_lr` in a config is tuned
for a reference setup of 8 GPUs, each with the `TrainReader.batch_size` the
config files give. A run's total batch differs when it uses another number of
devices or changes the batch on the command line (`-o TrainReader.batch_size=4`):

    ref_batch    = ref_gpus × batch_size of the config files (before -o overrides)
    actual_batch = world size × batch_size of this run (after -o overrides)
    linear:  factor = actual_batch / ref_batch          (the FAQ's rule)
    sqrt:    factor = sqrt(actual_batch / ref_batch)
    none:    factor = 1

and LinearWarmup `steps` (iterations) become
`round(steps × ref_batch / actual_batch)` (at least 1 when it was positive),
so warmup covers the same number of images. A warmup given in `epochs`
already covers the same images and is left alone.

A value typed on the command line is used as given: `-o LearningRate.base_lr=X`
is not scaled (X is the LR the user wants for this run), and `-o` on the
warmup steps keeps those steps. The report says so.

The reference GPU count is `--ref-gpus N`, else the config key
`trainctl.ref_gpus`, else 8. When the config files hold no positive integer
batch_size (only `-o` sets one), the reference uses the run's own per-device
batch, as trainctl did before it read the files' value, and a note says so.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

from trainctl.config.resolve import OVERRIDE_SOURCE_PREFIX
from trainctl.errors import UserError

MODES = ("linear", "sqrt", "none")
DEFAULT_REF_GPUS = 8
REF_GPUS_KEY = "trainctl.ref_gpus"
BATCH_KEY = "TrainReader.batch_size"
BASE_LR_KEY = "LearningRate.base_lr"
SOURCE = "trainctl: lr scaling"


@dataclass
class LRReport:
    mode: str
    ref_gpus: int
    ref_gpus_source: str  # "--ref-gpus", "config trainctl.ref_gpus" or "default"
    per_device_batch: int  # this run's batch per device (after -o overrides)
    world_size: int
    ref_batch: int  # ref_gpus × ref_per_device_batch
    actual_batch: int  # world_size × per_device_batch
    factor: float  # applied to base_lr: scaled_lr = base_lr × factor
    base_lr: float
    scaled_lr: float
    warmup_steps_before: int | None = None
    warmup_steps_after: int | None = None
    warmup_epochs: float | None = None
    warmup_path: str | None = None  # dotted key of the LinearWarmup steps that were changed
    notes: list[str] = field(default_factory=list)
    # added later; the fields above keep their names and meaning for --dry-run=json readers
    ref_per_device_batch: int | None = None  # the config files' batch_size (before -o)
    ref_per_device_batch_source: str | None = None  # the file that set it
    per_device_batch_source: str | None = None  # a file or "-o TrainReader.batch_size=N"
    rule_factor: float | None = None  # what the mode gives for actual/ref; differs from factor if base_lr was given
    base_lr_source: str | None = None
    base_lr_scaled: bool = True  # False for --lr-scale none and for a base_lr given with -o
    warmup_steps_source: str | None = None  # who set the warmup steps (None: LinearWarmup's default)

    def to_dict(self) -> dict:
        return asdict(self)

    def lines(self) -> list[str]:
        """The one-screen report printed before launch."""
        gpus = _count(self.ref_gpus, "GPU", "GPUs")
        ref_per_device = self.ref_per_device_batch or self.per_device_batch
        rows = [
            ("scaling", f"{self.mode} (reference: {gpus}, from {self.ref_gpus_source})"),
            ("reference batch", f"{gpus} × {_count(ref_per_device, 'image', 'images')} = {self.ref_batch}"
                                + _from(self.ref_per_device_batch_source)),
            ("actual batch", f"{_count(self.world_size, 'process', 'processes')}"
                             f" × {_count(self.per_device_batch, 'image', 'images')} = {self.actual_batch}"
                             + _from(self.per_device_batch_source)),
            ("factor", self._factor_text()),
            ("base_lr", f"{self.base_lr:.6g} -> {self.scaled_lr:.6g}"),
        ]
        if self.warmup_steps_before is not None:
            if self.mode == "none":
                rows.append(("warmup steps", f"{self.warmup_steps_before} (unchanged: --lr-scale none)"))
            elif _is_override(self.warmup_steps_source):
                rows.append(("warmup steps", f"{self.warmup_steps_before} (used as given: {self.warmup_steps_source})"))
            else:
                rows.append(("warmup steps", f"{self.warmup_steps_before} -> {self.warmup_steps_after}"
                             f" (same number of images: × {self.ref_batch}/{self.actual_batch})"))
        elif self.warmup_epochs is not None:
            rows.append(("warmup", f"{self.warmup_epochs:g} epochs (unchanged: epochs cover the same images)"))
        width = max(len(k) for k, _ in rows)
        out = [f"  {k.ljust(width)}  {v}" for k, v in rows]
        out.extend(f"  note: {n}" for n in self.notes)
        return out

    def _factor_text(self) -> str:
        rule = self.rule_factor if self.rule_factor is not None else self.factor
        ratio = f"{self.actual_batch}/{self.ref_batch}"
        formula = {"linear": f"{rule:.6g} = {ratio}", "sqrt": f"{rule:.6g} = √({ratio})"}.get(self.mode)
        if formula is None:  # none
            return f"{self.factor:.6g}"
        if self.base_lr_scaled:
            return formula
        return f"{self.factor:.6g}, base_lr used as given (the {self.mode} rule gives {formula})"


def _count(n: int, one: str, many: str) -> str:
    return f"{n} {one if n == 1 else many}"


def _from(source: str | None) -> str:
    if not source:
        return ""
    return f"  (batch_size from {source})" if _is_override(source) else f"  (batch_size of the config files: {source})"


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


def _positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def _is_override(source: str | None) -> bool:
    return bool(source) and source.startswith(OVERRIDE_SOURCE_PREFIX)


def compute(
    data: dict,
    world_size: int,
    mode: str = "linear",
    ref_gpus: int | None = None,
    *,
    file_batch: tuple[Any, str | None] | None = None,
    source_of: Callable[[str], str | None] | None = None,
) -> LRReport:
    """The LR report for a resolved config mapping and a world size.

    `file_batch` is (value, source) of TrainReader.batch_size in the config files
    before `-o` overrides; None means "same as in `data`". `source_of(dotted_key)`
    says who set a resolved value (a file, "-o ..."); None means every value came
    from the files. `compute_for` fills both from a ResolvedConfig.
    """
    if mode not in MODES:
        raise UserError(f"--lr-scale {mode!r} is not one of {', '.join(MODES)}")
    source_of = source_of or (lambda key: None)
    if ref_gpus is not None:
        source = "--ref-gpus"
    elif _get(data, REF_GPUS_KEY) is not None:
        ref_gpus, source = _get(data, REF_GPUS_KEY), f"config {REF_GPUS_KEY}"
    else:
        ref_gpus, source = DEFAULT_REF_GPUS, "default"
    if not _positive_int(ref_gpus):
        raise UserError(f"reference GPU count {ref_gpus!r} ({source}) must be a positive integer",
                        hint="e.g. --ref-gpus 8, the GPU count the config's LR was tuned for")

    base_lr = _get(data, BASE_LR_KEY)
    if not isinstance(base_lr, (int, float)) or isinstance(base_lr, bool):
        raise UserError("the config has no numeric LearningRate.base_lr to scale",
                        hint="add LearningRate.base_lr or pass --lr-scale none")
    batch = _get(data, BATCH_KEY)
    batch_source = source_of(BATCH_KEY)
    if batch is None:
        raise UserError("the config has no TrainReader.batch_size",
                        hint="set it with -o TrainReader.batch_size=N")
    if not _positive_int(batch):
        where = f" (set by {batch_source})" if batch_source else ""
        raise UserError(f"TrainReader.batch_size is {batch!r}{where}; it must be a positive integer",
                        hint="set it with -o TrainReader.batch_size=N")

    notes: list[str] = []
    if file_batch is None:
        ref_batch_per_device, ref_batch_source = batch, batch_source
    elif _positive_int(file_batch[0]):
        ref_batch_per_device, ref_batch_source = file_batch
    else:
        ref_batch_per_device, ref_batch_source = batch, batch_source
        found = "no" if file_batch[0] is None else f"the non-integer {file_batch[0]!r} as"
        notes.append(f"the config files have {found} TrainReader.batch_size, so the reference uses this run's "
                     f"{batch} per device: the LR follows the device count only")

    ref_batch = ref_gpus * ref_batch_per_device
    actual_batch = world_size * batch
    ratio = actual_batch / ref_batch
    rule_factor = {"linear": ratio, "sqrt": math.sqrt(ratio), "none": 1.0}[mode]
    base_lr_source = source_of(BASE_LR_KEY)
    base_lr_explicit = _is_override(base_lr_source)
    factor = 1.0 if base_lr_explicit else rule_factor
    report = LRReport(
        mode=mode, ref_gpus=ref_gpus, ref_gpus_source=source, per_device_batch=batch,
        world_size=world_size, ref_batch=ref_batch, actual_batch=actual_batch,
        factor=factor, base_lr=float(base_lr), scaled_lr=float(base_lr) * factor,
        ref_per_device_batch=ref_batch_per_device, ref_per_device_batch_source=ref_batch_source,
        per_device_batch_source=batch_source, rule_factor=rule_factor, base_lr_source=base_lr_source,
        base_lr_scaled=mode != "none" and not base_lr_explicit,
    )
    if base_lr_explicit and mode != "none" and rule_factor != 1.0:
        notes.append(f"base_lr was given on the command line ({base_lr_source}): used as given, not scaled; "
                     f"drop that -o to get the {mode} rule's {float(base_lr) * rule_factor:.6g}")

    warmup = _find_linear_warmup(data.get("LearningRate"))
    if warmup is not None:
        index, fields = warmup
        if fields.get("epochs") is not None:
            report.warmup_epochs = float(fields["epochs"])
        else:
            steps = fields.get("steps", 500)  # LinearWarmup's own default
            if isinstance(steps, int) and not isinstance(steps, bool):
                path = f"LearningRate.schedulers.{index}.steps"
                steps_source = source_of(path) if "steps" in fields else None
                report.warmup_steps_before = steps
                report.warmup_steps_source = steps_source
                if mode == "none" or _is_override(steps_source):
                    report.warmup_steps_after = steps
                else:
                    scaled = round(steps * ref_batch / actual_batch)
                    report.warmup_steps_after = max(1, scaled) if steps > 0 else steps
                report.warmup_path = path
    if mode == "none":
        notes.append("--lr-scale none: the config's LR and warmup are used as written")
    elif actual_batch == ref_batch:
        notes.append(f"the run's total batch equals the reference ({ref_batch} images per step); nothing changes")
    report.notes.extend(notes)
    return report


def compute_for(rc: Any, world_size: int, mode: str = "linear", ref_gpus: int | None = None) -> LRReport:
    """`compute` for a trainctl.config.ResolvedConfig, with the files' batch_size and provenance.

    The reference batch_size is the config files' value: when `-o` (or anything
    else that is not one of the config's files) set the resolved one, the config
    is resolved once more without overrides (pure and cheap) to read it.
    """
    batch_source = rc.source_of(BATCH_KEY)
    files = {layer.name for _, layer in rc.layers.walk()}
    if batch_source is None or batch_source in files:
        file_batch = (rc.get(BATCH_KEY), batch_source)
    else:
        from trainctl.config import resolve

        from_files = resolve(rc.path)
        file_batch = (from_files.get(BATCH_KEY), from_files.source_of(BATCH_KEY))
    return compute(rc.data, world_size, mode, ref_gpus, file_batch=file_batch, source_of=rc.source_of)


def apply(report: LRReport, set_value: Callable[[str, Any, str], None]) -> None:
    """Write the scaled values back through `set_value(key, value, source)`.

    With a ResolvedConfig: `apply(report, lambda k, v, s: rc.set(k, v, source=s))`
    so `config trace` shows that trainctl changed them.
    """
    if report.factor != 1.0:
        set_value(BASE_LR_KEY, report.scaled_lr, f"{SOURCE} ({report.mode}, × {report.factor:.6g})")
    if (report.warmup_path and report.warmup_steps_after is not None
            and report.warmup_steps_after != report.warmup_steps_before):
        set_value(report.warmup_path, report.warmup_steps_after,
                  f"{SOURCE} (warmup × {report.ref_batch}/{report.actual_batch})")
