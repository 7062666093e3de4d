"""Phantom cohorts for the batch tests and benchmark: many studies in a messy folder layout, some broken.

Images come from :func:`bmepipe.phantom.generate_study` (a few base studies,
simulated once); each cohort study rewrites one base study's series with its own
patient, StudyInstanceUID and SeriesInstanceUIDs, so a 20-study cohort takes a
couple of seconds to write.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path

BROKEN = ("corrupt", "partial", "ct")


@dataclass
class Cohort:
    root: Path
    uids: dict = field(default_factory=dict)  # study index -> StudyInstanceUID
    kinds: dict = field(default_factory=dict)  # StudyInstanceUID -> "ok" | one of BROKEN
    patient_ids: dict = field(default_factory=dict)  # StudyInstanceUID -> PatientID
    n_files: dict = field(default_factory=dict)  # StudyInstanceUID -> files written (after breaking)


def base_studies(n: int = 2, matrix: int = 64, slices: int = 10):
    """``n`` small simulated studies (different vendors and patterns)."""
    from bmepipe.phantom import AcquisitionSpec, PhantomSpec, generate_study

    vendors = ("siemens", "ge", "philips")
    patterns = (("toh", "normal"), ("normal", "avn"), ("sif", "normal"))
    studies = []
    for i in range(n):
        acq = AcquisitionSpec(vendor=vendors[i % 3], matrix=matrix, acquired_matrix=(matrix, matrix),
                              slices=slices, with_localizer=False)
        right, left = patterns[i % 3]
        studies.append(generate_study(PhantomSpec.random(100 + i, right=right, left=left, acquisition=acq)))
    return studies


def _write(base, info, folders, uid_seed):
    from bmepipe.phantom.dicom_writer import write_mr_series

    files = []
    for s, folder in zip(base.series, folders):
        files += write_mr_series(s.signal, s.geometry, s.protocol, info, folder, uid_seed=uid_seed)
    return files


def _make_ct(files):
    from pydicom import dcmread

    for f in files:
        ds = dcmread(f)
        ds.Modality = "CT"
        ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
        ds.BodyPartExamined = "HEAD"
        ds.save_as(f, enforce_file_format=True)


def make_cohort(root, n: int = 20, broken=BROKEN, bases=None, seed: int = 0) -> Cohort:
    """Write ``n`` studies under ``root``; the last ``len(broken)`` are broken as named.

    Layouts: ``<patient>/<series>/`` for most studies; study 1 is split over two
    top-level folders; studies 2 and 3 share one folder (Siemens file names are
    unique per image); plus stray non-DICOM files.
    """
    from bmepipe.phantom.dicom_writer import StudyInfo

    root = Path(root)
    bases = bases or base_studies()
    cohort = Cohort(root=root)
    for i in range(n):
        base = bases[i % len(bases)]
        patient_id = f"PAT{seed:03d}{i:04d}"
        info = StudyInfo.from_seed(seed * 100000 + i, patient_id=patient_id, patient_name=f"DOE^JANE{i:02d}")
        uid = info.study_instance_uid
        names = [f"{s.protocol.series_number:02d}" for s in base.series]
        vendor = base.series[0].protocol.vendor
        if i == 1:
            folders = [root / "part_a" / patient_id / names[0]] + [root / "part_b" / "x" / nm for nm in names[1:]]
        elif i in (2, 3) and vendor == "siemens":
            folders = [root / "shared_folder"] * len(names)
        else:
            folders = [root / patient_id / nm for nm in names]
        files = _write(base, info, folders, uid_seed=i)
        kind = "ok"
        k = i - (n - len(broken))
        if k >= 0:
            kind = broken[k]
            fluid_folder = next(f for s, f in zip(base.series, folders) if s.protocol.kind != "t1")
            fluid_files = [f for f in files if f.parent == fluid_folder]
            if kind == "corrupt":  # pixel data cut short, header intact
                target = fluid_files[len(fluid_files) // 2]
                os.truncate(target, target.stat().st_size // 2)
            elif kind == "partial":  # a slice missing from the middle of the fluid-sensitive series
                target = fluid_files[len(fluid_files) // 2]
                target.unlink()
                files.remove(target)
            elif kind == "ct":
                _make_ct(files)
        cohort.uids[i] = uid
        cohort.kinds[uid] = kind
        cohort.patient_ids[uid] = patient_id
        cohort.n_files[uid] = len(files)
    (root / "README.txt").write_text("not DICOM\n")
    (root / part_notes()).write_bytes(b"\x00" * 300)
    return cohort


def part_notes() -> str:
    return "notes.bin"


def slow_inspect(ref, out_dir):
    """The inspect job, slowed down (for kill-and-resume timing)."""
    from bmepipe.batch import inspect_job

    time.sleep(float(os.environ.get("BMEPIPE_TEST_JOB_SLEEP", "0.4")))
    return inspect_job(ref, out_dir)


def sleepy(ref, out_dir):
    """Sleeps far past any test timeout."""
    time.sleep(60)


def crashes(ref, out_dir):
    """Dies like a segfaulting extension would."""
    import signal

    os.kill(os.getpid(), signal.SIGSEGV)


def raises(ref, out_dir):
    raise RuntimeError(f"cannot analyse {ref.files[0]}")
