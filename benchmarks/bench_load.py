"""Benchmark: load, sort and validate a 30-slice 512 x 512 MR series.

Methods, on the same files in the same run (files written once by
``bmepipe.phantom.dicom_writer`` with shuffled extension-less names):

* ``bmepipe.io.load_series`` (all files of the series) and ``bmepipe.io.load_study`` (the folder);
* ``SimpleITK`` (baseline): ``ImageSeriesReader.GetGDCMSeriesFileNames`` + ``Execute``;
* ``dcm2niix``: subprocess ``dcm2niix -z n -b n`` writing an uncompressed NIfTI (includes process start and
  writing the file).

Usage::

    python benchmarks/bench_load.py [--repeats 9] [--vendor siemens] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from bmepipe.io import load_series, load_study
from bmepipe.phantom.dicom_writer import Geometry, SeriesProtocol, StudyInfo, write_mr_series

TARGET_RATIO = 1.5  # bmepipe at most 1.5 x SimpleITK's reader


def _write(folder: Path, vendor: str) -> list[Path]:
    geometry = Geometry.from_orientation((512, 512, 30), (0.7, 0.7, 4.4), (-180.0, 10.0, 100.0), (1, 0, 0),
                                         (0, 0, -1))
    signal = np.random.default_rng(0).uniform(0.0, 100.0, geometry.shape)
    protocol = SeriesProtocol(kind="stir", vendor=vendor, field_strength_t=1.5, repetition_time_ms=4500.0,
                              echo_time_ms=45.0, inversion_time_ms=160.0, flip_angle_deg=150.0,
                              echo_train_length=13, slice_thickness_mm=4.0, series_number=4)
    files = write_mr_series(signal, geometry, protocol, StudyInfo.from_seed(0), folder / "tmp")
    rng = np.random.default_rng(1)
    out = []
    for n, i in enumerate(rng.permutation(len(files))):  # shuffled, extension-less names
        target = folder / f"{rng.integers(1 << 40):010x}{n:02d}"
        files[i].rename(target)
        out.append(target)
    (folder / "tmp").rmdir()
    return out


def _sitk(folder: Path):
    import SimpleITK as sitk

    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(folder)))
    return reader.Execute()


def _dcm2niix_exe() -> str:
    return shutil.which("dcm2niix", path=str(Path(sys.executable).parent)) or shutil.which("dcm2niix") or ""


def _dcm2niix(folder: Path, out: Path):
    if out.exists():
        shutil.rmtree(out)
    out.mkdir()
    subprocess.run([_dcm2niix_exe(), "-z", "n", "-b", "n", "-o", str(out), str(folder)], check=True,
                   capture_output=True)


def _medians(methods: dict, repeats: int) -> dict:
    """Median wall time (s) of each method; runs interleaved so that machine load affects all alike."""
    times: dict = {name: [] for name in methods}
    for r in range(repeats + 1):  # the first round warms imports and the page cache; not counted
        for name, func in methods.items():
            t0 = time.perf_counter()
            func()
            if r:
                times[name].append(time.perf_counter() - t0)
    return {name: statistics.median(t) for name, t in times.items()}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=9, help="timed runs per method (median; >= 5)")
    parser.add_argument("--vendor", default="siemens", choices=("siemens", "ge", "philips"),
                        help="header flavour (philips adds a rescale slope)")
    parser.add_argument("--json", type=Path, help="also write the table as JSON here")
    args = parser.parse_args(argv)
    if args.repeats < 5:
        parser.error("--repeats must be >= 5")

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "series"
        folder.mkdir()
        files = _write(folder, args.vendor)
        # sanity: the methods agree on the voxels before anything is timed
        (vol,) = load_series(files)
        import SimpleITK as sitk

        ref = sitk.GetArrayFromImage(_sitk(folder)).astype(np.float32)
        if not np.allclose(vol.array, ref, rtol=1e-6):
            raise SystemExit("bmepipe and SimpleITK disagree on the voxel values")
        methods = {
            "SimpleITK ImageSeriesReader": lambda: _sitk(folder),
            "bmepipe.io.load_series": lambda: load_series(files),
            "bmepipe.io.load_study": lambda: load_study(folder),
        }
        if _dcm2niix_exe():
            methods["dcm2niix (subprocess, -z n)"] = lambda: _dcm2niix(folder, Path(tmp) / "nii")
        medians = _medians(methods, args.repeats)

    base = medians["SimpleITK ImageSeriesReader"]
    rows = [{"method": name, "median_s": round(m, 4), "ratio_vs_simpleitk": round(m / base, 3)}
            for name, m in medians.items()]
    print(f"load a 30-slice 512x512 {args.vendor} series; median of {args.repeats} runs "
          f"(python {sys.version.split()[0]}, {os.cpu_count()} cpus)")
    width = max(len(r["method"]) for r in rows)
    print(f"{'method':<{width}}  {'median s':>9}  {'ratio vs SimpleITK':>18}")
    for r in rows:
        print(f"{r['method']:<{width}}  {r['median_s']:>9.4f}  {r['ratio_vs_simpleitk']:>18.3f}")
    worst = max(r["ratio_vs_simpleitk"] for r in rows if r["method"].startswith("bmepipe"))
    verdict = "met" if worst <= TARGET_RATIO else "NOT met"
    print(f"target: bmepipe <= {TARGET_RATIO} x SimpleITK: {verdict} (worst {worst:.2f})")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"benchmark": "load", "series": f"512x512x30 {args.vendor}",
                                         "repeats": args.repeats, "target_ratio": TARGET_RATIO,
                                         "target_met": worst <= TARGET_RATIO, "rows": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
