"""Benchmark of the write stage (``bmepipe.report.write_outputs``) on a two-series 512 x 512 x 30 phantom study.

Target (issue 8): the write stage in at most 1.0 s wall on a quiet 2-core machine.

Usage: ``python benchmarks/bench_report.py [--repeats 3] [--json PATH]``

The study is analysed once to capture the arguments ``analyze`` hands to ``write_outputs``; every run then
calls ``write_outputs`` once in a fresh child process that has imported the libraries first (as
``bench_analyze.py`` does), so first-use costs count. Rows, median of the runs:

- ``serial (baseline)``: ``BMEPIPE_THREADS=1``, everything one after the other in one process;
- ``parallel``: the default, the DICOM SEG and SR built in a forked child beside labels and figures;
- ``parallel after preload``: the same after :func:`bmepipe.report.bundle.preload` (what a background
  thread early in an analysis would have done).

Columns: wall seconds, ratio to the baseline, CPU seconds of the process and of its children.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import pickle
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

TARGET_S = 1.0
LIBRARIES = ("numpy", "scipy.ndimage", "scipy.spatial", "SimpleITK", "pydicom", "highdicom", "nibabel",
             "matplotlib", "matplotlib.pyplot", "jsonschema", "skimage.measure")
MODES = {"serial (baseline)": ("1", False), "parallel": ("2", False), "parallel after preload": ("2", True)}


def _capture(folder: Path) -> Path:
    """Analyse the phantom study once; pickle the arguments of its write_outputs call."""
    import bmepipe
    import bmepipe.report as report
    from bmepipe.phantom import AcquisitionSpec, PhantomSpec, generate_study, write_study

    acq = AcquisitionSpec(matrix=512, acquired_matrix=(256, 256), slices=30, snr=20.0)
    spec = PhantomSpec.random(41, right="toh", left="avn", acquisition=acq)
    study = write_study(generate_study(spec), folder / "study")
    captured = folder / "write_args.pkl"
    original = report.write_outputs

    def capture(*args, **kwargs):
        captured.write_bytes(pickle.dumps((args[1:], kwargs), protocol=pickle.HIGHEST_PROTOCOL))
        return original(*args, **kwargs)

    report.write_outputs = capture
    try:
        bmepipe.analyze(study, folder / "analysis")
    finally:
        report.write_outputs = original
    return captured


def _one_run(captured: str, out: str, threads: str, preload: bool, queue) -> None:
    import importlib

    os.environ["BMEPIPE_THREADS"] = threads
    for name in LIBRARIES:
        importlib.import_module(name)
    from bmepipe.report import bundle

    args, kwargs = pickle.loads(Path(captured).read_bytes())
    if preload:
        bundle.preload()
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0, c0 = time.perf_counter(), time.process_time()
    bundle.write_outputs(out, *args, **kwargs)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    child_cpu = (after.ru_utime + after.ru_stime) - (children.ru_utime + children.ru_stime)
    queue.put({"wall": wall, "cpu": cpu, "child_cpu": child_cpu})


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", type=Path, help="also write the figures as JSON")
    args = parser.parse_args(argv)

    ctx = mp.get_context("spawn")
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        captured = _capture(Path(tmp))
        runs = {mode: [] for mode in MODES}
        for i in range(args.repeats):
            for mode, (threads, preload) in MODES.items():  # interleaved: load changes hit every mode alike
                queue = ctx.Queue()
                out = Path(tmp) / f"out-{len(runs[mode])}-{threads}-{int(preload)}-{i}"
                proc = ctx.Process(target=_one_run, args=(str(captured), str(out), threads, preload, queue))
                proc.start()
                runs[mode].append(queue.get())
                proc.join()
        for mode, results in runs.items():
            rows[mode] = {key: statistics.median(r[key] for r in results) for key in ("wall", "cpu", "child_cpu")}
    base = rows["serial (baseline)"]["wall"]
    print(f"bmepipe.report.write_outputs, 512x512x30 STIR + T1 phantom, median of {args.repeats} runs")
    print(f"{'mode':<26}{'wall s':>8}{'x baseline':>12}{'cpu s':>8}{'child cpu s':>13}")
    for mode, row in rows.items():
        print(f"{mode:<26}{row['wall']:>8.3f}{row['wall'] / base:>12.2f}{row['cpu']:>8.3f}{row['child_cpu']:>13.3f}")
    met = rows["parallel"]["wall"] <= TARGET_S
    print(f"write stage {rows['parallel']['wall']:.2f} s (target <= {TARGET_S:.1f} s on a quiet machine): "
          f"{'met' if met else 'NOT met'}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({
            "repeats": args.repeats, "baseline": "serial (BMEPIPE_THREADS=1)",
            "modes": {m: {k: round(v, 4) for k, v in r.items()} for m, r in rows.items()},
            "target_s": TARGET_S, "met": bool(met)}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
