"""The package skeleton: version, CLI framework, typed errors, atomic writes, privacy helpers."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest

import bmepipe
from bmepipe import errors
from bmepipe.cli import main
from bmepipe.io.atomic import atomic_path, atomic_write_text
from bmepipe.privacy import pseudonym, safe_filename


def test_version_matches_installed_metadata():
    from importlib.metadata import version

    assert bmepipe.__version__ == version("bmepipe")


def test_version_flag_via_python_m():
    out = subprocess.run(
        [sys.executable, "-m", "bmepipe", "--version"], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == f"bmepipe {bmepipe.__version__}"


def test_console_script_is_installed():
    exe = Path(sys.executable).with_name("bmepipe")
    assert exe.exists(), "the bmepipe console script is not installed next to the interpreter"
    out = subprocess.run([str(exe), "--help"], capture_output=True, text=True, check=True)
    assert "usage: bmepipe" in out.stdout


def test_no_command_is_an_error(capsys):
    assert main([]) != 0


def test_every_error_prints_one_line_with_path(capsys, monkeypatch):
    def failing(args):
        raise errors.SliceSpacingError("slice 7 missing between 12.0 and 20.0 mm", path="/data/s1")

    import bmepipe.cli as cli

    monkeypatch.setattr(cli, "build_parser", lambda: _parser_with(failing))
    code = main(["fail"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1
    assert err.startswith("bmepipe: error: /data/s1: slice 7 missing")
    assert "Traceback" not in err


def test_unexpected_exception_is_one_line_without_traceback(capsys, monkeypatch):
    import bmepipe.cli as cli

    def boom(args):
        raise ValueError("bad\nthing")

    monkeypatch.setattr(cli, "build_parser", lambda: _parser_with(boom))
    code = main(["fail"])
    err = capsys.readouterr().err
    assert code == 3
    assert err.count("\n") == 1 and "Traceback" not in err and "bad thing" in err


def _parser_with(func):
    import argparse

    p = argparse.ArgumentParser(prog="bmepipe")
    p.add_argument("--debug", action="store_true")
    p.add_argument("-v", "--verbose", action="count", default=0)
    p.add_argument("-q", "--quiet", action="store_true")
    sub = p.add_subparsers(dest="command")
    sp = sub.add_parser("fail")
    sp.set_defaults(func=func)
    return p


def test_a_reader_closing_the_pipe_early_is_not_an_error():
    # `bmepipe validate-report --schema | head -c 100`: the schema is longer than what the reader takes
    proc = subprocess.Popen([sys.executable, "-m", "bmepipe", "validate-report", "--schema"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert len(proc.stdout.read(100)) == 100
    proc.stdout.close()  # the reader goes away
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 0, err
    assert err == ""


def test_errors_hierarchy_and_pickling():
    err = errors.DuplicateSliceError("two different slices at z=10.0 mm", path="a/b")
    assert isinstance(err, errors.GeometryError) and isinstance(err, errors.InputError)
    assert isinstance(err, errors.BmepipeError)
    again = pickle.loads(pickle.dumps(err))
    assert type(again) is errors.DuplicateSliceError and str(again) == "a/b: two different slices at z=10.0 mm"
    assert "\n" not in str(errors.InputError("multi\nline\tmessage"))


def test_atomic_write_replaces_whole_file(tmp_path):
    target = tmp_path / "sub" / "report.json"
    atomic_write_text(target, "old")
    atomic_write_text(target, "new content")
    assert target.read_text() == "new content"
    assert [p.name for p in target.parent.iterdir()] == ["report.json"]


def test_atomic_path_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "labels.nii.gz"
    target.write_text("previous")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            assert tmp.name.endswith(".nii.gz") and tmp.parent == tmp_path
            tmp.write_text("half")
            raise RuntimeError("killed")
    assert target.read_text() == "previous"
    assert sorted(os.listdir(tmp_path)) == ["labels.nii.gz"]


@pytest.mark.parametrize(
    "text",
    ["DOE^JOHN", "../../etc/passwd", "t2_tirm_cor/../x", "Ärger\x00\n", "", "..."],
)
def test_safe_filename_cannot_escape(text):
    name = safe_filename(text)
    assert name and "/" not in name and "\\" not in name and ".." not in name
    assert all(c.isalnum() or c in "._-" for c in name)


def test_pseudonym_is_stable_salted_and_opaque():
    a = pseudonym("PAT123", salt="s1")
    assert a == pseudonym("PAT123", salt="s1")
    assert a != pseudonym("PAT123", salt="s2")
    assert "PAT123" not in a and len(a) == 11
