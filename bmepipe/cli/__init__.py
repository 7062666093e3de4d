"""The ``bmepipe`` command line.

Every module in this package whose name does not start with ``_`` is a command
module: it defines ``register(subparsers)``, which adds its sub-command(s) and
sets ``func`` (a callable taking the parsed arguments and returning an exit
code). Command modules import heavy libraries inside their functions so that
``bmepipe --help`` stays fast.

Errors: a :class:`bmepipe.errors.BmepipeError` becomes one line on stderr,
``bmepipe: error: <file>: <problem>``, and exit code 2; any other exception is
reported in one line as an internal error (exit code 3) unless ``--debug`` asks
for the traceback.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import pkgutil
import sys
from typing import Callable, Optional, Sequence

from .._version import __version__

__all__ = ["main", "build_parser"]

EXIT_OK = 0
EXIT_INPUT_ERROR = 2
EXIT_INTERNAL_ERROR = 3
EXIT_INTERRUPTED = 130


def _command_modules():
    pkg = importlib.import_module(__name__)
    for info in sorted(pkgutil.iter_modules(pkg.__path__), key=lambda m: m.name):
        if not info.name.startswith("_"):
            yield importlib.import_module(f"{__name__}.{info.name}")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every sub-command registered."""
    parser = argparse.ArgumentParser(
        prog="bmepipe",
        description=(
            "Hip MRI pipeline: load DICOM studies, normalize, segment both proximal femurs, "
            "quantify bone marrow edema and lay out TOH/AVN/SIF evidence. "
            "For research use only; never a diagnosis."
        ),
    )
    parser.add_argument("--version", action="version", version=f"bmepipe {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv for debug)")
    parser.add_argument("-q", "--quiet", action="store_true", help="only errors")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks of unexpected errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in _command_modules():
        module.register(sub)
    return parser


def _configure_logging(verbose: int, quiet: bool) -> None:
    level = logging.ERROR if quiet else (logging.WARNING, logging.INFO, logging.DEBUG)[min(verbose, 2)]
    logging.basicConfig(level=level, format="bmepipe: %(levelname)s: %(message)s", stream=sys.stderr)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the command line; returns the exit code (also used by ``python -m bmepipe``)."""
    from ..errors import BmepipeError

    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return EXIT_INPUT_ERROR
    _configure_logging(args.verbose, args.quiet)
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return int(func(args) or 0)
    except BmepipeError as err:
        print(f"bmepipe: error: {err}", file=sys.stderr)
        return EXIT_INPUT_ERROR
    except KeyboardInterrupt:
        print("bmepipe: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # the reader stopped early (`bmepipe validate-report --schema | head`): nothing went wrong here.
        # Point stdout at /dev/null so that the interpreter's final flush does not raise again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except Exception as err:  # noqa: BLE001 - last line of defence: one line, no traceback
        if args.debug:
            raise
        msg = " ".join(str(err).split()) or type(err).__name__
        print(
            f"bmepipe: internal error: {type(err).__name__}: {msg} (run with --debug for the traceback)",
            file=sys.stderr,
        )
        return EXIT_INTERNAL_ERROR
