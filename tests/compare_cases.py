"""Phantom baseline / follow-up pairs with a known trajectory per hip (shared by tests and bench_compare.py).

The expected label comes from how the phantom evolved each hip, not from bmepipe.compare. Seeds looked at
while developing the trajectory rules and the registered collapse measure: 31-34. Tests use 5301-5304, the
benchmark 6401 onwards; no rule or threshold was tuned on them.
"""

from __future__ import annotations

import dataclasses

import numpy as np

#: scenario -> (baseline pattern, baseline HipSpec overrides, follow-up side_changes, expected trajectory).
#: Follow-up rules common to both hips (generate_followup defaults): TOH peak edema x 0.3, SIF line healed.
SCENARIOS = {
    "toh_resolving": ("toh", {}, {}, "resolving"),
    "avn_stable": ("avn", {}, {}, "stable"),
    "avn_new_collapse": ("avn", {"collapse_mm": 0.0}, {"collapse_mm": 3.0}, "progressing"),
    "sif_healed": ("sif", {}, {}, "resolving"),
    "normal_stable": ("normal", {}, {}, "stable"),
    "new_bme": ("normal", {}, {"pattern": "toh", "bme_peak": 0.7, "bme_extent": "head_neck", "bme_margin_mm": 15.0,
                               "bme_medial_sparing": 0.0}, "new"),
}
#: Pairs (right, left) that cover every scenario with both sides in three pairs, then mix.
PAIRS = [("toh_resolving", "avn_stable"), ("avn_new_collapse", "sif_healed"), ("normal_stable", "new_bme"),
         ("new_bme", "avn_new_collapse"), ("avn_stable", "toh_resolving"), ("sif_healed", "normal_stable")]


def make_pair(seed: int, right: str, left: str, acquisition, *, max_shift_mm=(15.0, 5.0, 15.0),
              max_rotation_deg: float = 6.0):
    """Baseline and follow-up studies (in memory) and the expected trajectory per side.

    The pose (shift, rotation about S-I) and interval are drawn from ``seed``; the AP shift and the rotation are
    kept small enough that both femoral heads stay inside a thin slab.
    """
    from bmepipe.phantom import PhantomSpec, generate_followup, generate_study

    rng = np.random.default_rng([seed, 11])
    (pr, over_r, chg_r, exp_r), (pl, over_l, chg_l, exp_l) = SCENARIOS[right], SCENARIOS[left]
    spec = PhantomSpec.random(seed, right=pr, left=pl, acquisition=acquisition)
    spec = dataclasses.replace(spec, right=dataclasses.replace(spec.right, **over_r),
                               left=dataclasses.replace(spec.left, **over_l))
    base = generate_study(spec)
    shift = tuple(float(rng.uniform(-m, m)) for m in max_shift_mm)
    fu = generate_followup(base, days=int(rng.integers(30, 366)), shift_lps_mm=shift,
                           rotation_deg=float(rng.uniform(-max_rotation_deg, max_rotation_deg)),
                           noise_seed=seed + 1, side_changes={"right": chg_r, "left": chg_l})
    return base, fu, {"right": exp_r, "left": exp_l}


def trajectory_rows(result, base, fu, expected: dict, scenarios: dict) -> list[dict]:
    """One row per hip: scenario, expected and measured trajectory, and the evidence behind it."""
    rows = []
    for side in ("right", "left"):
        s = result.sides[side]
        row = {"side": side, "scenario": scenarios[side], "expected": expected[side],
               "truth_bme_ml": [base.truth["sides"][side]["bme"]["volume_ml"], fu.truth["sides"][side]["bme"]["volume_ml"]],
               "truth_collapse_mm": [base.truth["sides"][side]["collapse_mm"], fu.truth["sides"][side]["collapse_mm"]]}
        if s["status"] != "compared":
            rows.append({**row, "trajectory": None, "reason": s["reason"]})
            continue
        rows.append({**row, "trajectory": s["trajectory"]["label"],
                     "bme_ml": [s["bme"]["volume_ml"]["then"], s["bme"]["volume_ml"]["now"]],
                     "collapse_mm": [s["avn"]["collapse_mm"]["then"], s["avn"]["collapse_mm"]["now"]],
                     "surface_deepening_mm": s["avn"]["surface_deepening_mm"]})
    return rows
