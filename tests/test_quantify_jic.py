"""The JIC type follows the necrotic segment across the weight-bearing portion (phantom truth).

The benchmark suites draw every AVN lesion anterosuperior (tilted 0-15 degrees laterally), which the JIC rule
reads as C2 whenever the segment is found; these hips move the lesion axis from 70 degrees medial to 5
degrees lateral (truth types A, B, C1 and C2 by the phantom's own geometry, ``truth.json``), with the rest of
each hip as ``make_suite`` drew it (test seed 22). The segmentation is the phantom's, so the quantification
is measured on its own. Slow: about 4 s per hip on one core.
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from bmepipe.phantom import generate_study, make_suite
from bmepipe.quantify import quantify_hips
from bmepipe.quantify._truth import normalized_from_study, segmentation_from_truth

pytestmark = pytest.mark.slow
LATERAL_DEG = (-70.0, -40.0, -15.0, 5.0)
TRUTH_TYPES = ("A", "B", "C1", "C2")  # what the phantom's geometry makes of these tilts on these hips


def _avn_hips():
    """(spec, side) of the first AVN hips of the test suite, one per lesion tilt, extent capped at 20 %."""
    out = []
    for spec in make_suite(8, seed=22, small=True):
        for side in ("right", "left"):
            hip = getattr(spec, side)
            if hip.pattern == "avn" and len(out) < len(LATERAL_DEG):
                hip = replace(hip, necrosis_lateral_deg=LATERAL_DEG[len(out)],
                              necrosis_extent_pct=min(hip.necrosis_extent_pct, 20.0))
                out.append((replace(spec, **{side: hip}), side))
    return out


@pytest.mark.parametrize("case", range(len(LATERAL_DEG)), ids=[f"lateral{d:+.0f}" for d in LATERAL_DEG])
def test_jic_type_follows_the_lesion(case):
    spec, side = _avn_hips()[case]
    study = generate_study(spec)
    truth = study.truth["sides"][side]["necrosis"]
    assert truth["jic_type"] == TRUTH_TYPES[case]  # the hips still span the weight-bearing portion
    m = quantify_hips(normalized_from_study(study), segmentation_from_truth(study))
    avn = m.sides[side].avn
    assert avn.present, "necrotic segment not found"
    assert abs(avn.necrotic_extent_pct - truth["extent_pct"]) <= 5.0
    assert avn.jic_type == truth["jic_type"]
