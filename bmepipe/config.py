"""Analysis configuration: every parameter in force, loadable from a TOML file.

A configuration file has one table per stage; every key is optional and an
unknown key is an error (typos must not silently fall back to defaults)::

    [series]            # which series to analyse (default: best coronal fluid-sensitive and best T1)
    fluid = "*tirm*"    # SeriesInstanceUID or case-insensitive glob on SeriesDescription
    t1 = "1.2.840...."

    [analysis]
    sides = ["right", "left"]
    formats = ["json", "html", "nifti", "dicom"]
    uid_seed = 0        # DICOM SEG/SR UIDs derived from source + seed: reproducible outputs

    [normalize]
    bias_method = "n4_coarse"
    register = "auto"   # "auto" | "never" | "always"

    [segment]
    subchondral_depth_mm = 5.0

    [quantify]          # any field of bmepipe.quantify.QuantifyParams
    bme_edema_fraction = 0.3

    [patterns]          # any field of bmepipe.patterns.PatternParams
    min_score = 0.4

The values in force are written into ``report.json`` under ``parameters``.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field, replace
from typing import Any, Optional, Union

from .errors import ConfigError
from .normalize.bias import BIAS_METHODS
from .patterns import PatternParams
from .quantify import QuantifyParams

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

__all__ = ["AnalysisConfig", "FORMATS", "SIDES", "load_config"]

SIDES = ("right", "left")
#: Output formats of ``bmepipe analyze``: report.json is always written.
FORMATS = ("json", "html", "nifti", "dicom")
REGISTER_MODES = ("auto", "never", "always")

PathLike = Union[str, "os.PathLike[str]"]


@dataclass(frozen=True)
class AnalysisConfig:
    """Every parameter of one analysis.

    Parameters
    ----------
    fluid, t1 : str, optional
        Series override: a SeriesInstanceUID or a case-insensitive glob on the
        SeriesDescription. None: the best coronal fluid-sensitive / T1 series.
    sides : tuple of {"right", "left"}
        Hips to report; a side left out is reported as not requested.
    formats : tuple
        Outputs besides report.json: ``html``, ``nifti`` (label maps), ``dicom`` (SEG + SR).
    uid_seed : int
        Seed of the DICOM UIDs of SEG and SR (with the source series and the report content).
    bias_method, register : str
        See :func:`bmepipe.normalize.normalize_study`.
    subchondral_depth_mm : float
        Depth of the subchondral zone under the articular surface (regions.md: 5 mm).
    quantify, patterns
        Stage parameters (:class:`~bmepipe.quantify.QuantifyParams`, :class:`~bmepipe.patterns.PatternParams`).
    """

    fluid: Optional[str] = None
    t1: Optional[str] = None
    sides: tuple[str, ...] = SIDES
    formats: tuple[str, ...] = FORMATS
    uid_seed: int = 0
    bias_method: str = "n4_coarse"
    register: str = "auto"
    subchondral_depth_mm: float = 5.0
    quantify: QuantifyParams = field(default_factory=QuantifyParams)
    patterns: PatternParams = field(default_factory=PatternParams)

    def __post_init__(self) -> None:
        if not self.sides or any(s not in SIDES for s in self.sides):
            raise ConfigError(f"sides must be a non-empty subset of {SIDES}, got {list(self.sides)}")
        bad = [f for f in self.formats if f not in FORMATS]
        if bad:
            raise ConfigError(f"unknown output format(s) {bad}; choose from {list(FORMATS)}")
        if self.bias_method not in BIAS_METHODS:
            raise ConfigError(f"bias_method must be one of {list(BIAS_METHODS)}, got {self.bias_method!r}")
        if self.register not in REGISTER_MODES:
            raise ConfigError(f"register must be one of {list(REGISTER_MODES)}, got {self.register!r}")
        if not 1.0 <= float(self.subchondral_depth_mm) <= 15.0:
            raise ConfigError(f"subchondral_depth_mm must be within 1-15 mm, got {self.subchondral_depth_mm}")
        object.__setattr__(self, "sides", tuple(s for s in SIDES if s in self.sides))
        object.__setattr__(self, "formats", tuple(f for f in FORMATS if f in self.formats))

    def to_dict(self) -> dict:
        """Every parameter in force, by stage (written into report.json ``parameters``)."""
        return {
            "series": {"fluid": self.fluid, "t1": self.t1},
            "analysis": {"sides": list(self.sides), "formats": list(self.formats), "uid_seed": self.uid_seed},
            "normalize": {"bias_method": self.bias_method, "register": self.register},
            "segment": {"subchondral_depth_mm": float(self.subchondral_depth_mm)},
            "quantify": self.quantify.to_dict(),
            "patterns": self.patterns.to_dict(),
        }

    def updated(self, **changes: Any) -> "AnalysisConfig":
        """A copy with some top-level values changed (None values are ignored)."""
        return replace(self, **{k: v for k, v in changes.items() if v is not None})

    @classmethod
    def from_dict(cls, tables: dict, source: Optional[PathLike] = None) -> "AnalysisConfig":
        """Build from the tables of a configuration file (see the module docstring)."""
        layout = {
            "series": ("fluid", "t1"),
            "analysis": ("sides", "formats", "uid_seed"),
            "normalize": ("bias_method", "register"),
            "segment": ("subchondral_depth_mm",),
        }
        unknown_tables = set(tables) - set(layout) - {"quantify", "patterns"}
        if unknown_tables:
            raise ConfigError(f"unknown table(s) [{'], ['.join(sorted(unknown_tables))}]", source)
        kwargs: dict[str, Any] = {}
        for table, keys in layout.items():
            values = tables.get(table, {})
            if not isinstance(values, dict):
                raise ConfigError(f"[{table}] must be a table", source)
            unknown = set(values) - set(keys)
            if unknown:
                raise ConfigError(f"unknown key(s) in [{table}]: {', '.join(sorted(unknown))}", source)
            kwargs.update(values)
        for name in ("sides", "formats"):
            if name in kwargs:
                kwargs[name] = tuple(kwargs[name])
        try:
            kwargs["quantify"] = QuantifyParams.from_dict(tables.get("quantify", {}))
            kwargs["patterns"] = PatternParams.from_dict(tables.get("patterns", {}))
            return cls(**kwargs)
        except ConfigError as err:
            raise ConfigError(err.message, source) from None
        except TypeError as err:
            raise ConfigError(f"invalid value: {err}", source) from None


def load_config(path: Optional[PathLike]) -> AnalysisConfig:
    """Read a TOML configuration file (None: the defaults)."""
    if path is None:
        return AnalysisConfig()
    try:
        with open(path, "rb") as fh:
            tables = tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError("configuration file not found", path) from None
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"not valid TOML: {err}", path) from None
    return AnalysisConfig.from_dict(tables, source=path)


