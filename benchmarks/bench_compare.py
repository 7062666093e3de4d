"""Benchmark: bmepipe compare of two 512 x 512 x 30 two-series phantom studies against one analyze.

Baseline, measured in the same run: ``bmepipe.analyze`` of the baseline study (no output folder).
Issue 11 target: compare (both analyses, per-hip registration, change maps, no output files) in at most
2x the time of one analyze. Also reported per pair: head-centre registration error against the phantom truth,
BME change error relative to the baseline volume and the trajectory label against the expected one.

Trajectory accuracy (``--trajectory-pairs N``, 2 hips per pair): phantom pairs from tests/compare_cases.py, which
cycle through TOH resolving, AVN stable, AVN with new collapse (0 -> 3 mm), SIF healed, normal stable and new BME,
with a random pose (shift, rotation about S-I) per pair; held-out seeds 6401 onwards (never used while developing
the trajectory rules). Reports the % of hips whose label matches the phantom's evolution, per scenario.

    python benchmarks/bench_compare.py --pairs 2 --repeats 3 --json bench_compare.json
    python benchmarks/bench_compare.py --pairs 0 --trajectory-pairs 12 --traj-matrix 256 --traj-slices 24
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

EXPECTED = {"toh": "resolving", "avn": "stable", "normal": "stable"}


def _pair(seed: int, root: Path):
    from bmepipe.phantom import AcquisitionSpec, PhantomSpec, generate_followup, generate_study, write_study

    rng = np.random.default_rng(seed)
    acq = AcquisitionSpec(matrix=512, slices=30)
    base = generate_study(PhantomSpec.random(seed, right="toh", left="avn", acquisition=acq))
    fu = generate_followup(base, days=120, shift_lps_mm=tuple(rng.uniform(-15, 15, 3)),
                           rotation_deg=float(rng.uniform(-8, 8)), toh_bme_factor=0.3, noise_seed=seed + 1)
    write_study(base, root / f"b{seed}")
    write_study(fu, root / f"f{seed}")
    return base, fu


def main(argv=None) -> int:
    import SimpleITK as sitk

    from bmepipe import analyze
    from bmepipe.compare import compare
    from bmepipe.io import load_study

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json", metavar="PATH")
    ap.add_argument("--trajectory-pairs", type=int, default=10, help="pairs for the trajectory accuracy (0: skip)")
    ap.add_argument("--traj-matrix", type=int, default=256)
    ap.add_argument("--traj-slices", type=int, default=24)
    args = ap.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for seed in range(args.pairs):  # timing pairs (0 to skip)
            base, fu = _pair(1000 + seed, root)
            sb, sf = load_study(root / f"b{1000 + seed}"), load_study(root / f"f{1000 + seed}")
            t_an, t_cmp, result = [], [], None
            for _ in range(args.repeats):
                t = time.perf_counter(); analyze(sb, None); t_an.append(time.perf_counter() - t)
                t = time.perf_counter(); result = compare(sb, sf); t_cmp.append(time.perf_counter() - t)
            for side in ("right", "left"):
                s = result.sides[side]
                if s["status"] != "compared":
                    rows.append({"pair": seed, "side": side, "status": "failed"})
                    continue
                tx = sitk.Euler3DTransform()
                tx.SetCenter(tuple(result.baseline.segmentation.sides[side].head_center_lps_mm))
                tx.SetRotation(*np.radians(s["registration"]["rotation_deg"]))
                tx.SetTranslation(s["registration"]["translation_mm"])
                c0 = base.truth["sides"][side]["head_center_lps_mm"]
                err = float(np.linalg.norm(np.subtract(tx.TransformPoint(tuple(c0)),
                                                       fu.truth["sides"][side]["head_center_lps_mm"])))
                v0 = base.truth["sides"][side]["bme"]["volume_ml"]
                dv = fu.truth["sides"][side]["bme"]["volume_ml"] - v0
                rows.append({"pair": seed, "side": side, "head_error_mm": round(err, 2),
                             "bme_change_error_rel": round(abs(s["bme"]["volume_ml"]["change"] - dv) / v0, 3)
                             if v0 > 2 else None,
                             "trajectory": s["trajectory"]["label"],
                             "expected": EXPECTED[base.spec.right.pattern if side == "right" else base.spec.left.pattern],
                             "analyze_s": round(statistics.median(t_an), 2),
                             "compare_s": round(statistics.median(t_cmp), 2),
                             "ratio": round(statistics.median(t_cmp) / statistics.median(t_an), 2)})
    keys = ["pair", "side", "head_error_mm", "bme_change_error_rel", "trajectory", "expected", "analyze_s",
            "compare_s", "ratio"]
    print(" | ".join(keys))
    for r in rows:
        print(" | ".join(str(r.get(k)) for k in keys))
    ok = [r for r in rows if "trajectory" in r]
    summary = {"trajectory_correct": sum(r["trajectory"] == r["expected"] for r in ok) / len(ok) if ok else None,
               "max_head_error_mm": max((r["head_error_mm"] for r in ok), default=None),
               "max_ratio": max((r["ratio"] for r in ok), default=None), "target_ratio": 2.0}
    print(summary)
    traj_rows = _trajectory_accuracy(args.trajectory_pairs, args.traj_matrix, args.traj_slices)
    if traj_rows:
        print("\nscenario | side | expected | trajectory | bme_ml then/now | truth_bme_ml | surface_deepening_mm")
        for r in traj_rows:
            print(" | ".join(str(r.get(k)) for k in ("scenario", "side", "expected", "trajectory", "bme_ml",
                                                      "truth_bme_ml", "surface_deepening_mm")))
        per = {}
        for r in traj_rows:
            per.setdefault(r["scenario"], []).append(r["trajectory"] == r["expected"])
        summary["trajectory_hips"] = len(traj_rows)
        summary["trajectory_correct_pct"] = round(100.0 * float(np.mean([r["trajectory"] == r["expected"]
                                                                         for r in traj_rows])), 1)
        summary["trajectory_correct_pct_by_scenario"] = {k: round(100.0 * float(np.mean(v)), 1) for k, v in per.items()}
        print({k: v for k, v in summary.items() if k.startswith("trajectory_")})
    if args.json:
        Path(args.json).write_text(json.dumps({"rows": rows, "trajectory_rows": traj_rows, "summary": summary},
                                              indent=2) + "\n")
    return 0


def _trajectory_accuracy(n_pairs: int, matrix: int, slices: int) -> list:
    """Trajectory label per hip on ``n_pairs`` phantom pairs (tests/compare_cases.py), seeds 6401 onwards."""
    import os
    import sys

    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))
    from compare_cases import PAIRS, make_pair, trajectory_rows

    from bmepipe.compare import compare
    from bmepipe.phantom import AcquisitionSpec, write_study

    acq = AcquisitionSpec(matrix=matrix, acquired_matrix=(min(matrix, 256),) * 2, slices=slices)
    out = []
    with tempfile.TemporaryDirectory() as tmp:
        for k in range(n_pairs):
            right, left = PAIRS[k % len(PAIRS)]
            base, fu, expected = make_pair(6401 + k, right, left, acq)
            root = Path(tmp) / str(k)
            write_study(base, root / "a")
            write_study(fu, root / "b")
            result = compare(root / "a", root / "b")
            out += [{"pair": k, **r} for r in trajectory_rows(result, base, fu, expected, {"right": right, "left": left})]
    return out


if __name__ == "__main__":
    raise SystemExit(main())
