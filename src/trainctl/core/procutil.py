"""Process helpers shared by the launcher, the smoke stages, the worker and `trainctl board`."""

from __future__ import annotations

import signal


def parent_death_signal(sig: int = signal.SIGTERM) -> bool:
    """Ask the kernel to send `sig` to this process when its parent dies, even by SIGKILL
    (Linux prctl PR_SET_PDEATHSIG). False where that is not available.

    Used as a Popen preexec_fn (in the child before exec) and by processes that must not
    outlive the one that started them.
    """
    import ctypes

    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, int(sig), 0, 0, 0)  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return False
    return True
