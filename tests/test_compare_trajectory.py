"""Trajectory labels on phantom pairs whose evolution is known (tests/compare_cases.py).

Six hips, one per scenario: TOH resolving, AVN stable, AVN with new collapse (0 -> 3 mm), SIF healed, normal
stable, new BME; held-out seeds 5301-5303 (the rules were developed on seeds 31-34). The issue asks for the
right label in >= 95 % of hips, i.e. every hip of this set; benchmarks/bench_compare.py gives the figure over
more pairs.
"""

from __future__ import annotations

import numpy as np
import pytest
from compare_cases import PAIRS, SCENARIOS, make_pair, trajectory_rows

from bmepipe.compare import compare, surface_deepening_mm
from bmepipe.phantom import AcquisitionSpec, write_study

pytestmark = pytest.mark.slow  # about 75 s: three phantom pairs, two analyses each

ACQ = AcquisitionSpec(matrix=160, acquired_matrix=(160, 160), slices=20)


@pytest.fixture(scope="module")
def hips(tmp_path_factory):
    rows, results = [], []
    for k, (right, left) in enumerate(PAIRS[:3]):
        base, fu, expected = make_pair(5301 + k, right, left, ACQ)
        root = tmp_path_factory.mktemp(f"pair{k}")
        write_study(base, root / "a")
        write_study(fu, root / "b")
        result = compare(root / "a", root / "b")
        rows += trajectory_rows(result, base, fu, expected, {"right": right, "left": left})
        results.append((result, base, fu))
    return rows, results


def test_every_scenario_is_covered(hips):
    rows, _ = hips
    assert {r["scenario"] for r in rows} == set(SCENARIOS)


def test_trajectory_right_in_95_percent_of_hips(hips):
    rows, _ = hips
    right = [r["trajectory"] == r["expected"] for r in rows]
    wrong = [(r["scenario"], r["trajectory"], r.get("bme_ml"), r.get("surface_deepening_mm")) for r in rows
             if r["trajectory"] != r["expected"]]
    assert np.mean(right) >= 0.95, wrong


def test_registered_collapse_change_tracks_the_new_collapse(hips):
    rows, _ = hips
    for r in rows:
        if r["trajectory"] is None:
            continue
        truth = r["truth_collapse_mm"][1] - r["truth_collapse_mm"][0]
        if r["scenario"] == "avn_new_collapse":
            assert truth == pytest.approx(3.0)
            # the registered measure is closer to the truth than the two independent measurements
            independent = r["collapse_mm"][1] - r["collapse_mm"][0]
            assert abs(r["surface_deepening_mm"] - truth) < abs(independent - truth), r
            assert r["surface_deepening_mm"] >= 1.5, r
        else:
            assert truth == pytest.approx(0.0)
            assert r["surface_deepening_mm"] < 1.0, r  # ARCO step [approx]: no progression called


def test_surface_deepening_on_a_known_dent():
    """Analytic check: a sphere and the same sphere with a dent at the top (3 mm deep over a 12-degree cap,
    fading to 0 at 30 degrees), moved rigidly."""
    import SimpleITK as sitk

    rng = np.random.default_rng(5309)
    u = rng.normal(size=(4000, 3))
    u /= np.linalg.norm(u, axis=1, keepdims=True)
    u = u[u[:, 2] > -0.2]  # articular surface only
    c0, r0 = np.array([-80.0, 10.0, 5.0]), 24.0
    angle = np.degrees(np.arccos(np.clip(u[:, 2], -1, 1)))
    fade = np.cos(np.clip((angle - 12.0) / 18.0, 0.0, 1.0) * np.pi / 2) ** 2
    dent = 3.0 * fade
    base = c0 + r0 * u
    tx = sitk.Euler3DTransform()
    tx.SetCenter(tuple(c0))
    tx.SetRotation(0.02, -0.05, 0.1)
    tx.SetTranslation((6.0, -3.0, 4.0))
    moved = np.array([tx.TransformPoint(tuple(p)) for p in c0 + (r0 - dent)[:, None] * u])
    same = np.array([tx.TransformPoint(tuple(p)) for p in base])
    assert surface_deepening_mm(base, moved, c0, r0, tx) == pytest.approx(3.0, abs=0.05)
    assert surface_deepening_mm(base, same, c0, r0, tx) == pytest.approx(0.0, abs=1e-6)
    # a uniform 0.8 mm shift of the detected surface (contrast, not bone) is not a collapse
    shifted = np.array([tx.TransformPoint(tuple(p)) for p in c0 + (r0 - 0.8) * u])
    assert surface_deepening_mm(base, shifted, c0, r0, tx) == pytest.approx(0.0, abs=1e-6)


def _side(pattern_now: str, line_then: float, line_now: float) -> dict:
    pair = lambda a, b: {"then": a, "now": b}  # noqa: E731
    return {"bme": {"volume_ml": pair(20.0, 20.5)}, "avn": {"collapse_mm": pair(0.0, 0.0),
            "necrotic_extent_pct": pair(20.0, 20.0)}, "sif": {"line_length_mm": pair(line_then, line_now)},
            "pattern": pair(pattern_now, pattern_now)}


def test_a_grown_line_is_progression_under_sif_only():
    """Under avn_like the line measure also reads the necrotic segment's border: listed, not counted."""
    from bmepipe.compare import trajectory

    assert trajectory(_side("sif_like", 0.0, 9.0))[0] == "progressing"
    for pattern in ("avn_like", "toh_like"):
        label, evidence = trajectory(_side(pattern, 0.0, 9.0))
        assert label == "stable"
        assert any(e["feature"] == "line_length_mm" and "not counted" in e["threshold"] for e in evidence)
    assert trajectory(_side("sif_like", 7.0, 8.0))[0] == "stable"  # grew by less than line_increase_mm
