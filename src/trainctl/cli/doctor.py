"""`trainctl doctor`: diagnose the environment."""

from __future__ import annotations

import json
import sys

import click

from trainctl import output


@click.command("doctor")
@click.option("--json", "as_json", is_flag=True, help="Print every fact as JSON.")
@click.option("--check", is_flag=True, help="Also import paddle and ppdet and run a tiny computation (GPU if any).")
@click.option("--report", is_flag=True, help="Print a block to copy into a bug report.")
@click.option("--sys-root", default="/sys", hidden=True, help="Read /sys facts from this tree (tests).")
@click.option("--proc-root", default="/proc", hidden=True, help="Read /proc facts from this tree (tests).")
@click.option("--check-timeout", default=300.0, hidden=True, type=float)
@click.option("--ppdet", metavar="DIR", help="Show (and --check) this PaddleDetection checkout's ppdet instead of "
                                           "the one the rule picks here (see docs/install.md).")
def doctor(as_json: bool, check: bool, report: bool, sys_root: str, proc_root: str, check_timeout: float,
           ppdet: str | None) -> None:
    """Diagnose the environment: paddle, paddledet, GPUs, NCCL, network.

    Exit code 1 when an item is FAIL (red), 0 otherwise.

    \b
    Examples:
      trainctl doctor                 # table of facts, with hints for problems
      trainctl doctor --check         # plus a real paddle computation in a child process
      trainctl doctor --report        # copy-and-paste block for a bug report
      trainctl doctor --json | jq .compatibility
    """
    from trainctl import doctor as doctor_mod

    if check and not as_json:
        output.info("running a paddle check in a child process ...")
    facts = doctor_mod.collect(sys_root=sys_root, proc_root=proc_root, check=check, check_timeout=check_timeout,
                                ppdet=ppdet)
    if as_json:
        output.echo(json.dumps(facts, indent=2, sort_keys=False))
    elif report:
        output.echo(doctor_mod.render_bug_report(facts))
    else:
        output.echo(output.table(doctor_mod.render_table(facts), headers=["section", "item", "value", "status"]))
        for hint in doctor_mod.hints(facts):
            output.echo(f"  hint: {hint}")
        if facts["status"] == "fail":
            output.error("doctor found problems (FAIL above)")
    code = doctor_mod.exit_code(facts)
    if code:
        sys.exit(code)
