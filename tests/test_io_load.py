"""bmepipe.io loading: a crafted mixed folder, geometry and pixels against dcm2niix, an enhanced multi-frame MR
file against its analytic construction, and the MR files shipped inside the pydicom wheel."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest

import io_corpus as C
from bmepipe.io import load_series, load_study
from bmepipe.io import loader

needs_dcm2niix = pytest.mark.skipif(C.DCM2NIIX is None, reason="dcm2niix not installed")
OBLIQUE = C.rotation((0, 0, 1), 30.0) @ C.rotation((1, 0, 0), 12.0)  # coronal turned 30 deg about S-I, tilted 12


@pytest.fixture(params=["read", "deferred"])
def pixel_read(request, monkeypatch):
    """Pixel data read with the header (small images), or left in the file and read when the volume is filled
    (large images; forced here by deferring every value)."""
    if request.param == "deferred":
        monkeypatch.setattr(loader, "_DEFER_BYTES", 0)
    return request.param


@pytest.fixture(scope="module")
def mixed(tmp_path_factory):
    """One flat folder: 4 MR series, a 3-plane localizer, an enhanced 2-echo MR file, a CT image, an SR, a text
    file; random extension-less names in shuffled order. Returns (folder, truth)."""
    root = tmp_path_factory.mktemp("mixed")
    truth = {
        "stir": C.write_series(root / "s4", "stir", "siemens", series_number=4, seed=4),
        "t1": C.write_series(root / "s3", "t1", "ge", C.geometry(rot=OBLIQUE), series_number=3, seed=3),
        "pd_fs": C.write_series(root / "s5", "pd_fs", "philips", C.geometry(size=(16, 18, 6)), series_number=5,
                                seed=5),
        "t2_fs": C.write_series(root / "s6", "t2_fs", "ge", C.geometry(rot=C.rotation((0, 0, 1), 90.0)),
                                series_number=6, seed=6),
    }
    # values read independently with pydicom, in slice order (the writer returns files in slice order)
    truth = {k: C.stored_volume(files) for k, files in truth.items()}
    C.write_localizer((0.0, 0.0, 40.0), C.STUDY, root / "loc", vendor="ge", matrix=32, series_number=1)
    truth["enhanced"] = C.enhanced_mr(root / "enh" / "enh.dcm")
    C.ct_series(root / "ct")
    C.non_image(root / "sr")
    C.non_dicom(root / "txt")
    C.scramble(root, seed=7)
    return root, truth


def test_mixed_folder_finds_every_volume_and_sets_the_rest_aside(mixed):
    root, truth = mixed
    assert not any(p.suffix for p in root.iterdir())  # names really are extension-less
    study = load_study(root)
    kinds = sorted((v.meta.sequence_kind, v.meta.stack_label) for v in study.volumes)
    assert kinds == [("pd", "echo 1 (TE 20 ms)"), ("pd_fs", ""), ("stir", ""), ("t1", ""),
                     ("t2", "echo 2 (TE 80 ms)"), ("t2_fs", "")]
    assert study.non_dicom_files == 1
    aside = {(s.kind, s.reason.split(" ")[0]) for s in study.skipped}
    assert aside == {("series", "localizer"), ("series", "modality"), ("file", "not")}, study.skipped
    assert any("Comprehensive SR" in s.reason for s in study.skipped)
    assert [v.meta.series_number for v in study.volumes] == sorted(v.meta.series_number for v in study.volumes)


def test_mixed_folder_pixels_equal_pydicom_rescaled_values(mixed):
    root, truth = mixed
    by_kind = {v.meta.sequence_kind: v for v in load_study(root).volumes}
    for kind in ("stir", "t1", "pd_fs", "t2_fs"):
        # float32 output: the rescale multiplies in float32, so allow 2 float32 ulps (2 x 1.19e-7)
        np.testing.assert_allclose(by_kind[kind].array, truth[kind], rtol=2.4e-7, atol=0, err_msg=kind)
    # Philips: RescaleSlope applied (stored values are integers, the loaded ones are not)
    assert not np.allclose(by_kind["pd_fs"].array, np.round(by_kind["pd_fs"].array))
    assert by_kind["t1"].meta.plane == "oblique" and by_kind["stir"].meta.plane == "coronal"
    assert by_kind["t2_fs"].meta.plane == "sagittal"


def test_enhanced_multiframe_split_by_echo_matches_its_construction(mixed):
    root, truth = mixed
    enh = truth["enhanced"]
    vols = [v for v in load_study(root).volumes if v.meta.series_instance_uid == enh["series_uid"]]
    assert [v.meta.echo_time_ms for v in vols] == [20.0, 80.0]
    for v, te in zip(vols, (20.0, 80.0)):
        img = v.image
        assert img.GetSize() == (12, 16, 5)
        np.testing.assert_allclose(img.GetSpacing(), enh["spacing"], atol=1e-6)
        np.testing.assert_allclose(img.GetOrigin(), enh["origin"], atol=1e-6)
        np.testing.assert_allclose(np.reshape(img.GetDirection(), (3, 3)), enh["direction"], atol=1e-6)
        np.testing.assert_array_equal(v.array, enh["values"][te].astype(np.float32))
        assert len(set(v.meta.source_files)) == 1 and v.meta.slice_count == 5


# --------------------------------------------------------------------------- dcm2niix oracle
@pytest.fixture(scope="module")
def oracle(tmp_path_factory):
    """Series that dcm2niix converts too, in one scrambled folder, and dcm2niix's NIfTI files."""
    root = tmp_path_factory.mktemp("oracle")
    dicom = root / "dicom"
    C.write_series(dicom / "a", "stir", "siemens", series_number=4, seed=1)
    C.write_series(dicom / "b", "t1", "ge", C.geometry(rot=OBLIQUE, origin=(5.0, -3.0, 60.0)), series_number=3,
                   seed=2)
    C.write_series(dicom / "c", "pd_fs", "philips", C.geometry(size=(20, 16, 7), spacing=(0.9, 0.9, 3.3),
                                                              rot=C.rotation((1, 0, 0), 90.0)), series_number=5,
                   seed=3)  # axial, rescaled
    C.enhanced_mr(dicom / "d" / "enh.dcm", echoes=(30.0,))  # dcm2niix does not split echoes of one file
    shutil.copy(C.PYDICOM_FILES / "MR_small.dcm", dicom / "mr_small")
    C.scramble(dicom, seed=3)
    # -p n: Philips display scaling (RescaleSlope/Intercept), not the private "precise" scaling
    C.dcm2niix(dicom, root / "nii", extra=("-p", "n"))
    return dicom, sorted((root / "nii").glob("*.nii"))


