#!/usr/bin/env bash
# From a fresh machine to a trained, exported road-sign detector on the CPU,
# using the built-in synthetic sample data. Work goes to ./demo-output.
set -euo pipefail
TRAINCTL_EXTRAS="cpu"
source "$(dirname "$0")/_venv.sh"
WORK="${DEMO_DIR:-$ROOT/demo-output}"
mkdir -p "$WORK" && cd "$WORK"
set -x
trainctl data sample --out dataset/roadsign_voc
trainctl train -c roadsign_cpu.yml --eval            # 8 epochs on the CPU, about 5 minutes
trainctl eval -c roadsign_cpu.yml --weights output/roadsign_cpu/best_model
trainctl export -c roadsign_cpu.yml --weights output/roadsign_cpu/best_model --output output/exported
# 8 CPU epochs from scratch give a low-confidence model: its best scores were 0.27 in one
# run (mAP 13%), so a threshold of 0.3 can leave nothing to draw; 0.1 shows what it found
trainctl infer --model-dir output/exported --dir dataset/roadsign_voc/images --threshold 0.1 --output output/detections
trainctl infer -c roadsign_cpu.yml --weights output/roadsign_cpu/best_model \
    --img dataset/roadsign_voc/images/road0.png --threshold 0.1 --output output/detections_dygraph
trainctl runs
