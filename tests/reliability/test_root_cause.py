"""The rank that failed is named from evidence, whatever reaches the launcher first (issue 24).

Each case is a real `trainctl train --nproc 2` (paddle launch, gloo on CPU) whose target rank is
made to fail in its own way while the other waits for it in a collective (rootcause_cases.py):
SIGKILL (no word in its log), SIGSEGV from outside, os._exit(3), a Python exception, and SIGKILL
of rank 0 (so "rank 1 is always guilty" cannot pass). scripts/stress_rootcause.py runs the same
cases many times under load; docs/reliability.md has its figures.
"""

from __future__ import annotations

import random

import pytest

import rootcause_cases

pytestmark = [pytest.mark.paddle, pytest.mark.slow]


@pytest.mark.parametrize("name", list(rootcause_cases.CASES))
def test_the_failed_rank_is_named_not_its_victim(name, work):
    case = rootcause_cases.CASES[name]
    outcome = rootcause_cases.run_case(case, work, name, rng=random.Random(name))
    assert not outcome.error, outcome.error
    assert outcome.verdict == "right", outcome
    assert case.expect in outcome.why, outcome.why
