"""Which ppdet a run uses (core/ppdet_source.py): the rule, the description, the import scan (pure, no paddle)."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from trainctl.cli import cli, main
from trainctl.cluster.hostfile import parse_hostfile_text
from trainctl.cluster.preflight import ProbeResult, evaluate, probe_command, probe_payload
from trainctl.cluster.ssh import plan_fanout
from trainctl.errors import UserError
from trainctl.core import ppdet_checks as checks
from trainctl.core import ppdet_source as ps


def make_tree(root: Path, files: dict[str, str] | None = None, setup: str = 'PPDET_VERSION = "0.0.0"\n',
              configs: bool = True) -> Path:
    """A minimal PaddleDetection checkout: ppdet/ with the given modules, setup.py, configs/."""
    files = {"ppdet/__init__.py": "from . import core\n", "ppdet/core/__init__.py": "import numpy\n", **(files or {})}
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    if setup is not None:
        (root / "setup.py").write_text(setup)
    if configs:
        (root / "configs").mkdir(exist_ok=True)
    return root


def test_rule_order_flag_then_env_then_cwd_then_installed(tmp_path):
    a, b, c = (make_tree(tmp_path / n) for n in ("a", "b", "c"))
    inside = c / "configs" / "yolov3"
    inside.mkdir()
    site = tmp_path / "site"
    make_tree(site, setup=None, configs=False)
    (site / "paddledet-2.6.0.dist-info").mkdir()
    env = {ps.ENV_VAR: str(b)}
    assert ps.choose(str(a), env, str(inside)).dir == str(a)  # --ppdet wins
    assert ps.choose(str(a), env, str(inside)).rule == "--ppdet"
    assert ps.choose(None, env, str(inside)).dir == str(b)  # then TRAINCTL_PPDET
    chosen = ps.choose(None, {}, str(inside), search_path=[str(site)])  # then the checkout around cwd
    assert (chosen.kind, chosen.dir) == ("source", str(c)) and "current directory" in chosen.rule
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    wheel = ps.choose(None, {}, str(elsewhere), search_path=["", str(elsewhere), str(site)])
    assert (wheel.kind, wheel.dir, wheel.version, wheel.version_from) == (
        "installed", str(site), "2.6.0", "paddledet-2.6.0.dist-info")
    assert wheel.describe().startswith("paddledet 2.6.0, installed")
    on_path = ps.choose(None, {}, str(elsewhere), search_path=[str(a), str(site)])  # a checkout on PYTHONPATH
    assert (on_path.kind, on_path.dir) == ("source", str(a)) and "PYTHONPATH" in on_path.rule
    # the working directory never counts as "installed", even when it is on sys.path
    assert ps.choose(None, {}, str(site), search_path=["", str(site)]).kind == "missing"


def test_relative_flag_and_bad_flag(tmp_path):
    make_tree(tmp_path / "PaddleDetection")
    assert ps.choose("PaddleDetection", {}, str(tmp_path)).dir == str(tmp_path / "PaddleDetection")
    with pytest.raises(UserError, match="not a PaddleDetection checkout"):
        ps.choose("nowhere", {}, str(tmp_path))
    with pytest.raises(UserError, match="TRAINCTL_PPDET"):
        ps.choose(None, {ps.ENV_VAR: str(tmp_path)}, str(tmp_path))


def test_a_directory_with_ppdet_but_no_configs_or_setup_is_not_a_checkout_for_the_walk(tmp_path):
    make_tree(tmp_path / "t", setup=None, configs=False)
    assert ps.find_checkout(str(tmp_path / "t")) is None
    assert ps.choose(str(tmp_path / "t"), {}, str(tmp_path)).kind == "source"  # given explicitly: fine


def test_version_and_commit_are_read_from_files(tmp_path):
    t = make_tree(tmp_path / "t")
    assert ps.tree_version(str(t)) == ("0.0.0", "setup.py PPDET_VERSION")
    assert ps.tree_commit(str(t)) == (None, None)
    (t / "ppdet" / "version.py").write_text("full_version    = '2.7.1'\ncommit          = 'abcdef1234567'\n")
    assert ps.tree_version(str(t)) == ("2.7.1", "ppdet/version.py")
    assert ps.tree_commit(str(t)) == ("abcdef1234567", "ppdet/version.py")
    git = t / ".git"
    (git / "refs" / "heads" / "release").mkdir(parents=True)
    (git / "HEAD").write_text("ref: refs/heads/release/2.7\n")
    (git / "packed-refs").write_text("# pack-refs\n" + "1" * 40 + " refs/heads/release/2.7\n")
    assert ps.tree_commit(str(t)) == ("1" * 40, ".git (refs/heads/release/2.7)")
    (git / "refs" / "heads" / "release" / "2.7").write_text("2" * 40 + "\n")
    assert ps.tree_commit(str(t))[0] == "2" * 40
    (t / "COMMIT").write_text("3" * 40 + "\n")
    (t / "VERSION").write_text("2.7.1\n")
    assert ps.tree_commit(str(t)) == ("3" * 40, "COMMIT")
    assert ps.tree_version(str(t)) == ("2.7.1", "VERSION")
    src = ps.choose(str(t), {}, str(tmp_path))
    assert src.describe() == f"ppdet 2.7.1 (VERSION) from source {t}, commit 333333333333; chosen by --ppdet"
    assert ps.PpdetSource.from_dict(json.loads(json.dumps(src.to_dict()))) == src


SCANNED = {
    "ppdet/__init__.py": "from . import (core,\n    engine)\nfrom .version import x\n",
    "ppdet/core/__init__.py": "import numpy as np, os\nfrom ppdet.core.workspace import register\n",
    "ppdet/core/workspace.py": "import yaml\nfrom .. import utils\n",
    "ppdet/engine/__init__.py": "from .trainer import *\n",
    "ppdet/engine/trainer.py": ("import cv2\nfrom PIL import Image\nfrom ppdet.modeling import layers\n"
                                "try:\n    import optional_one\nexcept ImportError:\n    pass\n"
                                "def f():\n    import lazy_one\n"),
    "ppdet/modeling/__init__.py": "",
    "ppdet/modeling/layers.py": "import paddle.nn as nn\nfrom scipy import \\\n    optimize\n",
    "ppdet/utils/__init__.py": "from __future__ import annotations\nimport json\n",
    "ppdet/unused/__init__.py": "import never_reached\n",
}


def test_scan_follows_what_import_ppdet_runs(tmp_path):
    t = make_tree(tmp_path / "t", SCANNED)
    found = checks.scan_imports(str(t / "ppdet"))
    assert found == ["PIL", "cv2", "numpy", "paddle", "scipy", "yaml"]  # not optional, lazy, unreached or stdlib


def test_missing_modules_cached_and_rescanned_after_an_edit(tmp_path, monkeypatch):
    monkeypatch.setenv("TRAINCTL_CACHE", str(tmp_path / "cache"))
    t = make_tree(tmp_path / "t", {"ppdet/core/__init__.py": "import numpy\nimport yaml\n"})
    src = ps.choose(str(t), {}, str(tmp_path))
    assert checks.missing_modules(src) == []
    assert len(list((tmp_path / "cache" / "ppdet-imports").iterdir())) == 1
    calls = []
    monkeypatch.setattr(checks, "scan_imports", lambda d: calls.append(d) or ["numpy"])
    assert checks.missing_modules(src) == [] and calls == []  # served from the cache
    monkeypatch.undo()
    monkeypatch.setenv("TRAINCTL_CACHE", str(tmp_path / "cache"))
    (t / "ppdet" / "core" / "__init__.py").write_text("import numpy\nimport some_missing_module\n")
    assert checks.missing_modules(src) == ["some_missing_module"]


def test_check_importable_one_line_with_the_install_command(tmp_path, monkeypatch):
    monkeypatch.setenv("TRAINCTL_CACHE", str(tmp_path / "cache"))
    t = make_tree(tmp_path / "t", {"ppdet/core/__init__.py": "import imgaug_missing_x\nimport cv2_missing_y\n"})
    (t / "requirements.txt").write_text("numpy < 2.0\nimgaug_missing_x>=0.4.0\nsklearn==0.0\n# comment\n")
    src = ps.choose(str(t), {}, str(tmp_path))
    with pytest.raises(UserError) as info:
        checks.check_importable(src)
    line = info.value.one_line()
    assert "\n" not in line
    assert f"ppdet from source {t} (chosen by --ppdet) cannot be imported: missing modules cv2_missing_y, " \
           "imgaug_missing_x" in line
    assert f"pip install cv2_missing_y 'imgaug_missing_x>=0.4.0' (all of the checkout's: pip install -r " \
           f"{t}/requirements.txt)" in line


def test_install_command_names_packages_not_modules(tmp_path):
    t = make_tree(tmp_path / "t")
    (t / "requirements.txt").write_text("opencv-python <= 4.6.0\nPyYAML\nsklearn==0.0\nimgaug>=0.4.0\n")
    src = ps.choose(str(t), {}, str(tmp_path))
    command = checks.install_command(src, ["cv2", "yaml", "sklearn", "imgaug", "paddle"])
    assert command.startswith("pip install 'opencv-python<=4.6.0' PyYAML scikit-learn 'imgaug>=0.4.0' "
                              "paddlepaddle 'numpy<1.24'")
    wheel = ps.PpdetSource("installed", str(tmp_path), "x", "2.6.0")
    assert checks.install_command(wheel, ["sklearn"]) == "pip install scikit-learn"


def test_worker_env_and_activate(tmp_path, monkeypatch):
    t = make_tree(tmp_path / "t")
    src = ps.choose(str(t), {}, str(tmp_path))
    assert ps.worker_env(src, {"PYTHONPATH": "/x"}) == {"PYTHONSAFEPATH": "1", "PYTHONPATH": f"{t}{os.pathsep}/x"}
    wheel = ps.PpdetSource("installed", "/site", "x", "2.6.0")
    assert ps.worker_env(wheel, {"PYTHONPATH": "/x"}) == {"PYTHONSAFEPATH": "1"}
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.setattr(sys, "path", [str(cwd), "", "/lib/a", str(t)])
    monkeypatch.delitem(sys.modules, "ppdet", raising=False)
    ps.activate(src, str(cwd))
    assert sys.path == [str(t), "/lib/a"]


def test_plan_and_dry_run_show_the_choice(tmp_path, monkeypatch, capsys):
    t = make_tree(tmp_path / "PaddleDetection", {"ppdet/core/__init__.py": "import some_missing_module\n"})
    monkeypatch.setenv("TRAINCTL_CACHE", str(tmp_path / "cache"))
    monkeypatch.chdir(t / "configs")
    runner = CliRunner()
    result = runner.invoke(cli, ["train", "-c", "roadsign.yml", "--device", "cpu", "--nproc", "2", "--dry-run=json"])
    assert result.exit_code == 0, result.output
    plan = json.loads(result.output)
    assert plan["ppdet"]["kind"] == "source" and plan["ppdet"]["dir"] == str(t)
    assert plan["ppdet"]["rule"] == "the checkout containing the current directory"
    env = plan["nodes"][0]["env"]
    assert env["PYTHONSAFEPATH"] == "1" and env["PYTHONPATH"].split(os.pathsep)[0] == str(t)
    assert any("missing module some_missing_module" in w for w in plan["warnings"])
    text = runner.invoke(cli, ["train", "-c", "roadsign.yml", "--device", "cpu", "--dry-run"]).output
    assert f"ppdet       ppdet 0.0.0 (setup.py PPDET_VERSION) from source {t}" in text
    # the real launch stops before writing anything: exit 2, one line
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "-c", "roadsign.yml", "--device", "cpu", "--output", str(tmp_path / "run")])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "missing module some_missing_module; install with: pip install" in err
    assert not (tmp_path / "run").exists()


def test_doctor_shows_the_choice_and_what_it_lacks(tmp_path, monkeypatch):
    t = make_tree(tmp_path / "t", {"ppdet/core/__init__.py": "import some_missing_module\n"})
    monkeypatch.setenv("TRAINCTL_CACHE", str(tmp_path / "cache"))
    result = CliRunner().invoke(cli, ["doctor", "--json", "--ppdet", str(t)])
    facts = json.loads(result.output)
    assert facts["ppdet"]["kind"] == "source" and facts["ppdet"]["missing"] == ["some_missing_module"]
    item = next(i for i in facts["items"] if i["name"] == "ppdet used")
    assert item["status"] == "fail" and "pip install some_missing_module" in item["hint"]
    assert result.exit_code == 1


def _preflight_plan(workdir):
    hosts = parse_hostfile_text("10.0.0.1\n10.0.0.2\n", "hosts.txt")
    return plan_fanout(hosts, train_argv=["t"], workdir=str(workdir), python=sys.executable)


def test_preflight_probe_resolves_the_ppdet_in_the_remote_workdir(tmp_path):
    import subprocess

    t = make_tree(tmp_path / "PaddleDetection")
    node = _preflight_plan(t / "configs").nodes[0]
    payload = probe_payload(1, config=None, overrides=[], tasks=[], port=None, ppdet=None)
    out = subprocess.run(["sh", "-c", probe_command(node, sys.executable, payload)], capture_output=True, text=True,
                         timeout=60)
    data = ProbeResult.parse(node, out.returncode, out.stdout, out.stderr).data
    assert data["ppdet"] == "source 0.0.0" and str(t) in data["ppdet_description"]


def test_preflight_every_host_must_use_the_same_ppdet(tmp_path):
    plan = _preflight_plan(tmp_path)
    versions = {"trainctl": "0.1.0", "paddle": "3.3.1", "paddledet": "2.6.0"}
    results = [ProbeResult(n, 0, data={"python": "py", "cwd": "/w", "versions": versions, "ppdet": ident})
               for n, ident in zip(plan.nodes, ["source 0.0.0 bf81f449f0a8", "installed 2.6.0"])]
    checks = evaluate(results, versions, None)
    problems = [p for ch in checks for p in ch.problems]
    assert len(problems) == 1 and "ppdet installed 2.6.0 differs from source 0.0.0 bf81f449f0a8" in problems[0] \
        or "ppdet source 0.0.0 bf81f449f0a8 differs from installed 2.6.0" in problems[0]
    results[1].data["ppdet"] = "source 0.0.0 bf81f449f0a8"
    assert not any(ch.problems for ch in evaluate(results, versions, None))
    results[1].data["ppdet_error"] = "ppdet cannot be imported, missing imgaug"
    assert [p for ch in evaluate(results, versions, None) for p in ch.problems] == [
        "ppdet cannot be imported, missing imgaug"]


def test_fanout_forwards_the_choice_to_every_host(tmp_path, monkeypatch, capsys):
    """--ppdet as typed (relative to the remote workdir) and TRAINCTL_PPDET reach every host's command."""
    import shlex

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(ps.ENV_VAR, "/opt/PaddleDetection")
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "-c", "roadsign.yml", "--hosts", "10.0.0.1,10.0.0.2", "--device", "cpu",
              "--ppdet", "../PaddleDetection", "--dry-run"])
    out = capsys.readouterr().out
    assert exit_info.value.code == 0
    remotes = [shlex.split(shlex.split(line)[-1]) for line in out.splitlines() if line.startswith("ssh ")]
    assert len(remotes) == 2
    for words in remotes:
        node = words[words.index("--") + 1:]
        assert node[node.index("--ppdet") + 1] == "../PaddleDetection"
        assert f"{ps.ENV_VAR}=/opt/PaddleDetection" in words


