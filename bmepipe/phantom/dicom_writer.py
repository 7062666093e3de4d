"""Write phantom MR images as classic, vendor-flavoured DICOM series.

The phantom core simulates magnitude images; this module stores them the way a
Siemens, GE or Philips scanner would label a coronal hip STIR, T1 TSE/FSE or
fat-suppressed PD/T2 series (tokens from ``shared/reference/mr_physics.md``
section 6), so the loader, the series classifier and the geometry code are
tested against realistic headers.

Conventions
-----------
* Geometry follows SimpleITK: ``size = (columns, rows, slices)``, index order
  ``(i, j, k)`` = (column, row, slice), ``direction`` row-major 3x3 whose
  columns are the DICOM row direction, the column direction and the slice
  normal (row x column). Positions are LPS millimetres, as in DICOM.
* The signal array is indexed ``[slice, row, column]``.
* Everything written is a pure function of the inputs: UIDs come from
  :func:`make_uid`, dates and times from :class:`StudyInfo`, so the same call
  gives byte-identical files.
"""

from __future__ import annotations

import datetime as _dt
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from bmepipe.errors import ConfigError, GeometryError, OrientationError, OutputError
from bmepipe.io.atomic import atomic_path

__all__ = [
    "Geometry",
    "SeriesProtocol",
    "StudyInfo",
    "make_uid",
    "write_mr_series",
    "write_localizer",
    "GYROMAGNETIC_RATIO_MHZ_PER_T",
    "PHILIPS_RESCALE_SLOPE",
]

GYROMAGNETIC_RATIO_MHZ_PER_T = 42.577478  # 1H, CODATA 2018
_UID_ROOT = "1.2.826.0.1.3680043.8.498."  # pydicom's root for generated UIDs
_MR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.4"
_EXPLICIT_VR_LE = "1.2.840.10008.1.2.1"
_KINDS = ("stir", "t1", "t2_fs", "pd_fs")
_VENDORS = ("siemens", "ge", "philips")
_TIME_FMT = "%H%M%S"

#: Display slope written by Philips-flavoured series. Any positive value != 1
#: works; it only has to be applied by readers (RescaleSlope, 0028,1053).
PHILIPS_RESCALE_SLOPE = 1.36581196581197


