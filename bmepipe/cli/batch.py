"""``bmepipe batch``: analyse every study under a folder (resumable; local processes or Dask)."""

from __future__ import annotations

import argparse
import signal
import sys


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected seconds >= 0 (0: no limit), got {text!r}")
    return value


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "batch",
        help="analyse every study under a folder into one output folder per study plus a cohort table",
        description="Find every DICOM study under ROOT (grouped by StudyInstanceUID, whatever the folder layout), "
        "run the per-study job on each in separate processes and write OUT/studies/<pseudonym>/ (DONE.json marks "
        "a finished study), OUT/summary.csv and OUT/summary.parquet (one row per study side), OUT/batch.log and "
        "OUT/cohort.json (the pseudonym salt). Running the same command again skips finished studies and redoes "
        "interrupted ones. A broken study becomes a row with status 'failed' and the reason.",
    )
    p.add_argument("root", metavar="ROOT", help="folder holding the cohort's DICOM files (any layout)")
    p.add_argument("-o", "--out", required=True, metavar="OUT", help="output folder (created; reuse it to resume)")
    p.add_argument("--workers", type=_positive_int, default=1, metavar="N",
                   help="studies analysed at once on this machine, one process each (default 1)")
    p.add_argument("--scheduler", metavar="ADDRESS",
                   help="run on a Dask distributed cluster instead, e.g. tcp://10.0.0.5:8786 (workers need bmepipe "
                   "and must see ROOT and OUT under the same paths)")
    p.add_argument("--timeout", type=_seconds, default=1800.0, metavar="SECONDS",
                   help="per-study time limit; the study's process is killed and the study marked failed "
                   "(default 1800; 0: no limit)")
    p.add_argument("--job", default="auto", metavar="JOB",
                   help="per-study job: 'analyze' (full pipeline), 'inspect' (load the study and choose its series "
                   "only) or MODULE:FUNCTION taking (study, out_dir); default 'auto': analyze when installed, "
                   "else inspect")
    p.add_argument("--config", metavar="TOML",
                   help="analyze job: parameter file, as for `bmepipe analyze --config` (part of the resume key)")
    p.add_argument("--formats", metavar="LIST",
                   help="analyze job: outputs besides report.json, comma-separated from html,nifti,dicom "
                   "(default all)")
    p.add_argument("--names", choices=("pseudonym", "uid", "patient"), default="pseudonym",
                   help="study folder names: salted pseudonym of the StudyInstanceUID (default), the "
                   "StudyInstanceUID, or PatientID_StudyDate_pseudonym (reveals identifiers; opt-in only)")
    p.add_argument("--retry-failed", action="store_true", help="redo studies that failed in an earlier run")
    p.add_argument("--force", action="store_true", help="redo every study, finished or not")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (default: shown on a terminal)")
    p.add_argument("--max-studies-per-process", type=int, default=50, metavar="K",
                   help="replace each worker process after K studies to bound memory growth (default 50; 0: never)")
    p.add_argument("--threads-per-study", type=int, default=1, metavar="T",
                   help="threads of the numerical libraries per study (default 1: parallelism comes from --workers; "
                   "0: the libraries' own default)")
    p.add_argument("--dry-run", action="store_true",
                   help="list the studies found and what would run, analyse nothing (writes only OUT/cohort.json)")
    p.set_defaults(func=run_batch_command)


def _analyze_params(args) -> dict:
    """``config`` for the analyze job from --config/--formats (empty: analyze's defaults)."""
    if args.config is None and args.formats is None:
        return {}
    from bmepipe.config import FORMATS, load_config
    from bmepipe.errors import ConfigError

    if args.job not in ("auto", "analyze"):
        raise ConfigError("--config and --formats apply to the analyze job only")
    cfg = load_config(args.config)
    if args.formats is not None:
        formats = tuple(f.strip() for f in args.formats.split(",") if f.strip())
        unknown = sorted(set(formats) - set(FORMATS))
        if unknown:
            raise ConfigError(f"unknown output format(s) {', '.join(unknown)}; choose from {', '.join(FORMATS)}")
        cfg = cfg.updated(formats=("json",) + formats)
    return {"config": cfg}


def _dry_run(args) -> int:
    from pathlib import Path

    from bmepipe.batch import discover_studies, is_finished, load_cohort, params_hash, resolve_job

    from ._common import format_table

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    params = _analyze_params(args)
    _, job_name = resolve_job(args.job, params)
    phash = params_hash(job_name, params)
    refs = discover_studies(args.root, salt=load_cohort(out)["salt"], names=args.names, exclude=[out])
    rows = []
    for r in refs:
        state = "problem: " + r.problem if r.problem else (
            "finished" if not args.force and is_finished(out, r, phash, retry_failed=args.retry_failed) else "run")
        rows.append([r.study_id, r.patient, r.n_files, r.n_series, ",".join(r.modalities), state])
    print(format_table(["study", "patient", "files", "series", "modalities", "state"], rows))
    print(f"{len(refs)} studies, {sum(row[-1] == 'run' for row in rows)} to run with job {job_name}")
    return 0


def run_batch_command(args: argparse.Namespace) -> int:
    if args.dry_run:
        return _dry_run(args)
    from bmepipe.batch import run_batch

    params = _analyze_params(args)

    def _terminate(signum, frame):  # e.g. a cancelled Slurm job: stop as cleanly as on Ctrl-C
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        result = run_batch(
            args.root, args.out, job=args.job, params=params, workers=args.workers, client=args.scheduler,
            timeout_s=args.timeout or None, names=args.names, retry_failed=args.retry_failed, force=args.force,
            progress=False if args.no_progress else None,
            max_studies_per_process=args.max_studies_per_process or None,
            threads_per_study=args.threads_per_study or None,
        )
    except KeyboardInterrupt:
        print("bmepipe: interrupted: finished studies are kept; run the same command again to resume",
              file=sys.stderr)
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous)
    print(f"bmepipe batch: {result.n_studies} studies ({result.job}): {result.n_ok} ok, {result.n_failed} failed, "
          f"{result.n_skipped} finished earlier; {result.elapsed_s:.1f} s; summary: {result.summary_csv}")
    return 0
