"""Security: secrets never written or printed, no shell injection over ssh, no world-writable files.

The secret values below are unique strings; a case fails if one appears in a
run record, a log, the terminal output or a dry run. The run is real (two CPU
workers through paddle launch, one epoch on the shared sample, then export),
started with umask 000 so that only trainctl's own care keeps files private.
"""

from __future__ import annotations

import json
import os
import shlex
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from conftest import Result, run_cli

SMOKE = "roadsign_cpu_smoke.yml"
# given with --env
FLAG_SECRETS = {"WANDB_API_KEY": "wandb-s3cr3t-0001", "MY_DB_PASSWORD": "pw-s3cr3t-0002"}
# inherited from the user's environment
ENV_SECRETS = {"GITHUB_TOKEN": "gh-s3cr3t-0003", "AWS_SECRET_ACCESS_KEY": "aws-s3cr3t-0004"}
SECRET_VALUES = list(FLAG_SECRETS.values()) + list(ENV_SECRETS.values())


def _env_flags() -> list[str]:
    flags = []
    for key, value in FLAG_SECRETS.items():
        flags += ["--env", f"{key}={value}"]
    return flags + ["--env", "NCCL_DEBUG=WARN"]  # a harmless value stays visible


def _leaks(text: str) -> list[str]:
    return [v for v in SECRET_VALUES if v in text]


