"""The multi-host flags of `trainctl train` (ssh fan-out and Slurm); logic in trainctl.cluster.dispatch."""

from __future__ import annotations

import click

# the light module, not trainctl.cluster.ssh: these flags are built on every `trainctl train`
from trainctl.cluster.options import DEFAULT_CONNECT_TIMEOUT, DEFAULT_MASTER_PORT


def cluster_options(func):
    options = [
        click.option("--hostfile", metavar="FILE",
                     help="Start the job on every host of FILE over ssh (lines: host [slots=N] [gpus=0,1] "
                          "[ifname=IF] [addr=IP]; see docs/cluster.md)."),
        click.option("--hosts", metavar="H1,H2", help="Like --hostfile, inline: --hosts node1,user@node2:2222."),
        click.option("--remote-workdir", metavar="DIR",
                     help="Working directory on the hosts (default: this directory's path)."),
        click.option("--remote-python", metavar="PATH",
                     help="Python with trainctl on the hosts (default: this one's path)."),
        click.option("--ssh-option", "ssh_options", multiple=True, metavar="KEY=VALUE",
                     help="Extra ssh -o option, e.g. IdentityFile=~/.ssh/cluster (repeatable)."),
        click.option("--ssh-port", type=int, metavar="N", help="ssh port for hosts without their own :port."),
        click.option("--connect-timeout", type=int, default=DEFAULT_CONNECT_TIMEOUT, show_default=True,
                     metavar="S", help="ssh connect timeout in seconds."),
        click.option("--master-port", type=int, metavar="N",
                     help=f"Master port for --hostfile (default {DEFAULT_MASTER_PORT}) or Slurm "
                          "(default 20000 + job id % 20000)."),
        click.option("--no-preflight", is_flag=True,
                     help="Skip the host checks (ssh, versions, datasets, port) before a --hostfile launch."),
    ]
    for option in reversed(options):
        func = option(func)
    return func
