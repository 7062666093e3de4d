"""Benchmark: cohort throughput of ``bmepipe batch`` (studies per hour): 1 and 2 local workers, 2-worker Dask.

A cohort of phantom studies (one simulated study per vendor flavour, each
rewritten with its own UIDs; default 512 x 512 matrix, 30 slices, fluid-sensitive
+ T1 = 60 files per study) is analysed with ``run_batch(..., force=True)`` into a
fresh output folder per run. The time is the whole batch, discovery and summary
included; "run phase" leaves out the serial header scan and the summary (it
shows the parallel part on its own).

Rows, all measured in the same run and interleaved (repeat 1 of every row, then
repeat 2, ...) so that a change in machine load hits every row alike:

* local, 1 worker (the baseline) and local, 2 workers: ``run_batch(workers=N)``,
  as ``bmepipe batch --workers N`` runs; each batch starts its own worker processes.
* Dask LocalCluster, 2 workers: ``run_batch(client=...)`` on an existing
  2-process cluster (its start is not timed). Its workers keep their study
  processes between batches, as a long-running cluster would; the untimed
  warm-up pass starts them.

The figure of a row is the median over ``--repeats`` runs, its ratio is against
the baseline. A LocalCluster writes its workers' settings (e.g.
``MALLOC_TRIM_THRESHOLD_``, thread limits) into this process's environment;
they are undone once it has started so the local rows run in the environment a
plain ``bmepipe batch`` gets (the Dask workers keep them, as on a real cluster).

Every study should succeed: failed studies are counted in the table, and any
failure makes the exit status 1 (such figures are not throughput).
Targets on a 2-core machine with sample-sized studies: >= 1.8x from 1 to 2
local workers, >= 600 studies per hour.

Usage::

    python benchmarks/bench_batch.py [--studies 16] [--repeats 3] [--job inspect|analyze]
        [--matrix 512] [--slices 30] [--no-dask] [--json PATH]
    python benchmarks/bench_batch.py --job analyze --matrix 192 --slices 16 --studies 8   # sample-sized
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # the tests' cohort writer

from batch_cohort import base_studies, make_cohort  # noqa: E402

from bmepipe.batch import run_batch  # noqa: E402

BASELINE = "local, 1 worker"
TARGET_RATIO = 1.8  # 1 -> 2 local workers on 2 cores (issue 9)
TARGET_PER_HOUR = 600.0  # studies per hour (issue 9)


def _start_cluster():
    """A 2-process LocalCluster on loopback, with this process's environment as it was before."""
    from distributed import Client, LocalCluster

    saved = dict(os.environ)
    cluster = LocalCluster(n_workers=2, processes=True, threads_per_worker=1, host="127.0.0.1",
                           dashboard_address=None)
    os.environ.clear()
    os.environ.update(saved)
    return cluster, Client(cluster)


