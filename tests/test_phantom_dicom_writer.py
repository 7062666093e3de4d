"""Tests of the phantom DICOM writer against independent oracles.

Oracles: SimpleITK (index -> world), dciodvfy (IOD conformance), dcm2niix + nibabel
(slice geometry as a converter sees it), pydicom's rescale (pixel values), and
the physics decision rule of mr_physics.md section 6 (series labels).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.pixels import apply_rescale

from bmepipe.errors import ConfigError, OrientationError, OutputError
from bmepipe.phantom.dicom_writer import (
    Geometry,
    SeriesProtocol,
    StudyInfo,
    make_uid,
    write_localizer,
    write_mr_series,
)

DCIODVFY = shutil.which("dciodvfy")


def _find_dcm2niix() -> str | None:
    """The PyPI dcm2niix binary (test extra), else one on PATH."""
    try:
        import dcm2niix

        return str(dcm2niix.bin)
    except (ImportError, AttributeError):
        return shutil.which("dcm2niix")


DCM2NIIX = _find_dcm2niix()
VENDORS = ("siemens", "ge", "philips")
KINDS = ("stir", "t1", "t2_fs", "pd_fs")

# Parameters of a 1.5 T hip protocol (mr_physics.md section 5).
_PARAMS = {
    "stir": dict(repetition_time_ms=5000.0, echo_time_ms=40.0, inversion_time_ms=160.0, flip_angle_deg=150.0,
                 echo_train_length=13),
    "t1": dict(repetition_time_ms=550.0, echo_time_ms=12.0, inversion_time_ms=None, flip_angle_deg=150.0,
               echo_train_length=3),
    "t2_fs": dict(repetition_time_ms=3500.0, echo_time_ms=80.0, inversion_time_ms=None, flip_angle_deg=150.0,
                  echo_train_length=11),
    "pd_fs": dict(repetition_time_ms=3000.0, echo_time_ms=35.0, inversion_time_ms=None, flip_angle_deg=150.0,
                  echo_train_length=9),
}


def _protocol(kind: str, vendor: str, **kw) -> SeriesProtocol:
    args = dict(_PARAMS[kind], field_strength_t=1.5, slice_thickness_mm=4.0, series_number=3)
    args.update(kw)
    return SeriesProtocol(kind=kind, vendor=vendor, **args)


def _oblique_geometry(size=(64, 48, 10), spacing=(0.9, 1.3, 4.6)) -> Geometry:
    """Coronal-ish stack tilted by about 8 degrees (rotations about two axes)."""
    def rot(axis, deg):
        c, s = np.cos(np.radians(deg)), np.sin(np.radians(deg))
        i, j = [a for a in range(3) if a != axis]
        m = np.eye(3)
        m[i, i], m[i, j], m[j, i], m[j, j] = c, -s, s, c
        return m

    r = rot(0, 6.0) @ rot(2, -5.5)
    return Geometry.from_orientation(size, spacing, (-30.5, 12.25, 40.0), r @ [1, 0, 0], r @ [0, 0, -1])


def _signal(geometry: Geometry, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(1.0, 100.0, geometry.shape)


def _proportional_within(values: np.ndarray, signal: np.ndarray, tolerance: float) -> bool:
    """True if some factor c > 0 gives |values - c * signal| <= tolerance everywhere (signal > 0)."""
    lower = np.max((values - tolerance) / signal)
    upper = np.min((values + tolerance) / signal)
    return upper > 0 and lower <= upper


def _read(paths):
    return [pydicom.dcmread(p) for p in paths]


# --------------------------------------------------------------------------- geometry helpers
def test_geometry_index_to_lps_matches_simpleitk():
    sitk = pytest.importorskip("SimpleITK")
    g = _oblique_geometry()
    ref = g.to_sitk_reference()
    assert ref.GetSize() == g.size
    assert Geometry.from_sitk(ref) == g
    ijk = np.array([[0, 0, 0], [63, 0, 0], [0, 47, 9], [10.5, 3.25, 7.0]])
    expected = np.array([ref.TransformContinuousIndexToPhysicalPoint(tuple(map(float, p))) for p in ijk])
    np.testing.assert_allclose(g.index_to_lps(ijk), expected, atol=1e-9)
    # slice k sits k * spacing along the normal (row x column) from the origin
    row, col = np.array(g.direction).reshape(3, 3)[:, 0], np.array(g.direction).reshape(3, 3)[:, 1]
    normal = np.cross(row, col)
    expected_ipp = np.array(g.origin_lps_mm) + np.outer(np.arange(10) * 4.6, normal)
    np.testing.assert_allclose(g.slice_positions(), expected_ipp, atol=1e-9)


def test_geometry_rejects_bad_direction():
    with pytest.raises(OrientationError):
        Geometry((4, 4, 2), (1, 1, 1), (0, 0, 0), (1, 0, 0, 0.1, 1, 0, 0, 0, 1))
    with pytest.raises(OrientationError):  # left-handed: normal = -(row x column)
        Geometry((4, 4, 2), (1, 1, 1), (0, 0, 0), (1, 0, 0, 0, 1, 0, 0, 0, -1))


def test_make_uid_deterministic_and_valid():
    a, b = make_uid("x", 1, "y"), make_uid("x", 1, "y")
    assert a == b and pydicom.uid.UID(a).is_valid and len(a) <= 64
    assert make_uid("a", "bc") != make_uid("ab", "c")
    s1, s2 = StudyInfo.from_seed(1), StudyInfo.from_seed(2)
    assert s1 == StudyInfo.from_seed(1) and s1.study_instance_uid != s2.study_instance_uid
    assert s1.study_instance_uid != s1.frame_of_reference_uid


def test_bad_input_raises_typed_errors(tmp_path):
    g = Geometry((8, 6, 2), (1, 1, 1), (0, 0, 0))
    with pytest.raises(ConfigError):
        write_mr_series(np.ones((2, 8, 6)), g, _protocol("t1", "ge"), StudyInfo.from_seed(0), tmp_path)
    with pytest.raises(ConfigError):
        write_mr_series(-np.ones(g.shape), g, _protocol("t1", "ge"), StudyInfo.from_seed(0), tmp_path)
    with pytest.raises(ConfigError):
        _protocol("stir", "siemens", inversion_time_ms=None)
    with pytest.raises(ConfigError):
        _protocol("t1", "canon")
    assert not any(tmp_path.iterdir())
    blocker = tmp_path / "not_a_folder"
    blocker.write_text("x")
    with pytest.raises(OutputError, match="not_a_folder"):
        write_mr_series(np.ones(g.shape), g, _protocol("t1", "ge"), StudyInfo.from_seed(0), blocker / "series")


# --------------------------------------------------------------------------- dciodvfy
# Warnings that real vendor objects also produce (vendor tokens, Philips rescale in MR).
_ALLOWED_WARNINGS = re.compile(
    r"Warning - (Unrecognized defined term <[A-Z0-9_]+> for value \d of attribute <(Image Type|Scan Options)>"
    r"|Attribute is not present in standard DICOM IOD - \(0x0028,0x105[234]\)"
    r"|Dicom dataset contains attributes not present in standard DICOM IOD - this is a Standard Extended SOP Class)"
)


def _dciodvfy_problems(path: Path) -> list[str]:
    out = subprocess.run([DCIODVFY, str(path)], capture_output=True, text=True, timeout=60)
    lines = (out.stdout + out.stderr).splitlines()
    errors = [ln for ln in lines if ln.startswith("Error")]
    odd_warnings = [ln for ln in lines if ln.startswith("Warning") and not _ALLOWED_WARNINGS.match(ln)]
    return errors + odd_warnings


@pytest.mark.skipif(DCIODVFY is None, reason="dciodvfy (dicom3tools) not installed")
@pytest.mark.parametrize("vendor", VENDORS)
def test_dciodvfy_all_kinds_and_localizer(tmp_path, vendor):
    g = _oblique_geometry(size=(24, 20, 3))
    study = StudyInfo.from_seed(7)
    files = []
    for n, kind in enumerate(KINDS):
        files += write_mr_series(_signal(g), g, _protocol(kind, vendor, series_number=n + 2), study,
                                 tmp_path / kind)
    files += write_localizer((0.0, 10.0, -50.0), study, tmp_path / "loc", vendor=vendor, matrix=32)
    assert len(files) == 4 * 3 + 3
    problems = {f.name: _dciodvfy_problems(f) for f in files}
    assert {k: v for k, v in problems.items() if v} == {}


# --------------------------------------------------------------------------- labels
def _classify(ds) -> str:
    """mr_physics.md section 6 decision rule, from physics tags (plus FS words)."""
    scanning = set(ds.ScanningSequence if ds["ScanningSequence"].VM > 1 else [ds.ScanningSequence])
    options = set(ds.ScanOptions if ds["ScanOptions"].VM > 1 else [ds.ScanOptions])
    if "IR" in scanning and float(ds.InversionTime) < 300:
        return "stir"
    if "FS" in options or re.search(r"SPIR|SPAIR|\bFS\b|_fs_", ds.SeriesDescription, re.I):
        return "pd_fs" if float(ds.EchoTime) <= 45 else "t2_fs"
    if float(ds.RepetitionTime) < 1000 and float(ds.EchoTime) < 30:
        return "t1"
    return "unknown"


@pytest.mark.parametrize("vendor", VENDORS)
def test_vendor_labels(tmp_path, vendor):
    g = Geometry((16, 12, 2), (1.0, 1.0, 4.4), (0, 0, 0), (1, 0, 0, 0, 0, 1, 0, -1, 0))  # coronal
    study = StudyInfo.from_seed(3)
    for kind in KINDS:
        (path,) = write_mr_series(_signal(g), g, _protocol(kind, vendor), study, tmp_path / kind)[:1]
        ds = pydicom.dcmread(path)
        assert _classify(ds) == kind
        assert ds.MagneticFieldStrength == 1.5
        assert abs(float(ds.ImagingFrequency) - 42.577 * 1.5) < 0.01
        assert "cor" in ds.SeriesDescription.lower()
        assert list(ds.ImageType[:2]) == ["ORIGINAL", "PRIMARY"]
        if kind == "stir":
            assert list(ds.ScanningSequence) == ["SE", "IR"] and float(ds.InversionTime) == 160.0
        else:
            assert "InversionTime" not in ds
        if vendor == "siemens":
            assert ds.Manufacturer == "SIEMENS"
            etl = _PARAMS[kind]["echo_train_length"]
            assert ds.SequenceName == (f"*tir2d1_{etl}" if kind == "stir" else f"*tse2d1_{etl}")
        if vendor == "ge":
            assert ds.Manufacturer.startswith("GE")
            gems = [t for t in ds.ScanOptions if t.endswith("_GEMS")]
            assert "FAST_GEMS" in gems
            assert ds.get_private_item(0x0019, 0x9C, "GEMS_ACQU_01").value.startswith("fse")
        if vendor == "philips":
            assert ds.Manufacturer.startswith("Philips")
            assert float(ds.RescaleSlope) != 1.0
            assert ds.get_private_item(0x2005, 0x0E, "Philips MR Imaging DD 001").VR == "FL"
        if kind == "pd_fs" and vendor == "philips":
            assert "SPAIR" in ds.SeriesDescription


# --------------------------------------------------------------------------- geometry oracle
@pytest.mark.skipif(DCM2NIIX is None, reason="dcm2niix not installed")
@pytest.mark.parametrize("vendor", VENDORS)
def test_geometry_matches_dcm2niix(tmp_path, vendor):
    nib = pytest.importorskip("nibabel")
    g = _oblique_geometry()
    tilt_deg = np.degrees(np.arccos(abs(g.matrix[1, 2])))
    assert 6.0 < tilt_deg < 10.0  # ~8 degrees off coronal
    signal = _signal(g, seed=4)
    write_mr_series(signal, g, _protocol("t1", vendor), StudyInfo.from_seed(5), tmp_path / "dcm")
    (tmp_path / "nii").mkdir()
    subprocess.run([DCM2NIIX, "-z", "n", "-b", "n", "-f", "out", "-o", str(tmp_path / "nii"), str(tmp_path / "dcm")],
                   check=True, capture_output=True, timeout=120)
    img = nib.load(tmp_path / "nii" / "out.nii")
    data = np.asarray(img.dataobj, dtype=float)
    assert sorted(data.shape) == sorted(g.size)
    affine_lps = np.diag([-1.0, -1.0, 1.0, 1.0]) @ img.affine  # RAS -> LPS
    # Map every NIfTI voxel corner (half-integer indices) and centre to LPS and back into the writer's grid.
    for offset in (0.0, -0.5):
        idx = np.indices(np.array(data.shape) + (1 if offset else 0)).reshape(3, -1).T + offset
        world = idx @ affine_lps[:3, :3].T + affine_lps[:3, 3]
        ijk = ((world - g.origin_lps_mm) @ g.matrix) / g.spacing_mm
        err_mm = np.abs((ijk - np.rint(ijk - offset) - offset) * g.spacing_mm).max()
        assert err_mm < 1e-3
        assert np.allclose(ijk.min(0), offset, atol=1e-4)
        assert np.allclose(ijk.max(0), np.array(g.size) - 1 - offset, atol=1e-4)
    # Same voxel, same value: NIfTI values are proportional to the signal at the mapped index.
    idx = np.indices(data.shape).reshape(3, -1).T
    ijk = np.rint(((idx @ affine_lps[:3, :3].T + affine_lps[:3, 3] - g.origin_lps_mm) @ g.matrix) / g.spacing_mm)
    ijk = ijk.astype(int)
    expected = signal[ijk[:, 2], ijk[:, 1], ijk[:, 0]]
    got = data.reshape(-1)
    step = np.diff(np.unique(got)).min()  # quantization step in the NIfTI's units
    assert _proportional_within(got, expected, 0.5 * step * 1.001)


@pytest.mark.parametrize("vendor", VENDORS)
def test_geometry_matches_simpleitk_gdcm_reader(tmp_path, vendor):
    sitk = pytest.importorskip("SimpleITK")
    g = _oblique_geometry(size=(32, 24, 6))
    signal = _signal(g, seed=8)
    write_mr_series(signal, g, _protocol("pd_fs", vendor), StudyInfo.from_seed(8), tmp_path)
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(tmp_path)))
    img = reader.Execute()
    assert img.GetSize() == g.size
    np.testing.assert_allclose(img.GetOrigin(), g.origin_lps_mm, atol=1e-4)
    np.testing.assert_allclose(img.GetSpacing(), g.spacing_mm, atol=1e-4)
    np.testing.assert_allclose(img.GetDirection(), g.direction, atol=1e-6)
    values = sitk.GetArrayFromImage(img).astype(float)  # GDCM applies RescaleSlope/Intercept
    assert _proportional_within(values, signal, 0.5 * (np.diff(np.unique(values)).min()) * 1.001)


# --------------------------------------------------------------------------- pixels
@pytest.mark.parametrize("vendor", VENDORS)
def test_pixel_values_round_trip(tmp_path, vendor):
    g = Geometry((40, 30, 4), (0.8, 0.8, 4.4), (0, 0, 0))
    signal = _signal(g, seed=2) * 0.37  # arbitrary units
    files = write_mr_series(signal, g, _protocol("stir", vendor), StudyInfo.from_seed(2), tmp_path)
    stack = _read(files)
    stored = np.stack([ds.pixel_array for ds in stack])
    assert stored.dtype == np.uint16 and stored.max() >= 2**11  # uses a good part of the range
    assert all(12 <= ds.BitsStored <= 16 and stored.max() < 2**ds.BitsStored for ds in stack)
    shown = np.stack([apply_rescale(ds.pixel_array, ds) for ds in stack]).astype(float)
    slope = float(getattr(stack[0], "RescaleSlope", 1.0))
    assert _proportional_within(shown, signal, 0.5 * slope * (1 + 1e-9))
    assert not _proportional_within(shown, signal, 0.2 * slope)  # the check can fail
    if vendor == "philips":
        # Philips precise value P = D / (RS * SS) recovers the signal itself (dcm2niix Philips README).
        ss = stack[0].get_private_item(0x2005, 0x0E, "Philips MR Imaging DD 001").value
        precise = shown / (slope * ss)
        assert np.abs(precise - signal).max() <= 0.5 / ss * 1.001
        assert (float(stack[0].RescaleSlope), float(stack[0].RescaleIntercept)) != (1.0, 0.0)
    # Window covers the displayed values.
    center, width = float(stack[0].WindowCenter), float(stack[0].WindowWidth)
    assert center - width / 2 < np.percentile(shown, 50) < center + width / 2


# --------------------------------------------------------------------------- files
@pytest.mark.parametrize("vendor", VENDORS)
def test_deterministic_bytes_and_safe_names(tmp_path, vendor):
    g = _oblique_geometry(size=(20, 16, 3))
    study = StudyInfo.from_seed(9, patient_name="DOE^JANE", patient_id="MRN12345")
    first = write_mr_series(_signal(g), g, _protocol("pd_fs", vendor), study, tmp_path / "a")
    second = write_mr_series(_signal(g), g, _protocol("pd_fs", vendor), study, tmp_path / "b")
    assert [p.name for p in first] == [p.name for p in second]
    assert all(p.read_bytes() == q.read_bytes() for p, q in zip(first, second))
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == sorted(p.name for p in first)  # no temp files
    for p in first:
        assert "DOE" not in p.name and "MRN12345" not in p.name and "JANE" not in p.name
    other = write_mr_series(_signal(g), g, _protocol("pd_fs", vendor), study, tmp_path / "c", uid_seed=1)
    a, c = pydicom.dcmread(first[0]), pydicom.dcmread(other[0])
    assert a.SeriesInstanceUID != c.SeriesInstanceUID and a.SOPInstanceUID != c.SOPInstanceUID
    dcm = write_mr_series(_signal(g), g, _protocol("pd_fs", vendor), study, tmp_path / "d", file_names="dcm")
    assert [p.name for p in dcm] == ["IM0001.dcm", "IM0002.dcm", "IM0003.dcm"]
    again = write_mr_series(_signal(g), g, _protocol("pd_fs", vendor), study, tmp_path / "d", file_names="dcm")
    assert again == dcm  # rewriting the same series in place is allowed
    with pytest.raises(OutputError, match="IM0001.dcm"):  # another series would silently replace it
        write_mr_series(_signal(g), g, _protocol("t1", vendor, series_number=8), study, tmp_path / "d",
                        file_names="dcm")
    assert pydicom.dcmread(dcm[0]).SeriesInstanceUID == a.SeriesInstanceUID


def test_series_attributes_per_slice(tmp_path):
    g = _oblique_geometry(size=(20, 16, 5))
    files = write_mr_series(_signal(g), g, _protocol("stir", "siemens"), StudyInfo.from_seed(1), tmp_path)
    stack = _read(files)
    assert [ds.InstanceNumber for ds in stack] == [1, 2, 3, 4, 5]
    assert len({ds.SOPInstanceUID for ds in stack}) == 5 and len({ds.SeriesInstanceUID for ds in stack}) == 1
    ipp = np.array([[float(v) for v in ds.ImagePositionPatient] for ds in stack])
    iop = np.array([float(v) for v in stack[0].ImageOrientationPatient])
    normal = np.cross(iop[:3], iop[3:])
    # consecutive IPPs are SpacingBetweenSlices apart along the normal, in ascending order
    steps = np.diff(ipp, axis=0)
    np.testing.assert_allclose(steps, np.outer(np.full(4, float(stack[0].SpacingBetweenSlices)), normal), atol=1e-6)
    np.testing.assert_allclose([float(ds.SliceLocation) for ds in stack], ipp @ normal, atol=1e-6)
    assert [float(v) for v in stack[0].PixelSpacing] == [1.3, 0.9]  # (row spacing, column spacing)
    assert (stack[0].Rows, stack[0].Columns) == (16, 20)
    assert float(stack[0].SliceThickness) == 4.0


# --------------------------------------------------------------------------- localizer
@pytest.mark.parametrize("vendor", VENDORS)
def test_localizer_planes_and_content(tmp_path, vendor):
    center = np.array([3.0, 20.0, -80.0])
    files = write_localizer(center, StudyInfo.from_seed(4), tmp_path, vendor=vendor, matrix=64, fov_mm=320.0,
                            image=lambda p: 1000.0 + p[:, 0] + 2.0 * p[:, 1] + 3.0 * p[:, 2])
    stack = _read(files)
    assert len(stack) == 3 and len({ds.SeriesInstanceUID for ds in stack}) == 1
    normals = []
    for ds in stack:
        iop = np.array([float(v) for v in ds.ImageOrientationPatient])
        row, col = iop[:3], iop[3:]
        normals.append(np.cross(row, col))
        ipp = np.array([float(v) for v in ds.ImagePositionPatient])
        dr, dc = (float(v) for v in ds.PixelSpacing)
        assert dr == dc == 5.0
        np.testing.assert_allclose(ipp + 31.5 * 5.0 * (row + col), center, atol=1e-6)  # centre pixel
        jj, ii = np.mgrid[0:64, 0:64]
        pts = ipp + (ii[..., None] * dc) * row + (jj[..., None] * dr) * col
        truth = 1000.0 + pts[..., 0] + 2.0 * pts[..., 1] + 3.0 * pts[..., 2]
        shown = apply_rescale(ds.pixel_array, ds).astype(float)
        assert np.corrcoef(shown.ravel(), truth.ravel())[0, 1] > 0.9999
    assert np.allclose(np.abs(np.array(normals)), np.eye(3))  # sagittal, coronal, axial
    if vendor == "ge":
        assert "LOCALIZER" in stack[0].ImageType
    assert stack[0].SeriesDescription in ("localizer", "3-plane loc", "Survey")


@pytest.mark.skipif(DCM2NIIX is None, reason="dcm2niix not installed")
@pytest.mark.parametrize("vendor", VENDORS)
def test_dcm2niix_reads_vendor_fields(tmp_path, vendor):
    import json

    g = Geometry((16, 12, 5), (1.0, 1.0, 4.4), (0, 0, 0), (1, 0, 0, 0, 0, 1, 0, -1, 0))
    files = write_mr_series(_signal(g), g, _protocol("stir", vendor), StudyInfo.from_seed(6), tmp_path / "dcm")
    (tmp_path / "nii").mkdir()
    subprocess.run([DCM2NIIX, "-z", "n", "-b", "o", "-f", "out", "-o", str(tmp_path / "nii"), str(tmp_path / "dcm")],
                   check=True, capture_output=True, timeout=120)
    sidecar = json.loads((tmp_path / "nii" / "out.json").read_text())
    assert sidecar["Manufacturer"] == {"siemens": "Siemens", "ge": "GE", "philips": "Philips"}[vendor]
    assert sidecar["ScanningSequence"] == "SE\\IR" and sidecar["InversionTime"] == pytest.approx(0.160)
    assert sidecar["RepetitionTime"] == pytest.approx(5.0) and sidecar["EchoTime"] == pytest.approx(0.040)
    assert sidecar["EchoTrainLength"] == 13 and sidecar["MagneticFieldStrength"] == 1.5
    if vendor == "siemens":  # dcm2niix derives Siemens slice timing from AcquisitionTime
        assert len(set(sidecar["SliceTiming"])) == 5  # interleaved 2-D slices, one time each
    if vendor == "ge":
        assert sidecar["PulseSequenceName"] == "fse-ir"  # from private (0019,109C)
    if vendor == "philips":
        ds = pydicom.dcmread(files[0])
        ss = ds.get_private_item(0x2005, 0x0E, "Philips MR Imaging DD 001").value
        assert sidecar["PhilipsScaleSlope"] == pytest.approx(ss, rel=1e-5)
        assert sidecar["PhilipsRescaleSlope"] == pytest.approx(float(ds.RescaleSlope), rel=1e-5)
