"""Phantom study folders: layout, DICOM conformance (dciodvfy), geometry as dcm2niix, GDCM and
bmepipe.io read it, truth round trip, CLI and balanced suites."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from bmepipe.cli import main
from bmepipe.errors import OutputError
from bmepipe.phantom import (PATTERNS, STRUCTURES, AcquisitionSpec, PhantomSpec, generate_study, load_truth,
                             make_suite, write_study)

DCIODVFY = shutil.which("dciodvfy")


def _dcm2niix():
    try:
        import dcm2niix

        return str(dcm2niix.bin)
    except (ImportError, AttributeError):
        return shutil.which("dcm2niix")


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    acq = AcquisitionSpec(matrix=128, acquired_matrix=(112, 96), slices=12, obliquity_deg=7.0, tilt_deg=2.0,
                          vendor="ge", with_axial=True, with_localizer=True, supersample=(1, 1, 3))
    study = generate_study(PhantomSpec.random(17, right="avn", left="normal", acquisition=acq))
    out = tmp_path_factory.mktemp("ph") / "study"
    write_study(study, out)
    return study, out


def _series_dirs(out: Path):
    return sorted(p for p in (out / "dicom").iterdir() if p.is_dir())


def test_layout_and_truth_round_trip(written):
    study, out = written
    names = [p.name for p in _series_dirs(out)]
    assert [n[:3] for n in names] == ["01_", "03_", "04_", "05_"]  # localizer, T1, fluid, axial
    labels = sorted(p.name for p in (out / "truth" / "labels").iterdir())
    assert labels == sorted(f"{s}_{x}.nii.gz" for s in ("right", "left") for x in STRUCTURES)
    truth, masks = load_truth(out)
    assert truth["sides"]["right"]["pattern"] == "avn" and truth["sides"]["left"]["pattern"] == "normal"
    for key in ("regions", "bme", "necrosis", "collapse_mm", "subchondral_line", "effusion_ml", "head_radius_mm"):
        assert key in truth["sides"]["right"]
    assert truth["acquisition"]["seed"] == 17 and truth["phantom_version"]
    for name, arr in study.labels.items():
        np.testing.assert_array_equal(masks[name], arr)
    assert not masks["left_necrosis"].any() and masks["right_necrosis"].any()
    lm = masks["label_map"]
    assert set(np.unique(lm)) <= {0, 1, 2, 3, 4, 5, 11, 12, 13, 14, 15}
    assert ((lm == 1) == masks["right_femoral_head"]).all()
    assert not list(out.parent.glob(".study.*"))  # no temporary folder left behind


def test_labels_have_the_fluid_series_geometry_read_by_gdcm(written):
    import SimpleITK as sitk

    study, out = written
    fluid_dir = [p for p in _series_dirs(out) if p.name.startswith("04_")][0]
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(fluid_dir)))
    dicom = reader.Execute()
    label = sitk.ReadImage(str(out / "truth" / "labels" / "right_femoral_head.nii.gz"))
    assert dicom.GetSize() == label.GetSize()
    np.testing.assert_allclose(dicom.GetOrigin(), label.GetOrigin(), atol=1e-3)
    np.testing.assert_allclose(dicom.GetSpacing(), label.GetSpacing(), atol=1e-4)
    np.testing.assert_allclose(dicom.GetDirection(), label.GetDirection(), atol=1e-5)
    # the pixels are the simulated signal (scaled)
    a = sitk.GetArrayFromImage(dicom).astype(float).ravel()
    assert np.corrcoef(a, study.fluid.signal.ravel())[0, 1] > 0.999


@pytest.mark.skipif(DCIODVFY is None, reason="dciodvfy (dicom3tools) not installed")
def test_dciodvfy_reports_no_errors(written):
    _, out = written
    for d in _series_dirs(out):
        f = sorted(d.iterdir())[0]
        res = subprocess.run([DCIODVFY, str(f)], capture_output=True, text=True)
        errors = [ln for ln in (res.stdout + res.stderr).splitlines() if ln.startswith("Error")]
        assert not errors, f"{d.name}: {errors}"


@pytest.mark.skipif(_dcm2niix() is None, reason="dcm2niix not installed")
def test_dcm2niix_geometry_agrees_with_truth(written, tmp_path):
    import nibabel as nib

    study, out = written
    fluid_dir = [p for p in _series_dirs(out) if p.name.startswith("04_")][0]
    subprocess.run([_dcm2niix(), "-z", "n", "-b", "n", "-f", "fluid", "-o", str(tmp_path), str(fluid_dir)],
                   check=True, capture_output=True)
    img = nib.load(str(tmp_path / "fluid.nii"))
    lab = nib.load(str(out / "truth" / "labels" / "right_femoral_head.nii.gz"))
    # map every truth voxel index to dcm2niix's voxel grid: must land on integer voxels
    ijk = np.array(np.meshgrid(*[np.arange(n) for n in lab.shape], indexing="ij")).reshape(3, -1)
    world = lab.affine @ np.vstack([ijk, np.ones(ijk.shape[1])])
    other = np.linalg.solve(img.affine, world)[:3]
    np.testing.assert_allclose(other, np.round(other), atol=1e-2)
    idx = np.round(other).astype(int)
    assert (idx.min(axis=1) >= 0).all() and (idx.max(axis=1) < np.array(img.shape[:3])).all()
    data = np.asarray(img.dataobj, dtype=float)[idx[0], idx[1], idx[2]]
    sig = np.transpose(study.fluid.signal, (2, 1, 0)).reshape(-1)  # nifti (i, j, k) order of the truth grid
    assert np.corrcoef(data, sig)[0, 1] > 0.999


def test_bmepipe_io_reads_the_same_geometry(written):
    from bmepipe.io import load_study

    study, out = written
    loaded = load_study(out / "dicom")
    fluid = [v for v in loaded.volumes if v.meta.is_fluid_sensitive and v.meta.plane != "axial"]
    assert len(fluid) == 1, [repr(v) for v in loaded.volumes]
    img = fluid[0].image
    g = study.geometry
    assert tuple(img.GetSize()) == g.size
    np.testing.assert_allclose(img.GetOrigin(), g.origin_lps_mm, atol=1e-3)
    np.testing.assert_allclose(img.GetSpacing(), g.spacing_mm, atol=1e-4)
    np.testing.assert_allclose(img.GetDirection(), g.direction, atol=1e-5)
    kinds = {v.meta.sequence_kind for v in loaded.volumes}
    assert "t1" in kinds


def test_write_refuses_existing_folder_unless_overwrite(written, tmp_path):
    study, _ = written
    out = tmp_path / "s"
    out.mkdir()
    (out / "keep.txt").write_text("x")
    with pytest.raises(OutputError):
        write_study(study, out)
    write_study(study, out, overwrite=True)
    assert not (out / "keep.txt").exists() and (out / "truth" / "truth.json").is_file()


def test_cli_phantom(tmp_path):
    out = tmp_path / "cli"
    rc = main(["phantom", str(out), "--right", "toh", "--left", "sif", "--seed", "3", "--matrix", "96",
               "--acquired-matrix", "96x80", "--slices", "8", "--vendor", "philips", "--field", "3",
               "--set", "right.effusion_ml=8"])
    assert rc == 0
    truth = json.loads((out / "truth" / "truth.json").read_text())
    assert (truth["sides"]["right"]["pattern"], truth["sides"]["left"]["pattern"]) == ("toh", "sif")
    assert truth["sides"]["right"]["effusion_ml_requested"] == 8.0
    assert truth["acquisition"]["field_strength_t"] == 3.0
    assert main(["phantom", str(out), "--slices", "8", "--matrix", "64"]) == 2  # exists: refused
    assert main(["phantom", str(tmp_path / "x"), "--set", "middle.collapse_mm=2"]) == 2


def test_suite_is_balanced():
    specs = make_suite(8, seed=4)
    for side in ("right", "left"):
        assert {getattr(s, side).pattern for s in specs[:4]} == set(PATTERNS)
    assert {s.acquisition.field_strength_t for s in specs} == {1.5, 3.0}
    assert len({round(s.acquisition.snr) for s in specs}) > 4
    assert len({s.seed for s in specs}) == 8
    assert make_suite(8, seed=4) == specs


def test_cli_phantom_suite(tmp_path):
    assert main(["phantom-suite", str(tmp_path / "suite"), "--cases", "1", "--seed", "2", "--small"]) == 0
    listing = json.loads((tmp_path / "suite" / "suite.json").read_text())
    assert listing["cases"][0]["case"] == "case_000"
    assert (tmp_path / "suite" / "case_000" / "truth" / "truth.json").is_file()
