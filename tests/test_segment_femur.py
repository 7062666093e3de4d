"""bmepipe.segment.femur: the in-plane growth on the component's box equals the growth on the whole array; slices
beyond the head's join the femur outwards only."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from bmepipe.segment.femur import _grow_in_plane, femur_component


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


def test_fat_joined_beyond_the_head_slices_does_not_join_back_towards_the_head():
    """A fat sheet through the whole stack, joined to the bone in one slice beyond the head's slices (blurred
    cortex): it joins there and outwards, but no longer back through the head's slices to the other end."""
    shape = (9, 40, 40)
    marrow = np.zeros(shape, bool)
    marrow[3:6, 5:15, 5:15] = True  # head (seeded slices 3-5)
    marrow[2:7, 5:35, 10:20] = True  # neck and shaft, one region with the head in its slices
    marrow[:, 5:12, 26:34] = True  # fat sheet, 6 pixels from the bone ...
    marrow[6, 5:12, 20:26] = True  # ... joined to it in slice 6 only
    seed = np.zeros(shape, bool)
    seed[3:6, 8:12, 8:12] = True
    zero = np.zeros(shape)
    cortex = np.zeros(shape, bool)
    args = (marrow, cortex, (zero, zero, zero), zero, seed, np.array([0.0, 0.0, -1.0]), 20.0, 1000.0, (1.0, 1.0, 3.0))
    femur = femur_component(*args)
    assert femur[2:7, 5:35, 10:20].all()  # all the bone, in every slice
    assert femur[6:, 5:12, 26:34].all()  # the fat beyond the joining slice (as before)
    assert not femur[:6, 5:12, 26:34].any()  # but not back towards the head and beyond
    both_ways = femur_component(*args, outward_only=False)
    assert both_ways[:, 5:12, 26:34].all()  # the fat joined back through every slice
