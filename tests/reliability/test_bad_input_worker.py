"""Bad input that only the real worker meets (paddle and ppdet loaded, the model built).

- weights from another architecture (a LeNet state dict) for train --weights,
  train --resume and eval --weights;
- a broken annotation XML and an undecodable image with --no-data-check, so the
  pre-launch check (tests in test_bad_input.py) is skipped and ppdet's own reader
  meets them inside the worker: still one line naming the file, never a hang.

`-q` keeps progress lines off stderr, so the one error line is all there is.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from conftest import assert_one_line_error, run_cli

pytestmark = pytest.mark.paddle

SMOKE = "roadsign_cpu_smoke.yml"
NO_HANG_SECONDS = 240  # worker start (paddle import, model build) is 15-40 s on 2 busy cores


@pytest.fixture(scope="module")
def lenet_weights(tmp_path_factory) -> Path:
    """A real paddle checkpoint of another architecture (LeNet), with an optimizer file for --resume."""
    out = tmp_path_factory.mktemp("lenet") / "lenet"
    code = ("import paddle, sys; m = paddle.vision.models.LeNet(); "
            "opt = paddle.optimizer.Adam(parameters=m.parameters()); "
            "paddle.save(m.state_dict(), sys.argv[1] + '.pdparams'); paddle.save(opt.state_dict(), sys.argv[1] + '.pdopt')")
    subprocess.run([sys.executable, "-c", code, str(out)], check=True, capture_output=True, timeout=300)
    return out


@pytest.mark.parametrize("how", ["train-weights", "train-resume", "eval-weights"])
def test_weights_from_another_architecture(work, lenet_weights, how):
    weights = str(lenet_weights) + ".pdparams"
    args = {
        "train-weights": ["train", "-c", SMOKE, "--weights", weights],
        "train-resume": ["train", "-c", SMOKE, "--resume", str(lenet_weights)],
        "eval-weights": ["eval", "-c", SMOKE, "--weights", weights],
    }[how]
    res = run_cli(["-q", *args, "--output", str(work / "run")], cwd=work, timeout=NO_HANG_SECONDS)
    line = assert_one_line_error(res, 2, "lenet.pdparams")
    assert "architecture" in line or "do not fit" in line, line
    assert "Traceback" not in res.stdout  # the worker's output, streamed: no paddle traceback either


def _first_train_entry(dataset: Path) -> tuple[str, str]:
    image, xml = (dataset / "train.txt").read_text().split("\n")[0].split()
    return image, xml


def test_broken_annotation_xml_in_the_worker(own_dataset):
    dataset = own_dataset / "dataset" / "roadsign_voc"
    _, xml = _first_train_entry(dataset)
    (dataset / xml).write_text("<annotation><object><name>stop</name>")
    res = run_cli(["-q", "train", "-c", SMOKE, "--no-data-check"], cwd=own_dataset, timeout=NO_HANG_SECONDS)
    assert_one_line_error(res, 2, Path(xml).name)


def test_unreadable_image_in_the_worker(own_dataset):
    """An image that does not decode stops paddle's loader thread; the worker must fail, not wait forever."""
    dataset = own_dataset / "dataset" / "roadsign_voc"
    image, _ = _first_train_entry(dataset)
    (dataset / image).write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 64)  # a PNG signature and nothing else
    res = run_cli(["-q", "train", "-c", SMOKE, "--no-data-check"], cwd=own_dataset, timeout=NO_HANG_SECONDS)
    assert_one_line_error(res, 2, Path(image).name)
