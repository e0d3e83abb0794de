"""The click options of each concern, declared once (the objects they fill: trainctl.launch.options).

`placement_options` and `network_options` are shared by `train`, `eval`, `smoke` and
`sweep` (through `train.launch_options`); `k8s-manifest` takes `network_options` for
its pods.
"""

from __future__ import annotations

import click

NETWORK_HELP = {
    "net": "Network preset: auto, nccl, tcp, rdma, gpudirect, gloo, or a preset YAML file.",
    "ifname": "Interface for sockets/bootstrap (NCCL/GLOO_SOCKET_IFNAME).",
    "hca": "RDMA ports for NCCL_IB_HCA, e.g. mlx5_0:1,mlx5_1:1.",
    "gid_index": "NCCL_IB_GID_INDEX for RoCE.",
    "gdr_level": "NCCL_NET_GDR_LEVEL for --net gpudirect.",
    "nccl_debug": "NCCL_DEBUG=INFO, NCCL_DEBUG_SUBSYS=INIT,NET (shows the transport).",
}


def _apply(func, options):
    for option in reversed(options):
        func = option(func)
    return func


def placement_options(func):
    """--device --gpus --nproc --launcher --nnodes --node-rank --master --host --ips (launch.options.PlacementOptions)."""
    return _apply(func, [
        click.option("--device", type=click.Choice(["auto", "cpu", "gpu"]), default="auto", show_default=True,
                     help="auto: GPUs when --gpus is given or paddle has CUDA and a GPU is visible."),
        click.option("--gpus", "--devices", "gpus", metavar="IDS",
                     help="GPU ids, e.g. 0,1 (indices into CUDA_VISIBLE_DEVICES); one process per GPU."),
        click.option("--nproc", type=int, metavar="N", help="CPU worker processes on this node (gloo)."),
        click.option("--launcher", type=click.Choice(["paddle", "fleetrun", "slurm", "kubeflow"]), default="paddle",
                     show_default=True,
                     help="python -m paddle.distributed.launch or fleetrun, for more than one process; "
                          "slurm: nodes and devices from srun's SLURM_* variables; kubeflow: nodes, master and "
                          "rank from a Kubeflow PaddleJob pod's PADDLE_* variables (both then paddle launch)."),
        click.option("--nnodes", type=int, default=1, show_default=True, help="Number of nodes."),
        click.option("--node-rank", type=int, default=0, show_default=True, help="This node's rank (0 hosts the master)."),
        click.option("--master", metavar="HOST:PORT", help="Address of node 0 and a free port; the same on every node."),
        click.option("--host", metavar="IP", help="This node's address (default: the one on the route to the master)."),
        click.option("--ips", metavar="IP,IP", help="Legacy: the nodes' addresses; rank = position of this host."),
    ])


def network_options(help: dict[str, str] | None = None):
    """--net --ifname --hca --gid-index --gdr-level --nccl-debug (launch.options.NetworkOptions);
    `help` replaces some help texts (k8s-manifest speaks of the pods)."""
    texts = {**NETWORK_HELP, **(help or {})}

    def decorate(func):
        return _apply(func, [
            click.option("--net", default="auto", show_default=True, metavar="PRESET|FILE.yml", help=texts["net"]),
            click.option("--ifname", metavar="IF", help=texts["ifname"]),
            click.option("--hca", metavar="LIST", help=texts["hca"]),
            click.option("--gid-index", type=int, help=texts["gid_index"]),
            click.option("--gdr-level", default="PHB", show_default=True, help=texts["gdr_level"]),
            click.option("--nccl-debug", is_flag=True, help=texts["nccl_debug"]),
        ])
    return decorate
