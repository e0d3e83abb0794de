"""`trainctl eval`: evaluate weights on a config's eval dataset, on the same devices and nodes as train."""

from __future__ import annotations

import sys

import click

from trainctl.cli.train import launch_options, launch_options_from, ppdet_style_overrides


@click.command("eval", context_settings={"max_content_width": 100})
@click.option("-c", "--config", required=True, help="Config file, or the name of a bundled config.")
@click.option("-o", "--override", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override a config value (repeatable).")
@click.option("--weights", metavar="W", help="Weights to evaluate (default: the config's `weights`).")
@click.option("--output", metavar="DIR", help="Run directory (default output/<config name>/eval).")
@click.option("--no-data-check", is_flag=True, help="Skip the dataset check before launch.")
@click.option("--json-eval", metavar="FILE", help="Score a COCO results file (bbox.json from infer --save-results) "
              "instead of weights, with the config's metric.")
@click.option("--classwise", is_flag=True,
              help="Also the AP of each class (VOC or COCO metric) and its precision-recall curve (PNG in the run directory).")
@launch_options
@click.argument("extra_overrides", nargs=-1, metavar="")
def eval_cmd(config, overrides, extra_overrides, weights, output, no_data_check, json_eval, classwise, **launch_kwargs) -> None:
    """Evaluate weights and print the metric (VOC mAP or COCO AP).

    \b
    Examples:
      trainctl eval -c roadsign_cpu_smoke.yml --weights output/roadsign_cpu_smoke/model_final
      trainctl eval -c roadsign.yml --weights output/roadsign/best_model --gpus 0,1
      trainctl eval -c roadsign.yml --gpus 0 --dry-run
      trainctl eval -c roadsign.yml --json-eval output/infer/bbox.json
      trainctl eval -c roadsign_demo.yml --weights output/roadsign_demo/best_model --classwise   # AP per class
    """
    if json_eval:  # --- COCO results file (runner/coco_results.py)
        from trainctl import output as out
        from trainctl.runner.coco_results import json_eval as score

        r = score(config, ppdet_style_overrides(overrides, extra_overrides), json_eval)
        out.echo(f"eval done: {r['metric']} mAP {100 * r['results']['bbox']:.2f}% (bbox) on {r['images']} images, "
                 f"results {json_eval} ({r['entries']} boxes)")
        return
    from trainctl.launch import flow

    if classwise:
        import importlib.util

        if importlib.util.find_spec("matplotlib") is None:
            from trainctl.errors import UserError

            raise UserError("--classwise draws precision-recall curves with matplotlib, which is not installed",
                            hint="pip install 'trainctl[plot]' (or pip install matplotlib)")
    topts = flow.TaskOptions(config=config, overrides=ppdet_style_overrides(overrides, extra_overrides), weights=weights, output=output,
                             no_data_check=no_data_check, dry_run=launch_kwargs.pop("dry_run"), classwise=classwise)
    lopts = launch_options_from(launch_kwargs)
    code = flow.run("eval", topts, lopts, argv=["trainctl"] + sys.argv[1:])
    if code:
        sys.exit(code)  # SystemExit: trainctl.cli.main ignores click's return value in non-standalone mode
