"""The train/eval flow behind `trainctl train` and `trainctl eval`.

resolve config -> plan devices and nodes -> device and config fixes (use_gpu,
sync_bn, LR scaling, each recorded with `rc.set` provenance) -> checks
(dataset, weights; warnings on --dry-run) -> print the plan (--dry-run) or
write the run dir (config.yml, job.json, run.json) and run this node.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

from trainctl import output
from trainctl.errors import RuntimeFailure, UserError
from trainctl.launch import lr as lrscale
from trainctl.launch.plan import LaunchOptions, Plan, PlanContext, build_plan, default_context, format_plan


@dataclass
class TaskOptions:
    config: str
    overrides: list[str] = field(default_factory=list)
    eval_during_train: bool = False
    resume: str | None = None
    weights: str | None = None
    amp: bool = False
    output: str | None = None
    no_pretrained: bool = False
    sample_data: bool = False
    no_data_check: bool = False
    vdl: bool = False
    keep_checkpoints: int | None = None  # train --keep N
    seed: int | None = None  # train --seed S: rank r seeds python, numpy and paddle with S + r
    max_restarts: int = 0  # train --max-restarts N: restart the whole job from the newest checkpoint
    hang_timeout: float | None = None  # seconds; None: the default (progress.DEFAULT_HANG_TIMEOUT if world size > 1)
    save_interval_iters: int | None = None  # train --save-interval-iters K
    dry_run: str | None = None  # None, "text" or "json"
    classwise: bool = False  # eval --classwise: per-class AP and PR curves
    extras: object = None  # train: launch.train_extras.TrainExtras (AMP levels, fleet, to_static, profile, slim)


def default_run_dir(task: str, config_name: str, output_dir: str | None) -> str:
    """train: output/<config>/; eval: output/<config>/eval/ (keeps the training record intact)."""
    if output_dir:
        return output_dir
    base = os.path.join("output", config_name)
    return base if task == "train" else os.path.join(base, "eval")


def prepare(task: str, topts: TaskOptions, lopts: LaunchOptions, ctx: PlanContext | None = None):
    """Resolve, plan and fix the config; returns (rc, plan, warnings). No files written."""
    from trainctl.config import resolve

    dry = topts.dry_run is not None
    rc = resolve(topts.config, overrides=topts.overrides)
    ctx = ctx or default_context(strict=not dry)
    run_dir = default_run_dir(task, Path(str(rc.path)).stem, topts.output)
    plan = build_plan(lopts, task=task, run_dir=run_dir, ctx=ctx)
    plan.config_name = str(topts.config)

    # device fixes: what the workers really use goes into config.yml
    use_gpu = plan.device.kind == "gpu"
    if rc.get("use_gpu") != use_gpu:
        rc.set("use_gpu", use_gpu, source=f"trainctl: device {plan.device.kind}")
    if rc.get("norm_type") == "sync_bn" and (plan.world_size == 1 or not use_gpu):
        why = "CPU" if not use_gpu else "world size 1"
        rc.set("norm_type", "bn", source=f"trainctl: sync_bn needs several GPUs ({why})")
    if task == "train":
        _check_epoch(rc)
        # reference: the config files' batch_size (before -o); actual: world size × this run's batch_size
        report = lrscale.compute_for(rc, plan.world_size, lopts.lr_scale, lopts.ref_gpus)
        lrscale.apply(report, lambda key, value, source: rc.set(key, value, source=source))
        plan.lr = report
        if topts.no_pretrained and rc.get("pretrain_weights"):
            rc.set("pretrain_weights", "", source="--no-pretrained")
        if topts.extras is not None or topts.amp:  # checked against the device, written as ppdet's config keys
            from trainctl.launch.train_extras import TrainExtras

            (topts.extras or TrainExtras()).apply(rc, plan, amp=topts.amp, dry=dry)

    check_ppdet(plan, dry)  # first: nothing else (a download, a data check) before we know ppdet imports
    from trainctl.core import ppdet_source

    _check(dry, plan, ppdet_source.check_config_classes, plan.ppdet, rc.data, os.path.basename(str(rc.name)))
    _checks(task, rc, topts, plan, dry)
    return rc, plan


def check_ppdet(plan: Plan, dry: bool) -> None:
    """Before any worker starts: the chosen ppdet imports (its third-party modules are installed)."""
    from trainctl.core import ppdet_source

    _check(dry, plan, ppdet_source.check_importable, plan.ppdet)


def _check_epoch(rc) -> None:
    epoch = rc.get("epoch")
    if not isinstance(epoch, int) or isinstance(epoch, bool) or epoch < 1:
        where = rc.source_of("epoch") or "the config"
        raise UserError(f"epoch is {epoch!r} (set by {where}); the number of epochs must be a positive integer",
                        hint="set it with -o epoch=N")


def _check(dry: bool, plan: Plan, func, *args):
    try:
        return func(*args)
    except UserError as exc:
        if not dry:
            raise
        plan.warnings.append(exc.one_line())
        return None


def _write_sample_data(rc, tasks: tuple[str, ...], plan: Plan, dry: bool) -> None:
    """--sample-data: the sample set where the config expects a dataset that is not there, in the
    config's layout. A COCO config's train and eval sets usually share one dataset_dir (dataset/coco):
    one COCO sample is written there with both sets' image dirs and JSON files."""
    from trainctl.data import check

    written: set[str] = set()
    for name in tasks:
        spec = check.dataset_spec(rc, name)
        if not spec or not spec.dataset_dir or os.path.isdir(spec.dataset_dir) or spec.dataset_dir in written:
            continue
        written.add(spec.dataset_dir)
        kind = "COCO" if spec.kind == "COCO" else "VOC"
        if dry:
            plan.warnings.append(f"--sample-data: would write the {kind} sample dataset to {spec.dataset_dir}")
            continue
        output.info(f"writing the {kind} sample dataset to {spec.dataset_dir} (--sample-data)")
        if kind == "VOC":
            from trainctl.data.sample import write_sample_dataset

            write_sample_dataset(spec.dataset_dir)
            continue
        from trainctl.data.sample import COCO_TRAIN, COCO_VALID, write_coco_sample

        layout = {"train": COCO_TRAIN, "eval": COCO_VALID}
        for other in ("train", "eval"):  # the sets of this directory, whichever task reads them
            o = check.dataset_spec(rc, other)
            if o and o.kind == "COCO" and o.dataset_dir == spec.dataset_dir and o.anno_path:
                layout[other] = (o.image_dir, o.anno_path)
        write_coco_sample(spec.dataset_dir, train=layout["train"], valid=layout["eval"])


