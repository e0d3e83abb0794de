"""Bad input through the real CLI: one line naming the problem and the fix, exit 2, no traceback.

Most cases stop before anything is launched (config resolution, plan, pre-launch
checks), so they run in about a second each and need no paddle. A case is
written as the files it needs in a fresh working directory (where
`dataset/roadsign_voc` is the shared sample dataset), the arguments, and words
the one error line must contain (the problem and the fix).
"""

from __future__ import annotations

import os
import socket
import subprocess
from pathlib import Path

import pytest

from conftest import assert_one_line_error, run_cli

SMOKE = "roadsign_cpu_smoke.yml"
CYCLE_A = "_BASE_: ['b.yml']\nepoch: 1\n"
CYCLE_B = "_BASE_: ['a.yml']\n"

# id: (files, args, words that must appear in the one error line)
CASES: dict[str, tuple[dict[str, str | bytes], list[str], list[str]]] = {
    # --- config files
    "malformed-yaml": ({"bad.yml": "_BASE_: ['roadsign_cpu_smoke.yml'\nepoch: [1, 2\n"},
                       ["train", "-c", "bad.yml", "--dry-run"], ["bad.yml", "yaml", "fix"]),
    "base-cycle": ({"a.yml": CYCLE_A, "b.yml": CYCLE_B}, ["train", "-c", "a.yml", "--dry-run"],
                   ["cycle", "a.yml", "b.yml", "remove"]),
    "missing-base-file": ({"top.yml": "_BASE_: ['nope/runtime.yml']\nepoch: 1\n"},
                          ["train", "-c", "top.yml", "--dry-run"], ["nope/runtime.yml", "not found", "_BASE_"]),
    "base-not-a-list": ({"top.yml": "_BASE_: 5\nepoch: 1\n"}, ["train", "-c", "top.yml", "--dry-run"],
                        ["_BASE_", "list"]),
    "base-a-string": ({"top.yml": "_BASE_: roadsign.yml\n"}, ["train", "-c", "top.yml", "--dry-run"],
                      ["_BASE_", "list", "['runtime.yml']"]),
    "empty-config": ({"empty.yml": ""}, ["train", "-c", "empty.yml", "--dry-run"], ["empty.yml", "empty", "mapping"]),
    "config-is-a-list": ({"list.yml": "- epoch: 1\n- snapshot_epoch: 1\n"}, ["train", "-c", "list.yml", "--dry-run"],
                         ["list.yml", "list", "mapping"]),
    "config-not-utf8": ({"latin.yml": b"epoch: 1\nname: caf\xe9 \xff\n"}, ["train", "-c", "latin.yml", "--dry-run"],
                        ["latin.yml", "utf-8"]),
    "config-missing": ({}, ["train", "-c", "nope.yml", "--dry-run"], ["nope.yml", "not found"]),
    "config-is-a-directory": ({"confdir/x.txt": "x"}, ["train", "-c", "confdir", "--dry-run"],
                              ["confdir", "directory", ".yml"]),
    # --- overrides
    "override-unknown-key": ({}, ["train", "-c", SMOKE, "-o", "Foo.bar=1", "--dry-run"], ["Foo", "unknown"]),
    "override-typo-did-you-mean": ({}, ["train", "-c", SMOKE, "-o", "TrainReader.batch_sise=4", "--dry-run"],
                                   ["batch_sise", "did you mean", "batch_size"]),
    "override-wrong-type": ({}, ["train", "-c", SMOKE, "-o", "epoch=ten", "--dry-run"], ["epoch", "ten", "int"]),
    "override-without-equals": ({}, ["train", "-c", SMOKE, "-o", "epoch", "--dry-run"], ["epoch", "=", "key=value"]),
    "override-index-out-of-range": ({}, ["train", "-c", SMOKE, "-o",
                                         "TrainReader.sample_transforms.9.Decode={}", "--dry-run"],
                                    ["index 9", "out of range", "0..2"]),
    "override-list-by-name": ({}, ["train", "-c", SMOKE, "-o", "TrainReader.sample_transforms.Decode={}",
                                   "--dry-run"], ["is a list", "index"]),
    "override-bad-yaml-value": ({}, ["train", "-c", SMOKE, "-o", "TrainReader.batch_size=[1,", "--dry-run"],
                                ["batch_size", "yaml"]),
    "negative-epoch": ({}, ["train", "-c", SMOKE, "-o", "epoch=-1", "--dry-run"], ["epoch", "-1", "positive"]),
    "zero-epoch": ({}, ["train", "-c", SMOKE, "-o", "epoch=0", "--dry-run"], ["epoch", "positive"]),
    "batch-size-zero": ({}, ["train", "-c", SMOKE, "-o", "TrainReader.batch_size=0", "--dry-run"],
                        ["batch_size", "-o TrainReader.batch_size="]),
    "negative-batch-size": ({}, ["train", "-c", SMOKE, "-o", "TrainReader.batch_size=-2", "--dry-run"],
                            ["batch_size"]),
    # --- devices, nodes, network
    "gpus-on-cpu-paddle": ({}, ["train", "-c", SMOKE, "--gpus", "0"], ["cpu-only", "--device cpu"]),
    "gpus-duplicate": ({}, ["train", "-c", SMOKE, "--gpus", "0,0", "--dry-run"], ["0,0", "more than once"]),
    "gpus-not-numbers": ({}, ["train", "-c", SMOKE, "--gpus", "a,b", "--dry-run"], ["'a'", "--gpus 0,1"]),
    "nproc-zero": ({}, ["train", "-c", SMOKE, "--nproc", "0", "--dry-run"], ["--nproc", "at least 1"]),
    "nnodes-without-master": ({}, ["train", "-c", SMOKE, "--nnodes", "2", "--dry-run"],
                              ["--nnodes 2", "--master host:port"]),
    "master-not-host-port": ({}, ["train", "-c", SMOKE, "--nnodes", "2", "--master", "node0", "--dry-run"],
                             ["node0", "host:port", "--master 10.0.0.1:8090"]),
    "master-port-out-of-range": ({}, ["train", "-c", SMOKE, "--nnodes", "2", "--master", "10.0.0.1:99999",
                                      "--dry-run"], ["99999", "host:port"]),
    "master-port-not-a-number": ({}, ["train", "-c", SMOKE, "--nnodes", "2", "--master", "10.0.0.1:http",
                                      "--dry-run"], ["10.0.0.1:http", "host:port"]),
    "node-rank-out-of-range": ({}, ["train", "-c", SMOKE, "--nnodes", "2", "--node-rank", "2", "--master",
                                    "10.0.0.1:8090", "--dry-run"], ["--node-rank 2", "0..1"]),
    "ref-gpus-zero": ({}, ["train", "-c", SMOKE, "--ref-gpus", "0", "--dry-run"], ["ref", "positive"]),
    "lr-scale-bogus": ({}, ["train", "-c", SMOKE, "--lr-scale", "bogus"], ["--lr-scale", "bogus", "linear"]),
    "net-unknown": ({}, ["train", "-c", SMOKE, "--net", "infiniband", "--dry-run"],
                    ["infiniband", "not a preset", "tcp"]),
    "net-preset-file-missing": ({}, ["train", "-c", SMOKE, "--net", "mynet.yml", "--dry-run"],
                                ["mynet.yml", "preset"]),
    "net-gpudirect-on-cpu": ({}, ["train", "-c", SMOKE, "--net", "gpudirect"], ["gpudirect", "--net gloo"]),
    "env-without-equals": ({}, ["train", "-c", SMOKE, "--env", "NCCL_DEBUG", "--dry-run"],
                           ["NCCL_DEBUG", "KEY=VALUE"]),
    # --- hostfiles
    "hostfile-bad-line": ({"hosts.txt": "node1 slots=2\nnode2 fast please\n"},
                          ["train", "-c", SMOKE, "--hostfile", "hosts.txt", "--dry-run"],
                          ["hosts.txt:2", "key=value", "slots"]),
    "hostfile-slots-not-a-number": ({"hosts.txt": "node1 slots=2\nnode2 slots=abc\n"},
                                    ["train", "-c", SMOKE, "--hostfile", "hosts.txt", "--dry-run"],
                                    ["hosts.txt:2", "slots", "abc", "slots=4"]),
    "hostfile-missing": ({}, ["train", "-c", SMOKE, "--hostfile", "hosts.txt", "--dry-run"],
                         ["hosts.txt", "not found"]),
    # --- data, weights, checkpoints (real pre-launch checks: no --dry-run)
    "weights-missing": ({}, ["train", "-c", SMOKE, "--weights", "pretrained/nope.pdparams"],
                        ["pretrained/nope.pdparams", "not found", ".pdparams"]),
    "resume-missing-checkpoint": ({}, ["train", "-c", SMOKE, "--resume", "output/old/5"],
                                  ["output/old/5", "not found", "--resume auto"]),
    "eval-weights-missing": ({}, ["eval", "-c", SMOKE, "--weights", "output/none/model_final"],
                             ["output/none/model_final", "not found"]),
    # --- other commands
    "unknown-command": ({}, ["trian", "-c", SMOKE], ["trian", "--help"]),
    "unknown-flag": ({}, ["train", "-c", SMOKE, "--epochs", "3"], ["--epochs", "--help"]),
    "missing-required-flag": ({}, ["train"], ["-c", "--help"]),
    "infer-image-missing": ({}, ["infer", "-c", SMOKE, "--weights", "w", "--img", "photos/nope.png"],
                            ["photos/nope.png", "not found"]),
    "infer-model-dir-without-model": ({"exported/readme.txt": "x"},
                                      ["infer", "--model-dir", "exported", "--img", "dataset/roadsign_voc/images/road0.png"],
                                      ["exported", "model.json or model.pdmodel", "trainctl export"]),
    "sample-zero-images": ({}, ["data", "sample", "--images", "0", "--out", "x"], ["--images", "0"]),
    "runs-missing-dir": ({}, ["runs", "no/such/runs"], ["no/such/runs"]),
}


