"""The versioned JSON Schema of ``report.json`` and its validation.

The schema ships in the package (``bmepipe/report/schemas/report-<version>.json``,
JSON Schema draft 2020-12). A report names the version it follows in
``schema_version``; every report is validated before it is written.

Follow-up comparisons (``compare.json``, :mod:`bmepipe.compare`) have their own schema
(``schemas/compare-<version>.json``); :func:`validate_document` picks the schema by content.
"""

from __future__ import annotations

import functools
import json
import math
from importlib import resources
from collections.abc import Mapping
from typing import Any, Optional

import numpy as np

from bmepipe.errors import OutputError

__all__ = [
    "SCHEMA_VERSION",
    "SIDES",
    "REGIONS",
    "STRUCTURES",
    "PATTERN_LABELS",
    "DISCLAIMER",
    "load_schema",
    "validate_report",
    "document_kind",
    "validate_document",
    "to_jsonable",
    "lookup",
]

#: Current report schema; reports of the earlier versions (1.0.0) are still validated against their own.
SCHEMA_VERSION = "1.1.0"
SIDES = ("right", "left")
#: Bone regions per side (shared/reference/regions.md).
REGIONS = ("femoral_head", "femoral_neck", "intertrochanteric", "proximal_shaft", "acetabulum")
#: Every structure written as ``labels/<side>_<structure>.nii.gz`` (stable output layout).
STRUCTURES = REGIONS + ("bme", "necrosis", "subchondral_line", "effusion")
PATTERN_LABELS = ("toh_like", "avn_like", "sif_like", "normal", "indeterminate")
DISCLAIMER = (
    "Research use only. bmepipe reports measured imaging evidence; it is not a medical device and "
    "does not make a diagnosis. Findings must be interpreted by a qualified radiologist."
)


@functools.lru_cache(maxsize=None)
def _schema_text(version: str) -> str:
    name = f"report-{version}.json"
    try:
        return resources.files("bmepipe.report").joinpath("schemas", name).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise OutputError(f"no report schema for version {version!r}", name) from None


def load_schema(version: Optional[str] = None) -> dict:
    """The report JSON Schema (a fresh dict).

    Parameters
    ----------
    version : str, optional
        Schema version such as ``"1.0.0"``; default the current :data:`SCHEMA_VERSION`.
    """
    return json.loads(_schema_text(version or SCHEMA_VERSION))


@functools.lru_cache(maxsize=None)
def _validator(version: str):
    import jsonschema

    schema = load_schema(version)
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def validate_report(report: dict, path: Any = None) -> None:
    """Check a report against the schema version it names.

    Parameters
    ----------
    report : dict
        The report (plain JSON types; see :func:`to_jsonable`).
    path : path-like, optional
        File name to put in the error message.

    Raises
    ------
    bmepipe.errors.OutputError
        One line: the JSON path of the first problem and what is wrong.
    """
    if not isinstance(report, dict):
        raise OutputError(f"$: report must be an object, got {type(report).__name__}", path)
    version = report.get("schema_version", SCHEMA_VERSION)
    if not isinstance(version, str):
        raise OutputError("$.schema_version: must be a string", path)
    try:
        validator = _validator(version)
    except OutputError:
        message = f"$.schema_version: unknown schema version {version!r} (known: 1.0.0, {SCHEMA_VERSION})"
        raise OutputError(message, path) from None
    errors = sorted(validator.iter_errors(report), key=lambda e: (list(map(str, e.absolute_path)), e.message))
    if errors:
        import jsonschema.exceptions

        err = jsonschema.exceptions.best_match(errors)
        message = err.message if len(err.message) <= 300 else err.message[:297] + "..."
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        raise OutputError(f"{err.json_path}: {message}{more}", path)
    _check_finite(report, "$", path)


def document_kind(doc: Any) -> str:
    """``'compare'`` for a ``compare.json``, ``'report'`` for anything else (a ``report.json``).

    A compare.json names itself with ``kind: "bmepipe-compare"`` (compare schema >= 1.1.0); compare 1.0.0
    files, which had no ``kind``, are recognised by ``interval_days`` next to ``sides`` (no report.json has it).
    """
    if not isinstance(doc, Mapping):
        return "report"
    if doc.get("kind") == "bmepipe-compare" or ("kind" not in doc and "interval_days" in doc and "sides" in doc):
        return "compare"
    return "report"


def validate_document(doc: Any, path: Any = None) -> str:
    """Validate a report.json or compare.json against the schema its content names; return the kind.

    Raises
    ------
    bmepipe.errors.OutputError
        One line: the JSON path of the first problem and what is wrong.
    """
    kind = document_kind(doc)
    if kind == "compare":
        from bmepipe.compare.output import validate_compare

        validate_compare(doc, path)
    else:
        validate_report(doc, path)
    return kind


def _check_finite(obj: Any, where: str, path: Any) -> None:
    # JSON has no NaN/Infinity; the schema's "number" accepts them in Python.
    if isinstance(obj, float) and not math.isfinite(obj):
        raise OutputError(f"{where}: {obj} is not a finite number (use null where not applicable)", path)
    if isinstance(obj, dict):
        for key, value in obj.items():
            _check_finite(value, f"{where}.{key}", path)
    elif isinstance(obj, list):
        for i, value in enumerate(obj):
            _check_finite(value, f"{where}[{i}]", path)


def lookup(obj: Any, dotted: str) -> Any:
    """``obj["a"]["b"]`` for ``dotted="a.b"``; None where a key is missing or a value is not a mapping."""
    for key in dotted.split("."):
        if not isinstance(obj, Mapping):
            return None
        obj = obj.get(key)
    return obj


def to_jsonable(obj: Any) -> Any:
    """A copy of ``obj`` with numpy scalars/arrays, tuples and keys turned into plain JSON types."""
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return to_jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        return obj.item()
    return obj