# --------------------------------------------------------------------------- geometry
@dataclass(frozen=True)
class Geometry:
    """Voxel grid of one image stack in LPS patient space (SimpleITK conventions).

    Parameters
    ----------
    size : (int, int, int)
        ``(columns, rows, slices)``.
    spacing_mm : (float, float, float)
        Column step along a row, row step, slice-centre spacing (thickness + gap).
    origin_lps_mm : (float, float, float)
        Centre of the first voxel of the first slice.
    direction : 9 floats
        Row-major 3x3 matrix whose columns are the row direction
        (ImageOrientationPatient[0:3]), the column direction (IOP[3:6]) and the
        slice normal (row x column); slice positions ascend along the normal.
    """

    size: tuple[int, int, int]
    spacing_mm: tuple[float, float, float]
    origin_lps_mm: tuple[float, float, float]
    direction: tuple[float, ...] = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)

    def __post_init__(self) -> None:
        size = tuple(int(v) for v in self.size)
        spacing = tuple(float(v) for v in self.spacing_mm)
        origin = tuple(float(v) for v in self.origin_lps_mm)
        direction = tuple(float(v) for v in np.asarray(self.direction, dtype=float).ravel())
        if len(size) != 3 or min(size) < 1:
            raise GeometryError(f"size must be 3 positive integers, got {self.size}")
        if len(spacing) != 3 or not all(np.isfinite(spacing)) or min(spacing) <= 0:
            raise GeometryError(f"spacing_mm must be 3 positive numbers, got {self.spacing_mm}")
        if len(origin) != 3 or not all(np.isfinite(origin)):
            raise GeometryError(f"origin_lps_mm must be 3 finite numbers, got {self.origin_lps_mm}")
        if len(direction) != 9:
            raise OrientationError(f"direction must have 9 values, got {len(direction)}")
        m = np.array(direction).reshape(3, 3)
        if not np.allclose(m.T @ m, np.eye(3), atol=1e-6):
            raise OrientationError("direction cosines are not orthonormal")
        if np.linalg.det(m) < 0:
            raise OrientationError("slice normal must be row x column (right-handed direction)")
        object.__setattr__(self, "size", size)
        object.__setattr__(self, "spacing_mm", spacing)
        object.__setattr__(self, "origin_lps_mm", origin)
        object.__setattr__(self, "direction", direction)

    @classmethod
    def from_orientation(
        cls,
        size: Sequence[int],
        spacing_mm: Sequence[float],
        origin_lps_mm: Sequence[float],
        row_direction: Sequence[float],
        column_direction: Sequence[float],
    ) -> "Geometry":
        """Build from DICOM-style row/column cosines; the normal is row x column."""
        row = np.asarray(row_direction, float)
        col = np.asarray(column_direction, float)
        row, col = row / np.linalg.norm(row), col / np.linalg.norm(col)
        m = np.column_stack([row, col, np.cross(row, col)])
        return cls(tuple(size), tuple(spacing_mm), tuple(origin_lps_mm), tuple(m.ravel()))

    @classmethod
    def from_sitk(cls, image) -> "Geometry":
        """The grid of a SimpleITK image (size, spacing, origin, direction)."""
        return cls(image.GetSize(), image.GetSpacing(), image.GetOrigin(), image.GetDirection())

    @property
    def matrix(self) -> np.ndarray:
        """3x3 direction matrix; columns: row direction, column direction, normal."""
        return np.array(self.direction).reshape(3, 3)

    @property
    def shape(self) -> tuple[int, int, int]:
        """Array shape ``(slices, rows, columns)`` of a signal on this grid."""
        return self.size[::-1]

    def index_to_lps(self, ijk: np.ndarray) -> np.ndarray:
        """LPS position (mm) of continuous indices ``(column, row, slice)``, shape (N, 3)."""
        ijk = np.atleast_2d(np.asarray(ijk, dtype=float))
        return np.asarray(self.origin_lps_mm) + (ijk * self.spacing_mm) @ self.matrix.T

    def slice_positions(self) -> np.ndarray:
        """ImagePositionPatient of every slice, shape (slices, 3), in mm."""
        k = np.arange(self.size[2], dtype=float)
        return self.index_to_lps(np.column_stack([np.zeros_like(k), np.zeros_like(k), k]))

    def to_sitk_reference(self, pixel_type: int | None = None):
        """An empty SimpleITK image on this grid (default uint8, for label maps)."""
        import SimpleITK as sitk

        img = sitk.Image(list(self.size), sitk.sitkUInt8 if pixel_type is None else pixel_type)
        img.SetSpacing(self.spacing_mm)
        img.SetOrigin(self.origin_lps_mm)
        img.SetDirection(self.direction)
        return img


# --------------------------------------------------------------------------- protocol / study
@dataclass(frozen=True)
class SeriesProtocol:
    """Acquisition parameters of one series (times in ms, angles in degrees).

    ``kind`` is ``'stir'``, ``'t1'``, ``'t2_fs'`` or ``'pd_fs'``; ``vendor`` is
    ``'siemens'``, ``'ge'`` or ``'philips'`` (case-insensitive).
    ``acquisition_matrix`` is the acquired (frequency, phase) matrix.
    """

    kind: str
    vendor: str
    field_strength_t: float
    repetition_time_ms: float
    echo_time_ms: float
    inversion_time_ms: float | None
    flip_angle_deg: float
    echo_train_length: int
    slice_thickness_mm: float
    series_number: int
    series_description: str | None = None
    acquisition_matrix: tuple[int, int] | None = None
    pixel_bandwidth_hz: float | None = None
    number_of_averages: float = 1.0
    phase_encoding_direction: str = "ROW"  # phase along the image rows' direction (L-R on coronal)
    laterality: str = "B"  # ImageLaterality: 'B' both hips, 'R' or 'L' for a one-hip series

    def __post_init__(self) -> None:
        kind, vendor = str(self.kind).lower(), str(self.vendor).lower()
        if kind not in _KINDS:
            raise ConfigError(f"unknown series kind {self.kind!r}; expected one of {_KINDS}")
        if vendor not in _VENDORS:
            raise ConfigError(f"unknown vendor {self.vendor!r}; expected one of {_VENDORS}")
        if kind == "stir" and not self.inversion_time_ms:
            raise ConfigError("a STIR protocol needs inversion_time_ms")
        if self.laterality not in ("B", "R", "L"):
            raise ConfigError("laterality must be 'B', 'R' or 'L'")
        if self.phase_encoding_direction not in ("ROW", "COL"):
            raise ConfigError("phase_encoding_direction must be 'ROW' or 'COL'")
        for name in ("field_strength_t", "repetition_time_ms", "echo_time_ms", "slice_thickness_mm"):
            if not float(getattr(self, name)) > 0:
                raise ConfigError(f"{name} must be positive, got {getattr(self, name)}")
        if int(self.echo_train_length) < 1 or not 0 < int(self.series_number) < 2**31:
            raise ConfigError("echo_train_length and series_number must be positive integers")
        object.__setattr__(self, "kind", kind)
        object.__setattr__(self, "vendor", vendor)


