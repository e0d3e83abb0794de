"""`trainctl infer --model-dir` against PaddleDetection's own deploy/python/infer.py on the same exported model.

The peer is the reference tree's script (../shared/reference/paddledetection-src/
release-2.7.1/deploy/python, copied to a temporary directory because it imports
its siblings), driven by tests/integration/peer_deploy.py. Same detections:
same count per image/frame, same classes, scores and boxes within 1e-4.
The smoke model is weak: a low threshold gives something to compare, and the
comparison asserts that there is something.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.paddle, pytest.mark.slow]

PEER_DIR = Path(__file__).resolve().parents[2].parent / "shared" / "reference" / "paddledetection-src" / "release-2.7.1" / "deploy" / "python"
HARNESS = Path(__file__).with_name("peer_deploy.py")
THRESHOLD = 0.1
TOL = 1e-4


def make_video(images: list[Path], path: Path, size=(320, 240), fps=10.0) -> Path:
    """A video of the sample images (each one frame, resized to one size), written by OpenCV."""
    import cv2

    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, size)
    for image in images:
        writer.write(cv2.resize(cv2.imread(str(image)), size))
    writer.release()
    return path


@pytest.fixture(scope="module")
def media(smoke_run, ptools, tmp_path_factory):
    images = smoke_run.workdir / "dataset" / "roadsign_voc" / "images"
    tmp = tmp_path_factory.mktemp("deploy-media")
    video = make_video(sorted(images.glob("*.png")), tmp / "signs.mp4")
    return {"dir": images, "img": ptools.road554, "video": video}


@pytest.fixture(scope="module")
def peer(exported_model, media, tmp_path_factory):
    """The peer's raw detections for the directory, road554.png and the video (one process)."""
    if not PEER_DIR.is_dir():
        pytest.fail(f"the reference tree is missing: {PEER_DIR}")
    work = tmp_path_factory.mktemp("peer") / "python"
    shutil.copytree(PEER_DIR, work)
    jobs = [f"images:{media['dir']}", f"images:{media['img']}", f"video:{media['video']}"]
    proc = subprocess.run([sys.executable, str(HARNESS), str(exported_model), str(THRESHOLD), *jobs], cwd=work,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = [json.loads(line[len("PEER-JSON "):]) for line in proc.stdout.splitlines() if line.startswith("PEER-JSON ")]
    assert len(lines) == 3, proc.stdout[-2000:]
    return {"dir": lines[0]["images"], "img": lines[1]["images"], "video": lines[2]["frames"]}


def _rows(detections) -> list[list[float]]:
    return sorted(([d["class_id"], d["score"], *d["box"]] for d in detections), key=lambda r: (-r[1], r[0], r[2], r[3]))


def assert_same(ours: list[list[float]], theirs: list[list[float]], where: str) -> None:
    """One-to-one: every detection of ours has an unused twin of the peer's (same class, values within TOL)."""
    assert len(ours) == len(theirs), f"{where}: {len(ours)} detections, the peer {len(theirs)}"
    unused = list(theirs)
    for a in ours:
        twins = [b for b in unused if int(b[0]) == int(a[0]) and max(abs(x - y) for x, y in zip(a[1:], b[1:])) <= TOL]
        assert twins, f"{where}: no twin within {TOL} for {a} among the peer's {unused}"
        unused.remove(twins[0])


def _infer(ptools, cwd, model, args, out):
    proc = ptools.run_cli(["infer", "--model-dir", str(model), "--threshold", str(THRESHOLD), "--output", str(out), *args], cwd)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def _same_images(result: dict, peer_images: dict) -> int:
    by_file: dict[str, list] = {}
    for d in result["detections"]:
        by_file.setdefault(d["file"], []).append(d)
    assert sorted(result["images"]) == sorted(peer_images)
    for path, rows in peer_images.items():
        assert_same(_rows(by_file.get(path, [])), rows, path)
    return len(result["detections"])


def test_directory_and_single_image_match_the_peer(exported_model, media, peer, ptools, smoke_run, tmp_path):
    _infer(ptools, smoke_run.workdir, exported_model, ["--dir", str(media["dir"]), "--batch-size", "4", "--no-save-images"],
           tmp_path / "dir")
    assert _same_images(json.loads((tmp_path / "dir" / "detections.json").read_text()), peer["dir"]) > 0
    _infer(ptools, smoke_run.workdir, exported_model, ["--img", str(media["img"])], tmp_path / "img")
    result = json.loads((tmp_path / "img" / "detections.json").read_text())
    assert _same_images(result, peer["img"]) > 0
    assert (tmp_path / "img" / "road554.png").stat().st_size > 1000


def test_video_matches_the_peer_frame_by_frame(exported_model, media, peer, ptools, smoke_run, tmp_path):
    import cv2

    proc = _infer(ptools, smoke_run.workdir, exported_model, ["--video", str(media["video"]), "--batch-size", "3"], tmp_path)
    assert "frames/s" in proc.stdout
    lines = [json.loads(line) for line in (tmp_path / "signs.jsonl").read_text().splitlines()]
    assert [line["frame"] for line in lines] == list(range(len(peer["video"])))
    assert sum(len(line["detections"]) for line in lines) > 0
    for line, theirs in zip(lines, peer["video"]):
        assert_same(_rows(line["detections"]), theirs, f"frame {line['frame']}")
    src, out = cv2.VideoCapture(str(media["video"])), cv2.VideoCapture(str(tmp_path / "signs.mp4"))
    for prop in (cv2.CAP_PROP_FPS, cv2.CAP_PROP_FRAME_WIDTH, cv2.CAP_PROP_FRAME_HEIGHT, cv2.CAP_PROP_FRAME_COUNT):
        assert out.get(prop) == src.get(prop), prop
    assert not list(tmp_path.glob(".*partial*"))