def _write(root: Path, files: dict[str, str | bytes]) -> None:
    for name, content in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input(case, work):
    files, args, words = CASES[case]
    _write(work, files)
    res = run_cli(args, cwd=work, timeout=120)
    assert_one_line_error(res, 2, *words)
    assert res.stdout.strip() == "", res.explain()  # nothing half-done was printed as a result


# ---------------------------------------------------------------- cases that need a setup


def test_dataset_directory_missing(tmp_path):
    res = run_cli(["train", "-c", SMOKE], cwd=tmp_path)
    assert_one_line_error(res, 2, "dataset/roadsign_voc", "does not exist", "trainctl data sample --out dataset/roadsign_voc")
    assert not (tmp_path / "output").exists()  # nothing was launched or written


def test_label_list_missing(own_dataset):
    (own_dataset / "dataset" / "roadsign_voc" / "label_list.txt").unlink()
    res = run_cli(["train", "-c", SMOKE], cwd=own_dataset)
    assert_one_line_error(res, 2, "label_list.txt", "does not exist", "TrainDataset.label_list")


def test_annotation_list_missing(own_dataset):
    (own_dataset / "dataset" / "roadsign_voc" / "train.txt").unlink()
    res = run_cli(["train", "-c", SMOKE], cwd=own_dataset)
    assert_one_line_error(res, 2, "train.txt", "does not exist", "anno_path")


