"""Phantom cases for the segmentation tests and benchmark (shared so both span the same variations).

The seeds used by tests and benchmark (see there) differ from the sample data's and from every
seed used while tuning the segmentation (tuning used seeds 5, 11, 21 and suites 7001-7099).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from bmepipe.phantom import AcquisitionSpec, PhantomSpec

PATTERNS = ("normal", "toh", "avn", "sif")


def segment_specs(n_cases: int, seed: int, *, matrix: int = 256, slices: int = 24) -> list[PhantomSpec]:
    """Cases spanning 1.5/3 T, every fluid-sensitive kind, bias 0-0.5, SNR 12-40, obliquity up to 10 degrees,
    head radius 21-28 mm and every pattern (collapse and effusion forced in some)."""
    rng = np.random.default_rng([seed, 66])
    specs = []
    for i in range(n_cases):
        right, left = PATTERNS[i % 4], PATTERNS[(i + 1 + i // 4) % 4]
        acq_rows = int(min(matrix, 16 * round(matrix * rng.uniform(0.6, 1.0) / 16)))
        acq = AcquisitionSpec(
            field_strength_t=(1.5, 3.0)[i % 2], vendor=("siemens", "ge", "philips")[i % 3],
            fluid_kind=("stir", "pd_fs", "t2_fs", "stir")[(i // 2) % 4], fov_mm=float(rng.uniform(340, 400)),
            matrix=matrix, acquired_matrix=(acq_rows, int(16 * round(acq_rows * rng.uniform(0.8, 1.0) / 16))),
            slice_thickness_mm=float(rng.choice([3.0, 3.5, 4.0, 5.0])), slice_gap_mm=float(rng.uniform(0.3, 1.0)),
            slices=slices, obliquity_deg=float(rng.choice([-1, 1]) * rng.uniform(3, 10)) if i % 3 else 0.0,
            tilt_deg=float(rng.uniform(-4, 4)) if i % 4 == 1 else 0.0,
            center_offset_lps_mm=tuple(float(v) for v in rng.normal(0, [5, 4, 8])),
            snr=float((12.0, 20.0, 30.0, 40.0)[i % 4] * rng.uniform(1.0, 1.1)), bias_amplitude=float(rng.uniform(0, 0.5)),
            fat_sat_efficiency=float(rng.uniform(0.85, 0.98)),
        )
        spec = PhantomSpec.random(int(seed) * 1000 + i, right=right, left=left, acquisition=acq)
        # sizes across the adult range (anatomy.md: head radius 21-28 mm)
        radius = (21.0, None, 28.0, None)[i % 4]
        if radius is not None:
            side = "right" if i % 2 else "left"
            hip = getattr(spec, side)
            hip = dataclasses.replace(hip, head_radius_mm=radius, neck_radius_mm=radius * hip.neck_radius_mm / hip.head_radius_mm)
            spec = dataclasses.replace(spec, **{side: hip})
        # collapse and effusion in every AVN hip (collapse needs a segment)
        for side in ("right", "left"):
            hip = getattr(spec, side)
            if hip.pattern == "avn":
                hip = dataclasses.replace(hip, collapse_mm=max(hip.collapse_mm, 1.5 + 2.0 * rng.random()),
                                          effusion_ml=max(hip.effusion_ml, 5.0))
                spec = dataclasses.replace(spec, **{side: hip})
        specs.append(spec)
    return specs
