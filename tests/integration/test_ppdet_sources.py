"""The whole chain on every ppdet a user may bring, and the rule that picks it (docs/install.md).

Three sources, one session fixture each (trained once, then evaluated, exported and used for
inference both ways), each reached by a different part of the rule:

- the paddledet 2.6.0 wheel: started from an unrelated directory, with release-2.7.1's roadsign
  config (whose `MultiClassNMS: cpu: True` the wheel lacks: runner/compat/config_keys.py drops it);
- release-2.7.1: the tutorial inside the tree (`trainctl data sample`, then train from its root
  with its relative `_BASE_`, `dataset/` and `output/` paths): the checkout containing the cwd;
- develop: from outside the tree with `--ppdet DIR`, trained with `--nproc 2` (paddle launch,
  two gloo workers; the other two sources train in one process: CI time).

The trees in ../shared are read-only: each test copies what it needs into a temporary directory.
Tiny settings keep it inside CI's budget: 12 images at 128 px, batch 2, one epoch, from scratch.
"""

from __future__ import annotations

import json
import shutil
import sysconfig
from dataclasses import dataclass
from pathlib import Path

import pytest

pytestmark = [pytest.mark.paddle, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
TREES = REPO.parent / "shared" / "reference" / "paddledetection-src"
ROADSIGN = "configs/yolov3/yolov3_mobilenet_v1_roadsign.yml"
SIZE = ["-o", "EvalReader.sample_transforms.1.Resize.target_size=[128,128]",
        "-o", "TestReader.sample_transforms.1.Resize.target_size=[128,128]",
        "-o", "TestReader.inputs_def.image_shape=[3,128,128]"]
TRAIN = ["--device", "cpu", "--no-pretrained", "-o", "epoch=1", "TrainReader.batch_size=2", "worker_num=0",
         "TrainReader.batch_transforms.0.BatchRandomResize.target_size=[128]", "TrainReader.use_shared_memory=false"]

if not TREES.is_dir():
    pytest.skip(f"the PaddleDetection trees are not here ({TREES})", allow_module_level=True)


def copy_tree(name: str, to: Path) -> Path:
    """A writable copy of a reference checkout (what a test needs of it: ppdet, configs, the version files)."""
    src = TREES / name
    to.mkdir(parents=True)
    for item in ("ppdet", "configs"):
        shutil.copytree(src / item, to / item)
    for item in ("setup.py", "requirements.txt", "COMMIT"):
        shutil.copy(src / item, to / item)
    return to


@dataclass
class Source:
    name: str
    cwd: Path  # where every command of this source runs
    config: str  # -c, as typed there
    ppdet_args: list[str]  # --ppdet DIR, or nothing (the rule decides)
    kind: str
    ppdet_dir: Path  # the directory holding the ppdet/ the rule must pick
    rule: str  # the part of the rule that must pick it
    run_dir: Path
    train: object  # the CompletedProcess of the training

    def run(self, ptools, args: list[str]):
        return ptools.run_cli(args, self.cwd)


SOURCES = ("wheel", "release-2.7.1", "develop")


@pytest.fixture(scope="session", params=SOURCES)
def source(request, tmp_path_factory, ptools) -> Source:
    name = request.param
    base = tmp_path_factory.mktemp(f"ppdet-{name}")
    if name == "release-2.7.1":  # the tutorial, from the checkout's root
        tree = copy_tree(name, base / "PaddleDetection")
        cwd, config, args = tree, ROADSIGN, []
        kind, ppdet_dir, rule = "source", tree, "the checkout containing the current directory"
    else:
        cwd = base / "work"
        cwd.mkdir()
        if name == "develop":
            tree = copy_tree(name, base / "PaddleDetection")
            config, args = f"../PaddleDetection/{ROADSIGN}", ["--ppdet", "../PaddleDetection"]
            kind, ppdet_dir, rule = "source", tree, "--ppdet"
        else:  # only the configs of 2.7.1, in a directory that is no checkout: the wheel
            shutil.copytree(TREES / "release-2.7.1" / "configs", base / "configs")
            config, args = f"../{ROADSIGN}", []
            kind, ppdet_dir, rule = "installed", Path(sysconfig.get_paths()["purelib"]), "the installed wheel"
    sample = ptools.run_cli(["data", "sample", "--out", "dataset/roadsign_voc", "--images", "12"], cwd)
    assert sample.returncode == 0, sample.stderr
    nproc = ["--nproc", "2"] if name == "develop" else []
    proc = ptools.run_cli(["train", "-c", config, *args, *TRAIN, *nproc], cwd)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    run_dir = cwd / "output" / "yolov3_mobilenet_v1_roadsign"  # the config's own `weights: output/...` place
    return Source(name, cwd, config, args, kind, ppdet_dir, rule, run_dir, proc)


def assert_ppdet(record: dict, src: Source) -> None:
    ppdet = record["ppdet"]
    assert ppdet["kind"] == src.kind and Path(ppdet["dir"]).resolve() == src.ppdet_dir.resolve(), ppdet
    assert ppdet["rule"].startswith(src.rule), ppdet
    assert record["plan"]["ppdet"] == ppdet


def test_train_uses_the_ppdet_the_rule_names(source):
    record = json.loads((source.run_dir / "run.json").read_text())
    assert record["status"] == "done"
    assert_ppdet(record, source)
    if source.kind == "source":
        assert record["ppdet"]["commit"] == (TREES / source.name / "COMMIT").read_text().strip()
    else:
        assert record["ppdet"]["version"] == "2.6.0"
    assert (source.run_dir / "model_final.pdparams").is_file()
    # the worker says where it imported ppdet from, and it is the chosen directory
    log = source.train.stdout + source.train.stderr
    if source.name == "develop":  # two workers: their logs
        log = "".join(p.read_text() for p in (source.run_dir / "logs").glob("workerlog.*"))
    assert f"(imported from {source.ppdet_dir.resolve() / 'ppdet'})" in log
    assert "Traceback" not in log and "import ppdet from source directory" not in log
    if source.name == "wheel":  # release-2.7.1's `MultiClassNMS: cpu: True`, unknown to paddledet 2.6.0
        assert "MultiClassNMS has no BBoxPostProcess.nms.cpu" in log


def test_eval_export_and_infer_both_ways(source, ptools):
    weights = str(source.run_dir / "model_final")
    ev = source.run(ptools, ["eval", "-c", source.config, *source.ppdet_args, *SIZE, "-o", "worker_num=0"])
    assert ev.returncode == 0, ev.stderr[-3000:]
    assert "eval done: VOC mAP" in ev.stdout + ev.stderr
    assert_ppdet(json.loads((source.run_dir / "eval" / "run.json").read_text()), source)

    ex = source.run(ptools, ["export", "-c", source.config, *source.ppdet_args, *SIZE, "--weights", weights,
                             "--output", "exported"])
    assert ex.returncode == 0, ex.stderr[-3000:]
    said = [line for line in ex.stderr.splitlines() if line.startswith("ppdet: ")]
    assert len(said) == 1 and (f"from source {source.ppdet_dir}" in said[0] if source.kind == "source"
                               else said[0].startswith("ppdet: paddledet 2.6.0, installed"))
    assert {p.name for p in (source.cwd / "exported").iterdir()} >= {"model.pdmodel", "model.pdiparams",
                                                                       "infer_cfg.yml"}
    image = str(source.cwd / "dataset" / "roadsign_voc" / "images" / "road0.png")
    static = source.run(ptools, ["infer", "--model-dir", "exported", "--img", image, "--threshold", "0.0",
                                 "--output", "out-static", "--no-save-images"])
    assert static.returncode == 0, static.stderr[-3000:]
    dynamic = source.run(ptools, ["infer", "-c", source.config, *source.ppdet_args, *SIZE, "--weights", weights,
                                  "--img", image, "--threshold", "0.0", "--output", "out-dynamic",
                                  "--no-save-images"])
    assert dynamic.returncode == 0, dynamic.stderr[-3000:]
    for out in ("out-static", "out-dynamic"):
        result = json.loads((source.cwd / out / "detections.json").read_text())
        assert result["images"] == [image]
        assert result["labels"] == ["speedlimit", "crosswalk", "trafficlight", "stop"]
        # threshold 0: the config's NMS keeps up to keep_top_k boxes, each named and scored
        assert 0 < len(result["detections"]) <= 100
        assert all(d["file"] == image and d["class"] in result["labels"] and 0 <= d["score"] <= 1
                   for d in result["detections"])


@pytest.mark.parametrize("source", ["develop"], indirect=True)  # the develop fixture trained with --nproc 2
def test_two_processes_on_a_checkout(source):
    """--nproc 2 through paddle launch: both workers import the chosen tree (develop's training)."""
    record = json.loads((source.run_dir / "run.json").read_text())
    assert record["plan"]["world_size"] == 2 and record["plan"]["launcher"] == "paddle"
    logs = sorted((source.run_dir / "logs").glob("workerlog.*"))
    assert len(logs) == 2
    for log in logs:
        assert f"(imported from {source.ppdet_dir.resolve() / 'ppdet'})" in log.read_text()


def test_tutorial_dry_run_inside_the_tree(tmp_path, ptools):
    tree = copy_tree("release-2.7.1", tmp_path / "PaddleDetection")
    proc = ptools.run_cli(["train", "-c", ROADSIGN, "--gpus", "0,1", "--dry-run"], tree)
    assert proc.returncode == 0, proc.stderr
    assert f"ppdet       ppdet 0.0.0 (setup.py PPDET_VERSION) from source {tree}, commit bf81f449f0a8" in proc.stdout
    assert f"PYTHONPATH={tree}" in proc.stdout and "PYTHONSAFEPATH=1" in proc.stdout
    # the same command from an unrelated directory uses the wheel
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    proc = ptools.run_cli(["train", "-c", str(tree / ROADSIGN), "--dry-run=json"], elsewhere)
    assert json.loads(proc.stdout)["ppdet"]["kind"] == "installed"


def test_a_missing_module_stops_every_command_before_a_worker(tmp_path, ptools):
    tree = copy_tree("release-2.7.1", tmp_path / "PaddleDetection")
    trainer = tree / "ppdet" / "engine" / "trainer.py"
    trainer.write_text("import some_missing_module\n" + trainer.read_text())
    ptools.run_cli(["data", "sample", "--out", "dataset/roadsign_voc", "--images", "4"], tree)
    for args in (["train", "-c", ROADSIGN, "--no-pretrained"], ["train", "-c", ROADSIGN, "--nproc", "2"],
                 ["eval", "-c", ROADSIGN, "--weights", "x"], ["export", "-c", ROADSIGN, "--weights", "x"],
                 ["infer", "-c", ROADSIGN, "--weights", "x", "--img", "x.png"]):
        proc = ptools.run_cli(args, tree)
        assert proc.returncode == 2, (args, proc.stderr)
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
        assert lines[0].startswith(f"trainctl: error: ppdet from source {tree} (chosen by the checkout containing "
                                   "the current directory) cannot be imported: missing module some_missing_module")
        assert "pip install some_missing_module" in lines[0]
    assert not (tree / "output").exists()  # no run directory, no worker
