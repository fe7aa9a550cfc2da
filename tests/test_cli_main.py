"""What ``metabnn.cli.main`` makes of every way a command can end: one line, the right exit code."""

from __future__ import annotations

import argparse
import errno
import re

import pytest

from metabnn import cli
from metabnn.errors import MetabnnError


def _main_with(monkeypatch, func, command: str = "train"):
    """Run ``cli.main`` on the real parser, with ``command``'s work replaced by ``func``."""
    real = cli.build_parser

    def parser():
        p = real()
        sub = next(a for a in p._actions if isinstance(a, argparse._SubParsersAction))
        sub.choices[command].set_defaults(func=func)
        return p

    monkeypatch.setattr(cli, "build_parser", parser)
    argv = {"train": ["train", "--preset", "demo", "--out", "x"], "build": ["build", "e", "--board", "pynq-z2",
            "--target-fps", "1", "--out", "b"], "export": ["export", "r", "--out", "e"]}[command]
    return cli.main(argv)


def _raise(exc):
    def f(args):
        raise exc
    return f


def test_user_error_is_one_line_rc2(monkeypatch, capsys):
    assert _main_with(monkeypatch, _raise(MetabnnError("bad thing; do this"))) == 2
    assert capsys.readouterr().err == "metabnn: error: bad thing; do this\n"


@pytest.mark.parametrize("code", [errno.EACCES, errno.EROFS, errno.ENOSPC])
def test_os_error_is_one_line_rc2(monkeypatch, capsys, code):
    assert _main_with(monkeypatch, _raise(OSError(code, "nope", "/some/where/file.json"))) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("metabnn: error: cannot use '/some/where/file.json'")
    assert "Traceback" not in err


def test_ctrl_c_message_is_the_commands_own(monkeypatch, capsys):
    assert _main_with(monkeypatch, _raise(KeyboardInterrupt())) == 130
    assert "resume with 'metabnn train --resume RUN_DIR'" in capsys.readouterr().err
    for command in ("build", "export"):
        assert _main_with(monkeypatch, _raise(KeyboardInterrupt()), command) == 130
        err = capsys.readouterr().err
        assert err.startswith("metabnn: interrupted") and "--resume" not in err, (command, err)


def test_every_command_says_what_ctrl_c_left():
    p = cli.build_parser()
    sub = next(a for a in p._actions if isinstance(a, argparse._SubParsersAction))
    for name, sp in sub.choices.items():
        if name == "data":
            continue
        assert sp.get_default("interrupted"), f"metabnn {name} has no Ctrl-C message"


def test_bug_gives_one_line_and_keeps_the_traceback(monkeypatch, capsys, tmp_path):
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.delenv("METABNN_TRACEBACK", raising=False)
    import tempfile
    monkeypatch.setattr(tempfile, "tempdir", None)
    assert _main_with(monkeypatch, _raise(ZeroDivisionError("division by zero"))) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "internal error: ZeroDivisionError" in err
    path = re.search(r"traceback is in (\S+):", err).group(1)
    assert "Traceback" in open(path).read() and path.startswith(str(tmp_path))
