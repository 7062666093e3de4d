"""Segmentation of both proximal femurs with femoral head / neck / intertrochanteric regions and landmarks.

- :func:`segment_hips` (a :class:`bmepipe.normalize.NormalizedStudy`) and
  :func:`segment_hips_images` (muscle-relative images) return a :class:`HipSegmentation`
- :mod:`~bmepipe.segment.sphere`: head-sphere detection and robust fitting
- :mod:`~bmepipe.segment.femur`: femur bone mask, neck and shaft axes
"""

from .hips import segment_hips, segment_hips_images
from .types import REGIONS, SIDES, HipSegmentation, SideSegmentation

__all__ = ["REGIONS", "SIDES", "HipSegmentation", "SideSegmentation", "segment_hips", "segment_hips_images"]
