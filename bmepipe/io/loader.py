"""Load DICOM MR studies from any folder into geometric volumes.

``load_study(path)`` scans a folder tree (or takes a list of files), reads every
DICOM header once, groups images by SeriesInstanceUID, splits series that mix
several stacks (orientation, matrix, echo, time point, magnitude/phase,
separate position lines), sorts slices along the slice normal, checks the
geometry and returns one SimpleITK image per stack (LPS, slices ascending,
float32, rescaled). Uncompressed pixel data of large images (over 64 KiB) stay
in the file until the volume is filled, so series set aside are never read whole.

What is set aside and what is raised:

* a problem confined to one file (not DICOM, truncated, not an image SOP class,
  no pixel data, a DICOMDIR index) -> that file goes to ``Study.skipped`` with the
  reason (non-DICOM files are only counted, ``Study.non_dicom_files``);
* a whole series that is not for analysis (localizer, derived or secondary
  capture, not MR) -> ``Study.skipped`` with the reason;
* a series whose geometry is unusable (missing slice, uneven spacing, two
  different images at one position, non-orthogonal cosines, gantry tilt) or whose
  pixels need a decoder that is not installed -> ``Study.skipped`` by default, the
  typed error with ``strict=True``; :func:`load_series` always raises;
* nothing usable left -> :class:`~bmepipe.errors.NoUsableSeriesError` naming the folder.

Exact duplicate instances (same SOPInstanceUID, or identical pixels at one
position) are dropped, and the repair is recorded in ``VolumeMeta.repairs``.
Loading writes nothing.
"""

from __future__ import annotations

import functools
import os
import re
import warnings
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Optional, Sequence, Union

import numpy as np

from ..errors import (BmepipeError, DicomReadError, DuplicateSliceError, GeometryError, InputError,
                      MissingDecoderError, MissingTagError, NoUsableSeriesError, OrientationError,
                      PixelDataError, SliceSpacingError)
from .sequences import classify_sequence, plane_of
from .types import Skipped, Study, Volume, VolumeMeta

__all__ = ["load_study", "load_series", "read_slices"]

PathLike = Union[str, "os.PathLike[str]"]

_ENHANCED_MR = "1.2.840.10008.5.1.4.1.1.4.1"
_DICOMDIR = "1.2.840.10008.1.3.10"
_SECONDARY_CAPTURE = ("1.2.840.10008.5.1.4.1.1.7",)
_MISSING = object()
_DEFLATED = "1.2.840.10008.1.2.1.99"
_NATIVE_LITTLE_ENDIAN = ("1.2.840.10008.1.2", "1.2.840.10008.1.2.1")  # implicit / explicit VR little endian
_LOCALIZER_WORDS = re.compile(r"(localizer|localiser|scout|survey|3[ -]?plane|tri[ -]?pilot|(?<![a-z])loc(?![a-z]))",
                              re.I)
#: Position tolerance (mm) for "same slice position" and in-plane offset clusters.
POSITION_TOL_MM = 0.05
#: Relative tolerance of slice gaps against their median.
SPACING_REL_TOL = 0.05
#: Largest |row . column| of direction cosines accepted as orthogonal.
ORTHOGONALITY_TOL = 1e-3
# Element values longer than this (pixel data) are not read with the header: uncompressed pixels are read
# frame by frame into one reused buffer when the volume is filled (fewer fresh allocations, less memory held).
_DEFER_BYTES = 1 << 16


@dataclass(frozen=True)
class _FrameInFile:
    """Uncompressed little-endian stored values of one frame, left in the file when the header was read."""

    path: str
    offset: int  # byte offset of the frame's first pixel
    dtype: str  # numpy dtype of the stored values, e.g. '<u2'
    rows: int
    cols: int
    bits_stored: int

    def read(self, out: Optional[np.ndarray] = None) -> np.ndarray:
        """The stored values (rows, cols), read into ``out`` if given (same dtype and shape)."""
        out = np.empty((self.rows, self.cols), self.dtype) if out is None else out
        try:
            with open(self.path, "rb") as fh:
                fh.seek(self.offset)
                n = fh.readinto(out)
        except OSError as exc:
            raise PixelDataError(f"pixel data unreadable ({type(exc).__name__}: {exc})", self.path) from None
        if n != out.nbytes:
            raise PixelDataError("pixel data truncated (the file changed after it was read)", self.path)
        return _valid_bits(out, self.bits_stored)


