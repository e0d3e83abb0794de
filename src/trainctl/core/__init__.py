"""The neutral core: what every layer may import (no paddle, no click, nothing above it).

- `ppdet_source`: which ppdet every process imports, described and checked without importing it;
- `hostinfo`: host facts from /sys, /proc and nvidia-smi;
- `envutil`: stale distributed variables and secret masking;
- `heartbeat`: the per-rank heartbeat file protocol (the worker writes, the launcher reads);
- `job`: the job file a worker reads;
- `checkpoints`: the checkpoint index (the worker writes, the launcher and `trainctl runs` read).

Modules here import only each other and trainctl.errors / trainctl.fsutil
(tests/unit/test_import_direction.py enforces it).
"""
