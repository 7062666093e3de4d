"""Choose the series to analyse: the best coronal fluid-sensitive series and the best T1 series."""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from ..errors import NoUsableSeriesError, SeriesSelectionError
from .types import Study, Volume

__all__ = ["SeriesSelection", "select_series"]

_PLANE_RANK = {"coronal": 0, "oblique": 1, "axial": 2, "sagittal": 3}


@dataclass
class SeriesSelection:
    """The volumes chosen for analysis and why."""

    fluid_sensitive: Volume
    t1: Optional[Volume] = None
    reasons: dict[str, str] = field(default_factory=dict)


def _matches(volume: Volume, pattern: str) -> bool:
    m = volume.meta
    return pattern == m.series_instance_uid or fnmatch.fnmatch((m.series_description or "").lower(), pattern.lower())


def _rank(volume: Volume, fluid: Optional[Volume] = None) -> tuple:
    m = volume.meta
    pixel_area = float(np.prod(volume.image.GetSpacing()[:2]))
    same_frame = fluid is not None and m.frame_of_reference_uid == fluid.meta.frame_of_reference_uid
    return (_PLANE_RANK.get(m.plane, 9), not same_frame, -m.sequence_confidence, bool(m.stack_label),
            pixel_area, -m.slice_count, m.series_number or 0, m.series_instance_uid)


def _pick(study: Study, role: str, wanted: str, override: Optional[str], fluid: Optional[Volume]):
    if override:
        found = [v for v in study.volumes if _matches(v, override)]
        if not found:
            raise SeriesSelectionError(f"no series matches the {role} choice {override!r} "
                                       f"(series: {', '.join(sorted({v.meta.series_description for v in study.volumes}))})",
                                       study.root)
        best = min(found, key=lambda v: _rank(v, fluid))
        note = "" if best.meta.sequence_class == wanted else f"; recognised as {best.meta.sequence_kind}"
        return best, f"chosen by the user ({override!r}){note}: {best.meta.sequence_reason}"
    found = [v for v in study.volumes if v.meta.sequence_class == wanted]
    if not found:
        return None, None
    best = min(found, key=lambda v: _rank(v, fluid))
    others = len(found) - 1
    return best, (f"best {best.meta.plane} {best.meta.sequence_kind} series"
                  + (f" of {len(found)} candidates" if others else "") + f": {best.meta.sequence_reason}")


def select_series(study: Study, fluid: Optional[str] = None, t1: Optional[str] = None) -> SeriesSelection:
    """Choose the fluid-sensitive and T1 volumes for analysis.

    Parameters
    ----------
    study : Study
    fluid, t1 : str, optional
        Override: a SeriesInstanceUID, or a case-insensitive glob on SeriesDescription
        (e.g. ``"*stir*"``). Default: coronal first, then classification confidence,
        then finer in-plane spacing and more slices; the T1 series preferably shares
        the fluid-sensitive series' frame of reference.

    Raises
    ------
    SeriesSelectionError
        An override matches no series.
    NoUsableSeriesError
        No fluid-sensitive series exists.
    """
    best_fluid, why_fluid = _pick(study, "fluid-sensitive", "fluid_sensitive", fluid, None)
    if best_fluid is None:
        kinds = ", ".join(sorted({f"{v.meta.series_description or '?'} ({v.meta.sequence_kind})"
                                  for v in study.volumes})) or "none"
        raise NoUsableSeriesError(f"no fluid-sensitive series (STIR, T2/PD fat-saturated or Dixon water) in the "
                                  f"study; series found: {kinds}", study.root)
    best_t1, why_t1 = _pick(study, "T1", "t1", t1, best_fluid)
    reasons = {"fluid_sensitive": why_fluid}
    if best_t1 is not None:
        reasons["t1"] = why_t1
    return SeriesSelection(best_fluid, best_t1, reasons)
