"""Segmentation of both proximal femurs with femoral head / neck / intertrochanteric regions and landmarks."""

from .types import REGIONS, SIDES, HipSegmentation, SideSegmentation

__all__ = ["REGIONS", "SIDES", "HipSegmentation", "SideSegmentation"]
