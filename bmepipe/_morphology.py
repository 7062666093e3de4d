"""Binary and grey morphology the stages share, written to hold the interpreter lock briefly.

``scipy.ndimage``'s binary operators iterate in C but keep the GIL, and ``binary_fill_holes`` propagates
the background from the border one dilation at a time; where two analyses (``bmepipe compare``) or a
stage and the QC run on threads beside each other, that time is serial. These give the same masks
(tests compare them with scipy) by labelling and separable running minima / maxima.

The running minima / maxima over in-plane squares (:func:`square_max`, :func:`square_min`) are whole-array
NumPy minima / maxima of shifted views, doubling the window each time (a window of ``w`` takes about
``log2 w + 1`` of them per axis): several times faster than ``scipy.ndimage``'s running filters, which
walk every line element by element, and exactly their result, since a minimum or maximum does not round
(for finite input: a NaN spreads over its whole window here).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

__all__ = ["erode_square", "fill_holes_per_slice", "square_opening", "square_closing", "in_plane_window_px",
           "square_max", "square_min", "grey_square_closing", "grey_square_opening"]

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


# scipy.ndimage's border modes as np.pad's: scipy's "reflect" repeats the edge element (d c b a | a b c d)
_PAD_MODES = {"reflect": "symmetric", "nearest": "edge", "mirror": "reflect", "constant": "constant"}


def _running_extreme(a: np.ndarray, width: int, axis: int, op, mode: str, cval) -> np.ndarray:
    """``op`` (``np.maximum`` or ``np.minimum``) over the ``width`` elements centred on each element of ``a``
    along ``axis`` (odd ``width``), outside the array as scipy's ``mode`` extends it: its
    ``maximum_filter1d`` / ``minimum_filter1d``."""
    n, half = a.shape[axis], width // 2
    if half == 0:
        return a.copy()
    pad = [(0, 0)] * a.ndim
    pad[axis] = (half, half)
    kw = {"constant_values": cval} if mode == "constant" else {}
    part = np.pad(a, pad, mode=_PAD_MODES[mode], **kw)

    def shifted(x, start, length):
        index = [slice(None)] * a.ndim
        index[axis] = slice(start, start + length)
        return x[tuple(index)]

    # part[i] holds the extreme of `span` consecutive padded elements from i; doubling span while it fits ...
    span = 1
    while 2 * span <= width:
        length = part.shape[axis] - span
        part = op(shifted(part, 0, length), shifted(part, span, length))
        span *= 2
    # ... then two (overlapping) windows of `span` cover the `width` from i: span <= width < 2 span
    return op(shifted(part, 0, n), shifted(part, width - span, n))


def _square_extreme(a: np.ndarray, width: int, op, mode: str, cval) -> np.ndarray:
    a = np.asarray(a)
    if a.ndim != 3:
        raise ValueError(f"in-plane squares need a 3-D [slice, row, column] stack, got {a.ndim}-D")
    if mode not in _PAD_MODES:
        raise ValueError(f"unsupported border mode {mode!r}")
    width = _odd(width)
    return _running_extreme(_running_extreme(a, width, 2, op, mode, cval), width, 1, op, mode, cval)


def square_max(a: np.ndarray, width: int, *, mode: str = "reflect", cval=0) -> np.ndarray:
    """``ndimage.maximum_filter(a, size=(1, width, width), mode=mode, cval=cval)`` of a 3-D stack (odd width).

    ``a`` of any real dtype, finite (a bool mask, or its uint8 view, gives the binary dilation by the square).
    """
    return _square_extreme(a, width, np.maximum, mode, cval)


def square_min(a: np.ndarray, width: int, *, mode: str = "reflect", cval=0) -> np.ndarray:
    """``ndimage.minimum_filter(a, size=(1, width, width), mode=mode, cval=cval)`` of a 3-D stack (odd width)."""
    return _square_extreme(a, width, np.minimum, mode, cval)


def grey_square_closing(image: np.ndarray, width: int) -> np.ndarray:
    """``ndimage.grey_closing(image, size=(1, width, width))`` (odd width, border mirrored as scipy's "reflect"):
    in-plane maximum, then minimum."""
    return square_min(square_max(image, width), width)


def grey_square_opening(image: np.ndarray, width: int) -> np.ndarray:
    """``ndimage.grey_opening(image, size=(1, width, width))`` (odd width, border mirrored as scipy's "reflect"):
    in-plane minimum, then maximum."""
    return square_max(square_min(image, width), width)


def erode_square(mask: np.ndarray, n: int = 1) -> np.ndarray:
    """``ndimage.binary_erosion(mask, np.ones((1, 3, 3)), iterations=n)`` (outside the array counts as
    background), as a square minimum filter of ``2 n + 1`` pixels (:func:`square_min`): same result, a few
    whole-array minima per axis whatever ``n``."""
    return square_min(np.asarray(mask, bool).view(np.uint8), 2 * n + 1, mode="constant").view(bool)


def square_opening(mask: np.ndarray, width: int, *, mode: str = "constant") -> np.ndarray:
    """Opening by a ``width`` x ``width`` in-plane square (odd width).

    ``mode="constant"``: outside counts as 0, ``ndimage.binary_opening``'s result; ``"reflect"``: the border
    is mirrored, so a structure the field of view cuts is not eroded at the edge.
    """
    u8 = np.asarray(mask, bool).view(np.uint8)
    return square_max(square_min(u8, width, mode=mode), width, mode=mode).view(bool)


def square_closing(mask: np.ndarray, width: int) -> np.ndarray:
    """``ndimage.binary_closing`` by a ``width`` x ``width`` in-plane square (odd width; outside counts as 0)."""
    u8 = np.asarray(mask, bool).view(np.uint8)
    return square_min(square_max(u8, width, mode="constant"), width, mode="constant").view(bool)