@dataclass
class _Slice:
    """One 2-D image (a classic instance or one frame of a multi-frame instance)."""

    path: str
    frame: Optional[int]
    header: Any  # pydicom Dataset: the instance (classic) or the multi-frame instance
    iop: np.ndarray
    ipp: np.ndarray
    spacing_rc: tuple[float, float]  # (row spacing, column spacing) = DICOM PixelSpacing order
    rows: int
    cols: int
    # stored values (rescaled when the volume is assembled), or where to read them; None if decoding failed
    pixels: Union[np.ndarray, _FrameInFile, None]
    pixel_error: Optional[BmepipeError] = None
    rescale: tuple[float, float] = (1.0, 0.0)  # (slope, intercept) of the Modality LUT
    sop_uid: str = ""
    split: dict = field(default_factory=dict)  # keys that separate stacks (echo, time, image type ...)


# --------------------------------------------------------------------------- file reading
def _iter_files(root: Path) -> list[Path]:
    files = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        files.extend(Path(dirpath) / f for f in sorted(filenames) if not f.startswith("."))
    return files


def _dcmread(path: Path, force: bool = False):
    import pydicom

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = pydicom.dcmread(path, force=force, defer_size=_DEFER_BYTES)
        if getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None) == _DEFLATED:
            ds = pydicom.dcmread(path, force=force)  # values left in a deflated file cannot be read by offset
    return ds


def _read(path: Path):
    """pydicom Dataset, or None if the file is not DICOM. Raises DicomReadError for corrupt DICOM."""
    from pydicom.errors import InvalidDicomError

    try:
        ds = _dcmread(path)
        _check_complete(ds, path)
        return ds
    except InvalidDicomError:
        with open(path, "rb") as fh:
            head = fh.read(8)
        if len(head) < 8 or head[:2] not in (b"\x08\x00", b"\x02\x00"):  # no preamble, but group 0008/0002 first?
            return None
        try:
            ds = _dcmread(path, force=True)
        except Exception as exc:  # noqa: BLE001 - any parser failure means "corrupt"
            raise DicomReadError(f"unreadable DICOM ({type(exc).__name__}: {exc})", path) from None
        _check_complete(ds, path)
        return ds
    except (OSError, EOFError, ValueError, KeyError, TypeError, AttributeError, IndexError) as exc:
        raise DicomReadError(f"truncated or corrupt DICOM ({type(exc).__name__}: {exc})", path) from None


def _check_complete(ds, path: Path) -> None:
    """Raise DicomReadError if the file ends inside its last element (pydicom reads cut files silently)."""
    if not len(ds):
        return
    last = ds.get_item(next(reversed(ds.keys())), keep_deferred=True)  # the element read last, where the file ended
    declared, value = getattr(last, "length", None), getattr(last, "value", None)
    if declared is None or declared == 0xFFFFFFFF:
        return
    if value is None and getattr(last, "is_raw", False):  # deferred (not read): compare with the file's size
        present = max(os.path.getsize(path) - last.value_tell, 0)
    else:
        present = len(value) if isinstance(value, bytes) else declared
    if present < declared:
        raise DicomReadError(f"truncated DICOM file: element {last.tag} declares {declared} bytes, "
                             f"{present} present", path)


def _floats(value, n: int) -> Optional[np.ndarray]:
    try:
        arr = np.asarray([float(v) for v in value], dtype=float)
    except (TypeError, ValueError):
        return None
    return arr if arr.size == n and np.all(np.isfinite(arr)) else None


def _num(value) -> Optional[float]:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    return v if np.isfinite(v) else None


def _valid_bits(arr: np.ndarray, bits_stored: int) -> np.ndarray:
    """Stored values as pydicom returns them: unused high bits masked, signed values sign-extended."""
    shift = arr.dtype.itemsize * 8 - bits_stored
    if shift <= 0:
        return arr
    if arr.dtype.kind == "i":
        return (arr << shift) >> shift
    if int(arr.max()) >> bits_stored:  # a copy only if the unused high bits hold anything (rare)
        return arr & ((1 << bits_stored) - 1)
    return arr


def _native_pixels(ds, ts, path: Path) -> Union[np.ndarray, list[_FrameInFile], None]:
    """Uncompressed little-endian grey pixels without pydicom's pixel handlers (about 10x faster for classic MR
    slices): stored values (frames, rows, cols) from the bytes read, or where each frame lies in the file if the
    pixel data were not read with the header; None where pydicom must decode."""
    if ts not in _NATIVE_LITTLE_ENDIAN or _get(ds, "SamplesPerPixel", 1) != 1:
        return None
    bits, stored, signed = _get(ds, "BitsAllocated"), _get(ds, "BitsStored"), _get(ds, "PixelRepresentation")
    if bits not in (8, 16, 32) or not stored or stored > bits or signed not in (0, 1):
        return None
    frames, rows, cols = int(_get(ds, "NumberOfFrames", 1) or 1), _get(ds, "Rows"), _get(ds, "Columns")
    elem = ds.get_item(_tag("PixelData"), keep_deferred=True)
    if elem is None or not rows or not cols or elem.VR not in (None, "OB", "OW"):
        return None
    frame_bytes = rows * cols * bits // 8
    dtype = f"<{'i' if signed else 'u'}{bits // 8}"
    if elem.value is None and elem.is_raw and frames * frame_bytes <= elem.length != 0xFFFFFFFF:
        # deferred: left in the file, whose size _read checked against the declared length
        return [_FrameInFile(str(path), elem.value_tell + f * frame_bytes, dtype, rows, cols, stored)
                for f in range(frames)]
    if not isinstance(elem.value, bytes) or len(elem.value) < frames * frame_bytes:
        return None  # pydicom raises the precise error
    arr = np.frombuffer(elem.value, dtype, count=frames * rows * cols).reshape(frames, rows, cols)
    return _valid_bits(arr, stored)


