"""From flags and a resolved config to running processes (no paddle here).

options.py      the placement and network option objects (PlacementOptions, NetworkOptions)
devices.py      which devices this run uses, checked against the host
lr.py           learning-rate scaling and the LR report
netpresets.py   named NCCL/gloo environments (tcp, rdma, gpudirect, ...)
train_extras.py the rest of PaddleDetection's tools/train.py flags (AMP levels, fleet, to_static, ...)
plan.py         the Plan: per node argv, env, cwd, log dir (what --dry-run prints)
flow.py         the train/eval flow the CLI commands call (resolve, fixes, checks, run dir)
attempts.py     one node's run with --max-restarts: attempts in run.json, logs archived
executor.py     runs this node's part of a Plan and watches the workers (procwatch.py,
                hangwatch.py, rootcause.py, logscrub.py); progress.py reads the heartbeats
"""