@dataclass(frozen=True)
class StudyInfo:
    """Patient and study attributes shared by every series of one phantom study."""

    study_instance_uid: str
    frame_of_reference_uid: str
    patient_name: str = "PHANTOM^HIP"
    patient_id: str = "PHANTOM0001"
    patient_sex: str = "M"
    patient_age: str = "045Y"
    study_date: str = "20260101"
    study_time: str = "090000"
    accession_number: str = ""
    study_description: str = "MRI HIPS BILATERAL"
    institution_name: str = "bmepipe phantom"
    study_id: str = "1"
    patient_weight_kg: float = 78.0

    def __post_init__(self) -> None:
        try:
            _dt.datetime.strptime(self.study_date + self.study_time, "%Y%m%d" + _TIME_FMT)
        except ValueError:
            raise ConfigError("study_date/study_time must be YYYYMMDD / HHMMSS") from None

    @classmethod
    def from_seed(cls, seed: int, **overrides) -> "StudyInfo":
        """Study with UIDs derived deterministically from ``seed``."""
        uids = {
            "study_instance_uid": make_uid("bmepipe.phantom", "study", seed),
            "frame_of_reference_uid": make_uid("bmepipe.phantom", "frame_of_reference", seed),
        }
        uids.update(overrides)
        return cls(**uids)


def make_uid(*parts) -> str:
    """A deterministic DICOM UID from ``parts``: same parts, same UID (<= 64 characters)."""
    from pydicom.uid import generate_uid

    # pydicom concatenates the entropy sources; join with a separator so
    # ('a', 'bc') and ('ab', 'c') differ.
    return str(generate_uid(_UID_ROOT, entropy_srcs=["\x1f".join(map(str, parts))]))


# --------------------------------------------------------------------------- vendor tables
# Tokens per mr_physics.md section 6. Items marked [approx] there (descriptions,
# GE pulse-sequence names, model names) are plausible, not copied from a scanner.
_EQUIPMENT = {
    "siemens": dict(Manufacturer="SIEMENS", StationName="AWP45120", DeviceSerialNumber="45120",
                    models={1.5: ("Aera", "syngo MR E11"), 3.0: ("Skyra", "syngo MR E11")},
                    ReceiveCoilName="Body_18", TransmitCoilName="Body"),
    "ge": dict(Manufacturer="GE MEDICAL SYSTEMS", StationName="GEMR15", DeviceSerialNumber="0000MR15",
               models={1.5: ("SIGNA Artist", "27\\LX\\MR Software release:RX27.0_R02"),
                       3.0: ("DISCOVERY MR750", "27\\LX\\MR Software release:DV26.0_R03")},
               ReceiveCoilName="GEM AA", TransmitCoilName="BODY"),
    "philips": dict(Manufacturer="Philips Medical Systems", StationName="PHILIPS-7QK2M3",
                    DeviceSerialNumber="45678",
                    models={1.5: ("Ingenia", "5.6.1\\5.6.1.2"), 3.0: ("Ingenia Elition X", "5.7.1\\5.7.1.1")},
                    ReceiveCoilName="dS Torso", TransmitCoilName="B"),
}

_PLANE_WORDS = {  # plane -> (siemens, ge, philips)
    "cor": ("cor", "COR", "COR"), "tra": ("tra", "AX", "TRA"), "sag": ("sag", "SAG", "SAG"),
}


