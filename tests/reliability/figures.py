"""Print the figures of the reliability suite's last run as Markdown (for docs/reliability.md).

    python -m pytest tests/reliability        # writes benchmarks/results/reliability_last_run.json
    python tests/reliability/figures.py       # prints the tables from it
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

FIGURES_FILE = Path(__file__).resolve().parents[2] / "benchmarks" / "results" / "reliability_last_run.json"
ORDER = ["bad input", "faults", "security", "restarts and hangs"]


def render(data: dict) -> str:
    lines = [f"Last run: {data['finished']} (Python {data['python']}, `pytest {data['selection']}`)", "",
             "| case class | tried | passed | failed | xfailed | skipped | time (s) |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    classes = data["classes"]
    for name in ORDER + sorted(set(classes) - set(ORDER)):
        c = classes.get(name)
        if c:
            lines.append(f"| {name} | {c['tried']} | {c['passed']} | {c['failed']} | {c['xfailed']} | "
                         f"{c['skipped']} | {c['seconds']:.0f} |")
    t = data["total"]
    lines.append(f"| **all** | **{t['tried']}** | **{t['passed']}** | {t['failed']} | {t['xfailed']} | "
                 f"{t['skipped']} | |")
    measured = [(nodeid.split("::", 1)[1], case["measured"]) for nodeid, case in data["cases"].items()
                if case.get("measured")]
    if measured:
        lines += ["", "Measured in that run:", "", "| case | measured |", "| --- | --- |"]
        for name, values in measured:
            text = ", ".join(f"{k} = {v}" for k, v in values.items())
            lines.append(f"| `{name}` | {text} |")
    not_passed = [(nodeid, case["outcome"]) for nodeid, case in data["cases"].items() if case["outcome"] != "passed"]
    if not_passed:
        lines += ["", "Not passed:", ""] + [f"- `{nodeid}`: {outcome}" for nodeid, outcome in not_passed]
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    path = Path(argv[1]) if len(argv) > 1 else FIGURES_FILE
    print(render(json.loads(path.read_text())))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