def _run_umask0(args: list[str], cwd: Path, timeout: float = 900) -> Result:
    env = dict(os.environ, **ENV_SECRETS)
    env.pop("TRAINCTL_DEBUG", None)
    proc = subprocess.run([sys.executable, "-m", "trainctl", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout, stdin=subprocess.DEVNULL, preexec_fn=lambda: os.umask(0))
    return Result(list(args), proc.returncode, proc.stdout, proc.stderr, 0.0)


@pytest.fixture(scope="module")
def real_run(tmp_path_factory, shared_dataset):
    work = tmp_path_factory.mktemp("security")
    (work / "dataset").mkdir()
    (work / "dataset" / "roadsign_voc").symlink_to(shared_dataset)
    run = work / "run"
    train = _run_umask0(["train", "-c", SMOKE, "--nproc", "2", "--output", str(run), *_env_flags()], work)
    export = None
    if train.returncode == 0:
        export = _run_umask0(["export", "-c", SMOKE, "--weights", str(run / "model_final"),
                              "--output", str(work / "exported")], work)
    return work, run, train, export


@pytest.mark.paddle
def test_secrets_masked_in_the_run_record(real_run):
    work, run, train, _ = real_run
    assert train.returncode == 0, train.explain()
    for name in ("run.json", "config.yml", "job.json"):
        text = (run / name).read_text()
        assert _leaks(text) == [], f"{name} leaks {_leaks(text)}"
    record = json.loads((run / "run.json").read_text())
    dumped = json.dumps(record)
    assert "WANDB_API_KEY=***" in " ".join(record["argv"])  # the flag is recorded, its value masked
    assert "NCCL_DEBUG=WARN" in dumped  # not every value is masked


@pytest.mark.paddle
def test_secrets_masked_in_logs_and_terminal_output(real_run):
    work, run, train, _ = real_run
    assert train.returncode == 0, train.explain()
    assert _leaks(train.stdout + train.stderr) == []
    leaking = {}
    for path in sorted(run.rglob("*")):
        if path.is_file() and path.suffix not in (".pdparams", ".pdopt", ".pdema"):
            found = _leaks(path.read_text(errors="replace"))
            if found:
                leaking[str(path.relative_to(run))] = found
    assert leaking == {}, f"secrets in run files: {leaking}"
    # the workers did get the values (masking is for records, not for the job)
    assert (run / "logs").is_dir()


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_secrets_masked_in_dry_runs(work, fmt):
    env = dict(ENV_SECRETS)
    res = run_cli(["train", "-c", SMOKE, "--nproc", "2", f"--dry-run={fmt}", *_env_flags()], cwd=work, env=env)
    assert res.returncode == 0, res.explain()
    assert _leaks(res.output) == []
    for key in FLAG_SECRETS:
        assert f"{key}=***" in res.output or f'"{key}": "***"' in res.output, res.explain()
    assert "NCCL_DEBUG" in res.output and "WARN" in res.output


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_secrets_masked_in_multi_host_dry_run(work, fmt):
    res = run_cli(["train", "-c", SMOKE, "--hosts", "10.9.0.1,10.9.0.2", f"--dry-run={fmt}", *_env_flags()],
                  cwd=work)
    assert res.returncode == 0, res.explain()
    assert _leaks(res.output) == []


def _not_world_writable(paths: list[Path]) -> dict[str, str]:
    bad = {}
    for path in paths:
        mode = path.lstat().st_mode
        if not stat.S_ISLNK(mode) and mode & stat.S_IWOTH:
            bad[str(path)] = oct(stat.S_IMODE(mode))
    return bad


@pytest.mark.paddle
def test_written_files_are_not_world_writable(real_run):
    work, run, train, export = real_run
    assert train.returncode == 0, train.explain()
    assert export is not None and export.returncode == 0, export.explain()
    files = [run] + sorted(run.rglob("*"))
    names = {p.name for p in files}
    for expected in ("run.json", "config.yml", "job.json", "checkpoints.json", "model_final.pdparams",
                     "model_final.pdopt", "workerlog.0"):
        assert expected in names, sorted(names)
    exported = [work / "exported"] + sorted((work / "exported").rglob("*"))
    assert {"model.pdmodel", "model.pdiparams", "infer_cfg.yml"} <= {p.name for p in exported}
    assert _not_world_writable(files + exported) == {}


def test_sample_dataset_not_world_writable(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "trainctl", "data", "sample", "--out", "d", "--images", "2"],
                          cwd=tmp_path, capture_output=True, text=True, preexec_fn=lambda: os.umask(0), timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert _not_world_writable([tmp_path / "d"] + sorted((tmp_path / "d").rglob("*"))) == {}


# ---------------------------------------------------------------- ssh fan-out quoting

NASTY_CONFIG = "cfg dir/a; touch INJECTED.yml"


def test_ssh_fanout_passes_arguments_without_shell_injection(work):
    """The dry run's ssh command, run through a real shell on both ends as ssh/sshd do, runs nothing extra.

    The remote python is a recorder script, so the "remote" side writes down the
    argv it received instead of training. (The live path over real sshd is
    tests/integration/test_cluster_fanout.py::test_arguments_reach_the_host_unchanged.)
    """
    config = work / NASTY_CONFIG
    config.parent.mkdir()
    config.write_text("_BASE_: ['roadsign_cpu_smoke.yml']\n")
    recorder = work / "recorder.py"
    recorder.write_text(textwrap.dedent(f"""\
        #!{sys.executable}
        import json, os, sys
        with open("argv-%d.json" % os.getpid(), "w") as f:
            json.dump({{"argv": sys.argv[1:], "note": os.environ.get("NOTE")}}, f)
        """))
    recorder.chmod(0o755)
    override = "log_iter=$(touch INJECTED_O)"
    note = "a b;c`touch INJECTED_E`"
    res = run_cli(["train", "-c", NASTY_CONFIG, "-o", override, "--env", f"NOTE={note}", "--hosts",
                   "10.9.0.1,10.9.0.2", "--remote-python", str(recorder), "--dry-run"], cwd=work)
    assert res.returncode == 0, res.explain()
    ssh_lines = [line for line in res.stdout.splitlines() if line.startswith("ssh ")]
    assert len(ssh_lines) == 2, res.explain()
    for line in ssh_lines:
        argv = shlex.split(line)  # what the local shell passes to ssh
        host_at = argv.index("--") + 1
        remote = argv[host_at + 1:]
        assert len(remote) == 1, f"ssh would join {len(remote)} words: {remote}"
        # sshd runs the command string with the user's shell; stdin closed ends the guard
        proc = subprocess.run(["sh", "-c", remote[0]], cwd=work, capture_output=True, text=True, timeout=60,
                              stdin=subprocess.DEVNULL)
        assert proc.returncode == 0, proc.stderr
    records = [json.loads(p.read_text()) for p in sorted(work.glob("argv-*.json"))]
    assert len(records) == 2 and all(r["note"] == note for r in records), records
    for record in records:  # the guard's argv, then the node's trainctl command after "--"
        node = record["argv"][record["argv"].index("--") + 1:]
        assert node[node.index("--config") + 1] == NASTY_CONFIG
        assert node[node.index("--override") + 1] == override
    assert list(work.rglob("INJECTED*")) == []  # nothing ran: no INJECTED.yml, INJECTED_O, INJECTED_E
