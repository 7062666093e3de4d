"""Benchmark: bias-field correction, time vs residual bias against the N4 baseline.

Baseline (issue 5): SimpleITK's N4BiasFieldCorrectionImageFilter at its default
settings (no mask, 4 levels x 50 iterations) on the image shrunk by 4 in-plane,
field evaluated at full resolution (``correct_bias(method="n4_baseline")``).
A second reference row gives the same with an Otsu mask (SimpleITK's example
usage), which on STIR keeps only the bladder and corrects almost nothing. Every other row is
measured in the same run, on the same phantoms.

Residual bias = coefficient of variation, inside the body, of
``true_field / estimated_field``; for the noise-free image that is exactly the
CV of (corrected image / bias-free image), and it does not blow up in voxels
where the bias-free signal is ~0 (cortex, nulled fat).

Each "run" is one phantom (30 x 512 x 512 fluid-sensitive series, or with
``--series t1`` the T1 series; different seed, field strength, SNR and bias
field, with the truth field the phantom applied and the body mask rendered
from its anatomy); times and residuals are medians over runs. ``--source synthetic`` uses the analytic stand-in of
tests/normalize_synth.py instead.

Usage::

    python benchmarks/bench_bias.py [--runs 3] [--json PATH] [--source phantom|synthetic] [--series fluid|t1]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from bmepipe.normalize import correct_bias

# (label, keyword arguments of correct_bias)
METHODS = [
    ("n4_baseline (N4 defaults, shrink 4)", {"method": "n4_baseline"}),
    ("n4 shrink 4 + Otsu mask (reference)", {"method": "n4_baseline", "otsu": True}),
    ("n4_coarse 8 mm, checkerboard (default)", {"method": "n4_coarse"}),
    ("n4_coarse 8 mm, checkerboard only", {"method": "n4_coarse", "fit_voxels": 10**9}),
    ("n4_coarse 8 mm, every mask voxel", {"method": "n4_coarse", "checkerboard": False}),
    ("n4_coarse 8 mm, all slices", {"method": "n4_coarse", "coarse_slice_mm": 0.1}),
    ("n4_coarse 6 mm / 8 mm slices", {"method": "n4_coarse", "coarse_spacing_mm": 6.0}),
    ("n4_coarse 4.5 mm / 8 mm slices", {"method": "n4_coarse", "coarse_spacing_mm": 4.5}),
    ("n4_coarse 9 mm / 8 mm slices", {"method": "n4_coarse", "coarse_spacing_mm": 9.0}),
    ("n4_coarse 8 mm, 2 levels", {"method": "n4_coarse", "iterations": (50, 50)}),
    ("n4_coarse 8 mm, 4 levels", {"method": "n4_coarse", "iterations": (50, 50, 50, 50)}),
    ("none", {"method": "none"}),
]


sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # tests/normalize_synth.py helpers
import normalize_synth as ns  # noqa: E402


def synthetic_case(seed: int):
    """A realistic stand-in used before bmepipe.phantom existed: analytic pelvis, smooth field, Rician noise."""

    rng = np.random.default_rng(seed)
    grid = ns.make_grid((512, 512, 30), (0.75, 0.75, 4.5))
    p = ns.physical_points(grid)
    field = ns.smooth_bias(p, peak_to_peak=float(rng.uniform(0.2, 0.5)), seed=seed)
    snr = float(rng.choice([12.0, 40.0]))
    image = ns.series(grid, "stir", bias=field, sigma=0.30 / snr, seed=seed)
    body = ns.labels_at(p) > 0
    return f"synthetic seed {seed}, SNR {snr:.0f}", image, field, body


def phantom_case(seed: int, series: str = "fluid"):
    """One 30 x 512 x 512 phantom study: its fluid-sensitive (or T1) series, applied bias field and body mask."""
    from bmepipe.phantom import AcquisitionSpec, PhantomSpec, generate_study

    field_t = (1.5, 3.0, 1.5)[seed % 3]
    snr = (12.0, 40.0, 20.0)[seed % 3]
    bias = (0.5, 0.3, 0.4)[seed % 3]
    acq = AcquisitionSpec(field_strength_t=field_t, snr=snr, bias_amplitude=bias, matrix=512, slices=30)
    study = generate_study(PhantomSpec.random(seed, acquisition=acq))
    body = ns.phantom_tissue_masks(study)["body"]
    image = ns.phantom_image(study.get(f"cor_{series}"))
    kind = "T1" if series == "t1" else acq.fluid_kind.upper()
    return f"phantom seed {seed}, {field_t} T {kind}, SNR {snr:.0f}, bias {bias:.0%} p-p", image, study.bias_field, body


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=3, help="phantoms (runs) per method (default 3)")
    ap.add_argument("--source", choices=("phantom", "synthetic"), default="phantom")
    ap.add_argument("--series", choices=("fluid", "t1"), default="fluid",
                    help="phantom series to correct (default the fluid-sensitive one)")
    ap.add_argument("--json", type=Path, help="also write the table as JSON to this path")
    args = ap.parse_args(argv)
    if args.source == "phantom":
        def make(seed):
            return phantom_case(seed, args.series)
    else:
        make = synthetic_case

    times = {name: [] for name, _ in METHODS}
    resid = {name: [] for name, _ in METHODS}
    cases = []
    for run in range(args.runs):
        label, image, field, body = make(run + 1)
        cases.append(label)
        for name, kwargs in METHODS:
            kwargs = dict(kwargs)
            t0 = time.perf_counter()
            if kwargs.pop("otsu", False):
                kwargs["mask"] = sitk.OtsuThreshold(image, 0, 1, 200)
            _, est = correct_bias(image, **kwargs)
            times[name].append(time.perf_counter() - t0)
            resid[name].append(ns.residual_bias(field, est, body))
        print(f"run {run + 1}: {label}, size {image.GetSize()}", file=sys.stderr)

    base = METHODS[0][0]
    t_base = statistics.median(times[base])
    r_base = statistics.median(resid[base])
    rows = []
    for name, _ in METHODS:
        t, r = statistics.median(times[name]), statistics.median(resid[name])
        rows.append({
            "method": name, "time_s": round(t, 3), "residual_bias_cv": round(r, 5),
            "residual_bias_max_cv": round(max(resid[name]), 5),
            "speedup_vs_baseline": round(t_base / t, 1), "residual_vs_baseline": round(r / r_base, 3),
        })
    head = f"{'method':38s} {'time s':>8s} {'resid CV':>9s} {'max CV':>8s} {'speed-up':>9s} {'resid/base':>10s}"
    print(f"bias correction, median of {args.runs} runs ({args.source}, {args.series}): " + "; ".join(cases))
    print(head)
    print("-" * len(head))
    for row in rows:
        print(f"{row['method']:38s} {row['time_s']:8.3f} {row['residual_bias_cv']:9.4f} "
              f"{row['residual_bias_max_cv']:8.4f} "
              f"{row['speedup_vs_baseline']:8.1f}x {row['residual_vs_baseline']:10.3f}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"benchmark": "bias", "source": args.source, "series": args.series,
                                         "runs": args.runs,
                                         "cases": cases, "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