def _one_run(cohort_root: Path, out: Path, n: int, job: str, options: dict) -> dict:
    t0 = time.perf_counter()
    result = run_batch(cohort_root, out, job=job, force=True, **options)
    elapsed = time.perf_counter() - t0
    if result.n_studies != n:
        raise SystemExit(f"found {result.n_studies} studies, expected {n}")
    errors = result.summary.loc[result.summary["status"] == "failed", "error"].dropna().unique()
    shutil.rmtree(out)
    return {"per_hour": 3600.0 * n / elapsed, "run_per_hour": 3600.0 * n / result.phases_s["run"],
            "failed": result.n_failed, "error": errors[0] if len(errors) else None}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--studies", type=int, default=16, help="cohort size (default 16)")
    parser.add_argument("--repeats", type=int, default=3, help="runs per row (median; default 3)")
    parser.add_argument("--matrix", type=int, default=512, help="reconstructed matrix (default 512)")
    parser.add_argument("--slices", type=int, default=30, help="slices per series (default 30)")
    parser.add_argument("--job", default="inspect", help="per-study job: inspect (default) or analyze")
    parser.add_argument("--no-dask", action="store_true", help="skip the Dask LocalCluster row")
    parser.add_argument("--no-warmup", action="store_true", help="skip the untimed warm-up pass of each row")
    parser.add_argument("--json", type=Path, help="also write the table as JSON here")
    args = parser.parse_args(argv)

    rows = {BASELINE: dict(workers=1), "local, 2 workers": dict(workers=2)}
    runs: dict[str, list[dict]] = {name: [] for name in rows}
    cluster = client = None
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        t0 = time.perf_counter()
        bases = base_studies(n=3, matrix=args.matrix, slices=args.slices)
        cohort = make_cohort(work / "root", n=args.studies, broken=(), bases=bases)
        print(f"cohort: {args.studies} studies, {sum(len(f) for f in cohort.files.values())} files, "
              f"written in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
        try:
            if not args.no_dask:
                cluster, client = _start_cluster()
                rows["Dask LocalCluster, 2 workers"] = dict(client=client)
                runs["Dask LocalCluster, 2 workers"] = []
            if not args.no_warmup:  # file-system cache; the Dask workers' study processes
                for name, options in rows.items():
                    if name != BASELINE:
                        _one_run(cohort.root, work / "warm", args.studies, args.job, options)
            for r in range(args.repeats):
                for name, options in rows.items():
                    run = _one_run(cohort.root, work / f"run-{r}", args.studies, args.job, options)
                    runs[name].append(run)
                    print(f"{name}, run {r + 1}: {run['per_hour']:.0f} studies/h, {run['failed']} failed"
                          + (f" (e.g. {run['error']})" if run["error"] else ""), file=sys.stderr)
        finally:
            if client is not None:
                client.close()
                cluster.close()

    table = []
    for name, rs in runs.items():
        table.append({"case": name, "studies_per_hour": statistics.median(r["per_hour"] for r in rs),
                      "run_phase_studies_per_hour": statistics.median(r["run_per_hour"] for r in rs),
                      "runs_studies_per_hour": [round(r["per_hour"], 1) for r in rs],
                      "failed_studies": max(r["failed"] for r in rs)})
    base, run_base = table[0]["studies_per_hour"], table[0]["run_phase_studies_per_hour"]
    for row in table:
        row["ratio"] = row["studies_per_hour"] / base
        row["run_phase_ratio"] = row["run_phase_studies_per_hour"] / run_base
    two = next(row for row in table if row["case"] == "local, 2 workers")
    targets = {"ratio_1_to_2_local_workers": two["ratio"], "ratio_target": TARGET_RATIO,
               "best_studies_per_hour": max(row["studies_per_hour"] for row in table),
               "studies_per_hour_target": TARGET_PER_HOUR}
    failed = sum(row["failed_studies"] for row in table)

    print(f"{'case':<32} {'studies/h':>10} {'ratio':>7} {'run phase/h':>12} {'ratio':>7} {'failed':>7}")
    for row in table:
        print(f"{row['case']:<32} {row['studies_per_hour']:>10.0f} {row['ratio']:>7.2f} "
              f"{row['run_phase_studies_per_hour']:>12.0f} {row['run_phase_ratio']:>7.2f} {row['failed_studies']:>7}")
    print(f"targets: 1 -> 2 local workers {two['ratio']:.2f}x (>= {TARGET_RATIO}x), "
          f"best {targets['best_studies_per_hour']:.0f} studies/h (>= {TARGET_PER_HOUR:.0f})")
    if failed:
        print("INVALID: some studies failed; these figures are not throughput", file=sys.stderr)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({
            "benchmark": "batch", "job": args.job, "studies": args.studies, "repeats": args.repeats,
            "matrix": args.matrix, "slices": args.slices, "baseline": BASELINE, "valid": not failed,
            "targets": targets, "rows": table}, indent=2) + "\n")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
