"""Atomic writes: the target is replaced whole or not at all."""

from __future__ import annotations

import os
import stat

import pytest

from trainctl.fsutil import atomic_target, atomic_write_text


def test_write_replaces_whole_file_with_mode_0644(tmp_path):
    target = tmp_path / "sub" / "run.json"
    atomic_write_text(target, "old")
    atomic_write_text(target, "new")
    assert target.read_text() == "new"
    assert stat.S_IMODE(target.stat().st_mode) == 0o644
    assert os.listdir(target.parent) == ["run.json"]  # no temporary left behind


def test_failure_inside_the_block_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "model.pdparams"
    target.write_bytes(b"complete")
    with pytest.raises(OSError, match="disk full"):
        with atomic_target(target) as tmp:
            tmp.write_bytes(b"half")
            raise OSError("disk full")
    assert target.read_bytes() == b"complete"
    assert os.listdir(tmp_path) == ["model.pdparams"]


def test_temporary_is_beside_the_target_and_hidden(tmp_path):
    target = tmp_path / "w.pdparams"
    with atomic_target(target, suffix=".part") as tmp:
        assert tmp.parent == tmp_path and tmp.name.startswith(".w.pdparams.") and tmp.name.endswith(".part")
        assert not target.exists()
        tmp.write_bytes(b"x")
    assert target.read_bytes() == b"x"
