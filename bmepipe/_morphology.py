"""Binary morphology the stages share, written to hold the interpreter lock briefly.

``scipy.ndimage``'s binary operators iterate in C but keep the GIL, and ``binary_fill_holes`` propagates
the background from the border one dilation at a time; where two analyses (``bmepipe compare``) or a
stage and the QC run on threads beside each other, that time is serial. These give the same masks
(tests compare them with scipy) by labelling and separable running minima / maxima.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

__all__ = ["erode_square", "fill_holes_per_slice", "square_opening", "square_closing", "in_plane_window_px"]

# 4-connected in-plane, nothing across slices: each slice is labelled on its own
_IN_PLANE_CROSS = np.zeros((3, 3, 3), bool)
_IN_PLANE_CROSS[1] = ndimage.generate_binary_structure(2, 1)


def fill_holes_per_slice(mask: np.ndarray) -> np.ndarray:
    """``ndimage.binary_fill_holes`` of every slice ``mask[k]`` of a 3-D ``[slice, row, column]`` stack.

    A hole is a background region (4-connected in-plane, scipy's default) that does not reach the slice's
    border; all slices are labelled in one call.
    """
    mask = np.asarray(mask, bool)
    if mask.ndim != 3:
        raise ValueError(f"fill_holes_per_slice needs a 3-D stack, got {mask.ndim}-D")
    labels, n = ndimage.label(~mask, structure=_IN_PLANE_CROSS)
    if n == 0:
        return mask.copy()
    outside = np.zeros(n + 1, bool)
    for edge in (labels[:, 0, :], labels[:, -1, :], labels[:, :, 0], labels[:, :, -1]):
        outside[edge] = True
    outside[0] = False  # label 0 is the mask itself
    return ~outside[labels]


def in_plane_window_px(width_mm: float, spacing_mm) -> int:
    """Odd in-plane window (pixels, at least 3) spanning about ``width_mm`` at the finer in-plane spacing
    (``spacing_mm`` is (x, y, ...) in mm), for grey openings and closings."""
    return max(3, int(round(width_mm / min(spacing_mm[:2]))) | 1)


def _odd(width: int) -> int:
    if width < 1 or width % 2 == 0:  # scipy centres even elements differently from the running filters
        raise ValueError(f"square width must be odd, got {width}")
    return width


def erode_square(mask: np.ndarray, n: int = 1) -> np.ndarray:
    """``ndimage.binary_erosion(mask, np.ones((1, 3, 3)), iterations=n)`` (outside the array counts as
    background), as a square minimum filter of ``2 n + 1`` pixels: same result, one running-minimum pass
    per axis whatever ``n``."""
    width = 2 * n + 1
    square = ndimage.minimum_filter(np.asarray(mask, bool).view(np.uint8), size=(1, width, width), mode="constant")
    return square.view(bool)


def square_opening(mask: np.ndarray, width: int, *, mode: str = "constant") -> np.ndarray:
    """Opening by a ``width`` x ``width`` in-plane square (odd width).

    ``mode="constant"``: outside counts as 0, ``ndimage.binary_opening``'s result; ``"reflect"``: the border
    is mirrored, so a structure the field of view cuts is not eroded at the edge.
    """
    size, u8 = (1, _odd(width), _odd(width)), np.asarray(mask, bool).view(np.uint8)
    return ndimage.maximum_filter(ndimage.minimum_filter(u8, size=size, mode=mode, cval=0),
                                  size=size, mode=mode, cval=0).astype(bool)


def square_closing(mask: np.ndarray, width: int) -> np.ndarray:
    """``ndimage.binary_closing`` by a ``width`` x ``width`` in-plane square (odd width; outside counts as 0)."""
    size, u8 = (1, _odd(width), _odd(width)), np.asarray(mask, bool).view(np.uint8)
    return ndimage.minimum_filter(ndimage.maximum_filter(u8, size=size, mode="constant", cval=0),
                                  size=size, mode="constant", cval=0).astype(bool)
