"""Every version shim for paddle / ppdet lives in this package, each naming the versions it is for.

One module per job; the names below are the ones importers use (`compat.export_env`, ...):

- `export_ir`: the IR an export runs in (`old_ir_reason`, `OLD_IR_ENV`), paddle's glog during it
  (`export_env`), the new-IR static ops (`pir_static_ops`), `to_static_full_graph`, and the
  families refused before an export (`check_export_supported`);
- `dtypes`: paddledet 2.6.0's training code under paddle 3 (`ppdet26_training_shims`: dtype
  promotion, 0-D counts);
- `amp`: what ppdet does not pass to paddle.amp (`amp_settings`);
- `trainer`: the only accesses to ppdet Trainer internals (callbacks, metrics);
- `data`: bad data named instead of a hang (`guard_data_loading`, `DataError`, `loader_error`)
  and the inference image list (`set_test_images`);
- `config_keys`: config keys a loaded ppdet does not accept (`drop_unsupported_nms_args`);
- `noise`: import-time prints and warnings a user cannot act on (`import_quietly`,
  `quiet_ppdet_warnings`).

Nothing here imports paddle at import time: `export_env()` must run before the
first `import paddle` of the process.
"""

from __future__ import annotations

from trainctl.runner.compat.amp import amp_settings
from trainctl.runner.compat.config_keys import drop_unsupported_nms_args
from trainctl.runner.compat.data import DataError, guard_data_loading, loader_error, set_test_images
from trainctl.runner.compat.dtypes import ppdet26_training_shims
from trainctl.runner.compat.export_ir import (
    EXPORT_QUIET_ENV,
    EXPORT_REFUSALS,
    OLD_IR_ENV,
    check_export_supported,
    export_env,
    old_ir_reason,
    paddle_imported,
    pir_active,
    pir_static_ops,
    to_static_full_graph,
)
from trainctl.runner.compat.noise import PPDET_IMPORT_NOISE, LineFilter, import_quietly, quiet_ppdet_warnings
from trainctl.runner.compat.trainer import add_callback, replace_callbacks, trainer_callbacks, trainer_metrics

__all__ = [
    "DataError", "EXPORT_QUIET_ENV", "EXPORT_REFUSALS", "LineFilter", "OLD_IR_ENV", "PPDET_IMPORT_NOISE",
    "add_callback", "amp_settings", "check_export_supported", "drop_unsupported_nms_args", "export_env",
    "guard_data_loading", "import_quietly", "loader_error", "old_ir_reason", "paddle_imported", "pir_active",
    "pir_static_ops", "ppdet26_training_shims", "quiet_ppdet_warnings", "replace_callbacks", "set_test_images",
    "to_static_full_graph", "trainer_callbacks", "trainer_metrics",
]