def test_broken_annotation_xml_before_launch(own_dataset):
    """The pre-launch check parses the annotations: a broken XML stops the run before any worker starts."""
    xml = own_dataset / "dataset" / "roadsign_voc" / "annotations" / "road0.xml"
    xml.write_text("<annotation><object><name>stop</name>")
    res = run_cli(["train", "-c", SMOKE], cwd=own_dataset)
    assert_one_line_error(res, 2, "road0.xml", "trainctl data check")
    assert not (own_dataset / "output").exists()


def test_unreadable_image_before_launch(own_dataset):
    image = own_dataset / "dataset" / "roadsign_voc" / "images" / "road0.png"
    image.write_bytes(b"this is not a png")
    res = run_cli(["train", "-c", SMOKE], cwd=own_dataset)
    assert_one_line_error(res, 2, "road0.png", "trainctl data check")
    assert not (own_dataset / "output").exists()


def test_master_port_in_use(work):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        res = run_cli(["train", "-c", SMOKE, "--nnodes", "2", "--node-rank", "0", "--master", f"127.0.0.1:{port}",
                       "--host", "127.0.0.1"], cwd=work)
    assert_one_line_error(res, 2, str(port), "in use", "--master")


def test_nproc_master_port_in_use(work):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        res = run_cli(["train", "-c", SMOKE, "--nproc", "2", "--master", f"127.0.0.1:{port}"], cwd=work)
    assert_one_line_error(res, 2, str(port), "in use")


