"""Fault injection for the root-cause tests (tests/reliability/rootcause_cases.py), loaded by
Python at start-up when this directory is on PYTHONPATH. In a paddle worker (PADDLE_TRAINER_ID
set) with TRAINCTL_TEST_FAULT set, SIGUSR2 makes the worker fail in its own way:
  raise  -> a Python exception in the main thread (RuntimeError: injected fault)
  exit3  -> os._exit(3): an exit code, no message
Nothing happens in any other process."""

import os
import signal

_MODE = os.environ.get("TRAINCTL_TEST_FAULT")

if _MODE and os.environ.get("PADDLE_TRAINER_ID") is not None:

    def _fault(signum, frame):
        if _MODE == "exit3":
            os._exit(3)
        raise RuntimeError(f"injected fault (test) in rank {os.environ.get('PADDLE_TRAINER_ID')}")

    signal.signal(signal.SIGUSR2, _fault)
