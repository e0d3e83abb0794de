"""`trainctl smoke`: the whole chain (lite train, eval, export, inference benchmark on each device),
and optionally a collective bandwidth probe, on the placement a real run will use.

No paddle here: every stage is a trainctl command in a child process (trainctl.smoke.stages),
the probe runs through the launch plan and executor (trainctl.smoke.comm), and the verdict,
environment and performance block are put together from their reports (trainctl.smoke.report).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from trainctl import output
from trainctl.errors import RuntimeFailure, UserError
from trainctl.smoke import comm as commmod
from trainctl.smoke import report as reportmod
from trainctl.smoke.stages import Flags, Layout, SmokeOptions, Stage, eval_images, fail, link_images, plan_stages, run_stage

__all__ = ["Flags", "SmokeOptions", "run"]
EXPORTED = ("model.pdiparams", "infer_cfg.yml")  # beside model.json (paddle 3's new IR) or model.pdmodel
LITE_FILE = "lite_train.json"  # trainctl.runner.lite.LITE_FILE (that module imports ppdet)
EVAL_FILE = "eval.json"  # trainctl.runner.worker.EVAL_FILE


def _read_json(path) -> dict | None:
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _gpu_env(plan, device_env) -> dict[str, str]:
    """CUDA_VISIBLE_DEVICES for the device-side benchmark: the first GPU of the placement (as plan.py maps ids)."""
    visible = device_env.visible_gpus()
    index = plan.device.ids[0] if plan.device.ids else 0
    return {"CUDA_VISIBLE_DEVICES": visible[index] if index < len(visible) else str(index)}


class _Collected:
    """What the stages produced, for the details and the performance block."""

    def __init__(self) -> None:
        self.lite: dict | None = None
        self.infer: dict[str, dict] = {}
        self.comm: dict | None = None


def _comm_detail(report: dict) -> str:
    results = report.get("results") or []
    if not results:
        return report.get("reason") or ""
    best = max(results, key=lambda r: r["busbw_gbps"])
    sizes = f"{commmod.human_size(results[0]['bytes'])}..{commmod.human_size(results[-1]['bytes'])}"
    transport = (report.get("transport") or {}).get("backend") or ""
    warn = f"; {len(report['warnings'])} warning(s)" if report.get("warnings") else ""
    return (f"{len(results)} sizes {sizes} over {report['world_size']} ranks, peak busbw {best['busbw_gbps']:.3f} GB/s "
            f"at {commmod.human_size(best['bytes'])} ({transport}){warn}")


def _collect(stage: Stage, layout: Layout, got: _Collected) -> None:
    """Check what a passed stage should have produced; fill its detail (or fail it)."""
    node0 = layout.node_rank == 0
    if stage.name == "comm":
        data = _read_json(stage.report) or {}
        got.comm = data.get("comm")
        if not got.comm:
            return fail(stage, f"no probe report in {stage.report}")
        stage.detail = _comm_detail(got.comm)
    elif stage.name == "train":
        if node0 and not (layout.train / "model_final.pdparams").is_file():
            return fail(stage, f"exit 0 but {layout.train / 'model_final.pdparams'} is missing")
        got.lite = _read_json(layout.train / LITE_FILE) if node0 else None
        lite = got.lite
        if lite:
            stage.detail = (f"{lite['iterations']} iterations x {lite['world_size']} process(es), batch "
                            f"{lite['batch_size_per_process']}: {lite['median_seconds_after_first'] or 0:.2f} s/iteration")
        else:
            stage.detail = "trained with node 0 (rank 0 writes the weights and the timings)" if not node0 else ""
    elif stage.name == "eval":
        data = _read_json(layout.eval / EVAL_FILE)
        if not data:
            return fail(stage, f"exit 0 but no {layout.eval / EVAL_FILE}")
        metrics = ", ".join(f"{100 * v:.2f}% ({k})" if isinstance(v, float) else f"{v} ({k})"
                            for k, v in (data.get("results") or {}).items())
        stage.detail = f"{data.get('metric')} mAP {metrics} on {data.get('images')} images (lite training: any value passes)"
    elif stage.name == "export":
        from trainctl.core.model_files import graph_file, missing_files

        missing = missing_files(str(layout.export))
        if missing:
            return fail(stage, f"exit 0 but {', '.join(missing)} missing in {layout.export}")
        graph = os.path.basename(graph_file(str(layout.export)) or "")
        stage.detail = f"{', '.join((graph, *EXPORTED))} in {layout.export}"
    elif stage.name.startswith("infer"):
        data = _read_json(stage.report)
        if not data or "time_ms" not in data:
            return fail(stage, f"no benchmark report in {stage.report}")
        got.infer[stage.name] = data
        ms = {k: data["time_ms"][k]["mean"] for k in ("preprocess", "inference", "postprocess", "total")}
        stage.detail = (f"{data['environment']['device']}: {ms['total']:.1f} ms/image (pre {ms['preprocess']:.1f}, "
                        f"infer {ms['inference']:.1f}, post {ms['postprocess']:.1f}), "
                        f"{data['throughput']['images_per_s']:.2f} images/s")


def _before(stage: Stage, layout: Layout, rc) -> bool:
    """Clear what a previous smoke left where this stage writes; False (stage failed) when it cannot start."""
    if stage.name == "train" and layout.node_rank == 0:
        (layout.train / LITE_FILE).unlink(missing_ok=True)
    elif stage.name == "eval":
        (layout.eval / EVAL_FILE).unlink(missing_ok=True)
    elif stage.name == "infer-cpu" or (stage.name.startswith("infer") and not layout.images.is_dir()):
        images = eval_images(rc)
        if not images:
            fail(stage, "found no image of the eval dataset to benchmark on")
            stage.seconds = 0.0
            return False
        link_images(images, layout.images)
    return True


def _dry_run(stages: list[Stage], title: str, fmt: str, probe=None) -> None:
    if fmt == "json":
        data = {"title": title, "stages": [s.to_dict() for s in stages]}
        if probe is not None:
            data["probe_command"] = probe.shell_command(mask=True)
        output.echo(json.dumps(data, indent=2))
        return
    lines = [f"{title} (dry run: nothing started)"]
    for stage in stages:
        lines.append("")
        if stage.status == "n/a":
            lines.append(f"{stage.name}: n/a ({stage.reason})")
        else:
            lines.append(f"{stage.name}: {stage.command}")
            lines.append(f"  log {stage.log}" + (f", report {stage.report}" if stage.report else ""))
    if probe is not None:
        lines += ["", f"the probe starts, in {probe.cwd}:", "  " + probe.shell_command(mask=True, multiline=True)]
    output.echo("\n".join(lines))


def run(sopts: SmokeOptions, lopts, flags: Flags) -> int:
    """The whole smoke on this node; returns 0, or raises RuntimeFailure naming the first failing stage."""
    from trainctl.config import resolve
    from trainctl.launch.plan import build_plan, default_context

    if not sopts.config and not sopts.comm_only:
        raise UserError("trainctl smoke needs -c CONFIG", hint="or --comm-only for the collective probe alone")
    if sopts.iters < 1:
        raise UserError(f"--iters {sopts.iters} must be at least 1")
    sizes = commmod.parse_sizes(sopts.comm_sizes) if (sopts.comm or sopts.comm_only) else []
    dry = sopts.dry_run is not None
    ctx = default_context(strict=not dry)
    rc = resolve(sopts.config, overrides=list(sopts.overrides)) if sopts.config else None  # bad -o: exit 2 now
    name = Path(str(rc.path)).stem if rc is not None else "probe"
    root = Layout.make(sopts.output, name, 0, 1).root
    plan = build_plan(lopts, task="train", run_dir=str(root / "train"), ctx=ctx)  # the placement, checked
    layout = Layout(root, plan.node_rank, plan.nnodes)
    stages = plan_stages(sopts, layout, flags, plan.world_size, plan.device.kind, _gpu_env(plan, ctx.device_env))
    what = sopts.config if sopts.config else "--comm-only"
    node = f", node {plan.node_rank} of {plan.nnodes}" if plan.nnodes > 1 else ""
    title = (f"trainctl smoke {what}: {commmod.placement_text(plan)}, world size "
             f"{plan.world_size}, network {plan.net.name}{node}; run dir {layout.root}")
    if dry:
        probe = None
        if sopts.comm_only and stages[0].status != "n/a":  # the probe alone: its launch command, as train shows
            lopts_probe = commmod.comm_launch_options(lopts, plan.device.kind)
            probe = build_plan(lopts_probe, task="comm", run_dir=str(layout.comm), ctx=ctx).local_node
        _dry_run(stages, title, sopts.dry_run, probe)
        return 0
    if sopts.comm_only:
        stage = stages[0]
        stage.report = None  # this process is the probe: its report is smoke.json itself
        return _finish(_comm_only(stage, sopts, lopts, layout, ctx, sizes), stages, title, plan, ctx, layout, sopts)

    got = _Collected()
    failed: Stage | None = None
    active = [s for s in stages if s.status != "n/a"]
    try:
        for stage in stages:
            if stage.status == "n/a":
                continue
            if failed is not None:
                stage.status, stage.reason = "skipped", f"{failed.name} failed"
                continue
            output.info(f"[{active.index(stage) + 1}/{len(active)}] {stage.name}: {stage.command}")
            if _before(stage, layout, rc):
                run_stage(stage, sopts.stage_timeout)
                if stage.status == "pass":
                    _collect(stage, layout, got)
            output.info(f"    {stage.status} {reportmod.seconds_text(stage.seconds)}  "
                        f"{stage.detail or stage.reason}".rstrip())
            if stage.status == "fail":
                failed = stage
    except KeyboardInterrupt:  # keep the record of what ran; trainctl.cli.main reports the interruption
        for stage in stages:
            if stage.status == "pending":
                stage.status, stage.reason = "skipped", "interrupted"
        _save(got, stages, title, plan, ctx, layout)
        raise
    return _finish(got, stages, title, plan, ctx, layout, sopts)


def _comm_only(stage: Stage, sopts: SmokeOptions, lopts, layout: Layout, ctx, sizes: list[int]) -> _Collected:
    import time

    got = _Collected()
    if stage.status == "n/a":
        return got
    output.info(f"collective probe: all-reduce of {len(sizes)} sizes on every rank")
    start = time.monotonic()
    try:
        got.comm = commmod.run_probe(lopts, layout.root, sizes, sopts.comm_iters, sopts.stage_timeout, ctx)
    except RuntimeFailure as exc:
        stage.status, stage.reason = "fail", exc.one_line()
    else:
        stage.log = got.comm.get("log") or stage.log
        stage.status = got.comm["status"]
        stage.reason = got.comm.get("reason") or ""
        stage.detail = _comm_detail(got.comm)
    stage.seconds = time.monotonic() - start
    return got


def _save(got: _Collected, stages: list[Stage], title: str, plan, ctx, layout: Layout) -> tuple[dict, str]:
    """smoke.json and smoke.txt in this node's directory; returns (report, text)."""
    from trainctl.fsutil import atomic_write_text

    failed = next((s for s in stages if s.status == "fail"), None)
    report = {
        "title": title,
        "ok": failed is None,
        "failed_stage": failed.name if failed else None,
        "run_dir": str(layout.root),
        "node_rank": layout.node_rank,
        "nnodes": layout.nnodes,
        "stages": [s.to_dict() for s in stages],
        "comm": got.comm,
        "environment": reportmod.environment(plan, ctx.device_env),
        "performance": reportmod.performance(got.lite, got.infer),
        "files": {"json": str(layout.report), "text": str(layout.text), "logs": str(layout.logs)},
    }
    comm_text = commmod.format_report(got.comm) if got.comm and got.comm.get("results") else None
    text = reportmod.format_text(report, stages, comm_text)
    layout.node.mkdir(parents=True, exist_ok=True)
    atomic_write_text(layout.report, json.dumps(report, indent=2) + "\n")
    atomic_write_text(layout.text, text + "\n")
    return report, text


def _finish(got: _Collected, stages: list[Stage], title: str, plan, ctx, layout: Layout, sopts: SmokeOptions) -> int:
    report, text = _save(got, stages, title, plan, ctx, layout)
    output.echo(json.dumps(report, indent=2) if sopts.as_json else text)
    failed = next((s for s in stages if s.status == "fail"), None)
    if failed is not None:
        raise RuntimeFailure(f"smoke failed at stage {failed.name}: {failed.reason}", hint=f"log: {failed.log}")
    return 0