@needs_dcm2niix
def test_geometry_and_pixels_match_dcm2niix(oracle):
    dicom, niftis = oracle
    study = load_study(dicom)
    # MR_small is a DERIVED image: load_study sets it aside, load_series (explicit files) loads it
    assert len(study.volumes) == 4 and len(niftis) == 5, (study, niftis)
    (small,) = [s for s in study.skipped if "derived" in s.reason]
    volumes = study.volumes + load_series([dicom / small.path.split(" ")[0]])
    by_number = {int(p.name.split("_")[0]): p for p in niftis}
    assert sorted(by_number) == sorted(v.meta.series_number for v in volumes)
    for v in volumes:
        data, affine = C.nifti_lps(by_number[v.meta.series_number])
        img = v.image
        ours = C.sitk_affine(img)
        size = img.GetSize()
        shape = data.shape[:3] + (1,) * (3 - data.ndim)
        data = data.reshape(shape)
        # the 8 corner voxel centres: same point sets within 1e-3 mm
        a, b = C.corners(size, ours), C.corners(shape, affine)
        dist = np.linalg.norm(a[:, None] - b[None], axis=2)
        assert dist.min(axis=1).max() < 1e-3 and dist.min(axis=0).max() < 1e-3, (v, a, b)
        # size and spacing, up to the axis permutation dcm2niix chose
        d_ours = ours[:3, :3] / np.linalg.norm(ours[:3, :3], axis=0)
        d_nii = affine[:3, :3] / np.linalg.norm(affine[:3, :3], axis=0)
        perm = np.argmax(np.abs(d_nii.T @ d_ours), axis=1)  # nifti axis i is our axis perm[i]
        assert sorted(perm) == [0, 1, 2]
        np.testing.assert_allclose(np.linalg.norm(affine[:3, :3], axis=0), np.asarray(img.GetSpacing())[perm],
                                   atol=1e-4)
        assert tuple(np.asarray(size)[perm]) == shape
        # pixels: dcm2niix's scaled values on our grid (after its flips/reordering)
        theirs = C.resample_to(data, affine, size, ours)
        np.testing.assert_allclose(np.transpose(v.array, (2, 1, 0)), theirs, rtol=2e-6, atol=1e-3, err_msg=repr(v))