def _checks(task: str, rc, topts: TaskOptions, plan: Plan, dry: bool) -> None:
    from trainctl import weights as weightmod
    from trainctl.data import check

    if task == "eval":
        tasks: tuple[str, ...] = ("eval",)
    else:
        tasks = ("train", "eval") if topts.eval_during_train else ("train",)
    if topts.sample_data:
        _write_sample_data(rc, tasks, plan, dry)
    if not topts.no_data_check:
        # a real launch also parses annotations and image headers (what would crash or hang the workers)
        _check(dry, plan, check.quick_check if dry else check.launch_check, rc, tasks)

    if task == "train" and not topts.resume:
        value = rc.get("pretrain_weights")
        if value and not dry:
            local = weightmod.resolve_pretrained(value)  # downloads once per host, here, not in each worker
            if local and local != value:
                rc.set("pretrain_weights", local, source=f"trainctl: pretrained weights cache ({value})")
        elif value and dry and weightmod.is_url(str(value)):
            cached = weightmod.cached_path(str(value))
            if not cached.exists():
                plan.warnings.append(f"pretrain_weights {value} is not cached yet; a real run downloads it "
                                     f"once per host (or use --no-pretrained)")
    if topts.weights:
        local = _check(dry, plan, weightmod.resolve_weights, topts.weights, "weights")
        if local and not dry:
            topts.weights = local
    elif task == "eval":
        value = rc.get("weights")
        if not value:
            raise UserError("no weights to evaluate", hint="pass --weights PATH (e.g. output/<config>/model_final)")
        local = _check(dry, plan, weightmod.resolve_weights, value, "weights")
        if local and not dry:
            topts.weights = local
    if topts.resume and topts.resume != "auto":
        _check(dry, plan, weightmod.resolve_weights, topts.resume, "resume")


def _reliability(task: str, topts: TaskOptions, plan: Plan) -> dict:
    """What a train run does on failure and hangs (shown by --dry-run, recorded in run.json)."""
    if task != "train":
        return {}
    return {"max_restarts": topts.max_restarts, "hang_timeout_s": effective_hang_timeout(topts, plan) or None,
            "save_interval_iters": topts.save_interval_iters, "seed": topts.seed}