def _decode(ds, path: Path):
    """Stored pixel values (frames, rows, cols) or where each frame lies in the file, not rescaled; or a typed
    error."""
    ts = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    arr = _native_pixels(ds, ts, path)
    if arr is not None:
        return arr
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            arr = ds.pixel_array
    except (NotImplementedError, RuntimeError, ImportError) as exc:
        if ts is not None and ts.is_compressed:
            return MissingDecoderError(f"pixel data are compressed ({ts.name}) and no decoder for it is installed: "
                                       f"pip install \"bmepipe[codecs]\"", path)
        return PixelDataError(f"pixel data cannot be decoded ({exc})", path)
    except (ValueError, AttributeError, KeyError, TypeError, EOFError, OSError) as exc:
        return PixelDataError(f"pixel data truncated or undecodable ({type(exc).__name__}: {exc})", path)
    arr = np.asarray(arr)
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3:
        return PixelDataError(f"not a grey-level image (pixel array shape {arr.shape})", path)
    return arr


# VRs whose value does not depend on the character set or the parent dataset: converted once per distinct raw value.
_PLAIN_VRS = frozenset(("AE", "AS", "AT", "CS", "DA", "DS", "DT", "FD", "FL", "IS", "SL", "SS", "SV", "TM", "UI", "UL",
                        "US", "UV"))


@functools.lru_cache(maxsize=None)
def _tag(keyword: str) -> int:
    from pydicom.datadict import tag_for_keyword

    return tag_for_keyword(keyword)


@functools.lru_cache(maxsize=4096)
def _plain_value(tag: int, vr: str, raw: bytes, implicit: bool, little: bool):
    from pydicom.dataelem import RawDataElement, convert_raw_data_element

    return convert_raw_data_element(RawDataElement(tag, vr, len(raw), raw, 0, implicit, little)).value


def _has(ds, keyword: str) -> bool:
    return ds.get_item(_tag(keyword), keep_deferred=True) is not None


def _get(ds, keyword: str, default=None):
    """``ds.get(keyword, default)`` for a top-level element, converting plain values once per distinct raw value.

    The files of one series repeat most values byte for byte (orientation, spacing, image type ...), and
    pydicom's per-element conversion cost as much as parsing the files."""
    elem = ds.get_item(_tag(keyword))
    if elem is None:
        return default
    if not elem.is_raw:
        return elem.value  # already converted
    vr = elem.VR
    if vr is None:  # implicit VR: the dictionary's, unless ambiguous ("US or SS")
        from pydicom.datadict import dictionary_VR

        vr = dictionary_VR(elem.tag)
    if vr not in _PLAIN_VRS:
        return ds[elem.tag].value
    return _plain_value(elem.tag, vr, elem.value, elem.is_implicit_VR, elem.is_little_endian)


def _find(ds, keyword: str, frame: Optional[int] = None):
    """An attribute from the dataset, or (multi-frame) from the frame's or the shared functional groups."""
    value = _get(ds, keyword, _MISSING)
    if value is not _MISSING:
        return value
    groups = []
    if frame is not None and _has(ds, "PerFrameFunctionalGroupsSequence"):
        groups.append(ds.PerFrameFunctionalGroupsSequence[frame])
    if _has(ds, "SharedFunctionalGroupsSequence"):
        groups.append(ds.SharedFunctionalGroupsSequence[0])
    for group in groups:
        for seq in group:
            if seq.VR != "SQ" or not seq.value:
                continue
            item = seq.value[0]
            if keyword in item:
                return item.get(keyword)
    return None