@needs_dcm2niix
def test_philips_rescale_is_applied_as_dcm2niix_does(oracle):
    import nibabel as nib

    dicom, niftis = oracle
    philips = [p for p in niftis if p.name.startswith("5_")][0]
    img = nib.load(str(philips))
    slope, inter = float(img.dataobj.slope), float(img.dataobj.inter)  # scl_slope / scl_inter (float32 in NIfTI)
    assert slope == pytest.approx(1.36581196581197, rel=1e-7) and inter == 0.0
    vol = [v for v in load_study(dicom).volumes if v.meta.series_number == 5][0]
    raw = np.asarray(img.dataobj.get_unscaled(), dtype=np.float64)
    assert raw.max() == 4000  # stored values: the Philips-flavoured writer scales the series maximum to 4000
    np.testing.assert_allclose(vol.array.max(), raw.max() * slope, rtol=2.4e-7)


# --------------------------------------------------------------------------- MR files shipped in the pydicom wheel
WHEEL_MR = ["MR_small.dcm", "MR_small_implicit.dcm", "MR_small_bigendian.dcm", "MR_small_expb.dcm",
            "MR_small_padded.dcm", "MR_small_RLE.dcm", "MR_small_jp2klossless.dcm", "MR_small_jpeg_ls_lossless.dcm"]


@pytest.mark.parametrize("name", WHEEL_MR)
def test_pydicom_wheel_mr_files_load_with_the_same_pixels_and_geometry(name, pixel_read):
    ref = pydicom.dcmread(C.PYDICOM_FILES / "MR_small.dcm")
    (vol,) = load_series([C.PYDICOM_FILES / name])
    np.testing.assert_array_equal(vol.array[0], ref.pixel_array.astype(np.float32))
    img = vol.image
    assert img.GetSize() == (ref.Columns, ref.Rows, 1)
    np.testing.assert_allclose(img.GetOrigin(), [float(v) for v in ref.ImagePositionPatient], atol=1e-6)
    np.testing.assert_allclose(img.GetSpacing()[:2], [float(v) for v in ref.PixelSpacing][::-1], atol=1e-9)
    iop = [float(v) for v in ref.ImageOrientationPatient]
    np.testing.assert_allclose(np.reshape(img.GetDirection(), (3, 3)),
                               np.column_stack([iop[:3], iop[3:], np.cross(iop[:3], iop[3:])]), atol=1e-9)
    assert vol.meta.plane == "axial" and vol.meta.repetition_time_ms == float(ref.RepetitionTime)


# --------------------------------------------------------------------------- pixel decoding edge cases
@pytest.mark.parametrize("bits, stored, signed, syntax", [
    (16, 12, 0, "1.2.840.10008.1.2.1"), (16, 12, 1, "1.2.840.10008.1.2.1"), (16, 16, 1, "1.2.840.10008.1.2"),
    (8, 8, 0, "1.2.840.10008.1.2.1"), (8, 6, 1, "1.2.840.10008.1.2"), (32, 32, 1, "1.2.840.10008.1.2.1"),
    (32, 20, 0, "1.2.840.10008.1.2.1")])  # big endian goes through pydicom: MR_small_bigendian.dcm above
def test_pixel_values_equal_pydicom_for_every_bit_layout(tmp_path, bits, stored, signed, syntax, pixel_read):
    """Stored values with garbage in the unused high bits: bmepipe must return what pydicom's decoder returns."""
    (path,) = C.write_series(tmp_path, g=C.geometry(size=(7, 5, 1)))
    ds = pydicom.dcmread(path)
    raw = np.random.default_rng(bits + stored + signed).integers(0, 1 << bits, (5, 7), dtype=np.uint64)
    dtype = f"<{'i' if signed else 'u'}{bits // 8}"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = bits, stored, stored - 1, signed
    ds.PixelData = raw.astype(f"u{bits // 8}").view(f"i{bits // 8}" if signed else f"u{bits // 8}").astype(
        dtype).tobytes()
    ds.file_meta.TransferSyntaxUID = syntax
    for keyword in ("WindowCenter", "WindowWidth"):
        delattr(ds, keyword)
    ds.save_as(path, implicit_vr=syntax == "1.2.840.10008.1.2", little_endian=True)
    expected = pydicom.dcmread(path).pixel_array
    (vol,) = load_series([path])
    np.testing.assert_array_equal(vol.array[0], expected.astype(np.float32))  # volumes are float32
    assert expected.min() < 0 if signed else expected.max() < (1 << stored)  # the layout really was exercised


