"""Benchmark: cohort throughput of ``bmepipe batch`` (studies per hour), 1 vs 2 local workers vs Dask.

A cohort of phantom studies (one simulated study per vendor flavour, each
rewritten with its own UIDs; default sample-sized: 512 x 512 matrix, 30 slices,
fluid-sensitive + T1 = 60 files) is analysed with ``run_batch(..., force=True)``
into a fresh output folder per run. The time is the whole batch, discovery and
summary included; a Dask cluster's start-up is not (it is an existing engine).

Failed studies are counted, not fatal (their time is part of the throughput).
Baseline: 1 local worker, measured in the same run. "run phase" excludes the
serial header scan and the summary (it shows the parallel part on its own). Targets on a 2-core machine:
>= 1.8x from 1 to 2 workers and >= 600 studies per hour.

Usage::

    python benchmarks/bench_batch.py [--studies 16] [--repeats 3] [--job inspect|analyze] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # the tests' cohort writer

from batch_cohort import base_studies, make_cohort  # noqa: E402

from bmepipe.batch import run_batch  # noqa: E402


def _median_rates(run, repeats: int, n: int, work: Path, name: str) -> tuple[float, float, list[float], int]:
    """Median studies/hour of the whole batch and of its run phase (discovery and summary excluded),
    the rates of every run and the largest number of failed studies in a run."""
    rates, run_rates, failed = [], [], 0
    for r in range(repeats):
        out = work / f"{name}-{r}"
        t0 = time.perf_counter()
        result = run(out)
        elapsed = time.perf_counter() - t0
        if result.n_studies != n:
            raise SystemExit(f"{name}: found {result.n_studies} studies, expected {n}")
        failed = max(failed, result.n_failed)
        if result.n_failed:
            errors = result.summary.loc[result.summary["status"] == "failed", "error"].dropna().unique()
            print(f"{name}: {result.n_failed} failed, e.g. {errors[0] if len(errors) else '?'}", file=sys.stderr)
        rates.append(3600.0 * n / elapsed)
        run_rates.append(3600.0 * n / result.phases_s["run"])
        shutil.rmtree(out)
    return statistics.median(rates), statistics.median(run_rates), rates, failed


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--studies", type=int, default=16, help="cohort size (default 16)")
    parser.add_argument("--repeats", type=int, default=3, help="runs per configuration (median; default 3)")
    parser.add_argument("--matrix", type=int, default=512, help="reconstructed matrix (default 512)")
    parser.add_argument("--slices", type=int, default=30, help="slices per series (default 30)")
    parser.add_argument("--job", default="inspect", help="per-study job (default inspect)")
    parser.add_argument("--no-dask", action="store_true", help="skip the Dask LocalCluster row")
    parser.add_argument("--no-warmup", action="store_true", help="skip the untimed warm-up pass")
    parser.add_argument("--json", type=Path, help="also write the table as JSON here")
    args = parser.parse_args(argv)

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        t0 = time.perf_counter()
        bases = base_studies(n=3, matrix=args.matrix, slices=args.slices)
        cohort = make_cohort(work / "root", n=args.studies, broken=(), bases=bases)
        print(f"cohort: {args.studies} studies, {sum(len(f) for f in cohort.files.values())} files, "
              f"written in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
        configs = [("local, 1 worker", dict(workers=1)), ("local, 2 workers", dict(workers=2))]
        cluster = client = None
        if not args.no_dask:
            from distributed import Client, LocalCluster

            cluster = LocalCluster(n_workers=2, processes=True, threads_per_worker=1, host="127.0.0.1",
                                   dashboard_address=None)
            client = Client(cluster)
            configs.append(("Dask LocalCluster, 2 workers", dict(client=client)))
        try:
            if not args.no_warmup:  # file-system cache, imports: one untimed pass
                run_batch(cohort.root, work / "warm", job=args.job, workers=2, force=True)
            baseline = run_baseline = None
            for name, kwargs in configs:
                rate, run_rate, rates, failed = _median_rates(
                    lambda out: run_batch(cohort.root, out, job=args.job, force=True, **kwargs),
                    args.repeats, args.studies, work, name.replace(" ", "_").replace(",", ""))
                baseline, run_baseline = baseline or rate, run_baseline or run_rate
                rows.append({"case": name, "studies_per_hour": rate, "ratio": rate / baseline,
                             "run_phase_studies_per_hour": run_rate, "run_phase_ratio": run_rate / run_baseline,
                             "runs_studies_per_hour": rates, "failed_studies": failed})
        finally:
            if client is not None:
                client.close()
                cluster.close()
    print(f"{'case':<32} {'studies/h':>10} {'ratio':>7} {'run phase/h':>12} {'ratio':>7} {'failed':>7}")
    for row in rows:
        print(f"{row['case']:<32} {row['studies_per_hour']:>10.0f} {row['ratio']:>7.2f} "
              f"{row['run_phase_studies_per_hour']:>12.0f} {row['run_phase_ratio']:>7.2f} {row['failed_studies']:>7}")
    if args.json:
        args.json.write_text(json.dumps({
            "benchmark": "batch", "job": args.job, "studies": args.studies, "repeats": args.repeats,
            "matrix": args.matrix, "slices": args.slices, "baseline": "local, 1 worker", "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
