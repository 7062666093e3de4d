"""Benchmark: one grid (rigid registration) and the whole normalize_study on a 30 x 512 x 512 phantom.

Table 1, registration: the phantom's T1 series is moved by a known rigid motion by
rewriting its geometry (origin and direction: exact, no interpolation) and given another
FrameOfReferenceUID. Error = distance (mm) between the recovered and the true mapping at
body points of the fluid-sensitive grid. Rows: header geometry only; ``resample_to_reference``
(default: 2 mm working grid, 2 levels); the baseline "full-resolution MI": the same metric
and optimizer on the native grids with 3 levels (shrink 4, 2, 1). Each run uses another motion.

Table 2, ``normalize_study`` per step (bias x2, grid, standardization, QC) on the same study.

Table 3, standardization: each anatomy (``--seeds``) scanned at 1.5 / 3 T, SNR 12 / 40, with / without bias
(256 x 256 x 20 to keep it quick): the standardized value (muscle = 1) of each tissue, measured in
tissue masks rendered from the phantom's anatomy, against the un-standardized baseline (raw signal
relative to its own median over the variants); spread = max / min - 1.

Usage::

    python benchmarks/bench_normalize.py [--runs 3] [--json PATH] [--only-standardization]
        [--seeds 7,8,9,10] [--fluid-kinds stir,pd_fs,t2_fs]

Table 3 also gives ``fluid_std``: the fluid-sensitive series on the landmark scale (fat 0, muscle 1,
fluid 4; :mod:`bmepipe.normalize.landmarks`), and the TOH hip's edema (phantom edema fraction > 0.5).
``--seeds`` and ``--fluid-kinds`` repeat it for other anatomies (each seed draws its own tissue
relaxation times inside the literature ranges) and fat-saturated PD/T2 series; the last lines give
each tissue's largest spread over all of them.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import SimpleITK as sitk

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # tests/normalize_synth.py helpers

from bmepipe.io.types import Volume, VolumeMeta  # noqa: E402
from bmepipe.normalize import body_mask, normalize_study, resample_to_reference  # noqa: E402


def meta(kind: str, frame: str) -> VolumeMeta:
    return VolumeMeta(series_instance_uid=f"2.25.{len(kind)}", series_description=kind,
                      sequence_class="t1" if kind == "t1" else "fluid_sensitive", sequence_kind=kind,
                      sequence_reason="phantom", sequence_confidence=1.0, plane="coronal",
                      frame_of_reference_uid=frame)


def moved(image: sitk.Image, motion: sitk.Euler3DTransform) -> sitk.Image:
    """The same voxels placed so that reference point p shows at motion(p) (exact geometry edit)."""
    r = np.array(motion.GetMatrix()).reshape(3, 3)
    c, t = np.asarray(motion.GetCenter()), np.asarray(motion.GetTranslation())
    out = sitk.Image(image)
    out.SetOrigin(tuple(map(float, r @ (np.asarray(image.GetOrigin()) - c) + c + t)))
    out.SetDirection(tuple(map(float, (r @ np.array(image.GetDirection()).reshape(3, 3)).ravel())))
    return out


def map_points(tx: sitk.Transform, pts: np.ndarray) -> np.ndarray:
    return np.array([tx.TransformPoint(tuple(map(float, p))) for p in pts])


def full_resolution_mi(fixed: sitk.Image, moving: sitk.Image, seed: int = 1) -> sitk.Transform:
    """Baseline: Mattes MI rigid registration on the native grids, 3 levels, no pre-shrinking."""
    reg = sitk.ImageRegistrationMethod()
    reg.SetMetricAsMattesMutualInformation(32)
    reg.SetMetricSamplingStrategy(reg.RANDOM)
    reg.SetMetricSamplingPercentage(0.1, seed)
    reg.SetMetricFixedMask(body_mask(fixed))
    reg.SetInterpolator(sitk.sitkLinear)
    reg.SetOptimizerAsRegularStepGradientDescent(2.0, 1e-4, 200, relaxationFactor=0.7)
    reg.SetOptimizerScalesFromPhysicalShift()
    reg.SetShrinkFactorsPerLevel([4, 2, 1])
    reg.SetSmoothingSigmasPerLevel([4.0, 2.0, 0.0])
    reg.SetSmoothingSigmasAreSpecifiedInPhysicalUnits(True)
    init = sitk.Euler3DTransform()
    init.SetCenter(fixed.TransformContinuousIndexToPhysicalPoint([(n - 1) / 2 for n in fixed.GetSize()]))
    reg.SetInitialTransform(init, inPlace=False)
    return reg.Execute(sitk.Cast(fixed, sitk.sitkFloat32), sitk.Cast(moving, sitk.sitkFloat32))


def _spread(values: np.ndarray):
    """max / min - 1; None for values near 0 (suppressed fat on the landmark scale), where it means nothing."""
    return float(values.max() / values.min() - 1) if values.min() > 0.05 else None


def _pct(x) -> str:
    return "-" if x is None else f"{x:.1%}"


def standardization_table(seeds=(7,), kinds=("stir",)) -> list:
    """Table 3 for every anatomy seed and fluid-sensitive sequence kind; one row per (seed, kind, series, tissue)."""
    import normalize_synth as ns
    from scipy import ndimage

    from bmepipe.normalize import correct_bias, standardize
    from bmepipe.phantom import AcquisitionSpec, PhantomSpec, generate_study

    variants = [(1.5, 12.0, 0.4), (3.0, 40.0, 0.0), (1.5, 40.0, 0.0), (3.0, 12.0, 0.45)]
    small = dict(matrix=256, acquired_matrix=(192, 192), slices=20)
    tissues = ("muscle", "fat", "urine", "marrow", "edema")
    rows = []
    print("\nstandardized value per variant (fluid, t1: muscle = 1; fluid_std: landmark scale fat 0 / muscle 1 / "
          "fluid 4): " + ", ".join(f"{v[0]} T SNR {v[1]:.0f} bias {v[2]:.0%}" for v in variants))
    head = (f"{'seed':>4s} {'kind':5s} {'series':9s} {'tissue':7s} {'values':>30s} {'spread same T':>14s} "
            f"{'spread all':>11s} {'max-min':>8s} {'raw spread all':>15s}")
    print(head + "\n" + "-" * len(head))
    for seed in seeds:
        for kind in kinds:
            values: dict = {}
            masks = None
            for fs, snr, bias in variants:
                study = generate_study(PhantomSpec.random(seed, right="toh", acquisition=AcquisitionSpec(
                    field_strength_t=fs, snr=snr, bias_amplitude=bias, fluid_kind=kind, **small)))
                if masks is None:
                    masks = {k: ndimage.binary_erosion(m, structure=np.ones((1, 3, 3), bool))
                             for k, m in ns.phantom_tissue_masks(study).items()}
                    masks["marrow"] &= study.edema_fraction < 0.01  # normal-appearing marrow
                    masks["edema"] = study.edema_fraction > 0.5  # marrow that is mostly edema water (the TOH hip)
                raw = {w: ns.phantom_image(study.get(n)) for w, n in (("fluid", "cor_fluid"), ("t1", "cor_t1"))}
                raw["fluid_std"] = raw["fluid"]
                std = standardize(correct_bias(raw["fluid"])[0], correct_bias(raw["t1"])[0])
                for which in ("fluid", "fluid_std", "t1"):
                    a = sitk.GetArrayFromImage(raw[which])
                    for tissue in tissues:
                        v = values.setdefault((which, tissue), {"std": [], "raw": []})
                        v["std"].append(std.value(masks[tissue], which))
                        v["raw"].append(float(a[masks[tissue]].mean()))
            for (which, tissue), v in values.items():
                s, r = np.array(v["std"]), np.array(v["raw"])
                same, spread = [_spread(s[[0, 2]]), _spread(s[[1, 3]])], _spread(s)
                row = {"seed": seed, "fluid_kind": kind, "series": which, "tissue": tissue,
                       "values": [round(float(x), 3) for x in s],
                       "spread_same_field": None if None in same else round(max(same), 3),
                       "spread_all": None if spread is None else round(spread, 3),
                       "max_minus_min": round(float(s.max() - s.min()), 3),
                       "raw_spread_all": round(float(r.max() / r.min() - 1), 3)}
                rows.append(row)
                vals = " ".join(f"{x:6.3f}" for x in s)
                print(f"{seed:4d} {kind:5s} {which:9s} {tissue:7s} {vals:>30s} {_pct(row['spread_same_field']):>14s} "
                      f"{_pct(row['spread_all']):>11s} {row['max_minus_min']:8.3f} {row['raw_spread_all']:15.1%}")
    print("\nlargest spread across field strength, SNR and bias (target: every tissue within 10 %):")
    for which in ("fluid", "fluid_std", "t1"):
        cells = []
        for tissue in tissues:
            sel = [r for r in rows if r["series"] == which and r["tissue"] == tissue]
            spreads = [r["spread_all"] for r in sel if r["spread_all"] is not None]
            if spreads:
                worst = max(sel, key=lambda r: -1 if r["spread_all"] is None else r["spread_all"])
                cells.append(f"{tissue} {max(spreads):.1%} ({worst['seed']} {worst['fluid_kind']})")
            else:
                cells.append(f"{tissue} max-min {max(r['max_minus_min'] for r in sel):.3f}")
        print(f"  {which:9s} " + "; ".join(cells))
    return rows


def main(argv=None) -> int:
    import normalize_synth as ns
    from bmepipe.phantom import AcquisitionSpec, PhantomSpec, generate_study

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=3, help="motions (runs) per method (default 3)")
    ap.add_argument("--json", type=Path, help="also write the tables as JSON to this path")
    ap.add_argument("--only-standardization", action="store_true",
                    help="print table 3 only (about a minute per seed and sequence kind)")
    ap.add_argument("--seeds", default="7", help="table 3: comma-separated anatomy seeds (default 7)")
    ap.add_argument("--fluid-kinds", default="stir",
                    help="table 3: comma-separated fluid-sensitive sequences, stir, pd_fs, t2_fs (default stir)")
    args = ap.parse_args(argv)
    seeds = [int(v) for v in args.seeds.split(",")]
    kinds = [v.strip() for v in args.fluid_kinds.split(",")]
    if args.only_standardization:
        std_rows = standardization_table(seeds, kinds)
        if args.json:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps({"benchmark": "normalize", "standardization": std_rows}, indent=2))
        return 0

    study = generate_study(PhantomSpec.random(5, acquisition=AcquisitionSpec(snr=20.0, bias_amplitude=0.3)))
    fluid = ns.phantom_image(study.get("cor_fluid"))
    t1 = ns.phantom_image(study.get("cor_t1"))
    body = ns.phantom_tissue_masks(study)["body"]
    k, j, i = np.nonzero(body)
    sel = np.random.default_rng(0).choice(len(k), 2000, replace=False)
    d = np.array(fluid.GetDirection()).reshape(3, 3)
    pts = np.asarray(fluid.GetOrigin()) + (np.stack([i[sel], j[sel], k[sel]], 1) * np.asarray(fluid.GetSpacing())) @ d.T

    rng = np.random.default_rng(42)
    methods = ("header geometry only", "resample_to_reference (default)", "full-resolution MI (baseline)")
    times = {m: [] for m in methods}
    errs = {m: [] for m in methods}
    for run in range(args.runs):
        motion = sitk.Euler3DTransform()
        motion.SetCenter(tuple(map(float, pts.mean(axis=0))))
        angles = rng.uniform(-3, 3, 3)
        angles *= 3.0 / np.linalg.norm(angles)  # 3 degrees in all
        motion.SetRotation(*np.deg2rad(angles))
        shift = rng.normal(size=3)
        motion.SetTranslation(tuple(map(float, 5.0 * shift / np.linalg.norm(shift))))  # 5 mm
        t1_moved = moved(t1, motion)
        truth = map_points(motion, pts)
        for m in methods:
            t0 = time.perf_counter()
            if m == methods[0]:
                tx = sitk.Euler3DTransform()
            elif m == methods[1]:
                tx = resample_to_reference(Volume(t1_moved, meta("t1", "2.25.2")),
                                           Volume(fluid, meta("stir", "2.25.1"))).transform
            else:
                tx = full_resolution_mi(fluid, t1_moved)
            times[m].append(time.perf_counter() - t0)
            e = np.linalg.norm(map_points(tx, pts) - truth, axis=1)
            errs[m].append((float(e.mean()), float(np.percentile(e, 95))))
        print(f"run {run + 1}: motion {np.round(angles, 2)} deg, {np.round(motion.GetTranslation(), 2)} mm",
              file=sys.stderr)
    base = methods[2]
    reg_rows = []
    for m in methods:
        t = statistics.median(times[m])
        reg_rows.append({"method": m, "time_s": round(t, 3),
                         "error_mean_mm": round(statistics.median(e[0] for e in errs[m]), 3),
                         "error_p95_mm": round(statistics.median(e[1] for e in errs[m]), 3),
                         "speedup_vs_baseline": None if m == methods[0] else round(statistics.median(times[base]) / t, 1)})
    print(f"rigid registration T1 -> STIR, 30 x 512 x 512 phantom, 5 mm + 3 deg motion, median of {args.runs} runs")
    head = f"{'method':34s} {'time s':>8s} {'err mean mm':>12s} {'err p95 mm':>11s} {'speed-up':>9s}"
    print(head + "\n" + "-" * len(head))
    for r in reg_rows:
        sp = "" if r["speedup_vs_baseline"] is None else f"{r['speedup_vs_baseline']:.1f}x"
        print(f"{r['method']:34s} {r['time_s']:8.3f} {r['error_mean_mm']:12.3f} {r['error_p95_mm']:11.3f} {sp:>9s}")

    # Table 2: the whole stage (same frame of reference: geometry + motion check)
    steps: dict = {}
    for _ in range(args.runs):
        t0 = time.perf_counter()
        out = normalize_study(SimpleNamespace(fluid_sensitive=Volume(fluid, meta("stir", "2.25.1")),
                                              t1=Volume(t1, meta("t1", "2.25.1"))))
        out.timings_s["total"] = time.perf_counter() - t0
        for key, v in out.timings_s.items():
            steps.setdefault(key, []).append(v)
    step_rows = [{"step": key, "time_s": round(statistics.median(v), 3)} for key, v in steps.items()]
    print(f"\nnormalize_study on the same study (same frame of reference), median of {args.runs} runs")
    print(f"{'step':14s} {'time s':>8s}\n" + "-" * 23)
    for r in step_rows:
        print(f"{r['step']:14s} {r['time_s']:8.3f}")
    print(f"grid: {out.grid.method} ({out.grid.reason}; residual {out.grid.residual_mm:.2f} mm)")
    print("QC:", "; ".join(f"{f.name}={f.value:.3g} {'ok' if f.passed else 'FLAG'}" for f in out.quality.flags
                          if f.value is not None))
    std_rows = standardization_table(seeds, kinds)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"benchmark": "normalize", "runs": args.runs, "registration": reg_rows,
                                         "normalize_study": step_rows, "standardization": std_rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
