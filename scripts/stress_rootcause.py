"""Run the kill-one-rank cases many times and count misattributions (issue 24's proof).

    .venv/bin/python scripts/stress_rootcause.py --runs 20 --load 2          # every case, 20 times, 2 busy loops
    .venv/bin/python scripts/stress_rootcause.py --runs 3 --cases sigkill-rank1,exception-rank1

Each run is a real `trainctl train --nproc 2` (tests/reliability/rootcause_cases.py) whose target
rank is made to fail (SIGKILL, SIGSEGV, os._exit(3), a Python exception; SIGKILL of rank 0);
run.json's verdict is compared with the rank that was hit. --load N keeps N processes spinning
on the CPU meanwhile. Prints one line per run and a table per case; --json FILE saves every run.
Exit 1 when any run was misattributed or ambiguous.
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "reliability"))

import rootcause_cases  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=20, help="runs per case")
    parser.add_argument("--cases", default=",".join(rootcause_cases.CASES), help="comma-separated case names")
    parser.add_argument("--load", type=int, default=0, help="busy processes kept running meanwhile")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random fault delays")
    parser.add_argument("--json", type=Path, help="write every run's outcome here")
    parser.add_argument("--work", type=Path, help="working directory (default: a temporary one)")
    args = parser.parse_args()
    names = [n.strip() for n in args.cases.split(",") if n.strip()]
    unknown = [n for n in names if n not in rootcause_cases.CASES]
    if unknown:
        print(f"unknown case(s) {', '.join(unknown)}; known: {', '.join(rootcause_cases.CASES)}", file=sys.stderr)
        return 2
    work = args.work or Path(tempfile.mkdtemp(prefix="trainctl-stress-"))
    work.mkdir(parents=True, exist_ok=True)
    rootcause_cases.make_workdir(work)
    load = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(args.load)]
    rng = random.Random(args.seed)
    outcomes = []
    started = time.time()
    try:
        for i in range(args.runs):
            for name in names:  # interleaved: every case sees the same machine conditions
                outcome = rootcause_cases.run_case(rootcause_cases.CASES[name], work, f"{name}-{i}", rng=rng)
                outcomes.append(outcome)
                print(f"{name:16} run {i + 1:2}: {outcome.verdict:9} named {outcome.named} "
                      f"({outcome.seconds:.0f}s) {outcome.why or outcome.error}", flush=True)
    finally:
        for proc in load:
            proc.kill()
            proc.wait()
    print()
    print(f"{'case':16} {'runs':>4} {'right':>5} {'wrong':>5} {'ambiguous':>9} {'error':>5}")
    bad = 0
    for name in names:
        mine = [o for o in outcomes if o.case == name]
        counts = {v: sum(o.verdict == v for o in mine) for v in ("right", "wrong", "ambiguous", "error")}
        bad += counts["wrong"] + counts["ambiguous"] + counts["error"]
        print(f"{name:16} {len(mine):4} {counts['right']:5} {counts['wrong']:5} {counts['ambiguous']:9} "
              f"{counts['error']:5}")
    print(f"\n{len(outcomes)} runs in {(time.time() - started) / 60:.1f} min, load {args.load} busy process(es)")
    if args.json:
        args.json.write_text(json.dumps([o.__dict__ | {"verdict": o.verdict} for o in outcomes], indent=1))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
