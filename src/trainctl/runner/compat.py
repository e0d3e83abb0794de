"""Every version shim for paddle / ppdet lives here, each naming the versions it is for.

Nothing here imports paddle at import time: `export_env()` must run before the
first `import paddle` of the process.
"""

from __future__ import annotations

import contextlib
import os

# paddle 3.0-3.3 (measured with 3.3.1) + paddledet 2.6.0: ppdet's export builds
# its NMS with the old static-graph `append_op`, which fails under paddle 3's new
# IR (PIR) with a TypeError in multiclass_nms. The flag selects the old IR. Paddle
# reads FLAGS_* environment variables when it is imported, so the flag must be in
# os.environ before `import paddle`; setting it later has no effect.
EXPORT_ENV = {"FLAGS_enable_pir_api": "0"}


def export_env() -> dict[str, str]:
    """Put the export flags into os.environ; returns them. Call before importing paddle."""
    os.environ.update(EXPORT_ENV)
    return dict(EXPORT_ENV)


def paddle_imported() -> bool:
    import sys

    return "paddle" in sys.modules


@contextlib.contextmanager
def to_static_full_graph():
    """paddle 3.x + paddledet 2.6.0: ppdet calls `paddle.jit.to_static(model, input_spec=...)`,
    and paddle 3 defaults to full_graph=False (SOT), where ppdet then fails with
    "Can't call main_program when full_graph=False". Inside this block
    to_static defaults to full_graph=True (paddle 2.x's behaviour)."""
    import paddle

    original = paddle.jit.to_static

    def to_static(function=None, **kwargs):
        kwargs.setdefault("full_graph", True)
        return original(function, **kwargs)

    paddle.jit.to_static = to_static
    try:
        yield
    finally:
        paddle.jit.to_static = original


def quiet_ppdet_warnings() -> None:
    """Warnings on import that say nothing a trainctl user can act on (paddle 3.x's
    ccache notice, deprecations inside paddledet 2.6.0). ppdet's own "Unable to use
    numba" lines are prints and stay."""
    import warnings

    warnings.filterwarnings("ignore", message=".*numba.*")
    warnings.filterwarnings("ignore", message="No ccache found")  # paddle 3.x cpp_extension, on import
    warnings.filterwarnings("ignore", category=DeprecationWarning)
