"""`trainctl infer --model-dir DIR --video FILE | --camera ID`: detections on every frame.

Frames are read with OpenCV, --batch-size of them go into one predictor run
(as images do), and two files are written into --output:

- `<name>.mp4`: the frames with their boxes drawn (mp4v), at the input's frame
  rate and size, one output frame per input frame (name: the video's file
  name without its suffix, or `camera<ID>`);
- `<name>.jsonl`: one JSON line per frame,
  {"frame": 0, "detections": [{"class_id", "class", "score", "box": [x1, y1, x2, y2]}]}.

Both are written under temporary names and renamed into place at the end (also
after Ctrl-C, which ends a camera stream; --max-frames ends it too).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from trainctl.errors import UserError

DEFAULT_CAMERA_FPS = 30.0


def open_capture(video: str | None, camera: int | None):
    import cv2

    try:  # OpenCV's own "can't open camera by index" warning; the error below says it
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
    except AttributeError:
        pass
    capture = cv2.VideoCapture(int(camera)) if camera is not None else cv2.VideoCapture(video)
    if not capture.isOpened():
        what = f"camera {camera}" if camera is not None else f"video {video}"
        raise UserError(f"cannot open {what}", hint="check the camera ID (/dev/videoN) or that OpenCV can decode the file")
    return capture


def output_name(video: str | None, camera: int | None) -> str:
    return f"camera{camera}" if camera is not None else Path(video).stem


def stream_facts(capture) -> dict:
    """fps, width, height and frame count (None when the stream does not say, e.g. a camera)."""
    import cv2

    fps = float(capture.get(cv2.CAP_PROP_FPS) or 0.0)
    count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
    return {"fps": fps if fps > 0 else DEFAULT_CAMERA_FPS, "width": int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)),
            "height": int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT)), "frames": count if count > 0 else None}


def read_frames(capture, batch_size: int, max_frames: int | None):
    """Lists of up to batch_size BGR frames until the stream ends (or max_frames)."""
    batch, read = [], 0
    while max_frames is None or read < max_frames:
        ok, frame = capture.read()
        if not ok:
            break
        batch.append(frame)
        read += 1
        if len(batch) == batch_size:
            yield batch
            batch = []
    if batch:
        yield batch


def frame_line(index: int, detections) -> str:
    found = [{k: v for k, v in d.to_json().items() if k != "file"} for d in detections]
    return json.dumps({"frame": index, "detections": found})


def infer_video(model_dir: str, deploy, output_dir: str, threshold: float, threads: int | None, batch_size: int,
                onednn: bool) -> dict:
    """Run the exported model over every frame; write the annotated video and the JSON lines; returns a summary."""
    import cv2

    from trainctl.core.hostinfo import cpu_count
    from trainctl.runner.compat import quiet_ppdet_warnings
    from trainctl.runner.predict import ExportedModel
    from trainctl.runner.results import draw_detections

    quiet_ppdet_warnings()
    capture = open_capture(deploy.video, deploy.camera)  # a wrong camera or file fails before the model loads
    threads = max(1, threads or cpu_count())
    try:
        from trainctl.runner.onnx_predictor import exported_model

        model = exported_model(model_dir, deploy.engine, threads, lambda: ExportedModel(
            model_dir, threads=threads, options=deploy.predictor_options(threads, onednn, batch_size)))
    except BaseException:
        capture.release()
        raise
    facts = stream_facts(capture)
    name = output_name(deploy.video, deploy.camera)
    out = Path(output_dir)
    video_path, lines_path = out / f"{name}.mp4", out / f"{name}.jsonl"
    tmp_video, tmp_lines = out / f".{name}.partial.mp4", out / f".{name}.partial.jsonl"
    writer = cv2.VideoWriter(str(tmp_video), cv2.VideoWriter_fourcc(*"mp4v"), facts["fps"], (facts["width"], facts["height"]))
    if not writer.isOpened():
        capture.release()
        raise UserError(f"OpenCV cannot write {video_path} (mp4v)", hint="check --output, or OpenCV's video support")
    frames, detections, interrupted = 0, 0, False
    start = time.perf_counter()
    try:
        with open(tmp_lines, "w", encoding="utf-8") as lines:
            try:
                for batch in read_frames(capture, batch_size, deploy.max_frames):
                    names = [f"{name}#{frames + i}" for i in range(len(batch))]
                    for bgr, found in zip(batch, model.detect_arrays(names, batch, threshold)):
                        lines.write(frame_line(frames, found) + "\n")
                        draw_detections(bgr, found)
                        writer.write(bgr)
                        frames += 1
                        detections += len(found)
            except KeyboardInterrupt:
                interrupted = True
            lines.flush()
            os.fsync(lines.fileno())
    finally:
        writer.release()
        capture.release()
    seconds = time.perf_counter() - start
    os.replace(tmp_video, video_path)
    os.replace(tmp_lines, lines_path)
    return {"frames": frames, "detections": detections, "video": str(video_path), "jsonl": str(lines_path),
            "seconds": seconds, "fps": frames / seconds if seconds > 0 else 0.0, "input_fps": facts["fps"],
            "size": [facts["width"], facts["height"]], "interrupted": interrupted, "output": output_dir}
