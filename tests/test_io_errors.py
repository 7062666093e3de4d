"""Bad input to bmepipe.io: every case raises its typed error through a public call (or is set aside with the
reason), the CLI prints one line naming the file and the problem, and nothing is written."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pydicom
import pytest

import io_corpus as C
from bmepipe.cli import main
from bmepipe.errors import (DicomReadError, DuplicateSliceError, InputError, MissingDecoderError, MissingTagError,
                            NoUsableSeriesError, OrientationError, PixelDataError, SliceSpacingError)
from bmepipe.io import load_series, load_study

N_SLICES = 8


def _series(folder: Path, seed=0, **kw) -> list[Path]:
    return C.write_series(folder, "stir", "siemens", C.geometry(size=(12, 10, N_SLICES)), seed=seed,
                          file_names="dcm", **kw)


def _snapshot(folder: Path) -> dict:
    return {str(p.relative_to(folder)): (p.stat().st_mtime_ns, p.stat().st_size)
            for p in sorted(folder.rglob("*"))}


# --------------------------------------------------------------------------- one case per folder
def _missing_slice(d: Path) -> list[Path]:
    files = _series(d)
    files[3].unlink()
    return files[:3] + files[4:]


def _duplicate_slice(d: Path) -> list[Path]:
    files = _series(d)
    return files + [C.clash(files[5], "IM9999.dcm")]


def _irregular(d: Path) -> list[Path]:
    files = _series(d)
    ds = pydicom.dcmread(files[6])
    ipp = [float(v) for v in ds.ImagePositionPatient]
    ds.ImagePositionPatient = [ipp[0], ipp[1] - 1.7, ipp[2]]  # coronal normal is -y: slide 1.7 mm towards slice 7
    ds.save_as(files[6], enforce_file_format=True)
    return files


def _not_orthogonal(d: Path) -> list[Path]:
    files = _series(d)
    ds = pydicom.dcmread(files[2])
    ds.ImageOrientationPatient = ["1", "0", "0", "0.05", "0", "-0.99875"]
    ds.save_as(files[2], enforce_file_format=True)
    return files


def _sheared(d: Path) -> list[Path]:
    files = _series(d)
    for k, f in enumerate(files):  # positions drift along x: gantry-tilt-like shear
        ds = pydicom.dcmread(f)
        ipp = [float(v) for v in ds.ImagePositionPatient]
        ds.ImagePositionPatient = [ipp[0] + 0.8 * k, ipp[1], ipp[2]]
        ds.save_as(f, enforce_file_format=True)
    return files


SERIES_CASES = {  # builder, error, words the message must contain, file it must name (index into the files)
    "missing slice": (_missing_slice, SliceSpacingError, "1 missing slice", 3),
    "duplicate slice": (_duplicate_slice, DuplicateSliceError, "same slice position", None),
    "irregular spacing": (_irregular, SliceSpacingError, "irregular slice spacing", None),
    "non-orthogonal cosines": (_not_orthogonal, OrientationError, "not orthogonal", 2),
    "sheared stack": (_sheared, OrientationError, "gantry tilt", None),
}


@pytest.mark.parametrize("case", SERIES_CASES)
def test_series_problems_raise_or_are_set_aside(case, tmp_path):
    build, error, words, named = SERIES_CASES[case]
    bad = tmp_path / "bad"
    files = build(bad)
    with pytest.raises(error) as info:
        load_series(files)
    msg = str(info.value)
    assert words in msg and "\n" not in msg
    assert info.value.path and Path(info.value.path).parent == bad
    if named is not None:
        assert Path(info.value.path) == files[named]
    # default: set aside with the reason; nothing else usable -> NoUsableSeriesError naming the folder
    with pytest.raises(NoUsableSeriesError, match=words) as info:
        load_study(bad)
    assert info.value.path == str(bad)
    # next to a good series: the study loads, the bad series is listed with the reason
    _series(tmp_path / "good", seed=1, series_number=7)
    before = _snapshot(tmp_path)
    study = load_study(tmp_path)
    assert [v.meta.series_number for v in study.volumes] == [7]
    (aside,) = study.skipped
    assert aside.kind == "series" and words in aside.reason and aside.path.startswith("bad/")
    with pytest.raises(error, match=words):
        load_study(tmp_path, strict=True)
    assert _snapshot(tmp_path) == before  # loading (failed or not) writes nothing


def test_exact_duplicate_instance_is_dropped_and_recorded(tmp_path):
    files = _series(tmp_path)
    copy = Path(shutil.copy(files[2], tmp_path / "copy_of_slice_3"))
    (vol,) = load_series(files + [copy])
    assert vol.meta.slice_count == N_SLICES and vol.meta.repairs == ("dropped 1 exact duplicate instance(s)",)
    np.testing.assert_array_equal(vol.array, C.stored_volume(files).astype(np.float32))


# --------------------------------------------------------------------------- file-level problems
def _truncated(d):
    files = _series(d)
    return C.truncate(files[-1], "PixelData")  # inside the pixel data of the last slice


def _truncated_header(d):
    files = _series(d)
    return C.truncate(files[-1], "ImagePositionPatient")  # inside the header


def _no_pixels(d):
    return C.drop_pixel_data(_series(d)[-1])


def _no_position(d):
    path = _series(d)[-1]
    ds = pydicom.dcmread(path)
    del ds.ImagePositionPatient
    ds.save_as(path, enforce_file_format=True)
    return path


def _sr(d):
    _series(d)
    return C.non_image(d)


def _text(d):
    _series(d)
    return C.non_dicom(d)


FILE_CASES = {  # builder, error of load_series, words in the reason
    "truncated pixel data": (_truncated, DicomReadError, "truncated DICOM file"),
    "truncated header": (_truncated_header, DicomReadError, "truncated DICOM file"),
    "missing PixelData": (_no_pixels, PixelDataError, "image without pixel data (MR Image Storage)"),
    "missing ImagePositionPatient": (_no_position, MissingTagError, "no usable image geometry"),
    "non-image SOP class": (_sr, PixelDataError, "not an image (Comprehensive SR Storage)"),
    "non-DICOM file": (_text, DicomReadError, "not a DICOM file"),
}


@pytest.mark.parametrize("case", FILE_CASES)
def test_file_problems_raise_in_load_series_and_are_set_aside_in_load_study(case, tmp_path):
    build, error, words = FILE_CASES[case]
    bad = build(tmp_path)
    with pytest.raises(error, match=re.escape(words)) as info:
        load_series([bad])
    assert info.value.path == str(bad)
    before = _snapshot(tmp_path)
    study = load_study(tmp_path)
    assert _snapshot(tmp_path) == before
    (vol,) = study.volumes  # the last slice's loss keeps the stack regular; SR and text do not count
    if case == "non-DICOM file":
        assert study.non_dicom_files == 1 and not study.skipped
    else:
        (aside,) = study.skipped
        assert aside.kind == "file" and aside.path == bad.name and words in aside.reason
    lost = 1 if case.startswith(("truncated", "missing")) else 0  # the last slice: the stack stays regular
    assert vol.meta.slice_count == N_SLICES - lost


def test_pydicom_truncated_file_is_reported_as_truncated():
    with pytest.raises(DicomReadError, match="truncated DICOM file: element .7FE0,0010. declares 8192 bytes, 8130"):
        load_series([C.PYDICOM_FILES / "MR_truncated.dcm"])


def test_ct_series_is_not_analysed(tmp_path):
    C.ct_series(tmp_path)
    with pytest.raises(NoUsableSeriesError, match="modality CT"):
        load_study(tmp_path)
    with pytest.raises(NoUsableSeriesError, match="modality CT"):
        load_series(list(tmp_path.iterdir()))


def test_missing_and_empty_paths(tmp_path):
    with pytest.raises(InputError, match="no such file or folder"):
        load_study(tmp_path / "absent")
    with pytest.raises(NoUsableSeriesError, match="no DICOM images found"):
        load_study(tmp_path)
    C.non_dicom(tmp_path)
    with pytest.raises(NoUsableSeriesError, match="1 not DICOM"):
        load_study(tmp_path)


def test_files_of_two_series_are_refused_by_load_series(tmp_path):
    a = _series(tmp_path / "a", series_number=4)
    b = _series(tmp_path / "b", seed=2, series_number=5)
    with pytest.raises(InputError, match="2 different series"):
        load_series(a + b)


# --------------------------------------------------------------------------- decoders
def _no_plugins(monkeypatch, decoder_name: str) -> None:
    """Make a pydicom decoder behave as if none of its plugins were installed."""
    import pydicom.pixels.decoders as decoders

    monkeypatch.setattr(getattr(decoders, decoder_name), "_available", {})


def test_missing_decoder_names_the_codecs_extra(monkeypatch):
    jp2k = C.PYDICOM_FILES / "MR_small_jp2klossless.dcm"
    _no_plugins(monkeypatch, "JPEG2000LosslessDecoder")
    with pytest.raises(MissingDecoderError, match=r'pip install "bmepipe\[codecs\]"') as info:
        load_series([jp2k])
    assert info.value.path == str(jp2k) and "JPEG 2000" in info.value.message


def test_with_decoder_jpeg2000_equals_uncompressed():
    (a,) = load_series([C.PYDICOM_FILES / "MR_small_jp2klossless.dcm"])
    (b,) = load_series([C.PYDICOM_FILES / "MR_small.dcm"])
    np.testing.assert_array_equal(a.array, b.array)


def test_missing_decoder_in_a_study(tmp_path, monkeypatch):
    from pydicom.uid import RLELossless

    files = _series(tmp_path / "rle")
    for f in files:
        ds = pydicom.dcmread(f)
        ds.compress(RLELossless)
        ds.save_as(f, enforce_file_format=True)
    plain = C.stored_volume(_series(tmp_path / "plain_ref")).astype(np.float32)
    shutil.rmtree(tmp_path / "plain_ref")
    (vol,) = load_study(tmp_path).volumes  # pydicom's own RLE decoder
    np.testing.assert_array_equal(vol.array, plain)
    _no_plugins(monkeypatch, "RLELosslessDecoder")
    with pytest.raises(NoUsableSeriesError, match=r"bmepipe\[codecs\]"):
        load_study(tmp_path)
    with pytest.raises(MissingDecoderError, match="RLE Lossless"):
        load_study(tmp_path, strict=True)


# --------------------------------------------------------------------------- command line
def test_cli_inspect_prints_one_line_and_exits_nonzero(tmp_path, capsys):
    files = _missing_slice(tmp_path)
    before = _snapshot(tmp_path)
    assert main(["inspect", str(tmp_path)]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith(f"bmepipe: error: {tmp_path}: no usable MR volume") and "1 missing slice" in err
    assert main(["inspect", "--strict", str(tmp_path)]) == 2
    out, err = capsys.readouterr()
    assert err.count("\n") == 1 and str(files[3]) in err and "1 missing slice" in err
    assert main(["inspect", str(tmp_path / "absent")]) == 2
    assert "no such file or folder" in capsys.readouterr().err
    assert _snapshot(tmp_path) == before


def test_console_script_reports_a_truncated_only_folder(tmp_path):
    bad = C.truncate(_series(tmp_path)[0], "PixelSpacing")
    for f in tmp_path.iterdir():
        if f != bad:
            f.unlink()
    before = _snapshot(tmp_path)
    exe = Path(sys.executable).parent / "bmepipe"
    res = subprocess.run([str(exe), "inspect", str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert res.returncode == 2 and res.stdout == ""
    assert res.stderr.count("\n") == 1 and "Traceback" not in res.stderr
    assert f"{tmp_path}: no usable MR volume" in res.stderr
    assert f"{bad.name}: truncated DICOM file" in res.stderr
    assert _snapshot(tmp_path) == before


@pytest.mark.parametrize("n, missing", [(3, [1]), (4, [1]), (6, [2, 3]), (5, [1, 3])])
def test_missing_slices_are_counted_in_short_stacks(tmp_path, n, missing):
    files = C.write_series(tmp_path, g=C.geometry(size=(6, 5, n)), file_names="dcm")
    for k in missing:
        files[k].unlink()
    first_gap = len(missing) if missing == list(range(missing[0], missing[-1] + 1)) else 1
    with pytest.raises(SliceSpacingError, match=f"{first_gap} missing slice") as info:
        load_series([f for f in files if f.exists()])
    assert Path(info.value.path) == files[missing[-1] + 1 if first_gap > 1 else missing[0] + 1]


@pytest.mark.parametrize("thickness, spacing_between, expected_error", [
    (4.0, "1.0", None),  # gap stored alone (as some GE versions do): below the thickness, not trusted
    (1.0, "0.5", None),  # overlapping 3-D slices: not judged from the header
    (4.0, "4.5", None),  # consistent header
    (4.0, None, None),  # no header: positions alone
    (2.0, "2.25", SliceSpacingError),  # positions twice the header spacing: every other slice is missing
])
def test_spacing_between_slices_header_is_used_only_when_plausible(tmp_path, thickness, spacing_between,
                                                                    expected_error):
    files = C.write_series(tmp_path, g=C.geometry(size=(6, 5, 4)), file_names="dcm", slice_thickness_mm=thickness)
    for f in files:
        ds = pydicom.dcmread(f)
        if spacing_between is None:
            del ds.SpacingBetweenSlices
        else:
            ds.SpacingBetweenSlices = spacing_between
        ds.save_as(f, enforce_file_format=True)
    if expected_error is None:
        (vol,) = load_series(files)
        assert vol.image.GetSpacing()[2] == pytest.approx(4.5)  # from the positions (geometry() uses 4.5 mm)
    else:
        with pytest.raises(expected_error, match="1 missing slice"):
            load_series(files)
