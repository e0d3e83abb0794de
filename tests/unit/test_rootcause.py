"""Root cause by evidence (launch/rootcause.py), on real log tails of paddle 3.3.1 workers.

The fixtures in tests/fixtures/rootcause/ are the last lines of real worker logs from
`trainctl train --nproc 2` runs on CPU (gloo) where rank 1 was killed: rank 0's log after
gloo aborted it (SIGABRT raised by itself after "Connection reset by peer", or gloo's
TimeoutException), and after paddle's launcher stopped it (SIGTERM from the launcher's PID).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from trainctl.launch import rootcause
from trainctl.launch.rootcause import RankEvidence

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "rootcause"
LAUNCHER = 4990  # the launcher's PID in sigterm_from_launcher.log


def _log(name: str) -> list[str]:
    return (FIXTURES / name).read_text().splitlines()


def _pid_in(lines: list[str]) -> int:
    info = rootcause.signal_info(lines)
    return info[1] if info else 1234


def _ev(rank, code=None, log=(), state=None, after=None):
    return RankEvidence(rank=rank, local_rank=rank, exit_code=code, log_tail=list(log), state=state, exited_after=after)


QUIET = ["[trainctl worker] task train, rank 1 of 2, device cpu, paddle 3.3.1",
         "[12/02 15:03:23] ppdet.engine INFO: Epoch: [0] [0/2] learning_rate: 0.000083 loss: 869.571045"]


def test_the_logs_evidence_is_read():
    reset = _log("gloo_reset_sigabrt.log")
    assert rootcause.signal_info(reset)[0] == "SIGABRT"
    name, receiver, sender = rootcause.signal_info(reset)
    assert receiver == sender  # raised by the process itself
    assert "Connection reset by peer" in rootcause.comm_error(reset)
    assert rootcause.peer_address(rootcause.comm_error(reset)) == "127.0.0.1:42393"
    timeout = _log("gloo_timeout_sigabrt.log")
    assert "TimeoutException" in rootcause.comm_error(timeout) or "TIMEOUT" in rootcause.comm_error(timeout)
    term = _log("sigterm_from_launcher.log")
    assert rootcause.signal_info(term) == ("SIGTERM", 5275, LAUNCHER)
    assert rootcause.comm_error(QUIET) is None and rootcause.own_error(QUIET) is None
    # "Successfully connected to 127.0.0.1:52353" is not a communication error
    assert rootcause.comm_error(["I1202 tcp_utils.cc:132] Successfully connected to 127.0.0.1:52353"]) is None


@pytest.mark.parametrize("victim_log,victim_code", [
    ("gloo_reset_sigabrt.log", -6), ("gloo_reset_sigabrt.log", None),
    ("gloo_timeout_sigabrt.log", -15), ("gloo_timeout_sigabrt.log", None),
    ("sigterm_from_launcher.log", -15), ("sigterm_from_launcher.log", None),
])
@pytest.mark.parametrize("killed_code", [-9, None])  # the killed rank's status: read from its zombie, or missed
@pytest.mark.parametrize("victim_first", [True, False])
def test_sigkilled_rank_is_the_cause_whatever_arrived_first(victim_log, victim_code, killed_code, victim_first):
    """The failure of issue 24: rank 1 SIGKILLed, rank 0 aborted by gloo or stopped by the launcher,
    in either order, with or without the exit statuses: rank 1 is the cause, never ambiguous."""
    killed = _ev(1, killed_code, QUIET, after=0.3 if victim_first else 0.0)
    victim = _ev(0, victim_code, _log(victim_log), after=0.0 if victim_first else 0.2)
    root = rootcause.judge([victim, killed], launcher_pids={LAUNCHER})
    assert root.culprits == [1] and not root.ambiguous, root.summary()
    assert root.by_rank(0).kind in (rootcause.COMM, rootcause.STOPPED)
    assert root.by_rank(1).kind == (rootcause.KILLED if killed_code == -9 else rootcause.UNKNOWN)


def test_rank_zero_killed_is_not_confused_with_rank_one():
    root = rootcause.judge([_ev(0, -9, QUIET, after=0.1), _ev(1, -6, _log("gloo_reset_sigabrt.log"), after=0.0)],
                           launcher_pids={LAUNCHER})
    assert root.culprits == [0] and root.cause.why.startswith("killed by SIGKILL from outside the job")
    assert "rank 0: killed by SIGKILL" in root.summary() and "rank 1: aborted in a collective" in root.summary()


def test_an_exception_of_its_own_outranks_the_collective_victim():
    own = QUIET + ["Traceback (most recent call last):", '  File "x.py", line 3, in <module>',
                   "RuntimeError: injected fault (test)"]
    root = rootcause.judge([_ev(0, -6, _log("gloo_reset_sigabrt.log"), after=0.0), _ev(1, 1, own, after=0.4)],
                           launcher_pids=set())
    assert root.culprits == [1] and root.cause.kind == rootcause.ERROR
    assert root.cause.line == "RuntimeError: injected fault (test)"


def test_a_silent_exit_code_is_a_cause_and_a_collective_exception_is_not():
    comm_exc = QUIET + ["Traceback (most recent call last):",
                        "OSError: [/paddle/third_party/gloo/gloo/transport/tcp/pair.cc:576] Read error "
                        "[10.231.0.2]:41234: Connection reset by peer"]
    root = rootcause.judge([_ev(0, 1, comm_exc, after=0.0), _ev(1, 3, QUIET, after=0.5)], launcher_pids=set())
    assert root.culprits == [1] and root.cause.kind == rootcause.EXIT
    assert root.by_rank(0).kind == rootcause.COMM and root.by_rank(0).peer == "10.231.0.2:41234"


def test_a_crash_signal_sent_from_outside_is_named():
    segv = QUIET + ["FatalError: `Segmentation fault` is detected by the operating system.",
                    "  [SignalInfo: *** SIGSEGV (@0x3e8) received by PID 700 (TID 0x7f) from PID 1000 ***]"]
    root = rootcause.judge([_ev(0, -15, _log("sigterm_from_launcher.log")), _ev(1, -11, segv)],
                           launcher_pids={LAUNCHER})
    assert root.culprits == [1] and root.cause.kind == rootcause.CRASH and root.cause.signal == "SIGSEGV"
    assert "sent from outside" in root.cause.why


def test_a_stopped_process_is_the_cause_of_the_gloo_timeout():
    # its exit status: none seen, or the SIGKILL of trainctl's clean-up
    for code in (None, -9):
        root = rootcause.judge([_ev(0, -6, _log("gloo_timeout_sigabrt.log"), after=0.0), _ev(1, code, QUIET, state="T")],
                               launcher_pids=set(), stopped_by_us={1})
        assert root.culprits == [1] and root.cause.kind == rootcause.STALLED


def test_two_ranks_with_equally_strong_evidence_are_ambiguous_and_both_named():
    root = rootcause.judge([_ev(0, -9, QUIET, after=0.0), _ev(1, -9, QUIET, after=0.01)], launcher_pids=set())
    assert root.ambiguous and root.culprits == [0, 1]
    assert root.summary().startswith("ambiguous: the evidence does not single out one rank (rank 0: killed by SIGKILL")


def test_only_victims_on_this_node_point_elsewhere():
    root = rootcause.judge([_ev(0, -6, _log("gloo_reset_sigabrt.log"), after=0.0),
                            _ev(1, -15, _log("sigterm_from_launcher.log"), after=0.1)], launcher_pids={LAUNCHER})
    assert root.culprits == [0] and root.only_victims and not root.ambiguous


def test_ranks_that_finished_are_not_failures():
    root = rootcause.judge([_ev(0, 0), _ev(1, 0)], launcher_pids=set())
    assert root.culprits == [] and root.cause is None


def test_sigkill_by_trainctl_cleanup_is_not_a_kill_from_outside():
    root = rootcause.judge([_ev(0, 2, QUIET + ["trainctl: error: bad annotation in x.xml"]), _ev(1, -9, QUIET)],
                           launcher_pids=set(), stopped_by_us={1})
    assert root.culprits == [0] and root.by_rank(1).kind == rootcause.STOPPED
    assert root.cause.why.startswith("bad annotation in x.xml")


def _result(root: rootcause.RootCause):
    from trainctl.launch.executor import ExecResult

    cause = root.cause
    return ExecResult(exit_code=1, status="failed", failed_rank=cause.rank, failed_local_rank=cause.local_rank,
                      failed_code=cause.exit_code, failed_log=f"run/logs/workerlog.{cause.local_rank}", root_cause=root)


@pytest.mark.parametrize("nnodes", [1, 2])
def test_describe_failure_says_what_the_evidence_says(nnodes):
    from types import SimpleNamespace

    from trainctl.launch import executor

    plan = SimpleNamespace(nnodes=nnodes, world_size=2 * nnodes, node_rank=0)
    stalled = rootcause.judge([_ev(0, -9, QUIET, state="T"), _ev(1, -6, _log("gloo_timeout_sigabrt.log"), after=0.0)],
                              launcher_pids=set(), stopped_by_us={0})
    result = _result(stalled)
    result.note = executor._note(stalled, plan)
    text = executor.describe_failure(result, plan)
    assert text.startswith("worker rank 0 (node 0, local rank 0) stalled the job; log: run/logs/workerlog.0 "
                           "(its process was stopped (state T) when the others failed; then rank 1 aborted"), text
    victims = rootcause.judge([_ev(0, -6, _log("gloo_reset_sigabrt.log"), after=0.0),
                               _ev(1, -15, _log("sigterm_from_launcher.log"), after=0.1)], launcher_pids={LAUNCHER})
    result = _result(victims)
    result.note = executor._note(victims, plan)
    text = executor.describe_failure(result, plan)
    assert text.startswith("worker rank 0 (node 0, local rank 0) lost a peer;"), text
    if nnodes > 1:
        assert "the rank that failed first is probably on another node (the peer at 127.0.0.1:42393)" in text
    else:
        assert "no rank of this job failed on its own" in text
    ambiguous = rootcause.judge([_ev(0, -9, QUIET, after=0.0), _ev(1, -9, QUIET, after=0.01)], launcher_pids=set())
    result = _result(ambiguous)
    result.note = executor._note(ambiguous, plan)
    assert executor.describe_failure(result, plan).startswith(
        "workers failed and ambiguous: the evidence does not single out one rank (rank 0: killed by SIGKILL")
