"""NIfTI label maps: layout, dtype, and alignment with the source DICOM geometry (three independent oracles)."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from report_synth import write_series

from bmepipe.errors import OutputError
from bmepipe.report import STRUCTURES, write_label_maps

SIDES = ("right", "left")


@pytest.fixture(scope="module")
def series(tmp_path_factory):
    paths, _ = write_series(tmp_path_factory.mktemp("stir"))
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames([str(p) for p in paths])  # already in slice order (InstanceNumber)
    return paths, reader.Execute()


def test_all_files_written_with_exact_geometry(series, tmp_path):
    _, ref = series
    shape = ref.GetSize()[::-1]
    bme = np.zeros(shape, bool)
    bme[3:6, 10:20, 5:9] = True
    written = write_label_maps({"right": {"bme": bme}}, ref, tmp_path)
    expected = {f"{s}_{t}" for s in SIDES for t in STRUCTURES}
    assert set(written) == expected and len(expected) == 18
    assert sorted(p.name for p in (tmp_path / "labels").iterdir()) == sorted(f"{k}.nii.gz" for k in expected)
    for key, path in written.items():
        img = nib.load(path)
        assert img.get_data_dtype() == np.uint8
        data = np.asarray(img.dataobj)
        assert data.shape == ref.GetSize()
        assert int(data.sum()) == (bme.sum() if key == "right_bme" else 0)
        assert img.header["qform_code"] > 0 or img.header["sform_code"] > 0
        np.testing.assert_allclose(img.header.get_zooms(), ref.GetSpacing(), atol=1e-5)
    back = sitk.ReadImage(str(written["right_bme"]))
    np.testing.assert_array_equal(sitk.GetArrayFromImage(back).astype(bool), bme)
    np.testing.assert_allclose(back.GetDirection(), ref.GetDirection(), atol=1e-6)
    np.testing.assert_allclose(back.GetOrigin(), ref.GetOrigin(), atol=1e-4)


@pytest.mark.parametrize("voxel", [(0, 0, 0), (7, 31, 42), (11, 39, 47)])
def test_a_voxel_lands_on_the_same_lps_point(series, tmp_path, voxel):
    paths, ref = series
    k, i, j = voxel  # slice, row, column
    mask = np.zeros(ref.GetSize()[::-1], bool)
    mask[k, i, j] = True
    path = write_label_maps({"left": {"necrosis": mask}}, ref, tmp_path)["left_necrosis"]

    img = nib.load(path)
    x, y, z = np.argwhere(np.asarray(img.dataobj) > 0)[0]
    ras = img.affine @ np.array([x, y, z, 1.0])
    nifti_lps = np.array([-ras[0], -ras[1], ras[2]])

    sitk_lps = np.array(ref.TransformIndexToPhysicalPoint((j, i, k)))

    ds = pydicom.dcmread(paths[k], stop_before_pixels=True)
    ipp = np.array(ds.ImagePositionPatient, float)
    iop = np.array(ds.ImageOrientationPatient, float)
    row_spacing, col_spacing = map(float, ds.PixelSpacing)
    dicom_lps = ipp + j * col_spacing * iop[:3] + i * row_spacing * iop[3:]

    np.testing.assert_allclose(nifti_lps, dicom_lps, atol=1e-3)
    np.testing.assert_allclose(sitk_lps, dicom_lps, atol=1e-3)


def test_same_input_same_bytes(series, tmp_path):
    _, ref = series
    mask = np.zeros(ref.GetSize()[::-1], bool)
    mask[2, 3, 4] = True
    a = write_label_maps({"right": {"femoral_head": mask}}, ref, tmp_path / "a")
    b = write_label_maps({"right": {"femoral_head": mask}}, ref, tmp_path / "b")
    assert all(a[key].read_bytes() == b[key].read_bytes() for key in a)


def test_bad_masks_are_refused(series, tmp_path):
    _, ref = series
    with pytest.raises(OutputError, match="shape"):
        write_label_maps({"right": {"bme": np.zeros((3, 4, 5), bool)}}, ref, tmp_path)
    with pytest.raises(OutputError, match="unknown structure"):
        write_label_maps({"right": {"edema": np.zeros(ref.GetSize()[::-1], bool)}}, ref, tmp_path)
    with pytest.raises(OutputError, match="unknown side"):
        write_label_maps({"both": {}}, ref, tmp_path)
    assert not (tmp_path / "labels").exists()