def _sequence_tokens(p: SeriesProtocol, plane: str) -> dict:
    """MR Image module tokens and the default description for one vendor/kind."""
    etl, fs = int(p.echo_train_length), p.kind.endswith("_fs")
    weight = "pd" if p.kind == "pd_fs" else "t2"
    s_plane, g_plane, p_plane = _PLANE_WORDS[plane]
    if p.vendor == "siemens":
        image_type = ["ORIGINAL", "PRIMARY", "M", "ND", "NORM"]
        if p.kind == "stir":
            return dict(ScanningSequence=["SE", "IR"], SequenceVariant=["SK", "SP", "MP", "OSP"],
                        ScanOptions="IR", SequenceName=f"*tir2d1_{etl}", ImageType=image_type,
                        description=f"t2_tirm_{s_plane}")
        return dict(ScanningSequence="SE", SequenceVariant=["SK", "SP", "OSP"],
                    ScanOptions="FS" if fs else "", SequenceName=f"*tse2d1_{etl}", ImageType=image_type,
                    description=f"{weight}_tse_fs_{s_plane}" if fs else f"t1_tse_{s_plane}")
    if p.vendor == "ge":
        image_type = ["ORIGINAL", "PRIMARY", "OTHER"]
        if p.kind == "stir":
            return dict(ScanningSequence=["SE", "IR"], SequenceVariant=["SK", "MP"],
                        ScanOptions=["FAST_GEMS", "IR_GEMS", "FILTERED_GEMS"], SequenceName="fse-ir",
                        ImageType=image_type, description=f"{g_plane} STIR", pulse_sequence="fse-ir")
        return dict(ScanningSequence="SE", SequenceVariant="SK",
                    ScanOptions=["FAST_GEMS", "FILTERED_GEMS"] + (["FS"] if fs else []),
                    SequenceName="fse-xl", ImageType=image_type, pulse_sequence="fse-xl",
                    description=f"{g_plane} {weight.upper()} FS" if fs else f"{g_plane} T1 FSE")
    # philips: no meaningful SequenceName in classic objects
    if p.kind == "stir":
        return dict(ScanningSequence=["SE", "IR"], SequenceVariant=["SK", "MP"], ScanOptions="IR",
                    ImageType=["ORIGINAL", "PRIMARY", "M_IR", "M", "IR"], description=f"STIR_{p_plane}")
    suppression = "SPAIR" if p.kind == "pd_fs" else "SPIR"
    return dict(ScanningSequence="SE", SequenceVariant="SK", ScanOptions="FS" if fs else "",
                ImageType=["ORIGINAL", "PRIMARY", "M_SE", "M", "SE"],
                description=f"{weight.upper()}W_{suppression}_{p_plane}" if fs else f"T1W_TSE_{p_plane}")


# Bits stored and the stored value the series maximum is scaled to.
_STORAGE = {"siemens": (12, 4000), "ge": (16, 30000), "philips": (12, 4000)}
_DEFAULT_BANDWIDTH_HZ = {"stir": 250.0, "t1": 180.0, "t2_fs": 220.0, "pd_fs": 220.0}  # [approx]
_DEFAULT_SAR_W_KG = {1.5: 1.0, 3.0: 2.4}  # [approx], typical TSE at normal mode


# --------------------------------------------------------------------------- helpers
def _ds(value: float) -> str:
    """A valid Decimal String (<= 16 characters), without '-0'."""
    from pydicom.valuerep import format_number_as_ds

    value = float(value)
    return format_number_as_ds(0.0 if abs(value) < 1e-12 else value)


def _ds_list(values) -> list[str]:
    return [_ds(v) for v in values]


def _shift_time(date: str, time: str, seconds: float, fraction: bool = False) -> tuple[str, str]:
    """(date, time) ``seconds`` after ``date``/``time``, as DA and TM strings."""
    t = _dt.datetime.strptime(date + time, "%Y%m%d" + _TIME_FMT) + _dt.timedelta(seconds=seconds)
    return t.strftime("%Y%m%d"), t.strftime(_TIME_FMT + (".%f" if fraction else ""))


def _interleaved_rank(n_slices: int) -> list[int]:
    """Acquisition rank of each slice for interleaved 2-D order (0, 2, 4, ..., 1, 3, ...)."""
    order = list(range(0, n_slices, 2)) + list(range(1, n_slices, 2))
    return [order.index(k) for k in range(n_slices)]


def _plane(normal: np.ndarray) -> str:
    return ("sag", "cor", "tra")[int(np.argmax(np.abs(normal)))]


def _file_name(style: str, vendor: str, index: int, sop_uid: str) -> str:
    if style == "dcm":
        return f"IM{index:04d}.dcm"
    if style != "vendor":
        raise ConfigError(f"file_names must be 'vendor' or 'dcm', got {style!r}")
    return {"siemens": f"MR.{sop_uid}", "ge": f"IM{index:04d}", "philips": f"IM_{index:04d}"}[vendor]


