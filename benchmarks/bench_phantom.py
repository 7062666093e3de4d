"""Benchmark of the phantom: one coronal STIR + T1 study at 512 x 512 x 30 (target: <= 5 s on one core).

Usage: ``python benchmarks/bench_phantom.py [--repeats 3] [--json PATH]``

Rows (median wall time of ``--repeats`` runs, one thread):

* ``baseline``: the same study sampled at voxel centres only (1 x 1 x 1, no partial volume);
* ``generate``: :func:`generate_study` with the default sub-sampling (1 x 1 x 3 at 512);
* ``generate+write``: plus :func:`write_study` (60 DICOM files, 18 label NIfTIs, truth.json).

Wall and CPU (process) seconds are both printed; the ratio column is CPU time / baseline CPU time
(CPU time is the fair figure when other jobs share the machine).
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")  # one core

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

BUDGET_S = 5.0


def _spec(supersample=None):
    from bmepipe.phantom import AcquisitionSpec, PhantomSpec

    acq = AcquisitionSpec(matrix=512, acquired_matrix=(256, 256), slices=30, supersample=supersample)
    spec = PhantomSpec.random(3, right="toh", left="avn", acquisition=acq)
    return replace(spec, left=replace(spec.left, collapse_mm=2.0))


def _time(fn, repeats: int) -> tuple[float, float]:
    """Median wall and CPU (process) seconds; CPU time is the fair figure on a shared machine."""
    wall, cpu = [], []
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return statistics.median(wall), statistics.median(cpu)


def main(argv=None) -> int:
    from bmepipe.phantom import generate_study, write_study

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", type=Path, help="also write the figures as JSON")
    args = parser.parse_args(argv)

    generate_study(_spec((1, 1, 1)))  # warm-up (imports, caches)
    rows = {}
    rows["baseline"] = _time(lambda: generate_study(_spec((1, 1, 1))), args.repeats)
    rows["generate"] = _time(lambda: generate_study(_spec()), args.repeats)
    tmp = Path(tempfile.mkdtemp(prefix="bench_phantom_"))

    def gen_write():
        out = tmp / "study"
        write_study(generate_study(_spec()), out, overwrite=True)

    try:
        rows["generate+write"] = _time(gen_write, args.repeats)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    print("phantom: coronal STIR + T1, 512 x 512 x 30, one thread, median of", args.repeats)
    print(f"{'case':<16} {'wall s':>7} {'cpu s':>7} {'ratio':>6} {'cpu <= 5 s':>10}")
    base = rows["baseline"][1]
    for name, (wall, cpu) in rows.items():
        print(f"{name:<16} {wall:7.2f} {cpu:7.2f} {cpu / base:6.2f} {'yes' if cpu <= BUDGET_S else 'NO':>10}")
    if args.json:
        args.json.write_text(json.dumps({"budget_s": BUDGET_S, "repeats": args.repeats,
                                         "wall_s": {k: v[0] for k, v in rows.items()},
                                         "cpu_s": {k: v[1] for k, v in rows.items()},
                                         "cpu_ratio_to_baseline": {k: v[1] / base for k, v in rows.items()}},
                                        indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
