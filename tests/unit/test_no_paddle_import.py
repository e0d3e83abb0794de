"""`import trainctl.cli`, `trainctl --help` and `trainctl train --dry-run` never import paddle.

Each runs in a fresh interpreter with a sys.meta_path finder that reports and
refuses any import of paddle or ppdet, so even an import hidden behind a
try/except is caught (the finder writes to stderr before refusing).
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

BLOCKER = textwrap.dedent("""
    import sys
    class _NoPaddle:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in ("paddle", "ppdet"):
                sys.stderr.write("PADDLE-IMPORT-ATTEMPT " + name + "\\n")
                raise ImportError("paddle is blocked in this test: " + name)
            return None
    sys.meta_path.insert(0, _NoPaddle())
""")


def run_blocked(body: str, cwd) -> subprocess.CompletedProcess:
    code = BLOCKER + textwrap.dedent(body)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=cwd)


def assert_clean(proc: subprocess.CompletedProcess) -> None:
    assert "PADDLE-IMPORT-ATTEMPT" not in proc.stderr, proc.stderr
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_blocker_really_blocks(tmp_path):
    proc = run_blocked("import paddle\n", tmp_path)
    assert proc.returncode != 0 and "PADDLE-IMPORT-ATTEMPT paddle" in proc.stderr


def test_import_cli(tmp_path):
    proc = run_blocked("""
        import trainctl.cli, trainctl.cli.train, trainctl.cli.eval
        import trainctl.launch.plan, trainctl.launch.flow, trainctl.launch.executor, trainctl.runrecord
        assert not any(m.split('.')[0] in ('paddle', 'ppdet') for m in sys.modules)
    """, tmp_path)
    assert_clean(proc)


@pytest.mark.parametrize("argv", [
    ["--help"],
    ["train", "--help"],
    ["train", "-c", "roadsign.yml", "--dry-run"],
    ["train", "-c", "roadsign.yml", "--gpus", "0,1,2,3", "--nnodes", "2", "--node-rank", "0",
     "--master", "10.0.0.1:8090", "--net", "rdma", "--hca", "mlx5_0:1", "--dry-run=json"],
    ["eval", "-c", "roadsign.yml", "--gpus", "0,1", "--dry-run"],
    ["smoke", "-c", "roadsign_cpu_smoke.yml", "--nproc", "2", "--comm", "--dry-run"],
    ["smoke", "--comm-only", "--nproc", "2", "--dry-run=json"],
])
def test_commands(argv, tmp_path):
    proc = run_blocked(f"""
        from trainctl.cli import main
        main({argv!r})
    """, tmp_path)
    assert_clean(proc)
    assert proc.stdout.strip()
