"""Code that runs inside worker processes (imports paddle and ppdet).

Imports only trainctl.core, config, weights and the base modules (errors, fsutil,
output), never the launcher (tests/unit/test_import_direction.py). Outside
runner/, only the CLI's `export`/`infer`/`eval` paths and the smoke report import
from here; the launcher names `trainctl.runner.worker` as the module it starts.
"""
