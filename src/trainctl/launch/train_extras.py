"""The rest of PaddleDetection's tools/train.py, for `trainctl train` (pure: no paddle).

One dataclass, `TrainExtras`, carries the flags of cli/train_extras.py: mixed precision
(--amp-level, --amp-dtype, --master-grad, --init-loss-scaling, on top of train's --amp),
--to-static, --fleet, --profile / --profiler-options and --slim-config. `apply` runs in
the launch flow (launch/flow.py `prepare`): it checks the flags against the planned device,
writes the config keys ppdet's Trainer reads (amp, amp_level, master_grad,
init_loss_scaling, to_static, fleet) into the resolved config with their provenance, and
returns the record that --dry-run prints and run.json keeps. The worker reads the same
record from job.json (`Job.extra["train_extras"]`) for what ppdet does not do by itself
(runner/train_extras.py: fleet init, the slim model, the profiler, bfloat16, master_grad).

Measured facts this module relies on (paddle 3.3.1 CPU, paddledet 2.6.0 and develop):
- ppdet's Trainer enables `paddle.amp.auto_cast` and `GradScaler` only when use_gpu (or
  NPU/MLU) is set, and paddle 3.3.1's auto_cast itself has no effect on CPU ("amp_guard can
  only be enabled on CUDAPlace, XPUPlace, and CustomPlace"; decorate O2 leaves float32 weights,
  bfloat16 too): on CPU a run with `amp: true` trains in float32. trainctl refuses the explicit
  precision flags on CPU (exit 2) instead of ignoring them; plain --amp keeps its meaning (a
  warning on CPU).
- ppdet has no AMP dtype key: it always casts to float16. --amp-dtype bfloat16 is done by
  the worker (runner/train_extras.py).
- ppdet passes master_grad to paddle.amp.decorate only when paddle's version starts with
  "2.5" or "0.0"; on 3.x the worker's shim passes it (runner/compat/amp.py).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from trainctl.errors import UserError

AMP_LEVELS = ("O1", "O2")
AMP_DTYPES = ("float16", "bfloat16")
# slim types whose ppdet branch loads pretrain_weights into the float model before slimming
# (ppdet/slim/__init__.py build_slim_model: the last `else`, plus DistillPrune's student)
SLIM_NEEDS_PRETRAINED = ("QAT", "PACT", "Pruner", "PrunerQAT")
CONFIG_KEYS = ("amp", "amp_level", "master_grad", "init_loss_scaling", "to_static", "fleet")  # read by ppdet's Trainer
PROFILE_DEFAULT_RANGE = (2, 5)  # iterations [start, end) that --profile records by default
PROFILER_KEYS = ("batch_range", "state", "sorted_key", "tracer_option", "profile_path", "exit_on_finished", "timer_only")


@dataclass
class TrainExtras:
    amp_level: str | None = None  # O1 | O2 (ppdet's default when amp is on: O1)
    amp_dtype: str | None = None  # float16 | bfloat16 (ppdet: always float16)
    master_grad: bool = False  # O2: keep float32 gradients (paddle.amp.decorate master_grad)
    init_loss_scaling: float | None = None  # GradScaler's initial scale (ppdet default 1024)
    to_static: bool = False  # ppdet's to_static: paddle.jit.to_static on the model before training
    fleet: bool = False  # ppdet's fleet: fleet.init + distributed_model/optimizer instead of DataParallel
    profile: bool = False  # paddle.profiler over a few iterations, result in RUN_DIR/profile/
    profiler_options: str | None = None  # ppdet's "k=v;k=v" string (batch_range, timer_only, ...)
    slim_config: str | None = None  # PaddleSlim config (QAT, PACT, pruning, distillation, OFA)
    summary: dict = field(default_factory=dict)  # filled by apply(): what the worker and run.json get

    def precision_flags(self) -> list[str]:
        flags = []
        if self.amp_level:
            flags.append(f"--amp-level {self.amp_level}")
        if self.amp_dtype:
            flags.append(f"--amp-dtype {self.amp_dtype}")
        if self.master_grad:
            flags.append("--master-grad")
        if self.init_loss_scaling is not None:
            flags.append(f"--init-loss-scaling {self.init_loss_scaling:g}")
        return flags

    def apply(self, rc, plan, amp: bool, dry: bool) -> dict:
        """Check the flags against the plan, write ppdet's config keys into `rc`, return the record.

        Bad input raises UserError (exit 2, one line)."""
        summary: dict = {}
        precision = self._precision(rc, plan, amp)
        if precision is not None:
            summary["precision"] = precision
        if self.to_static:
            rc.set("to_static", True, source="--to-static")
            summary["to_static"] = True
        if self.fleet:
            rc.set("fleet", True, source="--fleet")
            summary["fleet"] = True
        if self.profile or self.profiler_options:
            summary["profile"] = profiler_settings(self.profiler_options, plan.run_dir)
        if self.slim_config:
            summary["slim"] = slim_settings(self.slim_config, rc, plan, dry)
        written = {key: rc.get(key) for key in CONFIG_KEYS if rc.get(key) is not None}
        if written:
            summary["config_keys"] = written  # what config.yml hands to ppdet's Trainer
        self.summary = summary
        if summary:
            plan.extras = summary
        return summary

    def _precision(self, rc, plan, amp: bool) -> dict | None:
        flags = self.precision_flags()
        if not flags and not amp and not rc.get("amp"):
            return None
        if self.master_grad and (self.amp_level or rc.get("amp_level") or "O1") != "O2":
            raise UserError("--master-grad applies to --amp-level O2 only (O1 keeps float32 parameters and gradients)",
                            hint="add --amp-level O2 or drop --master-grad")
        if self.init_loss_scaling is not None and self.init_loss_scaling <= 0:
            raise UserError(f"--init-loss-scaling {self.init_loss_scaling:g} must be positive",
                            hint="e.g. --init-loss-scaling 1024 (ppdet's default) or 65536")
        if plan.device.kind != "gpu":
            if flags:
                raise UserError(f"{', '.join(flags)}: mixed precision needs a GPU; on CPU paddle's auto_cast has no "
                                "effect (paddle 3.3.1: only CUDA/XPU/custom places) and ppdet enables it only for GPU",
                                hint="drop the precision flags on CPU, or train on GPUs (--gpus IDS)")
            plan.warnings.append("--amp (amp: true) has no effect on CPU: ppdet enables auto_cast only on GPU, "
                                 "so this run trains in float32")
            return {"amp": False, "dtype": "float32", "why": "CPU: ppdet enables auto_cast only on GPU"}
        source = "--amp" if amp else None
        if flags and not amp and not rc.get("amp"):
            source = flags[0].split()[0] + " (implies --amp)"
        if source and not rc.get("amp"):
            rc.set("amp", True, source=source)
        if self.amp_level:
            rc.set("amp_level", self.amp_level, source=f"--amp-level {self.amp_level}")
        if self.master_grad:
            rc.set("master_grad", True, source="--master-grad")
        if self.init_loss_scaling is not None:
            rc.set("init_loss_scaling", float(self.init_loss_scaling),
                   source=f"--init-loss-scaling {self.init_loss_scaling:g}")
        level = rc.get("amp_level") or "O1"
        if level not in AMP_LEVELS:
            raise UserError(f"amp_level {level!r} (set by {rc.source_of('amp_level') or 'the config'}) is not O1 or O2",
                            hint="use --amp-level O1|O2")
        dtype = self.amp_dtype or "float16"
        return {
            "amp": True,
            "level": level,
            "dtype": dtype,
            "master_grad": bool(rc.get("master_grad")) and level == "O2",
            "init_loss_scaling": float(rc.get("init_loss_scaling") or 1024.0),
            "loss_scaling": dtype == "float16",  # bfloat16 has float32's range: the scaler is not needed
        }


def parse_profiler_options(text: str | None) -> dict:
    """ppdet's "key=value;key=value" profiler string, checked (ppdet's own parser dies on a typo)."""
    options: dict = {}
    if not text:
        return options
    for part in text.replace(" ", "").split(";"):
        if not part:
            continue
        key, sep, value = part.partition("=")
        if not sep or key not in PROFILER_KEYS:
            raise UserError(f"--profiler-options: {part!r} is not KEY=VALUE with a known key",
                            hint=f"keys: {', '.join(PROFILER_KEYS)}, e.g. 'batch_range=[2,5];timer_only=False'")
        if key == "batch_range":
            try:
                bounds = [int(v) for v in value.strip("[]").split(",")]
            except ValueError:
                bounds = []
            if len(bounds) != 2 or bounds[0] < 0 or bounds[1] <= bounds[0]:
                raise UserError(f"--profiler-options: batch_range {value!r} must be [START,END] with 0 <= START < END",
                                hint="e.g. batch_range=[2,5] (iterations 2, 3 and 4)")
            options[key] = bounds
        elif key in ("exit_on_finished", "timer_only"):
            options[key] = value.lower() in ("yes", "true", "t", "1")
        else:
            options[key] = value
    return options


def profiler_settings(text: str | None, run_dir: str) -> dict:
    """What the worker's profiler does: which iterations, where the result goes."""
    options = parse_profiler_options(text)
    start, end = options.get("batch_range", PROFILE_DEFAULT_RANGE)
    path = options.get("profile_path") or os.path.join(run_dir, "profile")
    return {"batch_range": [start, end], "timer_only": bool(options.get("timer_only", False)),
            "sorted_key": options.get("sorted_key", "total"), "path": path,
            "exit_on_finished": bool(options.get("exit_on_finished", False)), "options": text or ""}


