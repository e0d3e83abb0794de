"""The worker's side of launch/train_extras.py (runs inside a worker: imports paddle and ppdet).

The config keys ppdet reads by itself (amp, amp_level, master_grad, init_loss_scaling,
to_static, fleet) are already in config.yml. Here is what ppdet's Trainer does not do:
- `init_distributed`: fleet.init (tools/train.py's init_fleet_env) instead of
  init_parallel_env when the config says fleet;
- `check_precision`: the device really has the AMP dtype (bfloat16 needs a GPU that has it);
- `amp_settings`: bfloat16 and master_grad passed to paddle.amp (runner/compat/amp.py);
- `build_slim`: ppdet.slim.build_slim_model with the pretrain_weights trainctl checked;
- `StepProfiler`: paddle's profiler over a few iterations, its files in the run directory and
  one line on where the step time goes (data, forward, backward, optimizer).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import time

from trainctl import output
from trainctl.errors import UserError
from trainctl.fsutil import atomic_write_text

SUMMARY_FILE = "summary.txt"
STEPS_FILE = "steps.json"


def settings(job) -> dict:
    return dict(job.extra.get("train_extras") or {})


def init_distributed(cfg, world_size: int) -> bool:
    """fleet.init(is_collective=True) as PaddleDetection's init_fleet_env does, when the config says
    fleet; returns whether it did (else the worker calls init_parallel_env for several ranks)."""
    if not cfg.get("fleet", False):
        return False
    from paddle.distributed import fleet

    strategy = fleet.DistributedStrategy()
    strategy.find_unused_parameters = bool(cfg.get("find_unused_parameters", False))
    fleet.init(is_collective=True, strategy=strategy)
    return True


def check_precision(extras: dict) -> None:
    precision = extras.get("precision") or {}
    if not precision.get("amp"):
        return
    import paddle

    dtype = precision.get("dtype", "float16")
    check = paddle.amp.is_bfloat16_supported if dtype == "bfloat16" else paddle.amp.is_float16_supported
    if not check():
        raise UserError(f"--amp-dtype {dtype}: this device ({paddle.get_device()}) does not support {dtype} "
                        f"mixed precision (paddle.amp.is_{dtype}_supported() is False)",
                        hint="use --amp-dtype float16, or a GPU that has bfloat16 (compute capability 8.0+)")


def amp_settings(extras: dict):
    precision = extras.get("precision") or {}
    if not precision.get("amp"):
        return contextlib.nullcontext()
    from trainctl.runner import compat

    return compat.amp_settings(master_grad=bool(precision.get("master_grad")), dtype=precision.get("dtype"))


def build_slim(cfg, extras: dict, run_dir: str, rank: int):
    """ppdet.slim.build_slim_model on the config, as tools/train.py does; the slim file's
    pretrain_weights is replaced by the one trainctl checked before launch (launch/train_extras.py)."""
    slim = extras.get("slim")
    if not slim:
        return cfg
    try:
        import paddleslim  # noqa: F401  (ppdet imports it only inside build_slim_model)
    except ImportError as exc:  # not installed, or its undeclared dependency `decorator` missing
        raise UserError(f"--slim-config needs PaddleSlim, which does not import here ({exc})",
                        hint="pip install 'trainctl[slim]' && pip install --no-deps paddleslim==2.6.0 "
                             "(docs/training.md)") from None
    from ppdet.slim import build_slim_model
    path = slim["config"]
    if slim.get("pretrain_weights"):
        import yaml

        with open(path) as f:
            text = f.read()
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError:
            data = None
        if isinstance(data, dict):
            data["pretrain_weights"] = slim["pretrain_weights"]
            path = os.path.join(run_dir, f"slim.rank{rank}.yml")
            atomic_write_text(path, yaml.safe_dump(data, sort_keys=False))
    cfg = build_slim_model(cfg, path)
    _log(f"slim {slim['method']} from {slim['config']}"
         + (f", float weights {slim['pretrain_weights']}" if slim.get("pretrain_weights") else ""))
    return cfg


def _log(message: str) -> None:
    output.echo(f"[trainctl worker] {message}", err=True)


def _sync() -> None:
    import paddle

    if paddle.is_compiled_with_cuda() and paddle.get_device().startswith("gpu"):
        paddle.device.synchronize()


def install_profiler(trainer, extras: dict, rank: int):
    """Append a StepProfiler to the trainer's callbacks when --profile was given."""
    prof = extras.get("profile")
    if not prof:
        return None
    profiler = StepProfiler(trainer, prof, rank)
    trainer._compose_callback._callbacks.append(profiler)
    return profiler


def _callback_base():
    from ppdet.engine.callbacks import Callback

    return Callback