def test_gpudirect_without_peermem_dry_run_warns(work):
    """A dry run plans GPUs this machine lacks, so it warns (names the module and the fix) instead of failing."""
    res = run_cli(["train", "-c", SMOKE, "--device", "gpu", "--gpus", "0", "--net", "gpudirect", "--dry-run"], cwd=work)
    assert res.returncode == 0, res.explain()
    warning = [line for line in res.output.splitlines() if "nvidia_peermem" in line]
    assert warning and "modprobe nvidia_peermem" in warning[0] and "--net rdma" in warning[0], res.explain()
    # the real launch refuses (here the CPU-only paddle is named first: both are fatal)
    real = run_cli(["train", "-c", SMOKE, "--device", "gpu", "--gpus", "0", "--net", "gpudirect"], cwd=work)
    assert_one_line_error(real, 2)


def _file_in_the_way(root: Path) -> Path:
    blocker = root / "blocker"
    blocker.write_text("a file where a directory is expected\n")
    return blocker


def test_output_directory_under_a_file(work):
    _file_in_the_way(work)
    res = run_cli(["train", "-c", SMOKE, "--output", "blocker/run"], cwd=work)
    assert_one_line_error(res, 2, "blocker/run", "--output")


def test_sample_out_under_a_file(work):
    _file_in_the_way(work)
    res = run_cli(["data", "sample", "--out", "blocker/data"], cwd=work)
    assert_one_line_error(res, 2, "blocker/data", "--out")


@pytest.fixture
def readonly_dir(tmp_path):
    """A read-only filesystem (root ignores permission bits, not a read-only mount)."""
    if os.geteuid() != 0:
        target = tmp_path / "ro"
        target.mkdir()
        target.chmod(0o555)
        yield target
        target.chmod(0o755)
        return
    target = tmp_path / "ro"
    target.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(target)], check=True)
    try:
        yield target
    finally:
        subprocess.run(["umount", "-l", str(target)], check=False)


def test_output_directory_not_writable(work, readonly_dir):
    res = run_cli(["train", "-c", SMOKE, "--output", str(readonly_dir / "run")], cwd=work, timeout=120)
    assert_one_line_error(res, 2, str(readonly_dir / "run"), "not writable", "--output")


def test_export_to_unwritable_directory(work, readonly_dir):
    weights = work / "w.pdparams"
    weights.write_bytes(b"\x80\x04}\x94.")  # an empty pickled dict: export must not get as far as reading it
    res = run_cli(["export", "-c", SMOKE, "--weights", str(weights), "--output", str(readonly_dir / "model")],
                  cwd=work, timeout=120)
    assert_one_line_error(res, 2, str(readonly_dir / "model"), "not writable")


def test_sample_to_unwritable_directory(work, readonly_dir):
    res = run_cli(["data", "sample", "--out", str(readonly_dir / "data")], cwd=work)
    assert_one_line_error(res, 2, str(readonly_dir / "data"), "not writable")


# ---------------------------------------------------------------- --debug


@pytest.mark.parametrize("case", ["base-cycle", "override-unknown-key", "hostfile-bad-line"])
def test_debug_shows_the_traceback(case, work):
    files, args, words = CASES[case]
    _write(work, files)
    quiet = run_cli(args, cwd=work)
    loud = run_cli(["--debug", *args], cwd=work)
    assert quiet.returncode == loud.returncode == 2
    assert "Traceback" not in quiet.output
    assert "Traceback (most recent call last)" in loud.stderr, loud.explain()
    assert loud.error_lines()[-1] == quiet.error_lines()[0]  # the same one line ends the debug output
