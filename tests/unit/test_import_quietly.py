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


def test_streams_taken_at_import_keep_working_afterwards(noisy_module, capsys):
    """ppdet's logger binds sys.stdout when it is imported: its training log must still reach stdout."""
    name = noisy_module("tc_noisy_d", (
        "import logging, sys\n"
        "log = logging.getLogger('tc_noisy_d')\n"
        "log.propagate = False\n"
        "log.addHandler(logging.StreamHandler(sys.stdout))\n"
        "log.setLevel(logging.INFO)\n"
        "print('Warning: Unable to use numba in PP-Tracking')\n"))
    compat.import_quietly(name)
    sys.modules[name].log.info("Epoch: [0] [ 1/10] loss: 1.0")
    print("partial", end="")
    sys.modules[name].log.info("second record")
    assert capsys.readouterr().out == "Epoch: [0] [ 1/10] loss: 1.0\npartialsecond record\n"


def test_line_filter_holds_partial_lines_until_the_newline_or_a_flush():
    import io

    real = io.StringIO()
    f = compat.LineFilter(real, ("drop me",))
    f.write("keep ")
    assert real.getvalue() == ""
    f.write("this\nplease drop me\nand a tail")
    assert real.getvalue() == "keep this\n"
    f.flush()
    assert real.getvalue() == "keep this\nand a tail"
    assert f.getvalue() == real.getvalue()  # anything else is the real stream's
