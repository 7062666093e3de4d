"""`bmepipe analyze` end to end on phantom studies: outputs, contract fields, geometry, truth, errors.

Ground truth comes from the phantom's truth files (truth.json, truth label maps) and from
independent readers (nibabel for NIfTI geometry, highdicom for SEG/SR, jsonschema for the schema).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from bmepipe.cli import main
from bmepipe.phantom import AcquisitionSpec, PhantomSpec, generate_study, write_study

STRUCTURES = ("femoral_head", "femoral_neck", "intertrochanteric", "proximal_shaft", "acetabulum",
              "bme", "necrosis", "subchondral_line", "effusion")
SEED = 7301  # not a seed used for sample data or tuning


@pytest.fixture(scope="module")
def phantom_study(tmp_path_factory):
    acq = AcquisitionSpec(matrix=256, acquired_matrix=(192, 192), slices=22, snr=25.0)
    spec = PhantomSpec.random(SEED, right="avn", left="toh", acquisition=acq)
    out = tmp_path_factory.mktemp("study") / "case"
    write_study(generate_study(spec), out)
    return out


@pytest.fixture(scope="module")
def analysed(phantom_study, tmp_path_factory):
    out = tmp_path_factory.mktemp("analysis")
    code = main(["analyze", str(phantom_study / "dicom"), "-o", str(out)])
    assert code == 0
    return out


def test_output_layout_is_complete(analysed):
    for name in ("report.json", "report.html", "dicom/seg.dcm", "dicom/sr.dcm"):
        assert (analysed / name).is_file(), name
    for side in ("right", "left"):
        for structure in STRUCTURES:
            assert (analysed / "labels" / f"{side}_{structure}.nii.gz").is_file()
    leftovers = [p for p in analysed.rglob("*") if ".tmp" in p.name]
    assert not leftovers


def test_report_validates_against_the_shipped_schema_file(analysed):
    import jsonschema

    schema_dir = Path(__import__("bmepipe.report", fromlist=["x"]).__file__).parent / "schemas"
    schema = json.loads(next(schema_dir.glob("report-*.json")).read_text())
    report = json.loads((analysed / "report.json").read_text())
    jsonschema.Draft202012Validator(schema).validate(report)
    assert "research use only" in report["disclaimer"].lower()
    assert report["parameters"]["quantify"]["bme_edema_fraction"] > 0


def test_patterns_and_measurements_against_phantom_truth(analysed, phantom_study):
    truth = json.loads((phantom_study / "truth" / "truth.json").read_text())["sides"]
    report = json.loads((analysed / "report.json").read_text())["sides"]
    expected = {"avn": "avn_like", "toh": "toh_like"}
    for side in ("right", "left"):
        assert report[side]["status"] == "analysed"
        assert report[side]["pattern"]["label"] == expected[truth[side]["pattern"]]
        c_true = np.array(truth[side]["head_center_lps_mm"])
        c_meas = np.array(report[side]["femoral_head"]["center_lps_mm"])
        assert np.linalg.norm(c_true - c_meas) <= 1.5
        assert abs(truth[side]["head_radius_mm"] - report[side]["femoral_head"]["radius_mm"]) <= 1.0
        assert report[side]["pattern"]["evidence"], "a pattern without evidence"


def test_label_maps_share_the_truth_grid(analysed, phantom_study):
    import nibabel as nib

    for side in ("right", "left"):
        ours = nib.load(analysed / "labels" / f"{side}_femoral_head.nii.gz")
        truth = nib.load(phantom_study / "truth" / "labels" / f"{side}_femoral_head.nii.gz")
        assert ours.shape == truth.shape
        np.testing.assert_allclose(ours.affine, truth.affine, atol=1e-3)
        a, b = np.asarray(ours.dataobj) > 0, np.asarray(truth.dataobj) > 0
        dice = 2 * np.sum(a & b) / (a.sum() + b.sum())
        assert dice >= 0.85


def test_seg_and_sr_reference_the_fluid_series(analysed, phantom_study):
    import highdicom as hd

    report = json.loads((analysed / "report.json").read_text())
    fluid_uid = next(s["series_instance_uid"] for s in report["inputs"]["series_used"] if s["role"] == "fluid_sensitive")
    seg = hd.seg.segread(analysed / "dicom" / "seg.dcm")
    refs = {item.SeriesInstanceUID for item in seg.ReferencedSeriesSequence}
    assert refs == {fluid_uid}
    sr = hd.sr.srread(analysed / "dicom" / "sr.dcm")
    assert sr.SOPClassUID == "1.2.840.10008.5.1.4.1.1.88.34"  # Comprehensive 3D SR


def test_same_input_same_report(analysed, phantom_study, tmp_path):
    assert main(["analyze", str(phantom_study / "dicom"), "-o", str(tmp_path), "--formats", "json"]) == 0
    a = json.loads((analysed / "report.json").read_text())
    b = json.loads((tmp_path / "report.json").read_text())
    a.pop("outputs"), b.pop("outputs")
    a["parameters"]["analysis"].pop("formats"), b["parameters"]["analysis"].pop("formats")
    assert a == b
    assert not (tmp_path / "report.html").exists() and not (tmp_path / "labels").exists()


def test_sides_option_reports_the_other_side_as_not_requested(phantom_study, tmp_path):
    assert main(["analyze", str(phantom_study / "dicom"), "-o", str(tmp_path), "--sides", "left",
                 "--formats", "json"]) == 0
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["sides"]["left"]["status"] == "analysed"
    assert report["sides"]["right"]["status"] == "failed"
    assert "not requested" in report["sides"]["right"]["reason"]


def test_python_api_result(phantom_study):
    import bmepipe

    result = bmepipe.analyze(phantom_study / "dicom")
    assert set(result.masks) == {"right", "left"}
    assert set(result.masks["left"]) == set(STRUCTURES)
    frame = result.to_frame()
    assert list(frame["side"]) == ["right", "left"]
    assert "toh" in result._repr_html_().lower() or "TOH" in result._repr_html_()
    assert "not a diagnosis" in repr(result)


def test_non_mr_folder_fails_in_one_line_and_writes_nothing(tmp_path, capsys):
    import pydicom.data

    src = Path(pydicom.data.get_testdata_file("CT_small.dcm"))
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "ct").write_bytes(src.read_bytes())
    code = main(["analyze", str(tmp_path / "in"), "-o", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err
    assert str(tmp_path / "in") in err and "MR" in err
    assert not (tmp_path / "out").exists()
