"""No doc names a path that exists only on the machine it was written on (a private interpreter,
a home or work directory): every command must run as written after the README's set-up."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DOCS = sorted([REPO / "README.md", REPO / "benchmarks" / "README.md", *(REPO / "docs").rglob("*.md")])

# /home/me/ is the docs' example user (like user@node2); any other home, /root, /work, /opt/<env>, /tmp is private
PRIVATE = re.compile(r"(?<![\w.~-])(/work/|/root/|/home/(?!me/)[^/\s`'\"]+/|/opt/[^/\s`'\"]+/|/tmp/|/Users/[^/\s]+/)")


def test_docs_are_found():
    assert len(DOCS) >= 5


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(REPO)))
def test_no_private_paths(doc):
    hits = [f"{doc.relative_to(REPO)}:{n}: {line.strip()}" for n, line in enumerate(doc.read_text().splitlines(), 1)
            if PRIVATE.search(line)]
    assert not hits, "private paths in docs:\n" + "\n".join(hits)


@pytest.mark.parametrize("text", ["/opt/tcenv/bin/python benchmarks/run.py", "cd /work/main", "/home/alice/venv/bin/python",
                                  "see /root/.cache", "ls /tmp/exp"])
def test_the_check_catches_private_paths(text):
    assert PRIVATE.search(text)


@pytest.mark.parametrize("text", ["python benchmarks/run.py", "cd /home/me/proj", "`/sys/class/net`", "~/.cache/trainctl/weights",
                                  "benchmarks/work/results/"])
def test_the_check_leaves_ordinary_paths(text):
    assert not PRIVATE.search(text)
