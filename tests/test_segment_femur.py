"""bmepipe.segment.femur: the in-plane growth on the component's box equals the growth on the whole array."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from bmepipe.segment.femur import _grow_in_plane


def _grow_whole(acc, marrow, cortex, k_open, steps):
    """The same steps on the whole array with scipy's operators (what the box version replaced)."""
    cross = ndimage.generate_binary_structure(2, 1)[None]
    acc = ndimage.binary_dilation(acc, structure=cross, iterations=k_open, mask=acc | marrow)
    acc = ndimage.binary_dilation(acc, structure=cross)
    acc = ndimage.binary_dilation(acc, structure=cross, iterations=steps, mask=cortex | acc)
    return np.stack([ndimage.binary_fill_holes(s) for s in acc])


def test_growth_on_the_box_is_the_growth_on_the_whole_array():
    rng = np.random.default_rng(8)
    for trial in range(40):
        shape = (int(rng.integers(1, 5)), int(rng.integers(8, 60)), int(rng.integers(8, 60)))
        marrow = ndimage.gaussian_filter(rng.random(shape), (0, 1.5, 1.5)) > rng.uniform(0.45, 0.55)
        cortex = rng.random(shape) > rng.uniform(0.3, 0.9)
        acc = np.zeros(shape, bool)
        if trial % 8:  # every eighth: an empty component
            k, j, i = (int(rng.integers(0, n)) for n in shape)
            acc[k, max(0, j - 2):j + 3, max(0, i - 2):i + 3] = True  # a seed patch, sometimes at the edge
            acc &= marrow | (trial % 3 == 0)
        k_open, steps = int(rng.integers(1, 4)), int(rng.integers(1, 9))
        np.testing.assert_array_equal(_grow_in_plane(acc, marrow, cortex, k_open, steps),
                                      _grow_whole(acc, marrow, cortex, k_open, steps))
