"""The package graph of docs/architecture.md, checked on the source (imports parsed, nothing imported).

Imports run one way: cli -> (smoke, sweep, cluster, doctor, runs, board) -> launch -> core,
and runner -> core. Every import statement counts, also the ones inside functions (lazy
imports are still dependencies). A forbidden direction fails with the file and line.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src"
PKG = SRC / "trainctl"

# the groups a group may import besides itself and "base" (errors, fsutil, output, the package's __init__)
ALLOWED: dict[str, set[str]] = {
    "smoke": {"launch", "core", "config", "data", "doctor", "runrecord", "weights"},
    "sweep": {"launch", "core", "config", "runrecord"},
    "cluster": {"launch", "core", "config"},
    "doctor": {"launch", "core", "config"},
    "runs": {"core", "config", "runrecord"},
    "board": {"runs", "core"},
    "launch": {"core", "config", "data", "weights", "runrecord"},
    "runner": {"core", "config", "weights"},
    "config": {"core"},
    "data": {"core"},
    "weights": {"core"},
    "runrecord": {"core"},
    "core": set(),
    "base": set(),
}
# third-party packages only some groups may import
RESTRICTED_EXTERNAL = {
    "click": {"cli", "base"},  # base: output.py echoes through click
    "paddle": {"runner"},
    "ppdet": {"runner"},
}
BASE_MODULES = {"trainctl", "trainctl.errors", "trainctl.fsutil", "trainctl.output"}

# Known exceptions still to be removed: (importing file relative to src/trainctl, imported group) -> why.
# The test also fails when one is no longer needed, so this list only shrinks.
PENDING: dict[tuple[str, str], str] = {}


_CACHE: dict[Path, list] = {}


def module_name(path: Path) -> str:
    rel = path.relative_to(SRC).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def group_of(module: str) -> str:
    parts = module.split(".")
    if parts[0] != "trainctl":
        return parts[0]
    if module in BASE_MODULES:
        return "base"
    top = parts[1]
    if top == "__main__":
        return "cli"
    return top


def is_module(name: str) -> bool:
    rel = Path(*name.split("."))
    return (SRC / rel).with_suffix(".py").is_file() or (SRC / rel / "__init__.py").is_file()


def imports(path: Path):
    """(line, imported module) for every import statement in the file."""
    tree = ast.parse(path.read_text(), filename=str(path))
    here = module_name(path)
    package = here if path.name == "__init__.py" else here.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            for alias in node.names:
                full = f"{base}.{alias.name}"
                yield node.lineno, full if is_module(full) else base


def violations() -> list[tuple[str, int, str, str]]:
    """(file, line, importer group, imported module) for every forbidden import."""
    if PKG in _CACHE:
        return _CACHE[PKG]
    found = _CACHE[PKG] = []
    for path in sorted(PKG.rglob("*.py")):
        importer = group_of(module_name(path))
        rel = path.relative_to(PKG).as_posix()
        for line, target in imports(path):
            target_group = group_of(target)
            if target.split(".")[0] == "trainctl":
                if importer == "cli" or target_group in ("base", importer):
                    continue
                if target_group in ALLOWED.get(importer, set()):
                    continue
            else:
                allowed = RESTRICTED_EXTERNAL.get(target_group)
                if allowed is None or importer in allowed:
                    continue
            found.append((rel, line, importer, target))
    return found


def test_every_package_has_a_rule():
    groups = {group_of(module_name(p)) for p in PKG.rglob("*.py")}
    assert groups - set(ALLOWED) - {"cli"} == set()


def test_imports_run_one_way():
    bad = [v for v in violations() if (v[0], group_of(v[3])) not in PENDING]
    lines = [f"src/trainctl/{file}:{line}: {importer} must not import {target}" for file, line, importer, target in bad]
    assert not lines, "forbidden import directions (docs/architecture.md):\n" + "\n".join(lines)


def test_pending_exceptions_are_still_needed():
    used = {(v[0], group_of(v[3])) for v in violations()}
    assert set(PENDING) <= used, f"remove from PENDING, now fixed: {set(PENDING) - used}"


def test_launch_names_the_worker_module_without_importing_runner():
    # launch starts `python -m trainctl.runner.worker`: a string, not an import
    text = (PKG / "launch" / "plan.py").read_text() + (PKG / "launch" / "executor.py").read_text()
    assert "trainctl.runner.worker" in text
    assert not [v for v in violations() if v[2] == "launch" and group_of(v[3]) == "runner"]


def test_the_checker_sees_a_forbidden_import(tmp_path, monkeypatch):
    """The checker itself: a runner module importing the launcher is reported with its line."""
    fake = tmp_path / "src"
    (fake / "trainctl" / "runner").mkdir(parents=True)
    (fake / "trainctl" / "launch").mkdir()
    for pkg in ("trainctl", "trainctl/runner", "trainctl/launch"):
        (fake / pkg / "__init__.py").write_text("")
    (fake / "trainctl" / "launch" / "plan.py").write_text("")
    (fake / "trainctl" / "runner" / "bad.py").write_text("import os\n\ndef f():\n    from trainctl.launch import plan\n")
    monkeypatch.setitem(globals(), "SRC", fake)
    monkeypatch.setitem(globals(), "PKG", fake / "trainctl")
    assert violations() == [("runner/bad.py", 4, "runner", "trainctl.launch.plan")]


@pytest.mark.parametrize("module, group", [("trainctl.cli.train", "cli"), ("trainctl.core.job", "core"),
                                            ("trainctl.output", "base"), ("trainctl.sweep", "sweep"),
                                            ("click.core", "click")])
def test_group_of(module, group):
    assert group_of(module) == group


def test_no_private_name_is_imported_across_modules():
    bad = []
    for path in sorted(PKG.rglob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("trainctl"):
                for alias in node.names:
                    if alias.name.startswith("_") and not alias.name.startswith("__"):
                        bad.append(f"src/trainctl/{path.relative_to(PKG).as_posix()}:{node.lineno}: "
                                   f"imports the private {node.module}.{alias.name}")
    assert not bad, "\n".join(bad)


def test_docs_table_is_the_rule_checked_here():
    """docs/architecture.md's table of who may import what is ALLOWED above, row for row."""
    text = (SRC.parent / "docs" / "architecture.md").read_text()
    rows = {}
    for line in text.split("| package | may import (besides itself and base) |", 1)[1].splitlines()[2:]:
        if not line.startswith("|"):
            break
        packages, targets = [c.strip() for c in line.strip("|").split("|")]
        for package in packages.split(", "):
            name = package.rstrip("/").removesuffix(".py")
            rows[name] = "*" if targets == "anything" else set() if targets.startswith("nothing") else set(targets.split(", "))
    expected = {name: targets for name, targets in ALLOWED.items() if name != "base"}
    assert rows == {**expected, "cli": "*"}
