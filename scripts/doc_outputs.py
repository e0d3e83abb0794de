"""Regenerate the command outputs shown in the docs, so they stay what trainctl prints today.

A doc marks a block to regenerate with a comment on the line before its fence:

    <!-- output: trainctl train -c roadsign.yml --gpus 0,1 --dry-run -->
    ```
    $ trainctl train -c roadsign.yml --gpus 0,1 --dry-run
    ...what it printed...
    ```

This script runs each marked command with this environment's trainctl in a scratch directory
that holds the sample dataset (`trainctl data sample`), replaces the block with `$ COMMAND`
and the output (stdout and stderr, as a terminal shows them), and writes the doc back. Paths
of this machine are shortened: the interpreter to `python`, the scratch directory to `.`, the
site-packages directory to `.../site-packages`. The outputs are this machine's (CPU count,
network, paddle build); the docs say so next to them.

    python scripts/doc_outputs.py                 # every doc under docs/ and README.md
    python scripts/doc_outputs.py docs/install.md --only doctor
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MARKER = re.compile(r"^<!-- output: (trainctl .+?) -->\s*$")


def run(command: str, scratch: Path) -> str:
    words = shlex.split(command)
    proc = subprocess.run([sys.executable, "-m", "trainctl", *words[1:]], cwd=scratch, text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=300,
                          env={**os.environ, "COLUMNS": "200"})
    if proc.returncode != 0:
        raise SystemExit(f"doc_outputs: `{command}` exited {proc.returncode}:\n{proc.stdout[-2000:]}")
    return normalize(proc.stdout, scratch)


RULER = re.compile(r"^-+(  -+)+$")


def shorten(text: str, scratch: Path) -> str:
    site = sysconfig.get_paths()["purelib"]
    for path, short in ((site, ".../site-packages"), (sys.executable, "python"), (str(scratch), ".")):
        text = text.replace(path, short)
    return text


def normalize(text: str, scratch: Path) -> str:
    """Shorten this machine's paths; tables (a header over a ruler of dashes) are laid out again."""
    lines = text.rstrip("\n").splitlines()
    out: list[str] = []
    i = 0
    while i < len(lines):
        if i + 1 < len(lines) and RULER.match(lines[i + 1]):
            starts = [m.start() for m in re.finditer(r"-+", lines[i + 1])]
            end = next((j for j in range(i + 2, len(lines)) if not lines[j].strip()), len(lines))
            rows = [[shorten(line[a:b] if k + 1 < len(starts) else line[a:], scratch).strip()
                     for k, (a, b) in enumerate(zip(starts, starts[1:] + [None]))]
                    for line in [lines[i], *lines[i + 2:end]]]
            widths = [max(len(r[k]) for r in rows) for k in range(len(starts))]
            fmt = lambda cells: "  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip()  # noqa: E731
            out += [fmt(rows[0]), "  ".join("-" * w for w in widths), *(fmt(r) for r in rows[1:])]
            i = end
            continue
        out.append(shorten(lines[i], scratch).rstrip())
        i += 1
    return "\n".join(out)


def regenerate(doc: Path, scratch: Path, only: str | None) -> int:
    lines = doc.read_text().splitlines()
    out, i, changed = [], 0, 0
    while i < len(lines):
        line = lines[i]
        out.append(line)
        m = MARKER.match(line)
        if m and (only is None or only in m.group(1)):
            if i + 1 >= len(lines) or not lines[i + 1].startswith("```"):
                raise SystemExit(f"doc_outputs: {doc}:{i + 1}: the marker must be followed by a fenced block")
            end = next((j for j in range(i + 2, len(lines)) if lines[j].startswith("```")), None)
            if end is None:
                raise SystemExit(f"doc_outputs: {doc}:{i + 2}: the block is not closed")
            out += [lines[i + 1], f"$ {m.group(1)}", run(m.group(1), scratch), lines[end]]
            changed += 1
            i = end + 1
            continue
        i += 1
    if changed:
        doc.write_text("\n".join(out) + "\n")
    return changed


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("docs", nargs="*", type=Path, help="docs to regenerate (default: README.md and docs/*.md)")
    ap.add_argument("--only", help="only the markers whose command contains this text")
    args = ap.parse_args(argv)
    docs = args.docs or [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
    with tempfile.TemporaryDirectory(prefix="trainctl-doc-outputs-") as tmp:
        scratch = Path(tmp).resolve()
        subprocess.run([sys.executable, "-m", "trainctl", "data", "sample", "--out", "dataset/roadsign_voc"],
                       cwd=scratch, check=True, stdout=subprocess.DEVNULL)
        for doc in docs:
            n = regenerate(doc, scratch, args.only)
            if n:
                print(f"{doc}: {n} output(s) regenerated")
    return 0


if __name__ == "__main__":
    sys.exit(main())
