"""Run directories for `trainctl runs` and `runs compare` (pure, no paddle), one module per job:

- `listing`: find run directories and read what each run left behind (status checked against /proc);
- `table`: the text form of the listing;
- `compare`: `runs compare`, its table and `--plot` (matplotlib only then).

The public names of the three modules are re-exported here.
"""

from trainctl.runs.listing import (  # noqa: F401
    CONFIG_FILE, EVAL_FILE, FINISHED, METRIC_KEYS, RunInfo, SKIP_DIRS, VDL_DIR, best_metric, checkpoints,
    decide_status, find_run_dirs, last_activity, list_runs, metric_of, parse_time, pid_alive, planned_epochs,
    read_json, read_run, record_file, run_processes,
)
from trainctl.runs.table import (  # noqa: F401
    HEADERS, display_path, format_best, format_devices, format_duration, format_epochs, format_start, notes,
    table_rows,
)
from trainctl.runs.compare import (  # noqa: F401
    HISTORY_FILE, compare_runs, compare_table, eval_curve, final_loss, flatten_config, plot_compare, read_history,
)
