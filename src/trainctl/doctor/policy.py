"""Which paddle / paddledet / Python combinations trainctl supports: the compatibility policy behind `trainctl doctor`.

PaddleDetection's own minimum paddle per release line and the pairs measured on this
project's machines; `compatibility()` gives the verdict for a combination. Pure.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass


TROUBLESHOOTING = "docs/troubleshooting.md"

# -- compatibility table ----------------------------------------------------
# PaddleDetection's own requirements: minimum paddle per PaddleDetection release line.
PPDET_MIN_PADDLE: dict[str, str] = {
    "develop": "2.3.2",
    "2.6": "2.3.2",
    "2.5": "2.2.2",
    "2.4": "2.2.2",
    "2.3": "2.2.0rc0",
    "2.2": "2.1.2",
    "2.1": "2.1.0",
    "2.0": "2.0.1",
}


@dataclass(frozen=True)
class MeasuredPair:
    """A (paddle, paddledet) combination run on trainctl's machines; versions match by prefix."""

    paddle: str
    paddledet: str
    verdict: str  # ok | shims | broken
    note: str
    python: str | None = None  # "3.11": the measurement only applies to this Python


MEASURED_PAIRS: tuple[MeasuredPair, ...] = (
    MeasuredPair(
        paddle="2.6",
        paddledet="2.6",
        python="3.11",
        verdict="broken",
        note="`import paddle, ppdet` segfaults (SIGSEGV in inflateReset2) with paddle 2.6.2 + paddledet 2.6.0 "
        "on Python 3.11; use paddle 3.x",
    ),
    MeasuredPair(
        paddle="3",
        paddledet="2.6",
        verdict="shims",
        note="paddle 3.3.1 + paddledet 2.6.0 train, eval, export (new IR) and infer with trainctl's shims "
        "(runner/compat/; per family: docs/models.md)",
    ),
)

VERDICT_STATUS = {"ok": "ok", "shims": "ok", "untested": "warn", "unknown": "warn", "broken": "fail", "unsupported": "fail"}

INSTALL_HINT_CPU = "pip install 'trainctl[cpu]'  (or: pip install paddlepaddle paddledet==2.6.0 'numpy<1.24' 'scikit-learn<1.6')"
INSTALL_HINT_GPU = (
    "pip install paddlepaddle-gpu from Paddle's index for your CUDA version, "
    "e.g. python -m pip install paddlepaddle-gpu -i https://www.paddlepaddle.org.cn/packages/stable/cu118/ (see docs/install.md)"
)


def version_tuple(text: str) -> tuple[int, ...]:
    """'2.2.0rc0' -> (2, 2, 0); non-numeric tails are dropped."""
    parts = []
    for piece in text.split("."):
        m = re.match(r"\d+", piece)
        if not m:
            break
        parts.append(int(m.group()))
        if m.end() != len(piece):
            break
    return tuple(parts)


def prefix_match(version: str, prefix: str) -> bool:
    v, p = version_tuple(version), version_tuple(prefix)
    return bool(v) and v[: len(p)] == p


def compatibility(paddle_version: str | None, ppdet_version: str | None, python_version: str | None = None) -> dict:
    """Verdict for a (paddle, paddledet) pair: ok, shims, broken, unsupported, untested or unknown."""
    result = {"paddle": paddle_version, "paddledet": ppdet_version, "verdict": "unknown", "reason": "", "required_paddle": None}
    if not paddle_version or not ppdet_version:
        missing = "paddle" if not paddle_version else "paddledet"
        result.update(verdict="unknown", reason=f"{missing} is not installed")
        return result
    python_version = python_version or f"{sys.version_info.major}.{sys.version_info.minor}"
    if version_tuple(paddle_version) == (0, 0, 0):
        result.update(verdict="untested", reason="paddle develop build (version 0.0.0): not in the compatibility table")
        return result
    for pair in MEASURED_PAIRS:
        if pair.python and not prefix_match(python_version, pair.python):
            continue
        if prefix_match(paddle_version, pair.paddle) and prefix_match(ppdet_version, pair.paddledet):
            result.update(verdict=pair.verdict, reason=f"measured: {pair.note}")
            line = ".".join(str(x) for x in version_tuple(ppdet_version)[:2])
            result["required_paddle"] = PPDET_MIN_PADDLE.get(line)
            return result
    ppdet_t = version_tuple(ppdet_version)
    line = "develop" if ppdet_t == (0, 0, 0) else ".".join(str(x) for x in ppdet_t[:2])
    required = PPDET_MIN_PADDLE.get(line)
    result["required_paddle"] = required
    if required is None:
        result.update(verdict="untested", reason=f"paddledet {ppdet_version} is not in the compatibility table")
    elif version_tuple(paddle_version) < version_tuple(required):
        result.update(verdict="unsupported", reason=f"PaddleDetection {line} needs paddle >= {required}")
    elif version_tuple(paddle_version)[:1] >= (3,):
        result.update(
            verdict="untested",
            reason=f"PaddleDetection {line} predates paddle 3; only paddledet 2.6 with paddle 3 was measured",
        )
    else:
        result.update(verdict="ok", reason=f"PaddleDetection {line} needs paddle >= {required}")
    return result


# -- package facts (no imports of the packages themselves) ------------------
