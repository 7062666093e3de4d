"""bmepipe._morphology: the running minima / maxima over in-plane squares are scipy.ndimage's filters."""

import numpy as np
import pytest
from scipy import ndimage

from bmepipe._morphology import grey_square_closing, grey_square_opening, square_max, square_min


@pytest.mark.parametrize("mode", ["reflect", "constant", "nearest", "mirror"])
def test_square_extremes_are_scipys_filters(mode):
    rng = np.random.default_rng(7)
    for _ in range(30):  # down to axes shorter than the window, where the border extension repeats
        shape = tuple(int(v) for v in rng.integers(1, 20, size=3))
        for dtype in (np.float32, np.float64, np.uint8):
            a = (rng.random(shape) * 50).astype(dtype)
            a[..., :2] = np.round(a[..., :2] / 10)  # ties
            for width in (1, 3, 5, 9, 13):
                cval = 3 if mode == "constant" else 0
                np.testing.assert_array_equal(square_max(a, width, mode=mode, cval=cval),
                                              ndimage.maximum_filter(a, size=(1, width, width), mode=mode, cval=cval))
                np.testing.assert_array_equal(square_min(a, width, mode=mode, cval=cval),
                                              ndimage.minimum_filter(a, size=(1, width, width), mode=mode, cval=cval))


def test_grey_square_closing_and_opening_are_scipys():
    rng = np.random.default_rng(8)
    image = ndimage.gaussian_filter(rng.random((3, 61, 47)), (0, 1.5, 1.5)).astype(np.float32)
    for width in (3, 7, 9):
        np.testing.assert_array_equal(grey_square_closing(image, width),
                                      ndimage.grey_closing(image, size=(1, width, width)))
        np.testing.assert_array_equal(grey_square_opening(image, width),
                                      ndimage.grey_opening(image, size=(1, width, width)))


def test_square_extremes_refuse_what_they_cannot_match():
    with pytest.raises(ValueError):
        square_max(np.ones((1, 5, 5)), 4)  # scipy centres even windows differently
    with pytest.raises(ValueError):
        square_min(np.ones((5, 5)), 3)
    with pytest.raises(ValueError):
        square_min(np.ones((1, 5, 5)), 3, mode="wrap")
