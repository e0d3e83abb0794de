"""ssh fan-out: command planning and quoting, the remote guard, the executor (no network).

The executor tests use a stand-in for ssh that runs the remote command string with
`sh -c` on this machine, exactly as sshd hands it to the login shell.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from trainctl.errors import RuntimeFailure, UserError
from trainctl.cluster.guard import descendants
from trainctl.cluster.hostfile import parse_hostfile_text
from trainctl.cluster.fanout import FanOut
from trainctl.cluster.ssh import (
    SshSettings,
    device_args_for,
    parse_ssh_option,
    plan_fanout,
    remote_command,
)

PY = sys.executable
NASTY = ["my cfg; touch PWNED/x.yml", "$(touch PWNED2)", "`id`", "it's", 'say "hi"', "a\\b", "*", "-o", "~"]


def _hosts(text):
    return parse_hostfile_text(text, "hosts.txt")


def test_ssh_argv_options():
    (h,) = _hosts("bob@node1:2222\n")
    argv = SshSettings(options=("IdentityFile=/k",), connect_timeout=7).argv(h)
    assert argv[:1] == ["ssh"]
    assert "BatchMode=yes" in argv and "ConnectTimeout=7" in argv and "IdentityFile=/k" in argv
    assert argv[argv.index("-p") + 1] == "2222" and argv[argv.index("-l") + 1] == "bob"
    assert argv[-2:] == ["--", "node1"]
    (plain,) = _hosts("node2\n")
    assert "-p" not in SshSettings().argv(plain)
    assert SshSettings(port=2200).argv(plain)[-4:-2] == ["-p", "2200"]


def test_parse_ssh_option():
    assert parse_ssh_option("IdentityFile=/x y") == "IdentityFile=/x y"
    with pytest.raises(UserError):
        parse_ssh_option("-i /key")


def test_plan_ranks_master_and_per_host_flags():
    hosts = _hosts("10.0.0.1 slots=2 ifname=ib0\nnode-b gpus=1,3\n10.0.0.3\n")
    plan = plan_fanout(
        hosts,
        train_argv=[PY, "-m", "trainctl", "train", "-c", "x.yml", "--ifname", "eth0"],
        device_argv=["--gpus", "0"],
        master_port=9000,
        workdir="/w",
        python=PY,
        env={"NCCL_DEBUG": "INFO"},
        resolve=lambda name: {"node-b": "10.0.0.2"}[name],
    )
    assert plan.master == "10.0.0.1:9000"
    a, b, c = (list(n.argv) for n in plan.nodes)
    assert a[-12:] == ["--gpus", "0,1", "--nnodes", "3", "--node-rank", "0", "--master", "10.0.0.1:9000",
                       "--host", "10.0.0.1", "--ifname", "ib0"]
    assert b[-10:] == ["--gpus", "1,3", "--nnodes", "3", "--node-rank", "1", "--master", "10.0.0.1:9000",
                       "--host", "10.0.0.2"]
    assert c[-10:] == ["--gpus", "0", "--nnodes", "3", "--node-rank", "2", "--master", "10.0.0.1:9000",
                       "--host", "10.0.0.3"]
    assert [n.label for n in plan.nodes] == ["10.0.0.1 r0", "node-b r1", "10.0.0.3 r2"]
    text = plan.describe()
    assert "master 10.0.0.1:9000" in text and text.count("ssh -o BatchMode=yes") == 3


def test_plan_explicit_master_and_unresolvable_host():
    hosts = _hosts("a addr=192.168.0.5\nb addr=192.168.0.6\n")
    plan = plan_fanout(hosts, train_argv=["t"], master="10.9.9.9:1234", workdir="/w", python=PY)
    assert plan.master == "10.9.9.9:1234" and plan.nodes[1].addr == "192.168.0.6"

    def fail(name):
        raise OSError("Name or service not known")

    with pytest.raises(UserError, match=r"hosts.txt:1: cannot resolve nohost") as exc:
        plan_fanout(_hosts("nohost\n"), train_argv=["t"], workdir="/w", python=PY, resolve=fail)
    assert "addr=" in exc.value.hint


def test_device_args_for():
    a, b, c = _hosts("a slots=3\nb gpus=2\nc\n")
    assert device_args_for(a, cpu=False) == ["--gpus", "0,1,2"]
    assert device_args_for(a, cpu=True) == ["--nproc", "3"]
    assert device_args_for(b, cpu=False) == ["--gpus", "2"]
    assert device_args_for(c, cpu=False) is None
    with pytest.raises(UserError):
        device_args_for(b, cpu=True)


def test_remote_command_quotes_once_and_runs_nothing(tmp_path):
    """The command string, run by a real shell as sshd does, gives the exact argv."""
    workdir = tmp_path / "work dir; touch PWNED0"
    workdir.mkdir()
    (workdir / "PWNED").mkdir()
    argv = [PY, "-c", "import json, os, sys; print(json.dumps([os.getcwd(), os.environ['MY_VAR'], sys.argv[1:]]))"]
    argv += NASTY
    env = {"MY_VAR": "x y;$(touch PWNED3)"}
    cmd = remote_command(str(workdir), env, argv, PY, grace=2)
    # stdin stays open as an ssh channel does (the guard stops the command when it closes)
    proc = subprocess.Popen(["sh", "-c", cmd], cwd=tmp_path, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    stdout = proc.stdout.read()
    assert proc.wait(timeout=60) == 0, proc.stderr.read()
    proc.stdin.close()
    cwd, my_var, args = json.loads(stdout)
    assert cwd == str(workdir) and my_var == env["MY_VAR"] and args == NASTY
    assert sorted(os.listdir(workdir)) == ["PWNED"] and not os.listdir(workdir / "PWNED")
    assert not (tmp_path / "PWNED0").exists()
    with pytest.raises(UserError):
        remote_command("/w", {"BAD-KEY": "1"}, ["x"], PY, 1)


def _start_guard(tmp_path, script, grace="2"):
    return subprocess.Popen(
        [PY, "-m", "trainctl.cluster.guard", "--grace", grace, "--", "sh", "-c", script],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=tmp_path,
    )


def _wait_for(predicate, timeout=20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False


def _alive(pids):
    alive = []
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] != "Z":
                    alive.append(pid)
        except FileNotFoundError:
            pass
    return alive


def test_guard_kills_whole_tree_when_stdin_closes(tmp_path):
    # a grandchild in its own session (as paddle launch starts workers) and one ignoring SIGTERM
    script = "sleep 300 & setsid sleep 301 & sh -c 'trap \"\" TERM; sleep 302' & wait"
    guard = _start_guard(tmp_path, script, grace="1")
    assert _wait_for(lambda: len(descendants(guard.pid)) >= 5)
    tree = descendants(guard.pid)
    guard.stdin.close()  # what a closed ssh session looks like from the remote side
    assert guard.wait(timeout=30) != 0
    assert _wait_for(lambda: not _alive(tree), timeout=10), f"left behind: {_alive(tree)}"


def test_guard_passes_exit_code_and_stops_leftovers(tmp_path):
    guard = _start_guard(tmp_path, "setsid sleep 303 & echo started; exit 3")
    # stdin stays open (an ssh session that is still there): the command ends by itself
    out = guard.stdout.read()  # EOF once the leftover sleep, which holds stdout too, is gone
    assert guard.wait(timeout=30) == 3 and out.strip() == b"started"
    guard.stdin.close()
    assert not subprocess.run(["pgrep", "-f", "sleep 303"], capture_output=True).stdout


def test_guard_on_sigterm(tmp_path):
    guard = _start_guard(tmp_path, "sleep 304")
    assert _wait_for(lambda: len(descendants(guard.pid)) >= 2)
    tree = descendants(guard.pid)
    guard.send_signal(signal.SIGTERM)
    assert guard.wait(timeout=30) == 128 + signal.SIGTERM
    assert _wait_for(lambda: not _alive(tree), timeout=10)


@pytest.fixture
def fake_ssh(tmp_path):
    """An `ssh` that runs the remote command here, through a shell, like sshd would."""
    path = tmp_path / "fake_ssh"
    path.write_text(textwrap.dedent(f"""\
        #!{PY}
        import os, sys
        args = sys.argv[1:]
        host = args[args.index("--") + 1]
        command = args[args.index("--") + 2]
        if host == "unreachable":
            print("ssh: connect to host unreachable port 22: Connection refused", file=sys.stderr)
            sys.exit(255)
        os.environ["FAKE_HOST"] = host
        os.execv("/bin/sh", ["sh", "-c", command])
        """))
    path.chmod(0o755)
    return str(path)


def _script_plan(fake_ssh, tmp_path, hosts_text, script):
    hosts = _hosts(hosts_text)
    return plan_fanout(
        hosts, train_argv=["sh", "-c", script, "sh"], workdir=str(tmp_path), python=PY,
        settings=SshSettings(program=fake_ssh), grace=1, resolve=lambda n: "10.0.0.9",
    )


def test_fanout_prefixes_every_line(fake_ssh, tmp_path):
    plan = _script_plan(fake_ssh, tmp_path, "h1\nh2\n", 'echo "out $FAKE_HOST"; echo "err $FAKE_HOST" >&2')
    lines = []
    FanOut(plan, emit=lambda line, err: lines.append((line, err))).run()
    assert sorted(lines) == [("[h1 r0] err h1", True), ("[h1 r0] out h1", False),
                             ("[h2 r1] err h2", True), ("[h2 r1] out h2", False)]


def test_fanout_failure_stops_the_other_host(fake_ssh, tmp_path):
    marker = tmp_path / "pids"
    marker.mkdir()
    script = (
        f'if [ "$FAKE_HOST" = bad ]; then sleep 1; echo boom >&2; exit 7; fi; '
        f'setsid sleep 305 & echo $! > {marker}/$FAKE_HOST; sleep 306'
    )
    plan = _script_plan(fake_ssh, tmp_path, "good\nbad\n", script)
    lines = []
    start = time.monotonic()
    with pytest.raises(RuntimeFailure, match=r"host bad r1 exited with code 7; stopped good r0"):
        FanOut(plan, emit=lambda line, err: lines.append(line)).run()
    assert time.monotonic() - start < 30
    assert "[bad r1] boom" in lines
    assert (marker / "good").exists()
    assert not _alive([int((marker / "good").read_text())])
    assert not subprocess.run(["pgrep", "-f", "sleep 30[56]"], capture_output=True).stdout


def test_fanout_unreachable_and_user_error(fake_ssh, tmp_path):
    plan = _script_plan(fake_ssh, tmp_path, "unreachable\nok\n", "sleep 30")
    with pytest.raises(RuntimeFailure, match=r"ssh to unreachable failed \(exit 255\)"):
        FanOut(plan, emit=lambda *a: None).run()
    plan = _script_plan(fake_ssh, tmp_path, "a\nb\n", "exit 2")
    with pytest.raises(UserError):
        FanOut(plan, emit=lambda *a: None).run()


def test_fanout_restarts_every_host_with_resume_auto(fake_ssh, tmp_path):
    """--max-restarts 1: host `bad` fails, both hosts are stopped and started again with --resume auto."""
    from trainctl.cluster.fanout import run_fanout

    log = tmp_path / "starts"
    script = (f'echo "$FAKE_HOST $*" >> {log}; case "$*" in *"--resume auto"*) exit 0;; esac; '
              f'if [ "$FAKE_HOST" = bad ]; then exit 7; fi; sleep 30')
    plan = _script_plan(fake_ssh, tmp_path, "good\nbad\n", script)
    waits = []
    run_fanout(plan, max_restarts=1, sleep=waits.append)
    starts = log.read_text().splitlines()
    assert len(starts) == 4 and waits == [0.0]  # the first restart does not wait (core/restart.py)
    assert sorted(line.split()[0] for line in starts[2:]) == ["bad", "good"]
    assert all(line.endswith("--resume auto") for line in starts[2:])
    assert not any("--resume" in line for line in starts[:2])


def test_fanout_restart_budget_runs_out(fake_ssh, tmp_path):
    from trainctl.cluster.fanout import run_fanout

    plan = _script_plan(fake_ssh, tmp_path, "a\nb\n", 'if [ "$FAKE_HOST" = b ]; then exit 5; fi; sleep 30')
    with pytest.raises(RuntimeFailure, match=r"after 2 restarts \(--max-restarts 2\), the last attempt failed: "
                                             r"host b r1 exited with code 5"):
        run_fanout(plan, max_restarts=2, sleep=lambda s: None)


def _verdict_line(rank, kind, why):
    from trainctl.launch import rootcause

    verdict = rootcause.RankVerdict(rank=rank, local_rank=0, kind=kind, why=why)
    return rootcause.report_line(verdict, rank, f"worker rank {rank} {why}")


def test_fanout_names_the_host_whose_rank_failed_not_the_first_to_exit(fake_ssh, tmp_path):
    """The victim's host exits first, with a victim's verdict; the host whose rank was killed reports
    a second later: the controller waits for it and names it (and hides the verdict lines)."""
    victim = _verdict_line(0, "comm", "aborted in a collective (Connection reset by peer)")
    culprit = _verdict_line(1, "killed", "killed by SIGKILL from outside the job")
    script = (f"if [ \"$FAKE_HOST\" = first ]; then sleep 1; echo '{victim}' >&2; exit 1; fi; "
              f"sleep 2; echo '{culprit}' >&2; exit 1")
    plan = _script_plan(fake_ssh, tmp_path, "first\nsecond\n", script)
    lines = []
    with pytest.raises(RuntimeFailure) as info:
        FanOut(plan, emit=lambda line, err: lines.append(line)).run()
    message = info.value.message
    assert message.startswith("host second r1 exited with code 1: worker rank 1 killed by SIGKILL"), message
    assert "host first r0: aborted in a collective" in message
    assert not any("root-cause" in line for line in lines)


def test_fanout_with_only_a_victim_verdict_names_it_after_waiting(fake_ssh, tmp_path, monkeypatch):
    from trainctl.cluster import fanout

    monkeypatch.setattr(fanout, "PEER_REPORT_SECONDS", 2.0)
    victim = _verdict_line(0, "comm", "aborted in a collective (Connection reset by peer)")
    script = f"if [ \"$FAKE_HOST\" = first ]; then echo '{victim}' >&2; exit 1; fi; sleep 60"
    plan = _script_plan(fake_ssh, tmp_path, "first\nsecond\n", script)
    start = time.monotonic()
    with pytest.raises(RuntimeFailure, match=r"host first r0 exited with code 1: worker rank 0 aborted"):
        FanOut(plan, emit=lambda *a: None).run()
    assert 2.0 <= time.monotonic() - start < 30
