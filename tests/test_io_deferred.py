"""bmepipe.io with pixel data left in the file when the header is read (values over ``loader._DEFER_BYTES``,
i.e. every image of 256 x 256 or more): the pixels filled into the volume must be those pydicom decodes from the
whole file, truncation must still be caught per file, and deflated files (where a file offset means nothing) must
still load. Truth comes from pydicom reading the complete files."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest

import io_corpus as C
from bmepipe.errors import DicomReadError
from bmepipe.io import load_series, load_study
from bmepipe.io import loader

LARGE = C.geometry(size=(256, 192, 4), spacing=(0.9, 0.9, 4.4))  # 96 KiB of 16-bit pixels per slice


def _pixel_data_is_deferred(path: Path) -> bool:
    """Did the loader's header read leave the pixel data in the file? (So that the tests below test that path.)"""
    elem = loader._read(path).get_item(0x7FE00010, keep_deferred=True)
    return elem.value is None


@pytest.mark.parametrize("vendor", ["siemens", "ge", "philips"])
def test_large_series_pixels_equal_pydicom(tmp_path, vendor):
    files = C.write_series(tmp_path, "stir", vendor, LARGE, seed=3)
    assert _pixel_data_is_deferred(files[0])
    (vol,) = load_series(list(reversed(files)))
    # float32 output: the rescale multiplies in float32, so allow 2 float32 ulps
    np.testing.assert_allclose(vol.array, C.stored_volume(files), rtol=2.4e-7, atol=0)
    assert vol.image.GetSize() == (256, 192, 4)


def test_everything_deferred_gives_the_same_volumes(tmp_path, monkeypatch):
    """With every element value left in the file (header values are then read back by pydicom on access), a
    rescaled series, an exact duplicate instance and an enhanced multi-frame file (one offset per frame) load
    as pydicom reads them."""
    files = C.write_series(tmp_path / "philips", "pd_fs", "philips", C.geometry(size=(12, 10, 5)), seed=2)
    copy = Path(shutil.copy(files[2], tmp_path / "philips" / "copy_of_slice_3"))
    enh = C.enhanced_mr(tmp_path / "enh" / "enh.dcm")
    monkeypatch.setattr(loader, "_DEFER_BYTES", 0)
    assert _pixel_data_is_deferred(files[0]) and _pixel_data_is_deferred(tmp_path / "enh" / "enh.dcm")
    (vol,) = load_series(files + [copy])
    assert vol.meta.repairs == ("dropped 1 exact duplicate instance(s)",)
    np.testing.assert_allclose(vol.array, C.stored_volume(files), rtol=2.4e-7, atol=0)
    vols = load_study(tmp_path / "enh").volumes
    assert [v.meta.echo_time_ms for v in vols] == [20.0, 80.0]
    for v, te in zip(vols, (20.0, 80.0)):
        np.testing.assert_array_equal(v.array, enh["values"][te].astype(np.float32))


def test_truncated_deferred_pixel_data_is_reported_with_sizes(tmp_path):
    files = C.write_series(tmp_path, "stir", "ge", LARGE, seed=1)
    bad = C.truncate(files[-1], "PixelData")
    raw = pydicom.dcmread(bad).get_item("PixelData")  # pydicom reads the cut value silently: its sizes are the truth
    declared, present = raw.length, len(raw.value)
    assert present < declared
    with pytest.raises(DicomReadError, match=re.escape(f"truncated DICOM file: element (7FE0,0010) declares "
                                                       f"{declared} bytes, {present} present")):
        load_series([bad])
    study = load_study(tmp_path)
    assert [s.path for s in study.skipped] == [bad.name] and study.volumes[0].meta.slice_count == 3


def test_deflated_large_file_loads_as_pydicom_reads_it(tmp_path):
    (path,) = C.write_series(tmp_path, "t1", "siemens", C.geometry(size=(256, 256, 1)), seed=5)
    ds = pydicom.dcmread(path)
    ds.file_meta.TransferSyntaxUID = pydicom.uid.DeflatedExplicitVRLittleEndian
    ds.save_as(path, enforce_file_format=True)
    assert pydicom.dcmread(path).file_meta.TransferSyntaxUID == pydicom.uid.DeflatedExplicitVRLittleEndian
    (vol,) = load_series([path])
    np.testing.assert_array_equal(vol.array[0], pydicom.dcmread(path).pixel_array.astype(np.float32))
