"""The femoral head in spherical coordinates: rays from the head centre.

Measurements of the head (necrotic segment, subchondral line, collapse) are made
on images resampled along rays from the fitted head centre C (regions.md):
direction ``q(theta, phi) = sin(theta) cos(phi) u + sin(theta) sin(phi) a + cos(theta) w``
with ``w`` superior (+z), ``u`` lateral (-x for the right hip, +x for the left
one) and ``a`` anterior (-y); ``theta`` is the angle from superior, ``phi`` the
azimuth from lateral towards anterior. So the mid-coronal great circle is
``phi`` = 0 (lateral half) and 180 degrees (medial half), the mid-sagittal one
``phi`` = 90 (anterior) and 270 degrees (posterior).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

__all__ = ["HeadFrame", "head_frame"]


@dataclass
class HeadFrame:
    """Ray grid of one femoral head.

    Attributes
    ----------
    center : (3,) LPS mm
    radius_mm : float
    axes : (3, 3) rows u (lateral), a (anterior), w (superior), LPS unit vectors
    theta_deg, phi_deg : 1-D grids (degrees)
    r_mm : 1-D radii (mm) from the centre
    """

    center: np.ndarray
    radius_mm: float
    axes: np.ndarray
    theta_deg: np.ndarray
    phi_deg: np.ndarray
    r_mm: np.ndarray

    @property
    def local_directions(self) -> np.ndarray:
        """Unit directions in the frame's (u, a, w) axes, shape (n_theta, n_phi, 3)."""
        th, ph = np.meshgrid(np.radians(self.theta_deg), np.radians(self.phi_deg), indexing="ij")
        return np.stack([np.sin(th) * np.cos(ph), np.sin(th) * np.sin(ph), np.cos(th)], axis=-1)

    @property
    def directions(self) -> np.ndarray:
        """Unit directions, shape (n_theta, n_phi, 3), LPS."""
        return self.local_directions @ self.axes

    def points(self) -> np.ndarray:
        """LPS points of every sample, shape (n_theta, n_phi, n_r, 3)."""
        return self.center + self.directions[:, :, None, :] * self.r_mm[None, None, :, None]

    def sample(self, volume: np.ndarray, segmentation, order: int = 1, cval: float = 0.0) -> np.ndarray:
        """Values of ``volume`` (``[slice, row, column]`` on the segmentation grid) along every ray.

        Returns an array (n_theta, n_phi, n_r); samples outside the volume get ``cval``.
        """
        return self.sample_many([volume], segmentation, order=order, cval=cval)[0]

    def sample_many(self, volumes, segmentation, order: int = 1, cval: float = 0.0) -> list:
        """:meth:`sample` of each volume (``None`` gives ``None``); the ray points are mapped to array
        indices once for all of them."""
        shape = (len(self.theta_deg), len(self.phi_deg), len(self.r_mm))
        idx = segmentation.lps_to_index(self.points().reshape(-1, 3)).T
        return [None if v is None else
                ndimage.map_coordinates(np.asarray(v, np.float32), idx, order=order, mode="constant",
                                        cval=cval).reshape(shape)
                for v in volumes]

    def solid_angle_deg2(self) -> np.ndarray:
        """Solid angle (square degrees) of each (theta, phi) cell, shape (n_theta, n_phi)."""
        dth = np.gradient(self.theta_deg) if len(self.theta_deg) > 1 else np.ones(1)
        dph = np.gradient(self.phi_deg) if len(self.phi_deg) > 1 else np.ones(1)
        s = np.sin(np.radians(self.theta_deg))
        s = np.maximum(s, np.radians(dth) / 4)  # the pole cell is not empty
        return (s * dth)[:, None] * dph[None, :]


def head_frame(side_seg, *, theta_max_deg: float = 110.0, step_deg: float = 3.0, r_step_mm: float = 0.5,
               r_margin_mm: float = 4.0) -> HeadFrame:
    """The ray grid of one :class:`~bmepipe.segment.types.SideSegmentation`.

    Parameters
    ----------
    side_seg : SideSegmentation
        Needs ``head_center_lps_mm`` and ``head_radius_mm``.
    theta_max_deg : float
        Largest angle from superior sampled (the head's articular surface reaches
        about 100-110 degrees medially and anteriorly).
    step_deg, r_step_mm : float
        Angular and radial sampling steps.
    r_margin_mm : float
        Rays run this far beyond the fitted sphere (cartilage, joint, collapse).
    """
    c = np.asarray(side_seg.head_center_lps_mm, float)
    R = float(side_seg.head_radius_mm)
    lateral = np.array([-1.0 if side_seg.side == "right" else 1.0, 0.0, 0.0])
    axes = np.array([lateral, [0.0, -1.0, 0.0], [0.0, 0.0, 1.0]])
    theta = np.arange(0.0, theta_max_deg + 1e-9, step_deg)
    phi = np.arange(0.0, 360.0, step_deg)
    r = np.arange(0.0, R + r_margin_mm + 1e-9, r_step_mm)
    return HeadFrame(c, R, axes, theta, phi, r)
