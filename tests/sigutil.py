"""Signal dispositions for the processes tests start.

A shell starts a background job's children with SIGINT (and SIGQUIT) ignored (POSIX), and
Python keeps an inherited "ignore" for SIGINT (it installs KeyboardInterrupt only over the
default). So `bash -c 'bash .ci/run & wait'` would give every trainctl a test starts an ignored
SIGINT, and a test that sends it SIGINT would wait in vain. A test that sends SIGINT starts
its child with `preexec_fn=default_sigint`; trainctl itself is right to keep an inherited
ignore (a user who ran it with `nohup` or `&` asked for that).
"""

import signal


def default_sigint() -> None:
    """preexec_fn: the child starts with SIGINT at its default action, however the tests were started."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def ignore_sigint() -> None:
    """preexec_fn: the child starts with SIGINT ignored, as a background job of a shell would."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
