"""`trainctl runs`: list training runs (status, epochs, best metric); `trainctl runs compare`: what differs and how they did."""

from __future__ import annotations

import json

import click


class _RunsGroup(click.Group):
    """`trainctl runs [DIR ...]` lists; `trainctl runs compare DIR ...` compares (a first word that is
    not a subcommand is a directory to list)."""

    def parse_args(self, ctx, args):
        if not args or (args[0] not in self.commands and args[0] not in ("-h", "--help")):
            args = ["list", *args]
        return super().parse_args(ctx, args)


@click.group("runs", cls=_RunsGroup, context_settings={"max_content_width": 100})
def runs() -> None:
    """List runs (default), or compare them.

    \b
    Examples:
      trainctl runs                              # every run under ./output
      trainctl runs output/bs2 output/bs8        # these runs (or dirs holding runs)
      trainctl runs compare output/roadsign_demo-sweep --plot compare.png
    """


@runs.command("list", context_settings={"max_content_width": 100})
@click.argument("dirs", nargs=-1, metavar="[DIR ...]")
@click.option("--json", "as_json", is_flag=True, help="Print the runs as a JSON list.")
def list_cmd(dirs, as_json) -> None:
    """List the runs under DIR (default: ./output); `trainctl runs DIR` is the same.

    A run is a directory with a run.json (written by `trainctl train`/`eval`).
    Status is done, failed, interrupted or running; a run whose record says
    running but whose processes are gone (killed) is shown as interrupted.
    Epochs come from the complete checkpoints, the best metric from the
    evaluations (train --eval) or eval.json (trainctl eval).

    \b
    Examples:
      trainctl runs                              # every run under ./output
      trainctl runs output/bs2 output/bs8        # these runs (or dirs holding runs)
      trainctl runs --json | jq '.[] | select(.status == "done") | .run_dir'
    """
    from trainctl import output
    from trainctl import runs as runsmod

    found = runsmod.list_runs(list(dirs))
    if as_json:
        output.echo(json.dumps([r.to_dict() for r in found], indent=2))
        return
    if not found:
        where = ", ".join(dirs) if dirs else "output"
        output.info(f"no runs under {where} (a run directory holds run.json; start one with `trainctl train`)")
        return
    output.echo(output.table(runsmod.table_rows(found), headers=runsmod.HEADERS))
    for line in runsmod.notes(found):
        output.info(line)


@runs.command("compare", context_settings={"max_content_width": 100})
@click.argument("dirs", nargs=-1, required=True, metavar="DIR ...")
@click.option("--plot", "plot_path", metavar="FILE.png", help="Draw the loss and metric curves of every run (needs matplotlib).")
@click.option("--json", "as_json", is_flag=True, help="Print the comparison (with the curves) as JSON.")
def compare_cmd(dirs, plot_path, as_json) -> None:
    """Compare training runs: the config values that differ, final loss, best metric.

    DIR is a run directory or one that holds runs (a sweep directory). The
    differing values come from each run's resolved config.yml; runs with the
    same values (repeats with other seeds) make one row with mean ± standard
    deviation. The final loss is the mean over the last epoch's steps.

    \b
    Examples:
      trainctl runs compare output/roadsign_demo-sweep
      trainctl runs compare output/bs2 output/bs8 --plot compare.png
      trainctl runs compare output/roadsign_demo-sweep --json | jq '.groups[].best'
    """
    from trainctl import output
    from trainctl import runs as runsmod

    result = runsmod.compare_runs(list(dirs))
    if plot_path:
        drawn = runsmod.plot_compare(result, plot_path)
        result["plot"] = {"path": plot_path, "curves": drawn}
    if as_json:
        output.echo(json.dumps(result, indent=2, default=str))
        return
    if not result["keys"]:
        output.info("the runs' resolved configs are the same (only seeds or data order can differ)")
    headers, rows = runsmod.compare_table(result)
    output.echo(output.table(rows, headers=headers))
    if plot_path:
        output.info(f"plot: {plot_path} ({result['plot']['curves']} runs)")
