"""The option objects shared by every command that places workers or sets up their network.

One dataclass per concern, each declared once:

- `PlacementOptions`: devices and nodes (`--device --gpus --nproc --launcher --nnodes
  --node-rank --master --host --ips`);
- `NetworkOptions`: the network preset and its knobs (`--net --ifname --hca --gid-index
  --gdr-level --nccl-debug`).

`launch.plan.LaunchOptions` is both (plus the run's environment and LR flags);
`cluster.k8s_manifest.ManifestSpec` has the network part. Their click options are
declared once too (`trainctl.cli.options`), and `trainctl.cli.forward.option_words`
turns any of them back into command-line words.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class NetworkOptions:
    net: str = "auto"
    ifname: str | None = None
    hca: str | None = None
    gid_index: int | None = None
    gdr_level: str = "PHB"
    nccl_debug: bool = False


@dataclass
class PlacementOptions:
    device: str = "auto"
    gpus: str | None = None
    nproc: int | None = None
    launcher: str = "paddle"
    nnodes: int = 1
    node_rank: int = 0
    master: str | None = None
    host: str | None = None
    ips: str | None = None


NETWORK_FIELDS = tuple(NetworkOptions.__dataclass_fields__)
PLACEMENT_FIELDS = tuple(PlacementOptions.__dataclass_fields__)
