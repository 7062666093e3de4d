"""Joint effusion: fluid volume in the joint space around the femoral head and neck.

Normal hips hold 0.7-5.6 ml of joint fluid (mean 2.7 ml) on MRI; an effusion
distends the recesses along the neck (anatomy.md section 2, 1.5 T hip study).
Each joint-space voxel contributes its fluid share, its standardized
fluid-sensitive signal between muscle/capsule (1.0) and joint fluid
(``effusion_signal``), so thin fluid sleeves are counted by partial volume
rather than lost to a threshold.
"""

from __future__ import annotations

import numpy as np

from .params import QuantifyParams

__all__ = ["effusion"]


def effusion(fluid: np.ndarray, joint_space: np.ndarray, voxel_ml: float, params: QuantifyParams,
             fluid_level: float | None = None) -> tuple[float, np.ndarray]:
    """Effusion volume (ml) and mask (voxels at least half fluid) inside ``joint_space``.

    Parameters
    ----------
    fluid : ndarray
        Standardized fluid-sensitive image.
    joint_space : ndarray of bool
    voxel_ml : float
    params : QuantifyParams
    fluid_level : float, optional
        Standardized signal of pure joint fluid (default ``params.effusion_signal``).
    """
    level = params.effusion_signal if fluid_level is None else fluid_level
    share = np.clip((fluid[joint_space] - 1.0) / (level - 1.0), 0.0, 1.0)
    share[share < params.effusion_min_fraction] = 0.0
    mask = np.zeros(fluid.shape, bool)
    mask[joint_space] = share >= 0.5
    return float(share.sum() * voxel_ml), mask