def read_slices(path: Path) -> tuple[list[_Slice], Optional[Skipped]]:
    """The images of one file, or why the file is set aside. Raises nothing for bad files."""
    try:
        ds = _read(path)
    except DicomReadError as err:
        return [], Skipped(str(path), err.message)
    if ds is None:
        return [], None  # not DICOM: counted by the caller
    meta_class = getattr(getattr(ds, "file_meta", None), "MediaStorageSOPClassUID", "")
    sop_class = str(_get(ds, "SOPClassUID", "") or meta_class)
    if sop_class == _DICOMDIR or _has(ds, "DirectoryRecordSequence"):
        return [], Skipped(str(path), "DICOMDIR index (the files it lists are read directly)")
    if not _has(ds, "PixelData") and not _has(ds, "FloatPixelData"):
        name = getattr(_get(ds, "SOPClassUID"), "name", sop_class) or "unknown SOP class"
        if _has(ds, "Rows") or "Image Storage" in name:  # an image SOP class: incomplete file
            return [], Skipped(str(path), f"image without pixel data ({name})", _get(ds, "SeriesInstanceUID"))
        return [], Skipped(str(path), f"not an image ({name})", _get(ds, "SeriesInstanceUID"))
    n_frames = int(_get(ds, "NumberOfFrames", 1) or 1)
    arr = _decode(ds, path)
    error = arr if isinstance(arr, BmepipeError) else None
    if error is not None and not isinstance(error, MissingDecoderError):
        return [], Skipped(str(path), error.message, _get(ds, "SeriesInstanceUID"))
    if error is None and len(arr) != n_frames:
        return [], Skipped(str(path), f"pixel data hold {len(arr)} frames, header says {n_frames}")
    out = []
    for f in range(n_frames):
        frame = f if n_frames > 1 or _has(ds, "PerFrameFunctionalGroupsSequence") else None
        iop = _floats(_find(ds, "ImageOrientationPatient", frame) or (), 6)
        ipp = _floats(_find(ds, "ImagePositionPatient", frame) or (), 3)
        spacing = _floats(_find(ds, "PixelSpacing", frame) or (), 2)
        if iop is None or ipp is None or spacing is None or np.any(spacing <= 0):
            return [], Skipped(str(path), "no usable image geometry (ImagePositionPatient / ImageOrientationPatient "
                               "/ PixelSpacing missing)", _get(ds, "SeriesInstanceUID"))
        slope = _num(_find(ds, "RescaleSlope", frame))
        intercept = _num(_find(ds, "RescaleIntercept", frame))
        pixels = None if error is not None else arr[f]
        rescale = (1.0 if slope is None else slope, intercept or 0.0)
        split = {
            "echo": _num(_find(ds, "EffectiveEchoTime", frame) or _find(ds, "EchoTime", frame)),
            "echo_number": _get(ds, "EchoNumbers") if frame is None else None,
            "temporal": _find(ds, "TemporalPositionIndex", frame) or _get(ds, "TemporalPositionIdentifier"),
            "image_type": tuple(str(v).upper() for v in (_find(ds, "FrameType", frame) or _get(ds, "ImageType") or ())),
            "acquisition": _get(ds, "AcquisitionNumber") if frame is None else None,
        }
        out.append(_Slice(str(path), frame, ds, iop, ipp, (float(spacing[0]), float(spacing[1])),
                          int(_get(ds, "Rows")), int(_get(ds, "Columns")), pixels, error, rescale,
                          str(_get(ds, "SOPInstanceUID", "")), split))
    return out, None


# --------------------------------------------------------------------------- stacks and geometry
def _normal(iop: np.ndarray) -> np.ndarray:
    n = np.cross(iop[:3], iop[3:])
    return n / max(np.linalg.norm(n), 1e-12)


def _check_orientation(s: _Slice) -> None:
    row, col = s.iop[:3], s.iop[3:]
    if abs(np.linalg.norm(row) - 1) > 1e-2 or abs(np.linalg.norm(col) - 1) > 1e-2:
        raise OrientationError(f"direction cosines are not unit vectors ({np.round(s.iop, 4).tolist()})", s.path)
    if abs(float(np.dot(row, col))) > ORTHOGONALITY_TOL:
        raise OrientationError(f"row and column direction cosines are not orthogonal (dot {np.dot(row, col):.4f})",
                               s.path)


def _stack_key(s: _Slice) -> tuple:
    # Magnitude/phase/real/imaginary are the third ImageType value on most vendors.
    kind = next((t for t in s.split["image_type"][2:4] if t in ("M", "P", "R", "I", "MAGNITUDE", "PHASE")), "")
    echo = None if s.split["echo"] is None else round(s.split["echo"], 2)
    return (tuple(np.round(s.iop, 3)), s.rows, s.cols, tuple(np.round(s.spacing_rc, 4)), echo, kind)


def _label(key: tuple, keys: list[tuple]) -> str:
    if len(keys) == 1:
        return ""
    parts = []
    for i, name in ((0, "orientation"), (4, "echo"), (5, "image")):
        values = sorted({k[i] for k in keys}, key=str)
        if len(values) > 1:
            parts.append(f"{name} {values.index(key[i]) + 1}" + (f" (TE {key[4]:g} ms)" if i == 4 and key[4] else ""))
    if not parts:
        parts.append(f"matrix {key[2]}x{key[1]}")
    return ", ".join(parts)