def slim_settings(path: str, rc, plan, dry: bool) -> dict:
    """Read a PaddleSlim config (plain YAML) and check before launch what its method needs."""
    import yaml

    if not os.path.isfile(path):
        raise UserError(f"--slim-config {path}: no such file", hint="e.g. configs/slim/quant/yolov3_mobilenet_v1_qat.yml "
                                                                    "of a PaddleDetection checkout")
    try:
        with open(path) as f:
            data = yaml.load(f, Loader=yaml.Loader)  # ppdet reads it with the same loader (custom tags)
    except yaml.YAMLError as exc:
        raise UserError(f"--slim-config {path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(data, dict) or not data.get("slim"):
        raise UserError(f"--slim-config {path} has no 'slim' key", hint="a PaddleSlim config names its method, "
                                                                        "e.g. slim: QAT")
    method = str(data["slim"])
    info = {"config": os.path.abspath(path), "method": method}
    if method in SLIM_NEEDS_PRETRAINED:
        # ppdet loads the slim file over the config: its pretrain_weights wins, unless the user gave -o
        given = any(o.split("=", 1)[0] == "pretrain_weights" for o in rc.overrides)
        value = rc.get("pretrain_weights") if given or "pretrain_weights" not in data else data.get("pretrain_weights")
        where = "-o pretrain_weights" if given else (path if "pretrain_weights" in data else
                                                     rc.source_of("pretrain_weights") or "the config")
        if not value:
            raise UserError(f"--slim-config ({method}) loads pretrain_weights into the float model before slimming, "
                            f"and pretrain_weights is empty (from {where})",
                            hint="pass -o pretrain_weights=PATH of a trained float model (e.g. output/<config>/model_final)")
        from trainctl import weights as weightmod

        if not weightmod.is_url(str(value)):
            local = str(value)
            if not (os.path.isfile(local) or os.path.isfile(local + ".pdparams")):
                raise UserError(f"--slim-config ({method}): pretrain_weights {local} (from {where}) does not exist",
                                hint="pass -o pretrain_weights=PATH of a trained float model (a .pdparams file or its stem)")
        elif dry:
            if not weightmod.cached_path(str(value)).exists():
                plan.warnings.append(f"--slim-config: pretrain_weights {value} is not cached yet; a real run downloads it")
        else:
            value = weightmod.resolve_pretrained(str(value))
        info["pretrain_weights"] = str(value)
        info["pretrain_weights_from"] = where
    return info


def record_line(summary: dict) -> str | None:
    """One line for the text dry run and the launch log."""
    parts = []
    precision = summary.get("precision")
    if precision:
        if precision["amp"]:
            parts.append(f"AMP {precision['level']} {precision['dtype']}"
                         + (", master_grad" if precision["master_grad"] else "")
                         + (f", init loss scaling {precision['init_loss_scaling']:g}" if precision["loss_scaling"] else ""))
        else:
            parts.append(f"float32 ({precision['why']})")
    if summary.get("to_static"):
        parts.append("dynamic-to-static (paddle.jit.to_static)")
    if summary.get("fleet"):
        parts.append("fleet (distributed_model/optimizer)")
    if summary.get("profile"):
        prof = summary["profile"]
        parts.append(f"profiler on iterations {prof['batch_range'][0]}..{prof['batch_range'][1] - 1} -> {prof['path']}")
    if summary.get("slim"):
        slim = summary["slim"]
        parts.append(f"slim {slim['method']} ({slim['config']})"
                     + (f" from {slim['pretrain_weights']}" if slim.get("pretrain_weights") else ""))
    return "; ".join(parts) if parts else None
