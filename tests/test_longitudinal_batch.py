"""``bmepipe batch`` on a cohort with two studies per patient writes the longitudinal table.

Truth from the phantom (which study is the baseline, the interval, the follow-up pose), not from bmepipe.
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pandas as pd
import pydicom
import pytest

from bmepipe.phantom import AcquisitionSpec, PhantomSpec, generate_followup, generate_study, write_study

ACQ = AcquisitionSpec(matrix=160, acquired_matrix=(160, 160), slices=20)
DAYS = {"P1": 75, "P2": 200}


pytestmark = pytest.mark.slow  # about 2 minutes: four analyses in the batch, then two comparisons


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    from bmepipe.batch import run_batch

    root = tmp_path_factory.mktemp("longitudinal")
    truth = {}
    for k, (patient, patterns) in enumerate((("P1", ("toh", "normal")), ("P2", ("normal", "sif")))):
        base = generate_study(PhantomSpec.random(5401 + k, right=patterns[0], left=patterns[1], acquisition=ACQ))
        base.study_info = dataclasses.replace(base.study_info, patient_id=f"PHANTOM-{patient}",
                                              patient_name=f"PHANTOM^{patient}")
        fu = generate_followup(base, days=DAYS[patient], shift_lps_mm=(8.0, 3.0, -6.0), rotation_deg=4.0 - 8 * k,
                               noise_seed=5411 + k)
        # the follow-up is written first, so folder order cannot stand in for date order
        write_study(fu, root / "cohort" / f"{patient}_x")
        write_study(base, root / "cohort" / f"{patient}_y")
        truth[patient] = (base, fu)
    result = run_batch(root / "cohort", root / "out", job="analyze", workers=1)
    return root / "out", truth, result


def _uid(out, study):
    return str(pydicom.dcmread(out / "studies" / study / "dicom" / "sr.dcm", stop_before_pixels=True).StudyInstanceUID)


def test_longitudinal_table_one_row_per_patient_side_interval(cohort):
    out, truth, result = cohort
    assert result.n_ok == 4
    df = pd.read_csv(out / "longitudinal.csv")
    pq = pd.read_parquet(out / "longitudinal.parquet")
    assert len(df) == len(pq) == 4 and list(df.columns) == list(pq.columns)
    assert set(df["side"]) == {"right", "left"} and (df["status"] == "compared").all(), df[["status", "error"]]
    summary = pd.read_csv(out / "summary.csv")
    assert set(df["patient"]) == set(summary["patient"]) and df["patient"].nunique() == 2
    for patient, (base, fu) in truth.items():
        rows = df[df["baseline_study"].map(lambda s: _uid(out, s) == base.study_info.study_instance_uid)]
        assert len(rows) == 2, patient  # this patient's baseline is the earlier study
        assert (rows["followup_study"].map(lambda s: _uid(out, s)) == fu.study_info.study_instance_uid).all()
        assert (rows["interval_days"] == DAYS[patient]).all()
        # then / now are the two studies' own report.json values
        for _, row in rows.iterrows():
            for study, column in ((row["baseline_study"], "bme_volume_then_ml"),
                                  (row["followup_study"], "bme_volume_now_ml")):
                report = json.loads((out / "studies" / study / "report.json").read_text())
                assert row[column] == pytest.approx(report["sides"][row["side"]]["bme"]["volume_ml"], abs=1e-3)
            assert row["bme_change_ml"] == pytest.approx(row["bme_volume_now_ml"] - row["bme_volume_then_ml"], abs=2e-3)
    # P1's right hip is TOH whose edema fell to 0.3x: resolving; its normal left hip: stable
    p1 = df[df["baseline_study"].map(lambda s: _uid(out, s) == truth["P1"][0].study_info.study_instance_uid)]
    assert p1.set_index("side").loc["right", "trajectory"] == "resolving"
    assert p1.set_index("side").loc["left", "trajectory"] == "stable"
    assert not any("PHANTOM" in str(v) for v in df.to_numpy().ravel())  # no patient identifiers


def test_label_map_registration_recovers_the_phantom_pose(cohort):
    import SimpleITK as sitk

    out, truth, _ = cohort
    df = pd.read_csv(out / "longitudinal.csv")
    for patient, (base, fu) in truth.items():
        row = df[df["baseline_study"].map(lambda s: _uid(out, s) == base.study_info.study_instance_uid)].iloc[0]
        report = json.loads((out / row["compare_dir"] / "compare.json").read_text())
        assert report["kind"] == "bmepipe-compare" and report["interval_days"] == DAYS[patient]
        base_report = json.loads((out / "studies" / row["baseline_study"] / "report.json").read_text())
        pose = fu.truth["followup_pose"]
        for side in ("right", "left"):
            reg = report["sides"][side]["registration"]
            assert reg["method"] == "bone label maps"
            tx = sitk.Euler3DTransform()
            tx.SetCenter(tuple(base_report["sides"][side]["femoral_head"]["center_lps_mm"]))
            tx.SetRotation(*np.radians(reg["rotation_deg"]))
            tx.SetTranslation(reg["translation_mm"])
            c0 = np.asarray(base.truth["sides"][side]["head_center_lps_mm"])
            expected = np.reshape(pose["matrix"], (3, 3)) @ c0 + pose["translation_mm"]
            err = np.linalg.norm(np.asarray(tx.TransformPoint(tuple(c0))) - expected)
            assert err <= 1.0, (patient, side, err)
        for name in ("right_bme_resolved", "left_bme_new"):
            assert (out / row["compare_dir"] / "labels" / f"{name}.nii.gz").is_file()


def test_longitudinal_rebuild_reuses_pair_outputs(cohort):
    from bmepipe.batch.longitudinal import build_longitudinal

    out, *_ = cohort
    first = (out / "longitudinal.csv").read_text()
    stamps = {p: p.stat().st_mtime_ns for p in (out / "longitudinal").rglob("compare.json")}
    assert len(stamps) == 2
    again = build_longitudinal(out)
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps  # read back, not recomputed
    assert again.to_csv(index=False, lineterminator="\n") == first


def test_pair_outputs_of_other_parameters_are_recomputed(cohort, tmp_path):
    import shutil

    from bmepipe.batch.longitudinal import build_longitudinal
    from bmepipe.compare import CompareParams

    out, *_ = cohort
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    params = dataclasses.replace(CompareParams(), min_bme_ml=CompareParams().min_bme_ml + 1.0)
    stamps = {p: p.stat().st_mtime_ns for p in (copy / "longitudinal").rglob("compare.json")}
    build_longitudinal(copy, params=params)
    for p, stamp in stamps.items():
        assert p.stat().st_mtime_ns != stamp  # made with other rules: not reused
        assert json.loads(p.read_text())["parameters"]["min_bme_ml"] == params.min_bme_ml


def test_no_longitudinal_table_without_repeat_studies(cohort, tmp_path):
    from bmepipe.batch import run_batch

    out, truth, _ = cohort
    write_study(truth["P1"][0], tmp_path / "one" / "a")
    (tmp_path / "out1").mkdir()
    (tmp_path / "out1" / "longitudinal.csv").write_text("stale table of an earlier cohort\n")
    run_batch(tmp_path / "one", tmp_path / "out1", job="inspect", workers=1)
    assert (tmp_path / "out1" / "summary.csv").is_file()
    assert not (tmp_path / "out1" / "longitudinal.csv").exists()
