"""The train/eval flow behind `trainctl train` and `trainctl eval`.

resolve config -> plan devices and nodes -> device and config fixes (use_gpu,
sync_bn, LR scaling, each recorded with `rc.set` provenance) -> checks
(dataset, weights; warnings on --dry-run) -> print the plan (--dry-run) or
write the run dir (config.yml, job.json, run.json) and run this node.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from trainctl import output
from trainctl.errors import RuntimeFailure, UserError
from trainctl.launch import lr as lrscale
from trainctl.launch.options import TaskOptions  # the run lifecycle's options (also as flow.TaskOptions)
from trainctl.launch.plan import LaunchOptions, Plan, PlanContext, build_plan, default_context, format_plan


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
    from trainctl.core import ppdet_checks

    _check(dry, plan, ppdet_checks.check_config_classes, plan.ppdet, rc.data, os.path.basename(str(rc.name)))
    _checks(task, rc, topts, plan, dry)
    return rc, plan


def check_ppdet(plan: Plan, dry: bool) -> None:
    """Before any worker starts: the chosen ppdet imports (its third-party modules are installed)."""
    from trainctl.core import ppdet_checks

    _check(dry, plan, ppdet_checks.check_importable, plan.ppdet)


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
    """Write the run directory (config.yml, job.json, run.json) and run this node, with restarts
    (launch/attempts.py); the exit code, or RuntimeFailure with the failure's one line."""
    from trainctl.config import dump_yaml
    from trainctl.launch import attempts
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
    earlier = attempts.earlier_attempts(record.path) if topts.resume == "auto" else []
    if earlier:  # started again with --resume auto (a supervisor, a pod restart, the ssh controller)
        attempts.archive_logs(log_dir, earlier[-1]["attempt"], earlier[-1])
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

    result, attempt = attempts.run_attempts(plan, node, job, record, topts.max_restarts, hang_timeout, len(earlier),
                                            run_dir)
    if result is None:
        return 130  # interrupted while waiting to restart
    record.finish(result.exit_code, result.status, result.failure_dict())
    if result.status == "done":
        return 0
    attempts.report_root_cause(result, plan)
    prefix = (f"after {attempt} restart{'s' if attempt > 1 else ''} (--max-restarts {topts.max_restarts}), "
              "the last attempt failed: ") if attempt else ""
    message = prefix + executor.describe_failure(result, plan)
    if result.status == "interrupted":
        output.error(message)
        return result.exit_code
    if attempts.is_user_error(result, plan):
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