# --------------------------------------------------------------------------- stack splitting
def test_two_parallel_stacks_and_two_time_points_in_one_series_are_split(tmp_path):
    """One series holding a left and a right coronal stack (same normal, offset 80 mm along x) -> two volumes;
    the same positions repeated with TemporalPositionIdentifier 1 and 2 -> two volumes."""
    g = C.geometry(size=(6, 5, 4))
    files = C.write_series(tmp_path / "par", g=g, file_names="dcm")
    uid = pydicom.dcmread(files[0]).SeriesInstanceUID
    for k, f in enumerate(C.write_series(tmp_path / "par2", g=C.geometry(size=(6, 5, 4), origin=(63.0, 11.5, 42.0)),
                                         seed=9, file_names="dcm")):
        ds = pydicom.dcmread(f)
        ds.SeriesInstanceUID = uid
        ds.save_as(tmp_path / "par" / f"R{k}.dcm", enforce_file_format=True)
    shutil.rmtree(tmp_path / "par2")
    vols = load_study(tmp_path / "par").volumes
    assert len(vols) == 2 and sorted(v.meta.stack_label for v in vols) == ["", "position line 2"]
    np.testing.assert_allclose(sorted(v.image.GetOrigin()[0] for v in vols), [-17.0, 63.0], atol=1e-6)
    assert all(v.image.GetSize() == (6, 5, 4) for v in vols)

    files = C.write_series(tmp_path / "dyn", g=g, file_names="dcm")
    for k, f in enumerate(C.write_series(tmp_path / "dyn2", g=g, seed=5, file_names="dcm")):
        ds = pydicom.dcmread(f)
        ds.SeriesInstanceUID, ds.TemporalPositionIdentifier = uid, 2
        ds.save_as(tmp_path / "dyn" / f"T2_{k}.dcm", enforce_file_format=True)
    for f in files:
        ds = pydicom.dcmread(f)
        ds.TemporalPositionIdentifier = 1
        ds.save_as(f, enforce_file_format=True)
    shutil.rmtree(tmp_path / "dyn2")
    vols = load_series(sorted((tmp_path / "dyn").iterdir()))
    assert [v.meta.stack_label for v in vols] == ["time point 1", "time point 2"]
    np.testing.assert_allclose(vols[0].array, C.stored_volume(files), rtol=0)


def test_dicomdir_layout_and_file_list(tmp_path):
    from pydicom.fileset import FileSet

    files = C.write_series(tmp_path / "src", g=C.geometry(size=(6, 5, 4)))
    fs = FileSet()
    for f in files:
        fs.add(f)
    fs.write(tmp_path / "media")  # pydicom's own layout: DICOMDIR + PT*/ST*/SE*/IM* files
    study = load_study(tmp_path / "media")
    (vol,) = study.volumes
    assert vol.meta.slice_count == 4 and all("SE000000" in p for p in vol.meta.source_files)
    assert [(s.path, s.reason.split(" ")[0]) for s in study.skipped] == [("DICOMDIR", "DICOMDIR")]
    # explicit file lists: the study root is their common folder
    listed = load_study(list(reversed(files)))
    assert listed.root == (tmp_path / "src").resolve()
    np.testing.assert_array_equal(listed.volumes[0].array, vol.array)


@pytest.mark.skipif(shutil.which("dciodvfy") is None, reason="dciodvfy (dicom3tools) not installed")
@pytest.mark.parametrize("echoes", [(30.0,), (20.0, 80.0)])
def test_crafted_enhanced_mr_file_is_valid_for_dciodvfy(tmp_path, echoes):
    import subprocess

    path = tmp_path / "enh.dcm"
    C.enhanced_mr(path, echoes=echoes)
    res = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, timeout=60)
    lines = (res.stdout + res.stderr).splitlines()
    assert lines and lines[0].strip() == "EnhancedMRImage"
    assert not [line for line in lines if line.startswith("Error")], lines
