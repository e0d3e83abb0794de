"""Source and import noise: lines and warnings paddle and ppdet print on import that a trainctl user
cannot act on, filtered (nothing else is).
"""

from __future__ import annotations


# paddledet 2.6.0 prints this twice on import (ppdet/modeling/mot/motion/*kalman_filter.py)
# when numba is missing: it concerns PP-Tracking (multi-object tracking) only, and
# detection never uses those modules. Dropped from the output, nothing else is.
# A PaddleDetection checkout without ppdet/version.py (not `pip install`ed; release-2.7.1, develop)
# writes "Warning: import ppdet from source directory without installing, ..." to stderr on import:
# trainctl says which ppdet it uses (plan, run.json, worker log), and needs no install.
PPDET_IMPORT_NOISE = ("Unable to use numba in PP-Tracking", "import ppdet from source directory without installing")


class LineFilter:
    """A stand-in for a text stream that forwards every line except those containing
    one of `drop`. Partial lines wait for their newline (or a flush).

    Modules keep references to the sys.stdout they saw on import (ppdet's logger
    builds its StreamHandler(sys.stdout) then), so what stands in for stdout during
    an import must keep working afterwards: this forwards to the real stream forever.
    """

    def __init__(self, target, drop: tuple[str, ...]):
        self._target = target
        self._drop = drop
        self._pending = ""

    def write(self, text: str) -> int:
        self._pending += text
        *lines, self._pending = self._pending.split("\n")
        for line in lines:
            if not any(d in line for d in self._drop):
                self._target.write(line + "\n")
        return len(text)

    def flush(self) -> None:
        if self._pending:
            if not any(d in self._pending for d in self._drop):
                self._target.write(self._pending)
            self._pending = ""
        self._target.flush()

    def __getattr__(self, name):  # encoding, fileno, isatty, ...: the real stream's
        return getattr(self._target, name)


def import_quietly(module: str, drop: tuple[str, ...] = PPDET_IMPORT_NOISE) -> None:
    """Import `module` with sys.stdout filtered: lines containing any of `drop` are
    left out, every other line goes through as it is written."""
    import importlib
    import sys

    if module in sys.modules:
        return
    real, real_err = sys.stdout, sys.stderr
    sys.stdout = LineFilter(real, drop)
    sys.stderr = LineFilter(real_err, drop)
    try:
        importlib.import_module(module)
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        sys.stdout, sys.stderr = real, real_err


def quiet_ppdet_warnings() -> None:
    """Warnings on import that say nothing a trainctl user can act on (paddle 3.x's
    ccache notice, deprecations inside paddledet 2.6.0). ppdet's own "Unable to use
    numba" lines are prints: `import_quietly("ppdet")` drops those."""
    import warnings

    warnings.filterwarnings("ignore", message=".*numba.*")
    warnings.filterwarnings("ignore", message="No ccache found")  # paddle 3.x cpp_extension, on import
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    # PaddleDetection 2.7 / develop sources hold `assert (cond, "message")` (detr_loss.py, matchers.py):
    # Python warns when it compiles them, once per checkout; nothing a trainctl user can act on
    warnings.filterwarnings("ignore", category=SyntaxWarning)