def _base_dataset(study: StudyInfo, vendor: str, field_strength_t: float, series_number: int,
                  series_uid: str, description: str, bits_stored: int):
    """Dataset with every module attribute that is the same for all images of a series."""
    from pydicom.dataset import Dataset, FileMetaDataset

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = _MR_IMAGE_STORAGE
    meta.TransferSyntaxUID = _EXPLICIT_VR_LE
    meta.ImplementationClassUID = make_uid("bmepipe", "implementation")
    meta.ImplementationVersionName = "BMEPIPE_PHANTOM"

    eq = _EQUIPMENT[vendor]
    model, software = eq["models"][min(eq["models"], key=lambda b: abs(b - field_strength_t))]
    # Series start: five minutes per series number after the study start.
    series_date, series_time = _shift_time(study.study_date, study.study_time, 300 * series_number)

    ds = Dataset()
    ds.file_meta = meta
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.SOPClassUID = _MR_IMAGE_STORAGE
    ds.InstanceCreationDate, ds.InstanceCreationTime = series_date, series_time
    # Patient
    ds.PatientName = study.patient_name
    ds.PatientID = study.patient_id
    ds.PatientBirthDate = ""
    ds.PatientSex = study.patient_sex
    ds.PatientAge = study.patient_age
    ds.PatientWeight = _ds(study.patient_weight_kg)
    # General Study
    ds.StudyInstanceUID = study.study_instance_uid
    ds.StudyDate, ds.StudyTime = study.study_date, study.study_time
    ds.ReferringPhysicianName = ""
    ds.StudyID = study.study_id
    ds.AccessionNumber = study.accession_number
    ds.StudyDescription = study.study_description
    # General Series
    ds.Modality = "MR"
    ds.SeriesInstanceUID = series_uid
    ds.SeriesNumber = int(series_number)
    ds.SeriesDate, ds.SeriesTime = series_date, series_time
    ds.SeriesDescription = description
    ds.ProtocolName = description
    ds.BodyPartExamined = "HIP"
    ds.PatientPosition = "FFS"  # feet first supine, usual for hip coils
    # Frame of Reference
    ds.FrameOfReferenceUID = study.frame_of_reference_uid
    ds.PositionReferenceIndicator = ""
    # General Equipment
    ds.Manufacturer = eq["Manufacturer"]
    ds.InstitutionName = study.institution_name
    ds.StationName = eq["StationName"]
    ds.ManufacturerModelName = model
    ds.DeviceSerialNumber = eq["DeviceSerialNumber"]
    ds.SoftwareVersions = software.split("\\") if "\\" in software else software
    # General Image / Acquisition
    ds.AcquisitionNumber = 1
    ds.AcquisitionDate, ds.AcquisitionTime = series_date, series_time
    ds.ContentDate, ds.ContentTime = series_date, series_time
    ds.BurnedInAnnotation = "NO"
    ds.LossyImageCompression = "00"
    # Image Pixel
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = 16
    ds.BitsStored = bits_stored
    ds.HighBit = bits_stored - 1
    ds.PixelRepresentation = 0
    # MR common
    ds.MagneticFieldStrength = _ds(field_strength_t)
    ds.ImagingFrequency = _ds(round(GYROMAGNETIC_RATIO_MHZ_PER_T * field_strength_t, 6))
    ds.ImagedNucleus = "1H"
    ds.EchoNumbers = "1"
    ds.AngioFlag = "N"
    ds.MRAcquisitionType = "2D"
    ds.ReceiveCoilName = eq["ReceiveCoilName"]
    ds.TransmitCoilName = eq["TransmitCoilName"]
    ds.VariableFlipAngleFlag = "N"
    return ds


def _scale_to_stored(signal: np.ndarray, target_max: int) -> tuple[np.ndarray, float]:
    """uint16 stored values ``round(signal * gain)`` with the maximum at ``target_max``."""
    peak = float(signal.max()) if signal.size else 0.0
    gain = target_max / peak if peak > 0 else 1.0
    return np.rint(signal * gain).astype("<u2"), gain  # signal >= 0, so 0 <= stored <= target_max


def _set_window(ds, stored: np.ndarray, slope: float) -> None:
    """WindowCenter/Width (in rescaled units) covering the 1st-99.5th percentile."""
    lo, hi = np.percentile(stored[:, ::4, ::4], [1.0, 99.5]) * slope
    width = max(float(hi - lo), 1.0)
    ds.WindowCenter = _ds(round(float(lo + hi) / 2.0, 1))
    ds.WindowWidth = _ds(round(width, 1))


def _series_uid_of(path: Path) -> str | None:
    from pydicom import dcmread
    from pydicom.errors import InvalidDicomError

    try:
        return dcmread(path, stop_before_pixels=True, specific_tags=["SeriesInstanceUID"]).get("SeriesInstanceUID")
    except (InvalidDicomError, OSError, ValueError):
        return None


