"""Benchmark: bmepipe compare of two 512 x 512 x 30 two-series phantom studies against one analyze.

Baseline, measured in the same run: ``bmepipe.analyze`` of the baseline study (no output folder).
Issue 11 target: compare (both analyses, per-hip registration, change maps, no output files) in at most
2x the time of one analyze. Also reported per pair: head-centre registration error against the phantom truth,
BME change error relative to the baseline volume and the trajectory label against the expected one.

    python benchmarks/bench_compare.py --pairs 2 --repeats 3 --json bench_compare.json
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
    args = ap.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for seed in range(args.pairs):
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
    summary = {"trajectory_correct": sum(r["trajectory"] == r["expected"] for r in ok) / max(1, len(ok)),
               "max_head_error_mm": max((r["head_error_mm"] for r in ok), default=None),
               "max_ratio": max((r["ratio"] for r in ok), default=None), "target_ratio": 2.0}
    print(summary)
    if args.json:
        Path(args.json).write_text(json.dumps({"rows": rows, "summary": summary}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
