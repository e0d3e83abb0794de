"""`trainctl board`: VisualDL on one or several runs for side-by-side comparison."""

from __future__ import annotations

import click

from trainctl.board import DEFAULT_PORT


@click.command("board", context_settings={"max_content_width": 100})
@click.argument("targets", nargs=-1, metavar="[RUN ...]")
@click.option("-p", "--port", type=click.IntRange(0, 65535), default=DEFAULT_PORT, show_default=True,
              help="Port to serve on (0: any free port).")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to bind; 0.0.0.0 makes the board reachable from other machines.")
@click.option("--language", type=click.Choice(["en", "zh"]), default="en", show_default=True,
              help="Language of the VisualDL page.")
def board(targets, port, host, language) -> None:
    """Serve VisualDL on the scalars of one or several runs (train --vdl).

    Each RUN is a run directory (its vdl/ is read) or a directory holding runs;
    default: every run under ./output. The curves of all runs share one page,
    one line per run. Works offline; Ctrl-C stops it.

    \b
    Compare two batch sizes:
      trainctl train -c roadsign.yml --vdl --output output/bs8 -o TrainReader.batch_size=8
      trainctl train -c roadsign.yml --vdl --output output/bs16 -o TrainReader.batch_size=16
      trainctl board output/bs8 output/bs16          # open the printed URL
    \b
    Other forms:
      trainctl board                                 # every run under ./output
      trainctl board output/bs8 --port 8080
      trainctl board output --host 0.0.0.0           # reachable from other hosts
    """
    from trainctl import board as boardmod
    from trainctl import output

    found = boardmod.resolve_targets(list(targets))
    for run in found.without_vdl:
        output.warn(f"{run} has no VisualDL logs (trained without --vdl); not shown")
    if host in ("0.0.0.0", "::"):
        output.warn(f"listening on {host}: anyone who can reach this host can open the board")

    def ready(url: str) -> None:
        output.info(f"VisualDL on {len(found.logdirs)} run(s): {', '.join(found.logdirs)}")
        output.echo(url)
        output.info("Ctrl-C to stop")

    boardmod.serve(found.logdirs, host, port, ready, language=language)
    output.info("VisualDL stopped")
