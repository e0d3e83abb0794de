"""Run PaddleDetection's deploy/python/infer.py Detector and print its raw detections as JSON.

Usage (cwd: a copy of the reference tree's deploy/python, so its sibling imports resolve):
    python peer_deploy.py [--threads N] [--mkldnn] MODEL_DIR THRESHOLD images:FILE_OR_DIR video:FILE ...

The script's own main() only prints boxes rounded to 2 decimals (and its
--save_results crashes on detection models: `bbox: [...]` is an annotation, not
an assignment), so this drives its Detector the way main() and predict_video do
(same arguments as its defaults: device CPU, run_mode paddle, 1 thread, no
MKLDNN, batch 1; `--threads N --mkldnn` as its --cpu_threads N --enable_mkldnn True, which
benchmarks/run.py's deploy case times) and prints every kept row at full precision:
    PEER-JSON {"images": {path: [[class, score, x1, y1, x2, y2], ...]}} or PEER-JSON {"frames": [[rows], ...]}
one line per job, in order.
Kept rows: score > threshold, as its filter_box and visualize do.

A new-IR model (model.json, paddle 3): develop's load_predictor reads it, but on paddle 3.3.1 its
`enable_memory_optim` then fails in create_predictor ("Not find predictor_id 0 and pass_name
memory_optimize_pass") unless the new executor is on, and its predictor runs with oneDNN (paddle
3.3.1's CPU default, which its `enable_mkldnn=False` does not turn off), whose passes fail on
model.json ("ConvertPirAttribute2RuntimeAttribute not support [pir::ArrayAttribute<pir::DoubleAttribute>]").
The harness turns the new executor on and oneDNN off before create_predictor, as trainctl does
(runner/predictor_config.py); nothing else of its config changes.
"""

import json
import os
import sys

sys.path.insert(0, os.getcwd())

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import paddle  # noqa: E402

import infer as peer  # noqa: E402  (deploy/python/infer.py)

MARK = "PEER-JSON "  # the script prints its own lines too


def kept(result, threshold):
    out, start = [], 0
    for n in result["boxes_num"]:
        rows = np.asarray(result["boxes"][start:start + int(n)]).reshape(-1, 6)
        out.append([[float(v) for v in row] for row in rows if row[1] > threshold and row[0] >= 0])
        start += int(n)
    return out


def main(model_dir, threshold, jobs, threads=1, mkldnn=False):
    paddle.enable_static()
    if os.path.isfile(os.path.join(model_dir, "model.json")):
        create = peer.create_predictor

        def create_predictor(config):
            config.enable_new_executor(True)
            config.disable_mkldnn()
            return create(config)

        peer.create_predictor = create_predictor
    peer.FLAGS = peer.argsparser().parse_args(["--model_dir", model_dir])
    detector = peer.Detector(model_dir, device="CPU", threshold=threshold, output_dir=os.devnull, cpu_threads=threads,
                             enable_mkldnn=mkldnn)
    for job in jobs:
        kind, source = job.split(":", 1)
        run(detector, threshold, kind, source)


def run(detector, threshold, kind, source):
    if kind == "images":
        images = peer.get_test_images(source if os.path.isdir(source) else None, source if os.path.isfile(source) else None)
        found = {}
        for path in sorted(images):
            found[os.path.abspath(path)] = kept(detector.predict_image([path], visual=False), threshold)[0]
        print(MARK + json.dumps({"images": found}))
        return
    capture = cv2.VideoCapture(source)  # predict_video's loop: RGB frames one by one
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(kept(detector.predict_image([frame[:, :, ::-1]], visual=False), threshold)[0])
    print(MARK + json.dumps({"frames": frames}))


if __name__ == "__main__":
    args, options = sys.argv[1:], {}
    while args and args[0].startswith("--"):
        flag = args.pop(0)
        if flag == "--threads":
            options["threads"] = int(args.pop(0))
        elif flag == "--mkldnn":
            options["mkldnn"] = True
        else:
            sys.exit(f"peer_deploy.py: unknown option {flag}")
    main(args[0], float(args[1]), args[2:], **options)
