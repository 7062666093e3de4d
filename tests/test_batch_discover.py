"""Study discovery: grouping by StudyInstanceUID in any layout, pseudonyms, fingerprints, unreadable files."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from batch_cohort import base_studies, make_cohort
from bmepipe.batch import discover_studies
from bmepipe.errors import ConfigError, InputError


@pytest.fixture(scope="module")
def bases():
    return base_studies(n=2, matrix=64, slices=6)


@pytest.fixture()
def cohort(tmp_path, bases):
    # 6 studies: study 1 split over two top-level folders, studies 2 and 4 (Siemens) in one shared folder.
    return make_cohort(tmp_path / "root", n=6, broken=(), bases=bases)


def test_groups_files_by_study_uid_whatever_the_layout(cohort):
    refs = discover_studies(cohort.root, salt="s")
    by_files = {frozenset(r.files): r for r in refs}
    assert len(refs) == 6
    for uid, files in cohort.files.items():  # truth: what the writer wrote for each study
        assert frozenset(files) in by_files, "a study's files were split or merged with another study"
        ref = by_files[frozenset(files)]
        assert ref.study_instance_uid == uid and ref.n_series == 2 and ref.modalities == ("MR",)
        assert ref.problem is None
    # the layouts really are messy: one study spans two top-level folders, one folder holds two studies
    tops = [{Path(f).relative_to(cohort.root).parts[0] for f in r.files} for r in refs]
    assert {"part_a", "part_b"} in tops
    shared = [r for r in refs if any("shared_folder" in f for f in r.files)]
    assert len(shared) == 2
    # README.txt and notes.bin are not DICOM: ignored
    assert not any(f.endswith((".txt", ".bin")) for r in refs for f in r.files)


def test_pseudonyms_hide_identifiers_and_are_stable_per_salt(cohort):
    a = discover_studies(cohort.root, salt="cohort-a")
    again = discover_studies(cohort.root, salt="cohort-a")
    b = discover_studies(cohort.root, salt="cohort-b")
    assert [r.study_id for r in a] == [r.study_id for r in again]
    assert {r.study_id for r in a}.isdisjoint({r.study_id for r in b})
    for r in a:
        pid = cohort.patient_ids[r.study_instance_uid]
        assert pid not in r.study_id and r.study_instance_uid not in r.study_id
        assert pid not in r.patient and r.patient.startswith("P")
        assert "PAT" not in repr(r) and "DOE" not in repr(r)  # identifiers never shown by repr
    by_uid = {r.study_instance_uid: r.study_id for r in discover_studies(cohort.root, names="uid")}
    assert all(sid == uid for uid, sid in by_uid.items())
    for r in discover_studies(cohort.root, salt="cohort-a", names="patient"):
        assert r.study_id.startswith(cohort.patient_ids[r.study_instance_uid] + "_20260101_S")


def test_fingerprint_follows_content_not_location_or_timestamps(cohort, tmp_path):
    before = {r.study_instance_uid: r.fingerprint for r in discover_studies(cohort.root)}
    moved = tmp_path / "moved"
    shutil.copytree(cohort.root, moved, copy_function=shutil.copy)  # new paths, new mtimes
    for f in moved.rglob("*"):
        if f.is_file():
            os.utime(f, (1, 1))
    assert {r.study_instance_uid: r.fingerprint for r in discover_studies(moved)} == before

    uid0, uid1 = cohort.uids[0], cohort.uids[4]
    victim = sorted(cohort.files[uid0])[0]
    os.truncate(victim, os.path.getsize(victim) - 2)  # same instance, different size
    os.remove(sorted(cohort.files[uid1])[-1])  # an instance removed
    after = {r.study_instance_uid: r.fingerprint for r in discover_studies(cohort.root)}
    assert after[uid0] != before[uid0] and after[uid1] != before[uid1]
    assert {k: v for k, v in after.items() if k not in (uid0, uid1)} == \
        {k: v for k, v in before.items() if k not in (uid0, uid1)}


def _dicm_garbage(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\x00" * 128 + b"DICM" + b"\x02\x00\x10\x00UI\xff\xff" + b"garbage" * 5)


def test_unreadable_or_unidentified_files_never_vanish(cohort):
    from pydicom import dcmread

    # alone in a folder: an unparsable file and a file without StudyInstanceUID -> one failed "unidentified" study
    lone = cohort.root / "lonely"
    _dicm_garbage(lone / "bad.dcm")
    ds = dcmread(sorted(cohort.files[cohort.uids[0]])[0])
    del ds.StudyInstanceUID
    ds.save_as(lone / "no_uid.dcm", enforce_file_format=True)
    # next to one study's files: attached to that study (its loader reports it)
    study_dir = Path(sorted(cohort.files[cohort.uids[5]])[0]).parent
    _dicm_garbage(study_dir / "broken.dcm")

    refs = discover_studies(cohort.root, salt="s")
    assert len(refs) == 7
    problems = [r for r in refs if r.problem]
    assert len(problems) == 1
    assert set(problems[0].files) == {str(lone / "bad.dcm"), str(lone / "no_uid.dcm")}
    assert "lonely" in problems[0].problem and "no StudyInstanceUID" in problems[0].problem
    owner = next(r for r in refs if r.study_instance_uid == cohort.uids[5])
    assert str(study_dir / "broken.dcm") in owner.files and owner.problem is None


def test_output_folder_and_hidden_files_inside_root_are_not_scanned(cohort):
    out = cohort.root / "results"
    shutil.copytree(cohort.root / "part_a", out / "copy")  # DICOM copies inside OUT
    hidden = cohort.root / ".cache"
    shutil.copytree(cohort.root / "part_a", hidden)
    refs = discover_studies(cohort.root, salt="s", exclude=[out])
    assert len(refs) == 6
    assert not any(str(out) in f or "/.cache/" in f for r in refs for f in r.files)


def test_bad_arguments_are_typed_errors(tmp_path):
    with pytest.raises(InputError):
        discover_studies(tmp_path / "missing")
    with pytest.raises(ConfigError):
        discover_studies(tmp_path, names="patient_name")


def test_parallel_header_scan_finds_the_same_studies(cohort, monkeypatch):
    import bmepipe.batch.discover as discover

    serial = discover_studies(cohort.root, salt="s")
    monkeypatch.setattr(discover, "PARALLEL_SCAN_MIN_FILES", 1)
    assert discover_studies(cohort.root, salt="s", workers=2) == serial


def test_scrub_relativizes_paths_and_redacts_identifiers(cohort):
    ref = next(r for r in discover_studies(cohort.root) if r.study_instance_uid == cohort.uids[0])
    pid = cohort.patient_ids[ref.study_instance_uid]
    text = f"{cohort.root}/{pid}/03/IM1: bad pixels of doe^jane00 ({pid.lower()})"
    assert ref.scrub(text) == "[redacted]/03/IM1: bad pixels of [redacted] ([redacted])"
