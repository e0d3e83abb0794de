"""Multi-host engines: ssh fan-out (hostfile, preflight, remote guard), Slurm, Kubernetes.

`trainctl.launch` is the single-node core; every way of spanning hosts sits here, beside
the others. This package's __init__ stays empty so that `trainctl.cluster.options` (the
flags' defaults, needed on every `trainctl train`) loads nothing else: a single-node run
never imports ssh, sockets or an engine.
"""