PROBE_IMPORT = """
import json, sys
from trainctl.core import ppdet_source as ps
src = ps.PpdetSource.from_dict(json.loads(sys.argv[1]))
ps.activate(src)
import ppdet
ps.verify(src)
print(ppdet.WHO)
"""


@pytest.mark.parametrize("safe_path", ["", "1"])
def test_a_process_started_in_a_decoy_tree_imports_the_chosen_ppdet(tmp_path, safe_path):
    """Without PYTHONSAFEPATH (Python 3.10, or a user's shell) the working directory comes first on
    sys.path; activate() drops it, so a ppdet/ lying in the cwd is never imported by accident."""
    import subprocess

    decoy = make_tree(tmp_path / "decoy", {"ppdet/__init__.py": "raise SystemExit('decoy imported')\n"})
    chosen = make_tree(tmp_path / "chosen", {"ppdet/__init__.py": "WHO = 'chosen'\n"})
    site = tmp_path / "site"
    make_tree(site, {"ppdet/__init__.py": "WHO = 'wheel'\n"}, setup=None, configs=False)
    (site / "paddledet-2.6.0.dist-info").mkdir()
    src_dir = str(Path(ps.__file__).resolve().parents[2])
    for source, expected in ((ps.choose(str(chosen), {}, str(tmp_path)), "chosen"),
                             (ps.installed(str(decoy), [str(site)]), "wheel")):
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONSAFEPATH")}
        env["PYTHONPATH"] = os.pathsep.join([src_dir, str(site)])
        if safe_path:
            env["PYTHONSAFEPATH"] = safe_path
        proc = subprocess.run([sys.executable, "-c", PROBE_IMPORT, json.dumps(source.to_dict())], cwd=decoy,
                              env=env, capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.strip() == expected


def test_verify_names_a_ppdet_from_elsewhere(tmp_path, monkeypatch):
    import types

    from trainctl.errors import RuntimeFailure

    chosen = make_tree(tmp_path / "chosen")
    module = types.ModuleType("ppdet")
    module.__file__ = str(tmp_path / "other" / "ppdet" / "__init__.py")
    monkeypatch.setitem(sys.modules, "ppdet", module)
    with pytest.raises(RuntimeFailure, match=f"ppdet was imported from {tmp_path / 'other' / 'ppdet'}, not from"):
        ps.verify(ps.choose(str(chosen), {}, str(tmp_path)))