def _print_dry_run(plan: Plan, rc, fmt: str, reliability: dict) -> None:
    if fmt == "json":
        import json  # only for --dry-run=json

        data = plan.to_dict(mask=True)
        data["config"] = str(rc.path)
        data["overrides"] = list(rc.overrides)
        data.update(reliability)
        output.echo(json.dumps(data, indent=2, default=str))
    else:
        output.echo(format_plan(plan, dry_run=True))
        if reliability:
            from trainctl.launch.progress import format_duration

            hang = reliability["hang_timeout_s"]
            every = reliability["save_interval_iters"]
            output.echo(f"on failure: restart up to {reliability['max_restarts']} times (--max-restarts); "
                        f"hang timeout {format_duration(hang) if hang else 'off'}; mid-epoch checkpoints "
                        + (f"every {every} iterations" if every else "off")
                        + (f"; seed {reliability['seed']}" if reliability["seed"] is not None else ""))


def run(task: str, topts: TaskOptions, lopts: LaunchOptions, argv: list[str] | None = None,
        ctx: PlanContext | None = None) -> int:
    """The whole flow; returns the exit code."""
    rc, plan = prepare(task, topts, lopts, ctx)
    if topts.dry_run is not None:
        _print_dry_run(plan, rc, topts.dry_run, _reliability(task, topts, plan))
        return 0
    return launch(task, rc, plan, topts, argv if argv is not None else sys.argv)




def effective_hang_timeout(topts: TaskOptions, plan: Plan) -> float:
    from trainctl.launch.progress import DEFAULT_HANG_TIMEOUT

    if topts.hang_timeout is not None:
        return topts.hang_timeout
    return DEFAULT_HANG_TIMEOUT if plan.world_size > 1 else 0.0


def launch(task: str, rc, plan: Plan, topts: TaskOptions, argv: list[str]) -> int:
    from trainctl.config import dump_yaml
    from trainctl.fsutil import atomic_write_text
    from trainctl.launch import executor
    from trainctl.core.job import CONFIG_FILE, Job
    from trainctl.runrecord import RunRecord

    node = plan.local_node
    from trainctl.fsutil import ensure_writable_dir

    run_dir = ensure_writable_dir(Path(node.cwd) / plan.run_dir, "--output")
    config_path = str(Path(plan.run_dir) / CONFIG_FILE)
    atomic_write_text(run_dir / CONFIG_FILE, dump_yaml(rc.data))
    job = Job(task=task, config=config_path, run_dir=plan.run_dir, device=plan.device.kind,
              eval_during_train=topts.eval_during_train, resume=topts.resume, weights=topts.weights,
              amp=topts.amp, vdl=topts.vdl, keep_checkpoints=topts.keep_checkpoints, seed=topts.seed,
              save_interval_iters=topts.save_interval_iters, ppdet=plan.ppdet.to_dict() if plan.ppdet else None,
              progress=output.progress_mode(), extra={"classwise": True} if topts.classwise else {})
    if plan.extras:
        job.extra["train_extras"] = plan.extras  # read by runner/train_extras.py
    job.save(run_dir / "job.json")
    hang_timeout = effective_hang_timeout(topts, plan) if task == "train" else 0.0

    record = RunRecord(run_dir, argv, plan.to_dict(mask=True),
                       extra={"config": str(rc.path), "overrides": list(rc.overrides),
                              **_reliability(task, topts, plan), "seed": topts.seed,
                              "ppdet": plan.ppdet.to_dict() if plan.ppdet else None, "attempts": []})
    log_dir = Path(node.cwd) / node.log_dir
    earlier = _earlier_attempts(record.path) if topts.resume == "auto" else []
    if earlier:  # started again with --resume auto (a supervisor, a pod restart, the ssh controller)
        _archive_logs(log_dir, earlier[-1]["attempt"], earlier[-1])
        record.data["attempts"] = earlier
    record.start()

    for warning in plan.warnings:
        output.warn(warning)
    if plan.lr is not None:
        output.info("learning rate:")
        for line in plan.lr.lines():
            output.info(line)
    output.info(f"run dir {plan.run_dir}; {plan.device.describe()}, world size {plan.world_size}"
                + (f", node {plan.node_rank} of {plan.nnodes}" if plan.nnodes > 1 else "")
                + f", network {plan.net.name}")
    if plan.ppdet is not None:
        output.info(f"ppdet: {plan.ppdet.describe()}")
    output.info("$ " + node.shell_command(mask=True))

    result, attempt = _run_attempts(plan, node, job, record, topts.max_restarts, hang_timeout, len(earlier), run_dir)
    if result is None:
        return 130  # interrupted while waiting to restart
    record.finish(result.exit_code, result.status, result.failure_dict())
    if result.status == "done":
        return 0
    _report_root_cause(result, plan)
    prefix = (f"after {attempt} restart{'s' if attempt > 1 else ''} (--max-restarts {topts.max_restarts}), "
              "the last attempt failed: ") if attempt else ""
    message = prefix + executor.describe_failure(result, plan)
    if result.status == "interrupted":
        output.error(message)
        return result.exit_code
    if _is_user_error(result, plan):
        # a user error the worker found (bad data, weights of another model): its one line, exit 2
        output.error(result.worker_error)
        return 2
    if result.worker_error and result.failed_code is not None and result.failed_code > 0:
        # the worker said why it failed (e.g. the disk is full): that line names the cause
        text = result.worker_error.removeprefix("worker failed: ")
        raise RuntimeFailure(f"{prefix}worker rank {result.failed_rank} failed: {text} (log: {result.failed_log})")
    if result.log_tail and plan.launcher != "direct":
        output.error(f"last lines of {result.failed_log or 'the launcher output'}:")
        for line in result.log_tail:
            output.echo("  | " + line, err=True)
    raise RuntimeFailure(message)


