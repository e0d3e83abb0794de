"""From flags and a resolved config to running processes (no paddle here).

devices.py    which devices this run uses, checked against the host
lr.py         learning-rate scaling and the LR report
hostinfo.py   facts read from /sys, /proc and nvidia-smi
netpresets.py named NCCL/gloo environments (tcp, rdma, gpudirect, ...)
plan.py       the Plan: per node argv, env, cwd, log dir (what --dry-run prints)
executor.py   runs this node's part of a Plan and watches the workers
flow.py       the train/eval flow the CLI commands call
"""
