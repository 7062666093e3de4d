"""Result types of :func:`bmepipe.quantify.quantify_hips` (report keys and units in their names).

``to_dict()`` gives exactly the report.json keys of ``sides.<side>`` (except
``pattern``, which :mod:`bmepipe.patterns` adds): numbers in the units their names
say, fractions 0-1, ``None`` where not applicable or not measured. Masks are bool
arrays ``[slice, row, column]`` on the fluid-sensitive grid.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from .params import QuantifyParams

__all__ = ["BmeResult", "AvnResult", "SifResult", "SideMeasurements", "HipMeasurements", "MASK_NAMES"]

#: Masks returned per side (label files of the report stage).
MASK_NAMES = ("bme", "necrosis", "subchondral_line", "effusion")
_REGIONS = ("femoral_head", "femoral_neck", "intertrochanteric", "proximal_shaft", "acetabulum")


def _num(v, nd: int = 4):
    if v is None:
        return None
    v = float(v)
    return round(v, nd) if np.isfinite(v) else None


@dataclass
class BmeResult:
    """Bone marrow edema of one hip (volume ml, fractions 0-1 of each region, standardized intensities)."""

    present: Optional[bool] = None
    volume_ml: Optional[float] = None
    fraction: dict = field(default_factory=lambda: {r: None for r in _REGIONS})
    mean_intensity: Optional[float] = None
    peak_intensity: Optional[float] = None
    distribution: Optional[dict] = None

    def to_dict(self) -> dict:
        return {"present": self.present, "volume_ml": _num(self.volume_ml),
                "fraction": {r: _num(self.fraction.get(r)) for r in _REGIONS},
                "mean_intensity": _num(self.mean_intensity), "peak_intensity": _num(self.peak_intensity),
                "distribution": self.distribution}


@dataclass
class AvnResult:
    """Necrotic-segment evidence of one hip (extent % of the head, collapse mm, angles deg)."""

    present: Optional[bool] = None
    necrotic_extent_pct: Optional[float] = None
    collapse_mm: Optional[float] = None
    jic_type: Optional[str] = None
    kerboul_angle_deg: Optional[float] = None
    kerboul_grade: Optional[int] = None
    double_line: Optional[bool] = None
    arco_extent_group: Optional[str] = None
    arco_stage_hint: Optional[str] = None
    details: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"present": self.present, "necrotic_extent_pct": _num(self.necrotic_extent_pct, 3),
                "collapse_mm": _num(self.collapse_mm, 3), "jic_type": self.jic_type,
                "kerboul_angle_deg": _num(self.kerboul_angle_deg, 2), "kerboul_grade": self.kerboul_grade,
                "double_line": self.double_line, "arco_extent_group": self.arco_extent_group,
                "arco_stage_hint": self.arco_stage_hint}


@dataclass
class SifResult:
    """Subchondral low-signal line of one hip (mm)."""

    present: Optional[bool] = None
    line_length_mm: Optional[float] = None
    line_thickness_mm: Optional[float] = None
    line_exceeds_vande_berg: Optional[bool] = None
    line_shape: Optional[str] = None
    band_depth_ratio: Optional[float] = None
    details: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"present": self.present, "line_length_mm": _num(self.line_length_mm, 3),
                "line_thickness_mm": _num(self.line_thickness_mm, 3),
                "line_exceeds_vande_berg": self.line_exceeds_vande_berg, "line_shape": self.line_shape,
                "band_depth_ratio": _num(self.band_depth_ratio)}


@dataclass
class SideMeasurements:
    """Everything measured on one hip.

    Attributes
    ----------
    side : {"right", "left"}
    status : {"analysed", "failed"}
    reason : str or None
    head_center_lps_mm, head_radius_mm : from the segmentation
    region_volumes_ml : dict region -> ml
    bme, avn, sif : results
    effusion_ml : float or None
    masks : dict name -> bool ndarray (:data:`MASK_NAMES`), empty for a failed side
    details : dict
        Intermediate values (levels, calibration, fitted band) for debugging and the benchmark.
    """

    side: str
    status: str = "analysed"
    reason: Optional[str] = None
    head_center_lps_mm: Optional[tuple] = None
    head_radius_mm: Optional[float] = None
    region_volumes_ml: dict = field(default_factory=dict)
    bme: BmeResult = field(default_factory=BmeResult)
    avn: AvnResult = field(default_factory=AvnResult)
    sif: SifResult = field(default_factory=SifResult)
    effusion_ml: Optional[float] = None
    masks: dict = field(default_factory=dict)
    details: dict = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status == "analysed"

    def to_dict(self) -> dict:
        """report.json ``sides.<side>`` without ``pattern``."""
        c = self.head_center_lps_mm
        return {
            "status": self.status, "reason": self.reason,
            "femoral_head": {"center_lps_mm": None if c is None else [round(float(v), 3) for v in c],
                             "radius_mm": _num(self.head_radius_mm, 3)},
            "regions": {r: {"volume_ml": _num(self.region_volumes_ml.get(r))} for r in _REGIONS},
            "bme": self.bme.to_dict(), "avn": self.avn.to_dict(), "sif": self.sif.to_dict(),
            "effusion_ml": _num(self.effusion_ml),
        }


@dataclass
class HipMeasurements:
    """Both hips and the parameters in force."""

    sides: dict
    params: QuantifyParams
    timings_s: dict = field(default_factory=dict)
    details: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"sides": {s: m.to_dict() for s, m in self.sides.items()}, "parameters": self.params.to_dict()}

    def masks(self) -> dict:
        """``'<side>_<name>'`` -> bool mask, for the label files."""
        return {f"{s}_{k}": v for s, m in self.sides.items() for k, v in m.masks.items()}
