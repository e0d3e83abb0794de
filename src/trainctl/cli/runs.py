"""`trainctl runs`: list training runs with status, epochs done and best metric."""

from __future__ import annotations

import json

import click


@click.command("runs", context_settings={"max_content_width": 100})
@click.argument("dirs", nargs=-1, metavar="[DIR ...]")
@click.option("--json", "as_json", is_flag=True, help="Print the runs as a JSON list.")
def runs(dirs, as_json) -> None:
    """List the runs under DIR (default: ./output).

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
