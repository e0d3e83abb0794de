"""compat.import_quietly: import-time prints filtered line by line, the rest kept in order (no paddle)."""

from __future__ import annotations

import sys

import pytest

from trainctl.runner import compat


@pytest.fixture
def noisy_module(tmp_path, monkeypatch):
    def make(name: str, body: str) -> str:
        (tmp_path / f"{name}.py").write_text(body)
        monkeypatch.syspath_prepend(str(tmp_path))
        monkeypatch.delitem(sys.modules, name, raising=False)
        return name
    yield make


def test_drops_the_noise_lines_and_keeps_the_rest_in_order(noisy_module, capsys):
    name = noisy_module("tc_noisy_a", (
        "print('first')\n"
        "print('Warning: Unable to use numba in PP-Tracking, please install numba')\n"
        "print('second')\n"
        "print('Warning: Unable to use numba in PP-Tracking, please install numba')\n"
        "VALUE = 42\n"))
    compat.import_quietly(name)
    assert sys.modules[name].VALUE == 42
    assert capsys.readouterr().out == "first\nsecond\n"


def test_a_failing_import_still_prints_what_it_printed(noisy_module, capsys):
    name = noisy_module("tc_noisy_b", "print('before the error')\nraise ImportError('broken')\n")
    with pytest.raises(ImportError, match="broken"):
        compat.import_quietly(name)
    assert capsys.readouterr().out == "before the error\n"


def test_an_imported_module_is_not_imported_again(noisy_module, capsys):
    name = noisy_module("tc_noisy_c", "print('once')\n")
    compat.import_quietly(name)
    compat.import_quietly(name)
    assert capsys.readouterr().out == "once\n"
