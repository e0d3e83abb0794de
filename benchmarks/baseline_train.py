"""Baseline for the launch-overhead and throughput cases: train with ppdet directly.

What PaddleDetection's tools/train.py does for a single CPU process, written
out plainly: import paddle and ppdet first, parse the flags, load the config
with ppdet's own loader, pick the device, build ppdet's Trainer and train.
The suite hands it the resolved config that `trainctl train` wrote into its
run directory (config.yml), so both sides train exactly the same thing.

    python benchmarks/baseline_train.py -c output/bench_trainctl/config.yml --save-dir output/bench_baseline
"""

from __future__ import annotations

import argparse
import os
import sys

import paddle  # imported before the flags are parsed, as tools/train.py does
import ppdet  # noqa: F401
from ppdet.core.workspace import load_config
from ppdet.engine import Trainer


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-c", "--config", required=True, help="a flat ppdet config (no _BASE_ needed, but allowed)")
    parser.add_argument("--save-dir", required=True, help="where ppdet writes checkpoints")
    args = parser.parse_args(argv)

    cfg = load_config(args.config)
    cfg["save_dir"] = args.save_dir
    cfg["use_gpu"] = False
    if cfg.get("norm_type") == "sync_bn":
        cfg["norm_type"] = "bn"  # as tools/train.py does on one device
    paddle.set_device("cpu")
    world_size = int(os.environ.get("PADDLE_TRAINERS_NUM", "1"))
    if world_size > 1:
        paddle.distributed.init_parallel_env()

    trainer = Trainer(cfg, mode="train")
    if cfg.get("pretrain_weights"):
        trainer.load_weights(cfg.pretrain_weights)
    print("[baseline] trainer ready", flush=True)  # the suite times this line (trainctl's worker logs its own)
    trainer.train(validate=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
