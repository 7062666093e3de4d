"""Shared behaviour of the numeric parameter sets (QuantifyParams, PatternParams).

Each is a frozen dataclass of numbers that checks its values at construction, is written into the report as a
plain dict and is read from a TOML table in which an unknown key is an error.
"""

from __future__ import annotations

from dataclasses import asdict, fields

from .errors import ConfigError


class NumericParams:
    """Mixin for frozen dataclasses whose every field is a number.

    Subclasses set ``_kind`` (the word used in error messages, e.g. ``"quantify"``) and, when no value may be
    negative, ``_non_negative = True``; extra checks go in ``__post_init__`` after calling this one.
    """

    _kind = "analysis"
    _non_negative = False

    def __post_init__(self) -> None:
        what = "a non-negative number" if self._non_negative else "a number"
        for f in fields(self):
            v = getattr(self, f.name)
            if not isinstance(v, (int, float)) or isinstance(v, bool) or v != v or (self._non_negative and v < 0):
                raise ConfigError(f"{self._kind} parameter {f.name} must be {what}, got {v!r}")

    def to_dict(self) -> dict:
        """Plain dict of every parameter (for the report's ``parameters``)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, table: dict):
        """Build from a dict or TOML table; unknown keys are an error, missing keys keep their defaults."""
        unknown = set(table) - {f.name for f in fields(cls)}
        if unknown:
            raise ConfigError(f"unknown {cls._kind} parameter(s): {', '.join(sorted(unknown))}")
        return cls(**{k: float(v) if isinstance(v, int) and not isinstance(v, bool) else v for k, v in table.items()})
