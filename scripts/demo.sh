#!/usr/bin/env bash
# From a fresh machine to a trained, exported road-sign detector on the CPU,
# using the built-in synthetic sample data. Work goes to ./demo-output.
set -euo pipefail
TRAINCTL_EXTRAS="cpu,plot"
source "$(dirname "$0")/_venv.sh"
WORK="${DEMO_DIR:-$ROOT/demo-output}"
mkdir -p "$WORK" && cd "$WORK"
set -x
# 500 images (400 train, 100 valid), one large sign each: a set a small detector learns from scratch in minutes
trainctl data sample --out dataset/roadsign_voc --images 500 --sign-size 0.35,0.7 --max-signs 1
trainctl train -c roadsign_demo.yml --eval --seed 0        # seeded: the same figure on every run
trainctl eval -c roadsign_demo.yml --weights output/roadsign_demo/best_model --classwise
trainctl export -c roadsign_demo.yml --weights output/roadsign_demo/best_model --output output/exported
# a from-scratch model after a few CPU minutes ranks well (mAP) but scores low: boxes from a score of 0.1
trainctl infer --model-dir output/exported --dir dataset/roadsign_voc/images --threshold 0.1 --output output/detections
trainctl infer -c roadsign_demo.yml --weights output/roadsign_demo/best_model --threshold 0.1 \
    --img dataset/roadsign_voc/images/road14.png --output output/detections_dygraph
trainctl runs
set +x
echo
echo "Done. Open annotated validation images (every 5th image is in valid.txt: road4, road9, ...):"
for n in 4 9 14 19; do echo "  $WORK/output/detections/road$n.png"; done
echo "the precision-recall curve of each class: $WORK/output/roadsign_demo/eval/pr_curves/"
echo "Then compare settings, e.g. two batch sizes, twice each, side by side:"
echo "  cd $WORK && trainctl sweep -c roadsign_demo.yml --eval --vary TrainReader.batch_size=4,8 --repeats 2 --parallel 2"
echo "  trainctl runs compare output/roadsign_demo-sweep --plot compare.png"