def _stored(s: _Slice) -> np.ndarray:
    return s.pixels.read() if isinstance(s.pixels, _FrameInFile) else s.pixels


def _drop_exact_duplicates(slices: list[_Slice], normal: np.ndarray) -> tuple[list[_Slice], int]:
    kept: dict[str, _Slice] = {}
    out, dropped = [], 0
    by_pos: dict[tuple, list[_Slice]] = defaultdict(list)
    for s in slices:
        if s.sop_uid and s.frame is None and s.sop_uid in kept:
            dropped += 1
            continue
        kept[s.sop_uid] = s
        pos = tuple(np.round(s.ipp / POSITION_TOL_MM).astype(int))
        same = [o for o in by_pos[pos] if o.pixels is not None and s.pixels is not None
                and o.rescale == s.rescale and np.array_equal(_stored(o), _stored(s))]
        if same:
            dropped += 1
            continue
        by_pos[pos].append(s)
        out.append(s)
    return out, dropped


def _split_repeats(slices: list[_Slice], normal: np.ndarray) -> list[tuple[str, list[_Slice]]]:
    """Separate time points / acquisitions that repeat the same positions; raise if they cannot be told apart."""
    d = np.array([float(np.dot(s.ipp, normal)) for s in slices])
    pos = np.round(d / POSITION_TOL_MM).astype(int)
    if len(np.unique(pos)) == len(pos):
        return [("", slices)]
    for key, name in (("temporal", "time point"), ("echo_number", "echo"), ("acquisition", "acquisition")):
        values = [s.split[key] for s in slices]
        if any(v is None for v in values) or len(set(map(str, values))) < 2:
            continue
        groups: dict[str, list[_Slice]] = defaultdict(list)
        for s, v in zip(slices, values):
            groups[str(v)].append(s)
        if all(len({round(float(np.dot(s.ipp, normal)) / POSITION_TOL_MM) for s in g}) == len(g)
               for g in groups.values()):
            return [(f"{name} {v}", g) for v, g in sorted(groups.items(), key=lambda kv: _sortable(kv[0]))]
    i = int(np.flatnonzero(np.bincount(pos - pos.min()) > 1)[0]) + pos.min()
    clash = [s for s, p in zip(slices, pos) if p == i]
    raise DuplicateSliceError(f"two different images at the same slice position {i * POSITION_TOL_MM:.2f} mm "
                              f"along the normal ({Path(clash[0].path).name}, {Path(clash[1].path).name})",
                              clash[1].path)


def _sortable(v: str):
    try:
        return (0, float(v), "")
    except ValueError:
        return (1, 0.0, v)


def _split_lines(slices: list[_Slice], normal: np.ndarray) -> list[list[_Slice]]:
    """Stacks of one orientation must lie on one line along the normal; separate parallel stacks, refuse shear."""
    offsets = np.array([s.ipp - np.dot(s.ipp, normal) * normal for s in slices])
    if len(slices) < 2 or np.max(np.linalg.norm(offsets - offsets[0], axis=1)) <= 0.5:
        return [slices]
    keys = [tuple(np.round(o / 0.5).astype(int)) for o in offsets]
    groups: dict[tuple, list[_Slice]] = defaultdict(list)
    for s, k in zip(slices, keys):
        groups[k].append(s)
    if len(groups) < len(slices) and all(len(g) >= 2 for g in groups.values()):
        return [g for _, g in sorted(groups.items())]
    d = np.array([float(np.dot(s.ipp, normal)) for s in slices])
    order = np.argsort(d)
    shift = np.linalg.norm(offsets[order[-1]] - offsets[order[0]])
    span = d[order[-1]] - d[order[0]]
    tilt = np.degrees(np.arctan2(shift, span)) if span > 0 else 90.0
    raise OrientationError(f"slice positions drift sideways along the stack by {shift:.1f} mm ({tilt:.1f} degrees: "
                           "gantry tilt or sheared stack); resampling such stacks is not supported", slices[0].path)


def _header_step(ds, frame: Optional[int], thickness: Optional[float]) -> Optional[float]:
    """SpacingBetweenSlices (mm) if it is a centre-to-centre spacing; None if absent or below the slice
    thickness (some GE versions store the gap alone there; overlapping 3-D slices cannot be judged)."""
    sbs = _num(_find(ds, "SpacingBetweenSlices", frame))
    if sbs is None or sbs <= 0 or (thickness and sbs < 0.9 * thickness):
        return None
    return sbs


