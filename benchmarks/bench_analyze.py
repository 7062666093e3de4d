"""Benchmark of ``bmepipe.analyze`` per stage on a two-series 512 x 512 x 30 phantom study.

Targets (issue 8): the whole analysis in at most 5 s wall on this 2-core machine, not counting interpreter
start; peak memory at most 1.5 GB.

Usage: ``python benchmarks/bench_analyze.py [--repeats 3] [--json PATH]``

Each run happens in a fresh child process (so peak RSS is that run's own) on the same study, written once
by the phantom; the libraries the pipeline uses are imported before the clock starts (interpreter start, which
the target excludes; their time is printed apart). Rows: the median seconds of every stage (load, select, normalize, segment, quantify,
patterns, write), the total, and ``read (baseline)``: SimpleITK's ImageSeriesReader reading the same two
series, the floor any analysis pays; the ratio column is stage time / baseline.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

TARGET_S = 5.0
TARGET_MB = 1536.0
STAGES = ("load", "select", "normalize", "segment", "quantify", "patterns", "write")


def _make_study(folder: Path) -> Path:
    from bmepipe.phantom import AcquisitionSpec, PhantomSpec, generate_study, write_study

    acq = AcquisitionSpec(matrix=512, acquired_matrix=(256, 256), slices=30, snr=20.0)
    spec = PhantomSpec.random(41, right="toh", left="avn", acquisition=acq)
    return write_study(generate_study(spec), folder / "study")


#: Libraries the pipeline imports on first use. A batch worker or a notebook imports them once; the issue's
#: target excludes interpreter start, so they are imported before the clock starts (and timed apart).
LIBRARIES = ("numpy", "scipy.ndimage", "scipy.spatial", "SimpleITK", "pydicom", "highdicom", "nibabel",
             "matplotlib", "matplotlib.pyplot", "jsonschema", "skimage.measure")


def _one_run(study: str, out: str, queue) -> None:
    import importlib

    t0 = time.perf_counter()
    import bmepipe
    for name in LIBRARIES:
        importlib.import_module(name)
    imports = time.perf_counter() - t0
    t0 = time.perf_counter()
    result = bmepipe.analyze(study, out)
    total = time.perf_counter() - t0
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    queue.put({"timings": result.timings_s, "total": total, "peak_mb": peak_mb, "imports": imports})


def _baseline(study: Path) -> float:
    import SimpleITK as sitk

    t0 = time.perf_counter()
    for series in sorted((study / "dicom").iterdir()):
        reader = sitk.ImageSeriesReader()
        reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(series)))
        reader.Execute()
    return time.perf_counter() - t0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", type=Path, help="also write the figures as JSON")
    args = parser.parse_args(argv)

    ctx = mp.get_context("spawn")
    with tempfile.TemporaryDirectory() as tmp:
        study = _make_study(Path(tmp))
        base = statistics.median(_baseline(study) for _ in range(args.repeats))
        runs = []
        for i in range(args.repeats):
            queue = ctx.Queue()
            proc = ctx.Process(target=_one_run, args=(str(study), str(Path(tmp) / f"out{i}"), queue))
            proc.start()
            runs.append(queue.get())
            proc.join()
    rows = [("read (baseline)", base)]
    rows += [(s, statistics.median(r["timings"].get(s, 0.0) for r in runs)) for s in STAGES]
    total = statistics.median(r["total"] for r in runs)
    peak = max(r["peak_mb"] for r in runs)
    rows.append(("total", total))
    imports = statistics.median(r["imports"] for r in runs)
    print(f"bmepipe.analyze, 512x512x30 STIR + T1 phantom, median of {args.repeats} runs")
    print(f"{'stage':<16}{'seconds':>10}{'x baseline':>12}")
    for name, sec in rows:
        print(f"{name:<16}{sec:>10.3f}{sec / base:>12.1f}")
    print(f"(imports of the libraries, before the clock: {imports:.2f} s; not in the total)")
    print(f"peak memory {peak:.0f} MB (target <= {TARGET_MB:.0f}); total {total:.2f} s (target <= {TARGET_S:.0f} s): "
          f"{'met' if total <= TARGET_S and peak <= TARGET_MB else 'NOT met'}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({
            "repeats": args.repeats, "baseline": "SimpleITK ImageSeriesReader, both series",
            "stages_s": {n: round(s, 4) for n, s in rows}, "total_s": round(total, 3),
            "peak_memory_mb": round(peak, 1), "imports_s_not_counted": round(imports, 3),
            "target_s": TARGET_S, "target_mb": TARGET_MB,
            "met": bool(total <= TARGET_S and peak <= TARGET_MB)}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
