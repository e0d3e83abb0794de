"""Moved to trainctl.core.envutil (every layer uses it).

Kept only because launch/executor.py imports `trainctl.launch.envutil` and is
being rewritten in parallel; drop this shim once executor imports the core module.
"""

from trainctl.core.envutil import (  # noqa: F401
    LAUNCH_OVERRIDES, MASK, PADDLEJOB_VARIABLES, SECRET_WORDS, STALE_VARIABLES, WORKER_SET, clean_environ, is_secret,
    mask_secrets, stale_variables,
)