def _float32_image(shape: tuple[int, int, int]):
    """A new float32 SimpleITK image and a writable numpy view of its buffer, indexed ``[slice, row, column]``.

    SimpleITK offers only read-only views. Filling the image's own buffer, rather than a numpy volume that
    ``GetImageFromArray`` copies, saves a fresh 31 MB allocation and a copy per 512 x 512 x 30 series
    (about a third of the loading time)."""
    import ctypes

    import SimpleITK as sitk

    image = sitk.Image([shape[2], shape[1], shape[0]], sitk.sitkFloat32)
    view = sitk.GetArrayViewFromImage(image)  # also makes the buffer the image's own (MakeUnique)
    buffer = (ctypes.c_float * view.size).from_address(view.__array_interface__["data"][0])
    return image, np.ctypeslib.as_array(buffer).reshape(view.shape)


def _assemble(slices: list[_Slice], label: str, repairs: list[str]) -> Volume:
    first = slices[0]
    normal = _normal(first.iop)
    d = np.array([float(np.dot(s.ipp, normal)) for s in slices])
    order = np.argsort(d, kind="stable")
    slices = [slices[i] for i in order]
    d = d[order]
    for s in slices:
        if s.pixel_error is not None:
            raise s.pixel_error
    ds = first.header
    thickness = _num(_find(ds, "SliceThickness", first.frame))
    if len(slices) > 1:
        gaps = np.diff(d)
        step = float(np.median(gaps))
        ref = float(np.sort(gaps)[(len(gaps) - 1) // 2])  # lower median: missing slices only lengthen gaps
        header = _header_step(ds, first.frame, thickness)
        if header and ref > 1.5 * header and abs(ref / header - round(ref / header)) < 0.1:
            ref = header  # every gap spans whole slices (2 slices left, or every other slice missing)
        bad = np.flatnonzero(np.abs(gaps - ref) > max(POSITION_TOL_MM, SPACING_REL_TOL * ref))
        if bad.size:
            i = int(bad[0])
            ratio = gaps[i] / ref
            what = (f"{int(round(ratio)) - 1} missing slice(s)" if abs(ratio - round(ratio)) < 0.1 and ratio > 1.5
                    else "irregular slice spacing")
            raise SliceSpacingError(f"{what}: gap of {gaps[i]:.2f} mm between slices at {d[i]:.2f} and "
                                    f"{d[i + 1]:.2f} mm along the normal where the spacing is {ref:.2f} mm",
                                    slices[i + 1].path)
    else:
        step = _num(_find(ds, "SpacingBetweenSlices", first.frame)) or thickness or 1.0
    image, volume = _float32_image((len(slices), first.rows, first.cols))
    buffers: dict[str, np.ndarray] = {}  # one read buffer per stored dtype, reused for every slice
    for out, s in zip(volume, slices):  # rescaled in place in float32: no per-slice temporaries
        if isinstance(s.pixels, _FrameInFile):
            if s.pixels.dtype not in buffers:
                buffers[s.pixels.dtype] = np.empty((first.rows, first.cols), s.pixels.dtype)
            out[...] = s.pixels.read(buffers[s.pixels.dtype])
        else:
            out[...] = s.pixels
        slope, intercept = s.rescale
        if slope != 1.0:
            out *= np.float32(slope)
        if intercept != 0.0:
            out += np.float32(intercept)
    del volume  # a view of the image's buffer: must not outlive it
    image.SetOrigin(tuple(float(v) for v in slices[0].ipp))
    image.SetSpacing((first.spacing_rc[1], first.spacing_rc[0], abs(step)))
    direction = np.column_stack([first.iop[:3], first.iop[3:], normal])
    image.SetDirection(tuple(float(v) for v in direction.ravel()))
    return Volume(image=image, meta=_meta(slices, direction, label, repairs, thickness, step))


def _strs(value) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return tuple(v for v in value.split("\\") if v)
    try:
        return tuple(str(v) for v in value)
    except TypeError:
        return (str(value),)


def _meta(slices: list[_Slice], direction: np.ndarray, label: str, repairs: list[str], thickness, step) -> VolumeMeta:
    first = slices[0]
    ds, fr = first.header, first.frame
    scanning = _strs(_find(ds, "ScanningSequence", fr))
    options = _strs(_find(ds, "ScanOptions", fr))
    ti = _num(_find(ds, "InversionTime", fr))
    if ti is None:  # enhanced MR: InversionTimes in the MR modifier macro
        tis = _find(ds, "InversionTimes", fr)
        ti = _num(tis[0]) if tis else None
    if str(_find(ds, "InversionRecovery", fr) or "").upper() == "YES" and "IR" not in scanning:
        scanning = scanning + ("IR",)
    suppression = str(_find(ds, "SpectrallySelectedSuppression", fr) or "").upper()
    if suppression.startswith("FAT") and "FS" not in options:
        options = options + ("FS",)
    tr = _num(_find(ds, "RepetitionTime", fr))
    te = _num(_find(ds, "EffectiveEchoTime", fr)) or _num(_find(ds, "EchoTime", fr))
    field_t = _num(ds.get("MagneticFieldStrength"))
    image_type = _strs(ds.get("ImageType"))
    description = str(ds.get("SeriesDescription", "") or "")
    seq_name = str(_find(ds, "SequenceName", fr) or _find(ds, "PulseSequenceName", fr) or "")
    info = classify_sequence(
        scanning_sequence=scanning, sequence_variant=_strs(_find(ds, "SequenceVariant", fr)), scan_options=options,
        image_type=image_type, repetition_time_ms=tr, echo_time_ms=te, inversion_time_ms=ti,
        field_strength_t=field_t, series_description=description,
        protocol_name=str(ds.get("ProtocolName", "") or ""), sequence_name=seq_name,
        modality=str(ds.get("Modality", "MR") or "MR"),
    )
    number = ds.get("SeriesNumber")
    return VolumeMeta(
        series_instance_uid=str(ds.get("SeriesInstanceUID", "")),
        series_description=description,
        sequence_class=info.sequence_class,
        sequence_kind=info.kind,
        sequence_reason=info.reason,
        sequence_confidence=info.confidence,
        plane=plane_of(direction.ravel()),
        modality=str(ds.get("Modality", "") or ""),
        study_instance_uid=str(ds.get("StudyInstanceUID", "") or ""),
        frame_of_reference_uid=str(ds.get("FrameOfReferenceUID", "") or ""),
        series_number=int(number) if number not in (None, "") else None,
        manufacturer=str(ds.get("Manufacturer")) if ds.get("Manufacturer") else None,
        manufacturer_model=str(ds.get("ManufacturerModelName")) if ds.get("ManufacturerModelName") else None,
        field_strength_t=field_t,
        repetition_time_ms=tr,
        echo_time_ms=te,
        inversion_time_ms=ti,
        flip_angle_deg=_num(_find(ds, "FlipAngle", fr)),
        scanning_sequence=scanning,
        sequence_variant=_strs(_find(ds, "SequenceVariant", fr)),
        scan_options=options,
        sequence_name=seq_name or None,
        image_type=image_type,
        slice_thickness_mm=thickness,
        spacing_mm=(first.spacing_rc[1], first.spacing_rc[0], float(abs(step))),
        slice_count=len(slices),
        rows=first.rows,
        columns=first.cols,
        stack_label=label,
        source_files=tuple(s.path for s in slices),
        repairs=tuple(repairs),
    )


# --------------------------------------------------------------------------- series-level decisions
def _set_aside_reason(slices: list[_Slice]) -> Optional[str]:
    ds = slices[0].header
    modality = str(ds.get("Modality", "") or "")
    if modality and modality != "MR":
        return f"modality {modality}: bmepipe analyses MR only"
    image_types = {t for s in slices for t in s.split["image_type"]}
    text = f"{ds.get('SeriesDescription', '')} {ds.get('ProtocolName', '')}"
    if "LOCALIZER" in image_types or _LOCALIZER_WORDS.search(text):
        return "localizer / scout (ImageType LOCALIZER or description)"
    sop = str(ds.get("SOPClassUID", ""))
    if sop in _SECONDARY_CAPTURE:
        return "secondary capture image"
    first_type = slices[0].split["image_type"][:1]
    if first_type == ("DERIVED",) and not ({"DIXON", "WATER", "W"} & image_types):
        return "derived image (ImageType DERIVED: reformat, projection or map)"
    return None


def _series_volumes(slices: list[_Slice]) -> list[Volume]:
    """Every stack of one series as a volume; raises a typed error if one is unusable."""
    for s in slices:
        _check_orientation(s)
    groups: dict[tuple, list[_Slice]] = defaultdict(list)
    for s in slices:
        groups[_stack_key(s)].append(s)
    keys = sorted(groups, key=str)
    volumes = []
    for key in keys:
        base = _label(key, keys)
        normal = _normal(groups[key][0].iop)
        members, dropped = _drop_exact_duplicates(groups[key], normal)
        repairs = [f"dropped {dropped} exact duplicate instance(s)"] if dropped else []
        for i, line in enumerate(_split_lines(members, normal)):
            for sub, stack in _split_repeats(line, normal):
                parts = [p for p in (base, f"position line {i + 1}" if i else "", sub) if p]
                volumes.append(_assemble(stack, ", ".join(parts), repairs))
    return volumes


# --------------------------------------------------------------------------- public API
def _collect(paths: Iterable[Path]) -> tuple[dict[str, list[_Slice]], list[Skipped], int]:
    series: dict[str, list[_Slice]] = defaultdict(list)
    skipped: list[Skipped] = []
    non_dicom = 0
    for path in paths:
        slices, why = read_slices(path)
        if why is not None:
            skipped.append(why)
        elif not slices:
            non_dicom += 1
        for s in slices:
            uid = str(_get(s.header, "SeriesInstanceUID", "") or "")
            if not uid:
                skipped.append(Skipped(s.path, "no SeriesInstanceUID"))
                break
            series[uid].append(s)
    return series, skipped, non_dicom


def load_study(path: Union[PathLike, Sequence[PathLike]], *, strict: bool = False) -> Study:
    """Load every MR volume under a folder (or from a list of files).

    Parameters
    ----------
    path : path or sequence of paths
        A folder (scanned recursively; any file names, DICOMDIR allowed) or explicit files.
    strict : bool
        Raise the typed error of the first unusable series instead of setting it aside.

    Returns
    -------
    Study
        ``volumes`` (one per geometric stack, sorted by series number), ``skipped``
        (files and series set aside, with reasons), ``non_dicom_files``.

    Raises
    ------
    InputError
        The path does not exist.
    NoUsableSeriesError
        Nothing usable was found.
    GeometryError, PixelDataError
        With ``strict=True``, for the first unusable series.
    """
    if isinstance(path, (str, os.PathLike)):
        root = Path(path)
        if not root.exists():
            raise InputError("no such file or folder", root)
        files = _iter_files(root) if root.is_dir() else [root]
    else:
        files = sorted(Path(p) for p in path)
        if not files:
            raise InputError("no files given")
        root = Path(os.path.commonpath([str(p.resolve().parent) for p in files]))
    series, skipped, non_dicom = _collect(files)
    skipped = [Skipped(_relative(s.path, root), s.reason, s.series_instance_uid, s.kind) for s in skipped]
    volumes: list[Volume] = []
    for uid in sorted(series, key=lambda u: (_series_number(series[u]), u)):
        slices = series[uid]
        reason = _set_aside_reason(slices)
        description = str(slices[0].header.get("SeriesDescription", "") or "(no description)")
        where = _relative(slices[0].path, root)
        if reason:
            skipped.append(Skipped(f"{where} [{description}]", reason, uid, "series"))
            continue
        try:
            volumes.extend(_series_volumes(slices))
        except (GeometryError, PixelDataError) as err:
            if strict:
                raise
            skipped.append(Skipped(f"{where} [{description}]", f"{err.message} ({_relative(err.path, root)})",
                                   uid, "series"))
    study_uids = tuple(sorted({v.meta.study_instance_uid for v in volumes if v.meta.study_instance_uid}))
    study = Study(root=root, volumes=volumes, skipped=skipped, non_dicom_files=non_dicom,
                  study_instance_uids=study_uids)
    if not volumes:
        why = "; ".join(f"{s.path}: {s.reason}" for s in skipped[:4]) or "no DICOM images found"
        if len(skipped) > 4:
            why += f"; and {len(skipped) - 4} more"
        raise NoUsableSeriesError(f"no usable MR volume ({len(files)} files, {non_dicom} not DICOM): {why}", root)
    return study


def load_series(files: Sequence[PathLike]) -> list[Volume]:
    """Load the images of one series (any order) as volumes; every problem raises its typed error.

    Unlike :func:`load_study`, localizer and derived images are loaded (the files
    were chosen explicitly); only non-MR modalities are refused.

    Raises
    ------
    DicomReadError, MissingTagError, PixelDataError, MissingDecoderError, GeometryError, NoUsableSeriesError
    """
    slices: list[_Slice] = []
    for path in files:
        got, why = read_slices(Path(path))
        if why is not None:
            if why.reason.startswith("no usable image geometry"):
                raise MissingTagError(why.reason, path)
            raise (DicomReadError if "DICOM" in why.reason else PixelDataError)(why.reason, path)
        if not got:
            raise DicomReadError("not a DICOM file", path)
        slices.extend(got)
    if not slices:
        raise NoUsableSeriesError("no images given")
    uids = {_get(s.header, "SeriesInstanceUID") for s in slices}
    if len(uids) > 1:
        raise InputError(f"files of {len(uids)} different series given to load_series", files[0])
    modality = str(slices[0].header.get("Modality", "") or "")
    if modality and modality != "MR":
        raise NoUsableSeriesError(f"modality {modality}: bmepipe analyses MR only", slices[0].path)
    return _series_volumes(slices)


def _series_number(slices: list[_Slice]) -> int:
    try:
        return int(slices[0].header.get("SeriesNumber"))
    except (TypeError, ValueError):
        return 1 << 30


def _relative(path: Optional[str], root: Path) -> str:
    if not path:
        return ""
    try:
        return str(Path(path).resolve().relative_to(root.resolve()))
    except (ValueError, OSError):
        return Path(path).name
