"""Typed values produced by the segmentation stage (contract between segment and quantify).

Masks are boolean numpy arrays indexed ``[slice, row, column]`` on the
fluid-sensitive series' grid (the reference grid of
:class:`bmepipe.normalize.NormalizedStudy`). Points and vectors are patient LPS
millimetres (+x patient left, +y posterior, +z head). Region and landmark
definitions follow ``shared/reference/regions.md``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import numpy as np

__all__ = ["SIDES", "REGIONS", "SideSegmentation", "HipSegmentation"]

SIDES = ("right", "left")
#: Bone regions per side, regions.md.
REGIONS = ("femoral_head", "femoral_neck", "intertrochanteric", "proximal_shaft", "acetabulum")

Vec3 = tuple[float, float, float]


@dataclass
class SideSegmentation:
    """One proximal femur (and its acetabulum) with landmarks.

    Attributes
    ----------
    side : {"right", "left"}
        Patient side; the right hip lies at negative x (LPS).
    status : {"analysed", "failed"}
    reason : str or None
        Why the side failed (e.g. "no femoral head inside the field of view").
    regions : dict of str -> bool ndarray
        One mask per name in :data:`REGIONS` (bone = cortex + marrow).
    marrow : bool ndarray or None
        Femoral marrow (inside the cortex) of head, neck, intertrochanteric region and shaft.
    joint_space : bool ndarray or None
        Joint cavity and capsular recesses around head and neck, where effusion is measured.
    head_center_lps_mm, head_radius_mm
        Sphere fitted to the articular surface (fovea and collapsed area excluded).
    neck_axis : unit vector from the head centre towards the shaft.
    neck_radius_mm : equivalent-circle radius of the narrowest neck section.
    shaft_axis : unit vector along the proximal diaphysis, towards the feet.
    neck_shaft_point_lps_mm : X, closest approach of neck and shaft axes.
    head_neck_junction_lps_mm : centre of plane P1 on the neck axis.
    subchondral_zone : bool ndarray or None
        Head marrow within ``subchondral_depth_mm`` of the articular surface.
    weight_bearing : bool ndarray or None
        Head voxels within the 45-degree cone around +z from the head centre (regions.md).
    surface_points_lps_mm : (N, 3) array or None
        Points of the articular surface (for collapse: deviation from the sphere).
    surface_deviation_mm : (N,) array or None
        Radial distance of each surface point from the fitted sphere, negative = inside (collapse);
        median over the nearest rays (``hips.COLLAPSE_NEIGHBOURS``). The collapse depth of regions.md
        is ``-min`` of it over the points in the weight-bearing cone.
    extras : dict
        Diagnostics from :func:`bmepipe.segment.segment_hips`: ``inlier_fraction`` (share of surface
        rays on the sphere), ``neck_cone_deg``, ``neck_length_mm`` (C to X), ``narrowest_neck_t_mm``,
        ``shaft_levels`` (axial sections used for the shaft axis), ``neck_shaft_angle_deg`` and
        ``warnings`` (list of str, e.g. an assumed shaft axis).
    """

    side: str
    status: str = "analysed"
    reason: Optional[str] = None
    regions: dict[str, np.ndarray] = field(default_factory=dict)
    marrow: Optional[np.ndarray] = None
    joint_space: Optional[np.ndarray] = None
    head_center_lps_mm: Optional[Vec3] = None
    head_radius_mm: Optional[float] = None
    neck_axis: Optional[Vec3] = None
    neck_radius_mm: Optional[float] = None
    shaft_axis: Optional[Vec3] = None
    neck_shaft_point_lps_mm: Optional[Vec3] = None
    head_neck_junction_lps_mm: Optional[Vec3] = None
    subchondral_depth_mm: float = 5.0
    subchondral_zone: Optional[np.ndarray] = None
    weight_bearing: Optional[np.ndarray] = None
    surface_points_lps_mm: Optional[np.ndarray] = None
    surface_deviation_mm: Optional[np.ndarray] = None
    extras: dict = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status == "analysed"


@dataclass
class HipSegmentation:
    """Both sides, on one reference grid.

    Attributes
    ----------
    sides : dict {"right": SideSegmentation, "left": SideSegmentation}
    spacing_mm : (column, row, slice) voxel spacing of the grid
    origin_lps_mm : centre of the first voxel
    direction : 9 floats, SimpleITK GetDirection order
    timings_s : seconds per step
    """

    sides: dict[str, SideSegmentation]
    spacing_mm: Vec3
    origin_lps_mm: Vec3
    direction: tuple[float, ...]
    timings_s: dict = field(default_factory=dict)

    def index_to_lps(self, zyx: np.ndarray) -> np.ndarray:
        """Map ``(N, 3)`` array indices ``[slice, row, column]`` to LPS mm."""
        zyx = np.asarray(zyx, dtype=float).reshape(-1, 3)
        ijk = zyx[:, ::-1] * np.asarray(self.spacing_mm)
        return ijk @ np.asarray(self.direction).reshape(3, 3).T + np.asarray(self.origin_lps_mm)

    def lps_to_index(self, points: np.ndarray) -> np.ndarray:
        """Map ``(N, 3)`` LPS mm points to fractional array indices ``[slice, row, column]``."""
        pts = np.asarray(points, dtype=float).reshape(-1, 3) - np.asarray(self.origin_lps_mm)
        ijk = pts @ np.asarray(self.direction).reshape(3, 3) / np.asarray(self.spacing_mm)
        return ijk[:, ::-1]