def _write_images(ds, stored: np.ndarray, out_dir: Path, names: list[str], per_image: list[dict]) -> list[Path]:
    """Write one file per 2-D image, updating the same dataset in place (fast, no deep copies)."""
    from pydicom import dcmwrite

    paths = []
    path = out_dir
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        for image, name, attrs in zip(stored, names, per_image):
            for key, value in attrs.items():
                setattr(ds, key, value)
            ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
            ds.PixelData = image.tobytes()
            path = out_dir / name
            if path.exists() and _series_uid_of(path) != ds.SeriesInstanceUID:
                raise OutputError("holds an image of another series; write each series to its own folder", path)
            with atomic_path(path) as tmp:
                dcmwrite(tmp, ds, enforce_file_format=True)
            paths.append(path)
    except OSError as exc:
        raise OutputError(f"cannot write DICOM output ({exc.strerror or exc})", path) from exc
    return paths


# --------------------------------------------------------------------------- public writers
def write_mr_series(
    signal: np.ndarray,
    geometry: Geometry,
    protocol: SeriesProtocol,
    study: StudyInfo,
    out_dir: str | os.PathLike,
    *,
    uid_seed: int = 0,
    file_names: str = "vendor",
) -> list[Path]:
    """Write a magnitude volume as one classic MR Image Storage file per slice.

    Parameters
    ----------
    signal : ndarray, shape (slices, rows, columns)
        Non-negative magnitude, arbitrary units (shape ``geometry.size[::-1]``).
    geometry : Geometry
        Voxel grid in LPS mm; slices are written in ascending order along the normal.
    protocol : SeriesProtocol
        Sequence parameters and vendor flavour.
    study : StudyInfo
        Patient/study attributes and UIDs.
    out_dir : path
        Folder for this series (created). Use one folder per series: names such as
        ``IM0001.dcm`` repeat between series.
    uid_seed : int
        Mixed into the SeriesInstanceUID and SOPInstanceUIDs.
    file_names : {'vendor', 'dcm'}
        ``'vendor'``: Siemens ``MR.<SOPInstanceUID>``, GE ``IM0001``, Philips
        ``IM_0001``; ``'dcm'``: ``IM0001.dcm``.

    Returns
    -------
    list of Path
        The files, in slice order (InstanceNumber 1..slices).

    Notes
    -----
    Stored values are uint16 scaled so the series maximum maps to 4000 (12-bit
    Siemens/Philips) or 30000 (GE), one gain for the whole series. Philips series
    add RescaleSlope = ``PHILIPS_RESCALE_SLOPE`` and the private scale slope
    (2005,100E) = stored/signal gain, so the Philips "precise" value
    ``stored * RS / (RS * SS)`` equals the input signal up to quantization.
    """
    signal = np.asarray(signal)
    if signal.shape != geometry.shape:
        raise ConfigError(f"signal shape {signal.shape} != geometry (slices, rows, columns) {geometry.shape}")
    signal = signal.astype(np.float64, copy=False)
    if not np.all(np.isfinite(signal)) or (signal.size and signal.min() < 0):
        raise ConfigError("signal must be finite and non-negative (magnitude)")
    p = protocol
    m = geometry.matrix
    row_dir, col_dir, normal = m[:, 0], m[:, 1], m[:, 2]
    plane = _plane(normal)
    tokens = _sequence_tokens(p, plane)
    description = p.series_description or tokens["description"]
    bits_stored, target_max = _STORAGE[p.vendor]
    stored, gain = _scale_to_stored(signal, target_max)

    series_uid = make_uid(study.study_instance_uid, "series", uid_seed, p.series_number)
    ds = _base_dataset(study, p.vendor, p.field_strength_t, p.series_number, series_uid, description, bits_stored)
    ds.ImageType = tokens["ImageType"]
    ds.ScanningSequence = tokens["ScanningSequence"]
    ds.SequenceVariant = tokens["SequenceVariant"]
    ds.ScanOptions = tokens["ScanOptions"]
    if "SequenceName" in tokens:
        ds.SequenceName = tokens["SequenceName"]
    ds.RepetitionTime = _ds(p.repetition_time_ms)
    ds.EchoTime = _ds(p.echo_time_ms)
    if p.kind == "stir":
        ds.InversionTime = _ds(p.inversion_time_ms)
    ds.EchoTrainLength = int(p.echo_train_length)
    ds.FlipAngle = _ds(p.flip_angle_deg)
    ds.NumberOfAverages = _ds(p.number_of_averages)
    ds.PixelBandwidth = _ds(p.pixel_bandwidth_hz or _DEFAULT_BANDWIDTH_HZ[p.kind])
    ds.SAR = _ds(_DEFAULT_SAR_W_KG[min(_DEFAULT_SAR_W_KG, key=lambda b: abs(b - p.field_strength_t))])

    columns, rows, n_slices = geometry.size
    col_step, row_step, slice_step = geometry.spacing_mm
    freq, phase = p.acquisition_matrix or (rows, columns)
    if p.phase_encoding_direction == "ROW":  # phase along a row: counted over columns
        ds.AcquisitionMatrix = [int(freq), 0, 0, int(phase)]
        phase_fov, freq_fov = columns * col_step, rows * row_step
    else:
        ds.AcquisitionMatrix = [0, int(freq), int(phase), 0]
        phase_fov, freq_fov = rows * row_step, columns * col_step
    ds.InPlanePhaseEncodingDirection = p.phase_encoding_direction
    ds.NumberOfPhaseEncodingSteps = int(phase)
    ds.PercentSampling = _ds(100)
    ds.PercentPhaseFieldOfView = _ds(round(100.0 * phase_fov / freq_fov, 4))

    # Image Plane: PixelSpacing is (row spacing, column spacing) in DICOM order.
    ds.ImageOrientationPatient = _ds_list(np.concatenate([row_dir, col_dir]).round(12))
    ds.PixelSpacing = _ds_list([row_step, col_step])
    ds.SliceThickness = _ds(p.slice_thickness_mm)
    ds.SpacingBetweenSlices = _ds(slice_step)
    ds.Rows, ds.Columns = rows, columns
    ds.ImagesInAcquisition = n_slices
    ds.ImageLaterality = p.laterality  # hips are paired: satisfies the Laterality condition

    slope = 1.0
    if p.vendor == "philips":
        slope = PHILIPS_RESCALE_SLOPE
        ds.RescaleIntercept = "0"
        ds.RescaleSlope = _ds(slope)
        ds.RescaleType = "normalized"
        block = ds.private_block(0x2005, "Philips MR Imaging DD 001", create=True)
        block.add_new(0x0D, "FL", 0.0)  # (2005,100D) scale intercept
        block.add_new(0x0E, "FL", gain)  # (2005,100E) scale slope: stored per signal unit
    elif p.vendor == "ge":
        block = ds.private_block(0x0019, "GEMS_ACQU_01", create=True)
        block.add_new(0x9C, "LO", tokens["pulse_sequence"])  # (0019,109C) pulse sequence name
    _set_window(ds, stored, slope)

    positions = geometry.slice_positions()
    # Multi-slice 2-D: slices are excited interleaved within one TR, so each
    # has its own AcquisitionTime (converters estimate slice timing from it).
    rank = _interleaved_rank(n_slices)
    per_image, names = [], []
    for k in range(n_slices):
        sop_uid = make_uid(series_uid, "image", k)
        offset_s = rank[k] * p.repetition_time_ms / n_slices / 1000.0
        per_image.append(dict(
            SOPInstanceUID=sop_uid, InstanceNumber=k + 1,
            AcquisitionTime=_shift_time(ds.SeriesDate, ds.SeriesTime, offset_s, fraction=True)[1],
            ImagePositionPatient=_ds_list(positions[k]),
            SliceLocation=_ds(float(positions[k] @ normal)),
        ))
        names.append(_file_name(file_names, p.vendor, k + 1, sop_uid))
    return _write_images(ds, stored, Path(out_dir), names, per_image)


