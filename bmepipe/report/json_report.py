"""Write ``report.json``: validated, canonical (sorted keys), byte-identical for the same report."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Union

from bmepipe.errors import InputError, OutputError
from bmepipe.io.atomic import atomic_write_text

from .schema import to_jsonable, validate_report

__all__ = ["dumps_report", "write_report_json", "read_report_json"]

PathLike = Union[str, "os.PathLike[str]"]


def dumps_report(report: dict, path: PathLike | None = None) -> str:
    """The canonical JSON text of a validated report (sorted keys, 2-space indent, final newline).

    Raises
    ------
    bmepipe.errors.OutputError
        If the report does not follow its schema or holds NaN/Infinity.
    """
    plain = to_jsonable(report)
    validate_report(plain, path)
    try:
        return json.dumps(plain, sort_keys=True, indent=2, ensure_ascii=False, allow_nan=False) + "\n"
    except (TypeError, ValueError) as exc:  # pragma: no cover - validation catches these first
        raise OutputError(f"report is not JSON-serializable ({exc})", path) from exc


def write_report_json(report: dict, path: PathLike) -> Path:
    """Validate ``report`` against its schema, then write it atomically to ``path``.

    Returns
    -------
    Path
        ``path``; the file is UTF-8 with sorted keys so that the same report gives the same bytes.
    """
    text = dumps_report(report, path)
    try:
        return atomic_write_text(path, text)
    except OSError as exc:
        raise OutputError(f"cannot write the report ({exc.strerror or exc})", path) from exc


def read_report_json(path: PathLike) -> dict:
    """Read a ``report.json`` and check it against the schema version it names.

    Raises
    ------
    bmepipe.errors.InputError
        Unreadable, not JSON, or not a valid report (message: JSON path and problem).
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise InputError(f"cannot read the report ({exc.strerror or type(exc).__name__})", path) from exc
    try:
        report = json.loads(text)
    except ValueError as exc:
        raise InputError(f"not valid JSON ({' '.join(str(exc).split())})", path) from exc
    try:
        validate_report(report, path)
    except OutputError as exc:
        raise InputError(exc.message, path) from None
    return report