class StepProfiler(_callback_base()):
    """paddle.profiler over global iterations [start, end) of this run, plus timestamps around the
    model's forward and the optimizer's step in those iterations:
    data = ppdet's data_time, forward = step begin -> forward returned, backward = forward returned ->
    optimizer.step called (loss.backward and the loss scaler), optimizer = optimizer.step,
    other = the rest of the iteration (LR step, clear_grad, callbacks)."""

    def __init__(self, trainer, prof: dict, rank: int):
        super().__init__(trainer)
        self.start, self.end = prof["batch_range"]
        self.path = prof["path"] if rank == 0 else os.path.join(prof["path"], f"rank{rank}")
        self.timer_only = prof.get("timer_only", False)
        self.sorted_key = prof.get("sorted_key", "total")
        self.exit_on_finished = prof.get("exit_on_finished", False)
        self.iteration = 0
        self.profiler = None
        self.steps: list[dict] = []
        self._marks: dict = {}
        self._patched: list = []
        self.done = False

    # --- timestamps -------------------------------------------------------------------
    def _patch(self, obj, name: str, before: str | None, after: str | None) -> None:
        original = getattr(obj, name)

        def wrapped(*args, **kwargs):
            if before:
                _sync()
                self._marks[before] = time.perf_counter()
            result = original(*args, **kwargs)
            if after:
                _sync()
                self._marks[after] = time.perf_counter()
            return result

        setattr(obj, name, wrapped)
        self._patched.append((obj, name))

    def _unpatch(self) -> None:
        for obj, name in self._patched:
            with contextlib.suppress(AttributeError):
                delattr(obj, name)  # the instance attribute goes, the class method is back
        self._patched = []

    # --- ppdet callback hooks ---------------------------------------------------------------
    def on_step_begin(self, status):
        if self.done or status.get("mode") != "train":
            return
        if self.iteration == self.start:
            import paddle.profiler as profiler

            targets = [profiler.ProfilerTarget.CPU]
            import paddle

            if paddle.is_compiled_with_cuda():
                targets.append(profiler.ProfilerTarget.GPU)
            self.profiler = profiler.Profiler(targets=targets, timer_only=self.timer_only)
            self.profiler.start()
            if not self.model.cfg.get("to_static", False):  # a to_static model's forward is a compiled program
                self._patch(self.model.model, "forward", None, "forward")
            self._patch(self.model.optimizer, "step", "optimizer_start", "optimizer")
        if self.profiler is not None:
            _sync()
            self._marks = {"begin": time.perf_counter()}

    def on_step_end(self, status):
        if self.done or status.get("mode") != "train":
            return
        if self.profiler is not None:
            _sync()
            end = time.perf_counter()
            marks = self._marks
            data_time = getattr(status.get("data_time"), "value", None)  # ppdet's SmoothedValue: the last one
            step = {"iteration": self.iteration, "data": data_time}
            begin = marks.get("begin", end)
            forward = marks.get("forward")
            opt_start, opt_end = marks.get("optimizer_start"), marks.get("optimizer")
            step["forward"] = forward - begin if forward else None
            step["backward"] = (opt_start - (forward or begin)) if opt_start else None
            step["optimizer"] = (opt_end - opt_start) if opt_start and opt_end else None
            step["other"] = end - (opt_end or begin)
            step["compute"] = end - begin
            self.steps.append(step)
            self.profiler.step()
        self.iteration += 1
        if self.profiler is not None and self.iteration >= self.end:
            self._finish()

    def on_train_end(self, status):
        if self.profiler is not None and not self.done:
            self._finish()

    def _finish(self) -> None:
        self.done = True
        self._unpatch()
        prof, self.profiler = self.profiler, None
        prof.stop()
        os.makedirs(self.path, exist_ok=True)
        table = io.StringIO()
        if not self.timer_only:
            from paddle.profiler import SortedKeys

            key = {"total": SortedKeys.CPUTotal, "max": SortedKeys.CPUMax, "min": SortedKeys.CPUMin,
                   "ave": SortedKeys.CPUAvg, "calls": SortedKeys.CPUTotal}.get(self.sorted_key, SortedKeys.CPUTotal)
            with contextlib.redirect_stdout(table):
                prof.summary(sorted_by=key, op_detail=True, thread_sep=False, time_unit="ms")
            prof.export(os.path.join(self.path, "trace.json"), format="json")  # chrome://tracing, Perfetto
        line = summary_line(self.steps)
        atomic_write_text(os.path.join(self.path, SUMMARY_FILE), line + "\n\n" + table.getvalue())
        atomic_write_text(os.path.join(self.path, STEPS_FILE), json.dumps(self.steps, indent=2) + "\n")
        _log(f"profile: {line}")
        _log(f"profile written to {self.path}/ ({SUMMARY_FILE}, {STEPS_FILE}"
             + (", trace.json" if not self.timer_only else "") + ")")
        if self.exit_on_finished:
            raise SystemExit(0)


def summary_line(steps: list[dict]) -> str:
    """'5 iterations, 1.234 s/iteration: data 3%, forward 40%, backward 45%, optimizer 10%, other 2%'."""
    if not steps:
        return "no iteration profiled (the run ended before the profiler's batch_range)"
    parts = ["data", "forward", "backward", "optimizer", "other"]
    totals = {p: sum(s[p] or 0.0 for s in steps) for p in parts}
    if all(s["forward"] is None for s in steps):  # to_static: the compiled forward is not timed apart
        parts[1:3] = ["forward+backward"]
        totals["forward+backward"] = totals.pop("backward")
        steps = [dict(s, **{"forward+backward": s["backward"]}) for s in steps]
    total = sum(totals.values())
    n = len(steps)
    shown = ", ".join(f"{p} {100 * totals[p] / total:.0f}% ({1000 * totals[p] / n:.0f} ms)"
                      for p in parts if any(s[p] is not None for s in steps))
    return f"{n} iteration{'s' if n > 1 else ''}, {total / n:.3f} s/iteration: {shown}"