def _run_attempts(plan: Plan, node, job, record, budget: int, hang_timeout: float, earlier: int, run_dir: Path):
    """Run the job, and again from the newest complete checkpoint after each failure, up to
    `budget` restarts; returns (the last attempt's result, restarts done), or (None, n) when
    interrupted while waiting to restart. Each attempt is recorded in run.json."""
    from trainctl.core import restart
    from trainctl.core.restart import run_with_restarts
    from trainctl.launch import executor

    log_dir = Path(node.cwd) / node.log_dir
    entry: dict = {}

    def run_once(attempt: int):
        nonlocal entry
        if attempt:
            job.resume, job.attempt = "auto", attempt
            job.save(run_dir / "job.json")
        entry = _attempt_start(record, earlier + attempt, job, run_dir)
        try:
            result = executor.run_node(plan, node, hang_timeout=hang_timeout)
        except BaseException as exc:
            _attempt_end(record, entry, None, plan, node)
            record.finish(1, "failed", {"error": str(exc)})
            raise
        _attempt_end(record, entry, result, plan, node)
        return result

    def before_wait(attempt: int, wait: float, result) -> None:
        output.warn(f"attempt {attempt} of {budget + 1} failed: {executor.describe_failure(result, plan)}")
        _archive_logs(log_dir, entry["attempt"], entry)
        _clear_progress(run_dir, plan)
        record.write()
        output.info(f"restarting the job {restart.when(wait)} from the newest complete checkpoint "
                    f"(restart {attempt} of {budget}, --max-restarts)")

    result, restarts, interrupted = run_with_restarts(
        run_once, lambda result, attempt: _should_restart(result, plan, attempt, budget), budget, before_wait,
        _sleep_interruptibly)
    if interrupted:
        record.finish(130, "interrupted", {"note": "interrupted while waiting to restart"})
        output.error("interrupted while waiting to restart; all workers stopped")
        return None, restarts
    return result, restarts


def _report_root_cause(result, plan: Plan) -> None:
    """Under the ssh fan-out's guard: one machine-readable line with this node's verdict, which
    the controller weighs against the other hosts' (cluster/ssh.py)."""
    from trainctl.launch import executor, rootcause

    if not os.environ.get(rootcause.ROOT_CAUSE_VAR) or result.status != "failed":
        return
    root = result.root_cause
    cause = root.cause if root is not None and not result.hang else None
    if result.hang:
        cause = rootcause.RankVerdict(rank=result.failed_rank, local_rank=result.failed_local_rank,
                                      kind=rootcause.STALLED, why=result.hang)
    output.echo(rootcause.report_line(cause, plan.node_rank, executor.describe_failure(result, plan)), err=True)


