"""The worker process: `python -m trainctl.runner.worker --job RUN_DIR/job.json`.

Started by the launcher, alone or once per device under paddle.distributed.launch.
It follows the sequence of PaddleDetection's tools/train.py and tools/eval.py
with ppdet's Python API: load the config, pick the device, init the parallel
env, build the Trainer, load resume / weights / pretrained weights, then train
or evaluate. Checkpoints go to the run directory, written atomically.

Exit codes: 0 done, 2 user error (one line on stderr), 1 runtime failure.
stdout and stderr are the worker's log; the last line says how it ended.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
import traceback
from pathlib import Path

from trainctl import output
from trainctl.errors import RuntimeFailure, TrainctlError, UserError
from trainctl.fsutil import atomic_write_text
from trainctl.core.job import Job

EVAL_FILE = "eval.json"


def _log(message: str) -> None:
    output.echo(f"[trainctl worker] {message}", err=True)


def run(job: Job) -> dict:
    """Run one job in this process; return a summary for the final line."""
    from trainctl.runner import session

    rank, world_size = session.world()
    if job.task == "comm":  # the collective probe of `trainctl smoke --comm`: no config, no ppdet
        from trainctl.runner import commprobe

        return commprobe.run(job, rank, world_size)
    if job.ppdet:
        from trainctl.core.ppdet_source import PpdetSource

        session.use_source(PpdetSource.from_dict(job.ppdet))
    cfg = session.load_flat_config(job.config)
    Path(job.run_dir).mkdir(parents=True, exist_ok=True)

    # check what a user can get wrong before building anything heavy
    if job.task == "train":
        session.check_datasets(cfg, ["TrainDataset"] + (["EvalDataset"] if job.eval_during_train else []))
    elif job.task == "eval":
        session.check_datasets(cfg, ["EvalDataset"])
    else:
        raise UserError(f"unknown task {job.task!r} in job file", hint="task is 'train' or 'eval'")

    import paddle

    from trainctl.runner import compat

    from trainctl.runner import train_extras

    compat.guard_data_loading()
    shims = compat.ppdet26_training_shims()
    if shims:
        _log(f"compat: {len(shims)} paddledet 2.6 functions patched for paddle 3 (" + "; ".join(shims) + ")")
    place = session.setup_device(cfg, job.device, world_size)
    extras = train_extras.settings(job)  # train --amp-level/--fleet/--profile/--slim-config... (issue 23)
    if not train_extras.init_distributed(cfg, world_size) and world_size > 1:
        paddle.distributed.init_parallel_env()
    _log(f"task {job.task}, rank {rank} of {world_size}, device {place}, paddle {paddle.__version__}"
         + (f", attempt {job.attempt + 1} (--max-restarts)" if job.attempt else ""))
    if job.ppdet:
        import ppdet

        _log(f"ppdet: {job.ppdet.get('description')} (imported from {os.path.dirname(ppdet.__file__)})")
    if job.seed is not None:
        _set_seed(job.seed + rank)
    cfg["save_dir"] = job.run_dir
    if job.amp:
        cfg["amp"] = True
    cfg["use_vdl"] = False  # trainctl's own VisualDL callback (runner/monitor.py) writes job.vdl's scalars
    if job.task == "train":
        train_extras.check_precision(extras)
        cfg = train_extras.build_slim(cfg, extras, job.run_dir, rank)
        with train_extras.amp_settings(extras):
            return _train(job, cfg, rank)
    return _evaluate(job, cfg)


def _set_seed(seed: int) -> None:
    import random

    import numpy as np
    import paddle

    random.seed(seed)
    np.random.seed(seed)
    paddle.seed(seed)


def _train(job: Job, cfg, rank: int) -> dict:
    from ppdet.engine import Trainer

    from trainctl.runner import session
    from trainctl.runner.callbacks import install_callbacks
    from trainctl.weights import resolve_pretrained

    resume = session.resume_path(job.resume, job.run_dir) if job.resume else None
    if job.resume == "auto" and resume is None:
        _log(f"--resume auto: no complete checkpoint in {job.run_dir} yet, starting from scratch")
    pretrained = None
    if not resume and not job.weights:
        pretrained = resolve_pretrained(cfg.get("pretrain_weights"))

    trainer = Trainer(cfg, mode="train")
    entry = _checkpoint_entry(resume) if resume else None
    install_callbacks(trainer, job, rank, entry)
    from trainctl.runner.train_extras import install_profiler, settings

    install_profiler(trainer, settings(job), rank)
    from trainctl.runner import lite

    limit = lite.max_iters(cfg)
    if limit:  # config key trainctl.max_iters (trainctl smoke's lite training)
        lite.limit_iterations(trainer, limit, job.run_dir, rank, session.world()[1])
        _log(f"lite training: at most {limit} iterations per epoch (trainctl.max_iters)")
    if resume:
        if not job.attempt:  # a restart resumes this very run's checkpoint: no second read of the weights
            session.load_weights_strict(trainer.model, resume, cfg.architecture)  # clear error first
        trainer.resume_weights(resume)
        into = int(entry.get("iter", 0)) if entry else 0
        _log(f"resumed from {resume} at epoch {trainer.start_epoch}"
             + (f", iteration {into} of epoch {trainer.start_epoch + 1} (global iteration {entry.get('global_iter')})"
                if into else ""))
    elif job.weights:
        path, skipped = session.load_weights_finetune(trainer.model, job.weights)
        _log(f"fine-tuning from {path}" + (f"; skipped {len(skipped)} parameters that do not fit: {', '.join(skipped[:10])}" if skipped else ""))
    elif pretrained:
        trainer.load_weights(pretrained)
        _log(f"pretrained weights {pretrained}")
    else:
        _log("no pretrained weights: training from scratch")

    trainer.train(validate=job.eval_during_train)

    if rank == 0:
        label_list = session.label_list_candidates(cfg)
        for candidate in label_list:
            if os.path.isfile(candidate):
                shutil.copyfile(candidate, os.path.join(job.run_dir, "label_list.txt"))  # infer/export find class names here
                break
    from trainctl.runner.checkpoint import read_index

    index = read_index(job.run_dir)
    final = os.path.join(job.run_dir, "model_final.pdparams")
    summary = {"task": "train", "epochs": int(cfg.epoch), "start_epoch": int(trainer.start_epoch), "final": final if os.path.exists(final) else None}
    if index.get("best"):
        summary["best"] = index["best"]
    return summary


def _checkpoint_entry(stem: str) -> dict | None:
    """The index entry of a checkpoint stem (its epoch and, for a mid-epoch one, the iteration)."""
    from trainctl.runner.checkpoint import find_entry

    return find_entry(os.path.dirname(stem) or ".", os.path.basename(stem))


def _evaluate(job: Job, cfg) -> dict:
    from ppdet.engine import Trainer

    from trainctl.runner import compat, session
    from trainctl.runner.callbacks import MetricRecorder

    weights = job.weights or cfg.get("weights")
    if not weights:
        raise UserError("no weights to evaluate", hint="pass --weights PATH (e.g. output/<config>/model_final)")
    from trainctl.weights import resolve_weights

    weights = resolve_weights(weights, "weights")  # fail before building the model
    classwise = bool(job.extra.get("classwise"))
    if classwise and cfg.metric == "COCO":
        cfg["output_eval"] = job.run_dir  # ppdet's bbox.json, which the per-class COCO numbers are computed from
    trainer = Trainer(cfg, mode="eval")
    recorder = MetricRecorder(trainer)
    compat.add_callback(trainer, recorder)
    per_class = None
    if classwise:
        from trainctl.runner.classwise import make_recorder

        per_class = make_recorder(trainer, job.run_dir)
        compat.add_callback(trainer, per_class)
    path = session.load_weights_strict(trainer.model, weights, cfg.architecture)
    trainer.evaluate()
    if not recorder.results:
        raise RuntimeFailure("evaluation produced no metric", hint="check that the eval dataset has annotated images")
    result = {
        "task": "eval",
        "weights": path,
        "metric": cfg.metric,
        "results": recorder.results[-1],
        "images": recorder.samples,
        "time": time.time(),
    }
    if per_class is not None and session.world()[0] == 0:
        from trainctl.runner.classwise import table_lines

        overall = result["results"].get("bbox")
        result["classwise"] = per_class.save(overall if isinstance(overall, float) else None)
        for line in table_lines(per_class.rows, cfg.metric, overall if isinstance(overall, float) else None):
            output.echo(line)
        _log(f"precision-recall curves: {os.path.join(job.run_dir, 'pr_curves')}/ ({len(per_class.rows)} PNG)")
    if session.world()[0] == 0:  # every rank evaluates the whole set (ppdet's eval is single-device)
        atomic_write_text(os.path.join(job.run_dir, EVAL_FILE), json.dumps(result, indent=2, sort_keys=True) + "\n")
    return result


def final_line(summary: dict) -> str:
    if summary.get("task") == "comm":
        return summary["line"]
    if summary.get("task") == "eval":
        metrics = ", ".join(f"{100 * v:.2f}% ({k})" if isinstance(v, float) else f"{v} ({k})" for k, v in summary["results"].items())
        # ppdet's COCO metric returns nothing when the model detected nothing (a model trained a few iterations)
        metrics = metrics or "- (no result: the model made no detections)"
        return f"eval done: {summary['metric']} mAP {metrics} on {summary.get('images', '?')} images, weights {summary['weights']}"
    text = f"train done: epochs {summary['start_epoch']}..{summary['epochs']}, final weights {summary['final']}"
    if summary.get("best"):
        best = summary["best"]
        shown = ", ".join(f"{100 * v:.2f}% ({k})" if isinstance(v, float) else f"{v} ({k})" for k, v in best["results"].items())
        text += f", best mAP {shown} at epoch {best['epoch']} (best_model.pdparams)"
    return text


def _die_with_parent() -> None:
    """SIGTERM this worker when its parent (trainctl or paddle's launcher) dies, even by SIGKILL,
    so a killed launcher never leaves a worker training on its own (Linux prctl PR_SET_PDEATHSIG)."""
    import signal

    from trainctl.core.procutil import parent_death_signal

    parent = os.getppid()
    if not parent_death_signal(signal.SIGTERM):
        return
    if os.getppid() != parent:  # the parent died before the prctl
        os.kill(os.getpid(), signal.SIGTERM)


def _register_stack_dump() -> None:
    """SIGUSR1 -> every thread's Python stack on stderr (this worker's log), the worker goes on:
    the launcher sends it on a hang (launch/executor.py)."""
    import faulthandler
    import signal

    try:
        faulthandler.register(signal.SIGUSR1, file=sys.stderr, all_threads=True, chain=False)
    except (AttributeError, ValueError, OSError):
        pass


def _data_error(exc: BaseException) -> UserError | None:
    """A dataset file ppdet could not use (named by runner.compat), as a one-line user error."""
    from trainctl.runner import compat

    cause = exc if isinstance(exc, compat.DataError) else compat.loader_error()
    if not isinstance(cause, compat.DataError):
        return None
    return UserError(str(cause), hint="fix or remove it from the annotation list; `trainctl data check -c CFG` "
                                      "lists every problem")


def main(argv: list[str] | None = None) -> int:
    _die_with_parent()
    _register_stack_dump()
    parser = argparse.ArgumentParser(prog="python -m trainctl.runner.worker", description="trainctl worker process")
    parser.add_argument("--job", required=True, help="path of the job file (job.json) the launcher wrote")
    args = parser.parse_args(argv)
    try:
        try:
            job = Job.load(args.job)
        except FileNotFoundError as exc:
            raise UserError(f"job file not found: {args.job}") from exc
        except (ValueError, TypeError) as exc:
            raise UserError(f"bad job file {args.job}: {exc}") from exc
        summary = run(job)
    except TrainctlError as exc:
        if os.environ.get("TRAINCTL_DEBUG", "") not in ("", "0"):
            traceback.print_exc()
        output.error(exc.one_line())
        return exc.exit_code
    except KeyboardInterrupt:
        output.error("worker interrupted")
        return 130
    except Exception as exc:  # a failure inside paddle/ppdet: the log keeps the traceback
        data_error = _data_error(exc) if "ppdet" in sys.modules else None
        if data_error is not None:  # bad data, named: a user error, one line (the traceback with --debug)
            if os.environ.get("TRAINCTL_DEBUG", "") not in ("", "0"):
                traceback.print_exc()
            output.error(data_error.one_line())
            return data_error.exit_code
        traceback.print_exc()
        from trainctl.errors import exception_line

        from trainctl.runner import compat

        reader = compat.loader_error() if "ppdet" in sys.modules and "Blocking queue is killed" in str(exc) else None
        if reader is not None:  # paddle only says the reader raised: name what it raised
            output.error(f"worker failed: the data reader raised {exception_line(reader)}")
            return 1
        output.error(f"worker failed: {exception_line(exc)}")
        return 1
    _log(final_line(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
