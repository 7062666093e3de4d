"""Cohort batch processing: every study under a folder, resumable, failure-isolated, local or on Dask.

>>> from bmepipe.batch import run_batch
>>> result = run_batch("cohort/", "results/", workers=2)  # doctest: +SKIP
>>> result.summary.groupby("status").size()  # doctest: +SKIP

Modules: :mod:`~bmepipe.batch.discover` (find studies by StudyInstanceUID),
:mod:`~bmepipe.batch.jobs` (what runs per study), :mod:`~bmepipe.batch.worker`
(killable worker processes), :mod:`~bmepipe.batch.engine` (resume, timeouts,
local and Dask execution), :mod:`~bmepipe.batch.summary` (the cohort table).
"""

from .discover import NAMINGS, StudyRef, discover_studies
from .engine import (DEFAULT_TIMEOUT_S, BatchResult, StudyOutcome, is_finished, load_cohort, params_hash, run_batch,
                     run_study, study_folders)
from .jobs import analyze_available, analyze_job, inspect_job, resolve_job
from .summary import build_summary, write_summary

__all__ = [
    "StudyRef",
    "discover_studies",
    "NAMINGS",
    "run_batch",
    "run_study",
    "BatchResult",
    "StudyOutcome",
    "is_finished",
    "load_cohort",
    "params_hash",
    "study_folders",
    "DEFAULT_TIMEOUT_S",
    "resolve_job",
    "inspect_job",
    "analyze_job",
    "analyze_available",
    "build_summary",
    "write_summary",
]
