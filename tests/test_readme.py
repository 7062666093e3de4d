"""The README stays true: its test command is what CI runs, and every CLI command and option is documented."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest

from bmepipe.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def _fenced_commands() -> list[str]:
    return [line.strip() for block in re.findall(r"```(?:bash|sh)?\n(.*?)```", README, re.S) for line in block.splitlines()]


def test_ci_runs_the_readme_test_command():
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    ci_test_line = [line for line in ci.splitlines() if line.startswith("python3 -m venv .venv")][-1]
    assert ci_test_line in _fenced_commands(), "README's test command and .ci/run differ"


def _subcommands():
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices


@pytest.mark.parametrize("name", sorted(_subcommands()))
def test_every_command_and_option_is_in_the_readme(name):
    parser = _subcommands()[name]
    assert re.search(rf"bmepipe {re.escape(name)}\b", README), f"`bmepipe {name}` has no example in the README"
    section = README.split(f"### `bmepipe {name}", 1)
    assert len(section) == 2, f"README has no '### `bmepipe {name}' section"
    text = section[1].split("\n### ", 1)[0]
    for action in parser._actions:
        longs = [o for o in action.option_strings if o.startswith("--") and o != "--help"]
        for opt in longs:
            assert opt in text, f"option {opt} of `bmepipe {name}` is not documented in its README section"
