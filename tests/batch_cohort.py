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
    files: dict = field(default_factory=dict)  # StudyInstanceUID -> set of files written (after breaking)


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
    top-level folders; studies 2 and 4 share one folder (Siemens file names are
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
        elif i in (2, 4) and vendor == "siemens":
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
        cohort.files[uid] = {str(f) for f in files}
    (root / "README.txt").write_text("not DICOM\n")
    (root / "notes.bin").write_bytes(b"\x00" * 300)
    return cohort


def slow_inspect(ref, out_dir):
    """The inspect job, slowed down (for kill-and-resume timing).

    With ``BMEPIPE_TEST_JOB_GATE`` (a folder), only the first study to start runs; every other
    one waits until the batch is stopped, so a test can interrupt a batch that cannot finish first.
    """
    from bmepipe.batch import inspect_job

    gate = os.environ.get("BMEPIPE_TEST_JOB_GATE")
    if gate:
        try:
            os.close(os.open(os.path.join(gate, "first"), os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:
            while True:  # the interrupted batch kills this process
                time.sleep(0.05)
    time.sleep(float(os.environ.get("BMEPIPE_TEST_JOB_SLEEP", "0.4")))
    return inspect_job(ref, out_dir)


def sleepy(ref, out_dir):
    """Sleeps far past any test timeout."""
    time.sleep(60)


def crashes(ref, out_dir):
    """Dies like a segfaulting extension would."""
    import signal

    os.kill(os.getpid(), signal.SIGSEGV)


def chaos(ref, out_dir, crash="", fail=""):
    """Crash (SIGSEGV) for studies whose files contain ``crash``, raise for ``fail``, else inspect."""
    import signal

    from bmepipe.batch import inspect_job

    if crash and any(crash in f for f in ref.files):
        os.kill(os.getpid(), signal.SIGSEGV)
    if fail and any(fail in f for f in ref.files):
        print("about to fail")  # captured into the study's job.log
        raise RuntimeError(f"cannot analyse {ref.files[0]}")
    return inspect_job(ref, out_dir)


def contract_job(ref, out_dir):
    """A report shaped like analyze's contract, with values derived from the study's file count."""
    n = float(len(ref.files))
    side = lambda k: {  # noqa: E731
        "status": "analysed", "reason": None,
        "femoral_head": {"center_lps_mm": [-85.0 * k, 10.0, n], "radius_mm": 24.0 + k},
        "regions": {"femoral_head": {"volume_ml": 50.0 + k}, "femoral_neck": {"volume_ml": 20.0},
                    "intertrochanteric": {"volume_ml": 80.0}, "proximal_shaft": {"volume_ml": 60.0},
                    "acetabulum": {"volume_ml": 40.0}},
        "bme": {"volume_ml": 5.5 * k, "fraction": {"femoral_head": 0.25 * k, "femoral_neck": 0.1,
                                                   "intertrochanteric": 0.0, "proximal_shaft": 0.0,
                                                   "acetabulum": 0.0}},
        "avn": {"necrotic_extent_pct": 12.5, "collapse_mm": 1.5, "jic_type": "C1", "kerboul_angle_deg": 210.0},
        "sif": {"line_length_mm": None, "line_thickness_mm": None},
        "effusion_ml": 3.25,
        "pattern": {"label": "avn_like" if k == 1 else "toh_like", "score": 0.75, "evidence": []},
    }
    left = side(-1)
    left.update(status="failed", reason="femur not found")
    return {
        "schema_version": "test",
        "inputs": {"series_used": [
            {"role": "fluid_sensitive", "series_instance_uid": "1.2.3", "series_description": "STIR COR",
             "sequence_kind": "stir"},
            {"role": "t1", "series_instance_uid": "1.2.4", "series_description": "T1 COR", "sequence_kind": "t1"}]},
        "qc": {"flags": [
            {"name": "snr_low", "value": 4.0, "threshold": 8.0, "flagged": True, "message": "low SNR"},
            {"name": "fat_sat_failed", "value": 0.3, "threshold": 0.5, "flagged": True, "message": "", "side": "left"},
            {"name": "motion", "value": 0.0, "threshold": 1.0, "flagged": False, "message": ""}]},
        "sides": {"right": side(1), "left": left},
        "timings_s": {"load": 0.5, "segment": 2.0},
        "software": {"version": "test"},
    }


def process_info(ref, out_dir):
    """Which process ran the study, with which thread limit."""
    return {"pid": os.getpid(), "ppid": os.getppid(), "omp": os.environ.get("OMP_NUM_THREADS")}


def kill_dask_worker(ref, out_dir, marker=""):
    """Kill the process that drives this study (a Dask worker) for studies whose files contain ``marker``."""
    import signal

    from bmepipe.batch import inspect_job

    if marker and any(marker in os.path.realpath(f) for f in ref.files):
        os.kill(os.getppid(), signal.SIGKILL)
        time.sleep(30)
    return inspect_job(ref, out_dir)
