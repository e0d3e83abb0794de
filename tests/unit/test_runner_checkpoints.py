"""The checkpoint index: what --resume auto may pick, and --keep rotation (pure, no paddle)."""

from __future__ import annotations

import json

from trainctl.runner.checkpoint import INDEX_FILE, add_to_index, is_complete, latest_checkpoint, read_index, rotate


def _write_ckpt(run_dir, name, epoch, t, size=100, optimizer=True):
    """Files as save_checkpoint leaves them, then the index entry (the rename protocol's last step)."""
    files = {".pdparams": size}
    (run_dir / f"{name}.pdparams").write_bytes(b"p" * size)
    if optimizer:
        (run_dir / f"{name}.pdopt").write_bytes(b"o" * (size // 2))
        files[".pdopt"] = size // 2
    return add_to_index(run_dir, {"name": name, "epoch": epoch, "time": t, "files": files})


def test_newest_complete_checkpoint_is_chosen(tmp_path):
    _write_ckpt(tmp_path, "0", 1, 10.0)
    _write_ckpt(tmp_path, "1", 2, 20.0)
    assert latest_checkpoint(tmp_path)["name"] == "1"


def test_planted_files_without_an_index_entry_are_never_chosen(tmp_path):
    _write_ckpt(tmp_path, "0", 1, 10.0)
    # a later epoch's files under their final names, as a kill mid-save would leave them
    (tmp_path / "5.pdparams").write_bytes(b"truncated")
    (tmp_path / "5.pdopt").write_bytes(b"")
    assert latest_checkpoint(tmp_path)["name"] == "0"


def test_truncated_file_of_a_listed_checkpoint_disqualifies_it(tmp_path):
    _write_ckpt(tmp_path, "0", 1, 10.0)
    _write_ckpt(tmp_path, "1", 2, 20.0)
    (tmp_path / "1.pdparams").write_bytes(b"p" * 10)  # truncated after the fact
    entry = read_index(tmp_path)["checkpoints"][1]
    assert not is_complete(tmp_path, entry)
    assert latest_checkpoint(tmp_path)["name"] == "0"
    (tmp_path / "0.pdopt").unlink()
    assert latest_checkpoint(tmp_path) is None


def test_weights_only_and_best_model_are_not_resume_points(tmp_path):
    _write_ckpt(tmp_path, "0", 1, 10.0)
    _write_ckpt(tmp_path, "best_model", 3, 30.0)
    _write_ckpt(tmp_path, "2", 3, 30.0, optimizer=False)
    assert latest_checkpoint(tmp_path)["name"] == "0"


def test_no_index_or_broken_index_means_no_checkpoint(tmp_path):
    assert latest_checkpoint(tmp_path) is None
    (tmp_path / INDEX_FILE).write_text("{not json")
    assert latest_checkpoint(tmp_path) is None


def test_keep_rotation_drops_oldest_numbered_only():
    entries = [{"name": n, "epoch": e, "time": e} for n, e in [("0", 1), ("1", 2), ("best_model", 2), ("2", 3), ("model_final", 4)]]
    kept, dropped = rotate(entries, 2)
    assert [e["name"] for e in dropped] == ["0"]
    assert [e["name"] for e in kept] == ["1", "best_model", "2", "model_final"]
    assert rotate(entries, None) == (entries, [])
    assert rotate(entries, 0) == (entries, [])


def test_keep_deletes_files_after_the_index_no_longer_lists_them(tmp_path):
    for i in range(4):
        (tmp_path / f"{i}.pdparams").write_bytes(b"x")
        (tmp_path / f"{i}.pdopt").write_bytes(b"y")
        dropped = add_to_index(tmp_path, {"name": str(i), "epoch": i + 1, "time": float(i), "files": {".pdparams": 1, ".pdopt": 1}}, keep=2)
    assert [e["name"] for e in dropped] == ["1"]
    assert sorted(p.name for p in tmp_path.glob("*.pd*")) == ["2.pdopt", "2.pdparams", "3.pdopt", "3.pdparams"]
    listed = [e["name"] for e in json.loads((tmp_path / INDEX_FILE).read_text())["checkpoints"]]
    assert listed == ["2", "3"]