def _is_user_error(result, plan: Plan) -> bool:
    """A user error the worker found (bad data, weights of another model): exit 2, never restarted."""
    return bool(result.worker_error) and (result.failed_code == 2 or (plan.launcher == "direct" and result.exit_code == 2))


def _earlier_attempts(path: Path) -> list[dict]:
    """The attempts an earlier trainctl process recorded for this run directory (its last one
    marked lost if that process died without writing how it ended)."""
    import json

    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return []
    attempts = [a for a in data.get("attempts") or [] if isinstance(a, dict) and isinstance(a.get("attempt"), int)]
    if attempts and "end_time" not in attempts[-1]:
        attempts[-1].update(end_time=None, status="lost", note="the launcher ended without recording the end")
    return attempts


def _should_restart(result, plan: Plan, attempt: int, budget: int) -> bool:
    """Restart a failed job (a crash, a lost peer, a hang) within the budget; never an interruption
    (Ctrl-C, SIGTERM) or a user error (exit 2: bad data, wrong weights fail the same way again)."""
    return result.status == "failed" and attempt < budget and not _is_user_error(result, plan)


def _attempt_start(record, attempt: int, job, run_dir: Path) -> dict:
    """Add attempt `attempt` (0 = the first) to run.json with the checkpoint it resumes from."""
    from trainctl.core.checkpoints import latest_checkpoint
    from trainctl.runrecord import now

    resumed = None
    if job.resume == "auto":
        found = latest_checkpoint(run_dir)
        if found:
            resumed = {"name": found["name"], "epoch": found["epoch"], "iter": found.get("iter", 0),
                       "global_iter": found.get("global_iter")}
    elif job.resume:
        resumed = {"name": job.resume}
    entry = {"attempt": attempt + 1, "start_time": now(), "resumed_from": resumed}
    record.data.setdefault("attempts", []).append(entry)
    record.data["restarts"] = len(record.data["attempts"]) - 1
    record.write()
    return entry


def _attempt_end(record, entry: dict, result, plan: Plan, node) -> None:
    """One attempt in run.json: start, end, how it ended, and for a failure the rank, host,
    exit code or signal, the cause line of its log and the log's path."""
    import socket

    from trainctl.runrecord import now

    entry["end_time"] = now()
    if result is None:
        entry["status"] = "failed"
    else:
        entry["status"], entry["exit_code"] = result.status, result.exit_code
        if result.status != "done":
            code = result.failed_code
            entry["failure"] = {
                "rank": result.failed_rank, "host": socket.gethostname(), "address": node.host, "node_rank": plan.node_rank,
                "exit_code": code if code is not None and code >= 0 else None,
                "signal": result.failed_signal,
                "hang": result.hang is not None, "cause": result.cause_line(), "note": result.note,
                "log": result.failed_log,
            }
            if result.root_cause is not None:  # every rank's verdict and evidence (launch/rootcause.py)
                entry["failure"]["root_cause"] = result.root_cause.to_dict()
    record.write()


def _archive_logs(log_dir: Path, attempt: int, entry: dict) -> None:
    """Move attempt N's logs (1 = the first) into logs/attempt<N>/ so the next one starts fresh logs."""
    target = log_dir / f"attempt{attempt}"
    target.mkdir(parents=True, exist_ok=True)
    for path in list(log_dir.iterdir()):
        if path.is_file():
            os.replace(path, target / path.name)
    failure = entry.get("failure")
    if failure and failure.get("log"):
        log = Path(failure["log"])
        failure["log"] = str(log.parent / target.name / log.name)


def _clear_progress(run_dir: Path, plan: Plan) -> None:
    """Drop this node's heartbeats: the next attempt's first one marks its first iteration."""
    from trainctl.core.heartbeat import clear_heartbeats

    per_node = plan.world_size // max(1, plan.nnodes)
    clear_heartbeats(run_dir, range(plan.node_rank * per_node, (plan.node_rank + 1) * per_node))


def _sleep_interruptibly(seconds: float) -> bool:
    """Sleep; True when SIGINT/SIGTERM arrived meanwhile (the user stops the run between attempts)."""
    import time

    from trainctl.launch import procwatch

    got: list[int] = []
    previous = procwatch.catch_signals(lambda signum, _frame: got.append(signum))
    try:
        deadline = time.monotonic() + seconds
        while not got and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        procwatch.restore_signals(previous)
    return bool(got)
