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
    dry_run: str | None = None  # None, "text" or "json"


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

    _checks(task, rc, topts, plan, dry)
    return rc, plan


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


def _checks(task: str, rc, topts: TaskOptions, plan: Plan, dry: bool) -> None:
    from trainctl import weights as weightmod
    from trainctl.data import check

    if task == "eval":
        tasks: tuple[str, ...] = ("eval",)
    else:
        tasks = ("train", "eval") if topts.eval_during_train else ("train",)
    if topts.sample_data:
        for name in tasks:
            spec = check.dataset_spec(rc, name)
            if spec and spec.dataset_dir and not os.path.isdir(spec.dataset_dir):
                if dry:
                    plan.warnings.append(f"--sample-data: would write the sample dataset to {spec.dataset_dir}")
                else:
                    from trainctl.data.sample import write_sample_dataset

                    output.info(f"writing the sample dataset to {spec.dataset_dir} (--sample-data)")
                    write_sample_dataset(spec.dataset_dir)
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


def _print_dry_run(plan: Plan, rc, fmt: str) -> None:
    if fmt == "json":
        import json  # only for --dry-run=json

        data = plan.to_dict(mask=True)
        data["config"] = str(rc.path)
        data["overrides"] = list(rc.overrides)
        output.echo(json.dumps(data, indent=2, default=str))
    else:
        output.echo(format_plan(plan, dry_run=True))


def run(task: str, topts: TaskOptions, lopts: LaunchOptions, argv: list[str] | None = None,
        ctx: PlanContext | None = None) -> int:
    """The whole flow; returns the exit code."""
    rc, plan = prepare(task, topts, lopts, ctx)
    if topts.dry_run is not None:
        _print_dry_run(plan, rc, topts.dry_run)
        return 0
    return launch(task, rc, plan, topts, argv if argv is not None else sys.argv)


def launch(task: str, rc, plan: Plan, topts: TaskOptions, argv: list[str]) -> int:
    from trainctl.config import dump_yaml
    from trainctl.fsutil import atomic_write_text
    from trainctl.launch import executor
    from trainctl.runner.job import CONFIG_FILE, Job
    from trainctl.runrecord import RunRecord

    node = plan.local_node
    from trainctl.fsutil import ensure_writable_dir

    run_dir = ensure_writable_dir(Path(node.cwd) / plan.run_dir, "--output")
    config_path = str(Path(plan.run_dir) / CONFIG_FILE)
    atomic_write_text(run_dir / CONFIG_FILE, dump_yaml(rc.data))
    Job(task=task, config=config_path, run_dir=plan.run_dir, device=plan.device.kind,
        eval_during_train=topts.eval_during_train, resume=topts.resume, weights=topts.weights,
        amp=topts.amp, vdl=topts.vdl, keep_checkpoints=topts.keep_checkpoints, seed=topts.seed,
        progress="quiet" if output.is_quiet() else "auto").save(run_dir / "job.json")

    record = RunRecord(run_dir, argv, plan.to_dict(mask=True),
                       extra={"config": str(rc.path), "overrides": list(rc.overrides), "seed": topts.seed})
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
    output.info("$ " + node.shell_command(mask=True))

    try:
        result = executor.run_node(plan, node)
    except BaseException as exc:
        record.finish(1, "failed", {"error": str(exc)})
        raise
    record.finish(result.exit_code, result.status, result.failure_dict())
    if result.status == "done":
        return 0
    message = executor.describe_failure(result, plan)
    if result.status == "interrupted":
        output.error(message)
        return result.exit_code
    if result.worker_error and (result.failed_code == 2 or (plan.launcher == "direct" and result.exit_code == 2)):
        # a user error the worker found (bad data, weights of another model): its one line, exit 2
        output.error(result.worker_error)
        return 2
    if result.worker_error and result.failed_code is not None and result.failed_code > 0:
        # the worker said why it failed (e.g. the disk is full): that line names the cause
        text = result.worker_error.removeprefix("worker failed: ")
        raise RuntimeFailure(f"worker rank {result.failed_rank} failed: {text} (log: {result.failed_log})")
    if result.log_tail and plan.launcher != "direct":
        output.error(f"last lines of {result.failed_log or 'the launcher output'}:")
        for line in result.log_tail:
            output.echo("  | " + line, err=True)
    raise RuntimeFailure(message)