_LOCALIZER = {  # vendor -> description, ImageType, ScanningSequence, SequenceVariant, SequenceName
    "siemens": ("localizer", ["ORIGINAL", "PRIMARY", "M", "ND", "NORM"], "GR", ["SP", "OSP"], "*fl2d1"),
    "ge": ("3-plane loc", ["ORIGINAL", "PRIMARY", "LOCALIZER"], "GR", "SS", "fgre"),
    "philips": ("Survey", ["ORIGINAL", "PRIMARY", "M_FFE", "M", "FFE"], "GR", "SP", None),
}
# (row direction, column direction) of the sagittal, coronal and axial planes, LPS
_LOCALIZER_PLANES = (((0, 1, 0), (0, 0, -1)), ((1, 0, 0), (0, 0, -1)), ((1, 0, 0), (0, 1, 0)))


def _default_blob(points: np.ndarray, center: np.ndarray) -> np.ndarray:
    r2 = np.sum(((points - center) / np.array([120.0, 90.0, 160.0])) ** 2, axis=1)
    return np.exp(-r2)


def write_localizer(
    geometry_center_lps_mm: Sequence[float],
    study: StudyInfo,
    out_dir: str | os.PathLike,
    *,
    vendor: str = "siemens",
    series_number: int = 1,
    fov_mm: float = 400.0,
    matrix: int = 256,
    uid_seed: int = 0,
    image: Callable[[np.ndarray], np.ndarray] | None = None,
    file_names: str = "vendor",
    field_strength_t: float = 1.5,
) -> list[Path]:
    """Write a 3-plane localizer: one series, a sagittal, coronal and axial image.

    Parameters
    ----------
    geometry_center_lps_mm : 3 floats
        The point all three planes pass through (at their centre pixel), LPS mm.
    image : callable, optional
        ``image(points_lps) -> values`` for an (N, 3) array of mm positions;
        default a smooth blob around the centre.

    Returns
    -------
    list of Path
        Sagittal, coronal, axial image files (InstanceNumber 1, 2, 3).
    """
    vendor = str(vendor).lower()
    if vendor not in _VENDORS:
        raise ConfigError(f"unknown vendor {vendor!r}; expected one of {_VENDORS}")
    if matrix < 2 or not fov_mm > 0:
        raise ConfigError("localizer matrix must be >= 2 and fov_mm positive")
    center = np.asarray(geometry_center_lps_mm, dtype=float)
    spacing = fov_mm / matrix
    description, image_type, scanning, variant, seq_name = _LOCALIZER[vendor]

    grids, origins, normals = [], [], []
    jj, ii = np.mgrid[0:matrix, 0:matrix].astype(float)
    half = (matrix - 1) / 2.0
    for row_dir, col_dir in _LOCALIZER_PLANES:
        row_dir, col_dir = np.asarray(row_dir, float), np.asarray(col_dir, float)
        origin = center - half * spacing * (row_dir + col_dir)
        points = origin + (ii.reshape(-1, 1) * row_dir + jj.reshape(-1, 1) * col_dir) * spacing
        values = _default_blob(points, center) if image is None else image(points)
        grids.append(np.asarray(values, dtype=float).reshape(matrix, matrix))
        origins.append(origin)
        normals.append(np.cross(row_dir, col_dir))
    signal = np.clip(np.nan_to_num(np.stack(grids)), 0, None)
    bits_stored, target_max = _STORAGE[vendor]
    stored, _ = _scale_to_stored(signal, target_max)

    series_uid = make_uid(study.study_instance_uid, "localizer", uid_seed, series_number)
    ds = _base_dataset(study, vendor, field_strength_t, series_number, series_uid, description, bits_stored)
    ds.ImageType = image_type
    ds.ScanningSequence, ds.SequenceVariant, ds.ScanOptions = scanning, variant, ""
    if seq_name:
        ds.SequenceName = seq_name
    ds.RepetitionTime, ds.EchoTime, ds.FlipAngle = _ds(8.6), _ds(4.0), _ds(20)  # spoiled GRE [approx]
    ds.EchoTrainLength = 1
    ds.NumberOfAverages = "1"
    ds.PixelBandwidth = _ds(320)
    ds.AcquisitionMatrix = [0, matrix, matrix, 0]
    ds.InPlanePhaseEncodingDirection = "COL"
    ds.PixelSpacing = _ds_list([spacing, spacing])
    ds.SliceThickness = _ds(10.0)
    ds.Rows = ds.Columns = matrix
    ds.ImagesInAcquisition = 3
    ds.ImageLaterality = "B"
    _set_window(ds, stored, 1.0)
    if vendor == "philips":
        ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = "0", "1", "normalized"

    per_image, names = [], []
    for k, ((row_dir, col_dir), origin, normal) in enumerate(zip(_LOCALIZER_PLANES, origins, normals)):
        sop_uid = make_uid(series_uid, "image", k)
        per_image.append(dict(
            SOPInstanceUID=sop_uid, InstanceNumber=k + 1,
            ImageOrientationPatient=_ds_list(list(row_dir) + list(col_dir)),
            ImagePositionPatient=_ds_list(origin),
            SliceLocation=_ds(float(origin @ normal)),
        ))
        names.append(_file_name(file_names, vendor, k + 1, sop_uid))
    return _write_images(ds, stored, Path(out_dir), names, per_image)
