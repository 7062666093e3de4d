"""Benchmark: writing a 512 x 512 x 30 phantom series as DICOM, per vendor flavour.

Baseline ``raw_bytes``: the same uint16 slices written as bare bytes, one atomic
file per slice (the file-system floor any DICOM writer pays).

Usage::

    python benchmarks/bench_phantom_dicom_writer.py [--repeats 7] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from bmepipe.io.atomic import atomic_path
from bmepipe.phantom.dicom_writer import Geometry, SeriesProtocol, StudyInfo, write_mr_series


def _raw_bytes(signal: np.ndarray, out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    stored = np.rint(signal * (4000.0 / signal.max())).astype("<u2")
    for k, image in enumerate(stored):
        with atomic_path(out_dir / f"IM{k + 1:04d}.raw") as tmp:
            tmp.write_bytes(image.tobytes())


def _median_s(func, repeats: int, work: Path) -> float:
    times = []
    for r in range(repeats + 1):  # the first run warms imports and caches; not counted
        out = work / f"run{r}"
        t0 = time.perf_counter()
        func(out)
        elapsed = time.perf_counter() - t0
        shutil.rmtree(out)
        if r:
            times.append(elapsed)
    return statistics.median(times)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--json", type=Path, help="also write the table as JSON here")
    args = parser.parse_args(argv)

    geometry = Geometry.from_orientation((512, 512, 30), (0.7, 0.7, 4.4), (-180.0, 10.0, 100.0),
                                         (1, 0, 0), (0, 0, -1))
    signal = np.random.default_rng(0).uniform(0.0, 100.0, geometry.shape)
    study = StudyInfo.from_seed(0)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        baseline = _median_s(lambda out: _raw_bytes(signal, out), args.repeats, work)
        rows.append({"case": "raw_bytes (baseline)", "median_s": baseline, "ratio": 1.0})
        for vendor in ("siemens", "ge", "philips"):
            protocol = SeriesProtocol("stir", vendor, 1.5, 5000.0, 40.0, 160.0, 150.0, 13, 4.0, 3)
            t = _median_s(lambda out: write_mr_series(signal, geometry, protocol, study, out), args.repeats, work)
            rows.append({"case": f"write_mr_series {vendor} 512x512x30", "median_s": t, "ratio": t / baseline})
    print(f"{'case':<40} {'median_s':>9} {'ratio':>7}")
    for row in rows:
        print(f"{row['case']:<40} {row['median_s']:>9.3f} {row['ratio']:>7.2f}")
    if args.json:
        args.json.write_text(json.dumps({"benchmark": "phantom_dicom_writer", "repeats": args.repeats,
                                         "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
