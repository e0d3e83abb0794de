"""The one place that writes to the terminal.

Layers below cli/ report through these functions so that --quiet, colour and
the error format stay consistent.
"""

from __future__ import annotations

import os
import sys

import click

_state = {"quiet": False}


def set_quiet(quiet: bool) -> None:
    _state["quiet"] = quiet


def is_quiet() -> bool:
    return _state["quiet"]


def progress_mode() -> str:
    """How workers show training progress, decided here where the terminal is known
    (a worker's own output is a pipe to the launcher): quiet under -q, the live line
    ("tty") when stdout is a terminal outside CI, else ppdet's plain log lines."""
    if _state["quiet"]:
        return "quiet"
    interactive = hasattr(sys.stdout, "isatty") and sys.stdout.isatty()
    return "tty" if interactive and not os.environ.get("CI") else "plain"


def _color() -> bool:
    return sys.stderr.isatty() and not os.environ.get("NO_COLOR")


def echo(message: str = "", err: bool = False) -> None:
    """Plain output (results people or tools read); never suppressed."""
    click.echo(message, err=err)


def info(message: str) -> None:
    """Progress and context, to stderr; silent under --quiet."""
    if not _state["quiet"]:
        click.echo(message, err=True)


def warn(message: str) -> None:
    prefix = click.style("warning:", fg="yellow") if _color() else "warning:"
    click.echo(f"trainctl: {prefix} {message}", err=True)


def error(message: str) -> None:
    prefix = click.style("error:", fg="red") if _color() else "error:"
    click.echo(f"trainctl: {prefix} {message}", err=True)


def table(rows: list[list[str]], headers: list[str] | None = None) -> str:
    """Format rows as a plain, left-aligned text table."""
    all_rows = ([headers] if headers else []) + [[str(c) for c in r] for r in rows]
    if not all_rows:
        return ""
    widths = [max(len(r[i]) for r in all_rows if i < len(r)) for i in range(max(len(r) for r in all_rows))]
    lines = []
    for n, row in enumerate(all_rows):
        lines.append("  ".join(c.ljust(widths[i]) for i, c in enumerate(row)).rstrip())
        if headers and n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def fmt_value(value, digits: int = 2) -> str:
    """A report cell: "-" for None, on/off for booleans, fixed digits for floats."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)
