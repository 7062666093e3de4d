"""Crafted DICOM folders for the bmepipe.io tests (and the load benchmark).

Every builder writes small, deterministic files into a given folder and
returns what an independent reader should find there. Classic series come from
:mod:`bmepipe.phantom.dicom_writer`; the enhanced multi-frame MR file and the
broken files are made here with pydicom.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence as DicomSequence

from bmepipe.phantom.dicom_writer import Geometry, SeriesProtocol, StudyInfo, make_uid, write_localizer, write_mr_series

PYDICOM_FILES = Path(os.path.dirname(pydicom.data.__file__)) / "test_files"
DCM2NIIX = shutil.which("dcm2niix", path=str(Path(sys.executable).parent)) or shutil.which("dcm2niix")
STUDY = StudyInfo.from_seed(4242)

#: (row direction, column direction) of a plain coronal stack, LPS.
CORONAL = ((1.0, 0.0, 0.0), (0.0, 0.0, -1.0))

_PROTOCOLS = {
    "stir": dict(repetition_time_ms=4500.0, echo_time_ms=45.0, inversion_time_ms=160.0, echo_train_length=13),
    "t1": dict(repetition_time_ms=550.0, echo_time_ms=12.0, inversion_time_ms=None, echo_train_length=3),
    "pd_fs": dict(repetition_time_ms=3000.0, echo_time_ms=35.0, inversion_time_ms=None, echo_train_length=9),
    "t2_fs": dict(repetition_time_ms=4000.0, echo_time_ms=70.0, inversion_time_ms=None, echo_train_length=15),
}


def protocol(kind: str, vendor: str, series_number: int, **kw) -> SeriesProtocol:
    """A plausible 1.5 T protocol of ``kind`` for ``vendor``."""
    p = dict(_PROTOCOLS[kind], kind=kind, vendor=vendor, field_strength_t=1.5, flip_angle_deg=150.0,
             slice_thickness_mm=4.0, series_number=series_number)
    p.update(kw)
    return SeriesProtocol(**p)


def rotation(axis, deg: float) -> np.ndarray:
    """Rotation matrix about ``axis`` (right hand) by ``deg`` degrees."""
    a = np.asarray(axis, float) / np.linalg.norm(axis)
    t = np.radians(deg)
    k = np.array([[0, -a[2], a[1]], [a[2], 0, -a[0]], [-a[1], a[0], 0]])
    return np.eye(3) + np.sin(t) * k + (1 - np.cos(t)) * k @ k


def geometry(size=(24, 20, 8), spacing=(1.5, 1.25, 4.5), origin=(-17.0, 11.5, 42.0), rot=None) -> Geometry:
    """A coronal grid (optionally rotated by ``rot``, a 3x3 matrix)."""
    row, col = (np.asarray(v) for v in CORONAL)
    if rot is not None:
        row, col = rot @ row, rot @ col
    return Geometry.from_orientation(size, spacing, origin, row, col)


def signal(g: Geometry, seed: int) -> np.ndarray:
    """A deterministic non-negative pattern with no two equal slices."""
    rng = np.random.default_rng(seed)
    k, j, i = np.indices(g.shape, dtype=float)
    return 100.0 + 50.0 * k + 7.0 * j + 3.0 * i + rng.uniform(0, 20, g.shape)


def write_series(out: Path, kind="stir", vendor="siemens", g: Geometry | None = None, series_number=4, seed=0,
                 file_names="vendor", **kw) -> list[Path]:
    """A classic series of ``kind`` on ``g`` (default :func:`geometry`); the files in slice order."""
    g = g or geometry()
    return write_mr_series(signal(g, seed), g, protocol(kind, vendor, series_number, **kw), STUDY, out,
                           uid_seed=seed, file_names=file_names)


def stored_volume(files) -> np.ndarray:
    """Rescaled pixel values [slice, row, column] read with pydicom, in file-list order."""
    out = []
    for f in files:
        ds = pydicom.dcmread(f)
        out.append(ds.pixel_array * float(ds.get("RescaleSlope", 1) or 1) + float(ds.get("RescaleIntercept", 0) or 0))
    return np.asarray(out, dtype=np.float64)


def scramble(folder: Path, seed: int = 0) -> None:
    """Rename every file under ``folder`` to an extension-less random name, flat in ``folder``, in shuffled order."""
    rng = np.random.default_rng(seed)
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    for n, i in enumerate(rng.permutation(len(files))):
        files[i].rename(folder / f"{rng.integers(1 << 40):010x}{n:03d}")
    for d in sorted((p for p in folder.rglob("*") if p.is_dir()), reverse=True):
        d.rmdir()


def non_image(out: Path) -> Path:
    """A Structured Report (no pixel data, non-image SOP class)."""
    out.mkdir(parents=True, exist_ok=True)
    return Path(shutil.copy(PYDICOM_FILES / "test-SR.dcm", out / "report_sr"))


def non_dicom(out: Path) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    p = out / "notes.txt"
    p.write_text("scanner export log\nnot a DICOM file\n")
    return p


def ct_series(out: Path) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    return Path(shutil.copy(PYDICOM_FILES / "CT_small.dcm", out / "ct_slice"))


def truncate(path: Path, keyword: str = "PixelData") -> Path:
    """Cut a file in the middle of the value of its element ``keyword``."""
    raw = pydicom.dcmread(path).get_item(keyword)
    data = path.read_bytes()
    path.write_bytes(data[: raw.value_tell + raw.length // 2])
    return path


def drop_pixel_data(path: Path) -> Path:
    ds = pydicom.dcmread(path)
    del ds.PixelData
    ds.save_as(path, enforce_file_format=True)
    return path


def clash(path: Path, new_name: str) -> Path:
    """A different image (new SOPInstanceUID, other pixels) at the same position as ``path``."""
    ds = pydicom.dcmread(path)
    ds.SOPInstanceUID = make_uid(ds.SOPInstanceUID, "clash")
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    arr = ds.pixel_array.copy()
    arr[0, 0] += 1
    ds.PixelData = arr.astype("<u2").tobytes()
    target = path.with_name(new_name)
    ds.save_as(target, enforce_file_format=True)
    return target


# --------------------------------------------------------------------------- enhanced MR
def enhanced_mr(path: Path, *, n_slices=5, echoes=(20.0, 80.0), rows=16, cols=12, spacing=(1.25, 1.5),
                thickness=3.0, gap=0.5, slope=2.0, intercept=-10.0, seed=1) -> dict:
    """A valid Enhanced MR Image Storage file: ``len(echoes)`` stacks of ``n_slices`` coronal frames.

    Frames are stored echo-interleaved and in descending slice order, so a reader
    has to split by echo and sort by position. Returns the truth: per-echo
    ``values`` [slice ascending, row, column] after rescale, ``origin``, ``direction``, ``spacing``.
    """
    rng = np.random.default_rng(seed)
    row_dir, col_dir = np.array([1.0, 0.0, 0.0]), np.array([0.0, 0.0, -1.0])
    normal = np.cross(row_dir, col_dir)
    origin = np.array([-7.5, 3.25, 20.0])
    step = thickness + gap
    stored = {te: rng.integers(0, 4000, (n_slices, rows, cols)).astype(np.uint16) for te in echoes}

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.4.1"
    meta.TransferSyntaxUID = "1.2.840.10008.1.2.1"
    uid = make_uid("enhanced", seed)
    meta.MediaStorageSOPInstanceUID = uid
    meta.ImplementationClassUID = make_uid("bmepipe", "tests")
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, uid
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.PatientName, ds.PatientID, ds.PatientBirthDate, ds.PatientSex = "TEST^ENH", "ENH01", "", "O"
    ds.StudyInstanceUID, ds.StudyDate, ds.StudyTime = STUDY.study_instance_uid, "20260101", "090000"
    ds.ReferringPhysicianName, ds.StudyID, ds.AccessionNumber = "", "1", ""
    ds.PatientPosition = "FFS"
    ds.Modality, ds.SeriesInstanceUID, ds.SeriesNumber = "MR", make_uid("enhanced series", seed), 9
    ds.SeriesDescription = "t2_me_cor"
    ds.FrameOfReferenceUID, ds.PositionReferenceIndicator = STUDY.frame_of_reference_uid, ""
    ds.Manufacturer, ds.ManufacturerModelName = "SIEMENS", "Skyra"
    ds.SoftwareVersions, ds.DeviceSerialNumber = "syngo MR XA", "1"
    ds.InstanceNumber = 1
    ds.ContentDate, ds.ContentTime = "20260101", "090500"
    ds.AcquisitionDateTime = "20260101090500"
    ds.AcquisitionDuration = 60.0
    ds.ImageType = ["ORIGINAL", "PRIMARY", "T2", "NONE"]
    ds.PixelPresentation, ds.VolumetricProperties, ds.VolumeBasedCalculationTechnique = "MONOCHROME", "VOLUME", "NONE"
    ds.ComplexImageComponent, ds.AcquisitionContrast = "MAGNITUDE", "T2"
    ds.BurnedInAnnotation, ds.LossyImageCompression = "NO", "00"
    ds.PresentationLUTShape = "IDENTITY"
    ds.ContentQualification, ds.ImageComments = "PRODUCT", ""
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.Rows, ds.Columns = rows, cols
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    # MR Image and Spectroscopy Instance / Enhanced MR Image modules
    ds.MagneticFieldStrength, ds.ResonantNucleus = 3.0, "1H"
    ds.KSpaceFiltering, ds.ApplicableSafetyStandardAgency = "NONE", "IEC"
    ds.PulseSequenceName, ds.MRAcquisitionType, ds.EchoPulseSequence = "tse_me", "2D", "SPIN"
    ds.MultipleSpinEcho, ds.MultiPlanarExcitation, ds.PhaseContrast = "YES", "NO", "NO"
    ds.TimeOfFlightContrast, ds.SteadyStatePulseSequence = "NO", "NONE"
    ds.EchoPlanarPulseSequence, ds.SaturationRecovery, ds.SpectrallySelectedSuppression = "NO", "NO", "NONE"
    ds.OversamplingPhase, ds.GeometryOfKSpaceTraversal, ds.SegmentedKSpaceTraversal = "NONE", "RECTILINEAR", "PARTIAL"
    ds.RectilinearPhaseEncodeReordering, ds.NumberOfKSpaceTrajectories = "LINEAR", 1
    ds.AcquisitionContextSequence = DicomSequence([])
    ds.NumberOfFrames = n_slices * len(echoes)

    def item(**kw):
        it = Dataset()
        for k, v in kw.items():
            setattr(it, k, v)
        return it

    shared = Dataset()
    shared.PixelMeasuresSequence = DicomSequence([item(PixelSpacing=list(spacing), SliceThickness=thickness,
                                                       SpacingBetweenSlices=step)])
    shared.PlaneOrientationSequence = DicomSequence([item(ImageOrientationPatient=list(row_dir) + list(col_dir))])
    shared.PixelValueTransformationSequence = DicomSequence([item(RescaleSlope=slope, RescaleIntercept=intercept,
                                                                  RescaleType="US")])
    shared.MRTimingAndRelatedParametersSequence = DicomSequence([item(RepetitionTime=4000.0, FlipAngle=150.0,
                                                                      EchoTrainLength=len(echoes),
                                                                      RFEchoTrainLength=len(echoes),
                                                                      GradientEchoTrainLength=0,
                                                                      SpecificAbsorptionRateSequence=DicomSequence([
                                                                          item(SpecificAbsorptionRateDefinition="IEC_WHOLE_BODY",
                                                                               SpecificAbsorptionRateValue=1.0)]),
                                                                      OperatingModeSequence=DicomSequence([
                                                                          item(OperatingModeType="STATIC FIELD",
                                                                               OperatingMode="IEC_NORMAL")]))])
    shared.MRFOVGeometrySequence = DicomSequence([item(InPlanePhaseEncodingDirection="ROW",
                                                       MRAcquisitionFrequencyEncodingSteps=rows,
                                                       MRAcquisitionPhaseEncodingStepsInPlane=cols,
                                                       PercentSampling=100.0, PercentPhaseFieldOfView=100.0)])
    shared.MRModifierSequence = DicomSequence([item(InversionRecovery="NO", FlowCompensation="NONE",
                                                    T2Preparation="NO", SpatialPresaturation="NONE",
                                                    SpectrallySelectedExcitation="NONE",
                                                    PartialFourier="NO", ParallelAcquisition="NO")])
    shared.FrameAnatomySequence = DicomSequence([item(FrameLaterality="B", AnatomicRegionSequence=DicomSequence([
        item(CodeValue="24136001", CodingSchemeDesignator="SCT", CodeMeaning="Hip joint")]))])
    shared.MRImagingModifierSequence = DicomSequence([item(PixelBandwidth=220.0, MagnetizationTransfer="NONE",
                                                           BloodSignalNulling="NO", Tagging="NONE",
                                                           TransmitterFrequency=127.7)])
    shared.MRReceiveCoilSequence = DicomSequence([item(ReceiveCoilName="Body", ReceiveCoilType="BODY",
                                                       ReceiveCoilManufacturerName="SIEMENS",
                                                       QuadratureReceiveCoil="NO")])
    shared.MRTransmitCoilSequence = DicomSequence([item(TransmitCoilName="Body", TransmitCoilType="BODY",
                                                        TransmitCoilManufacturerName="SIEMENS")])
    shared.MRAveragesSequence = DicomSequence([item(NumberOfAverages=1.0)])
    ds.SharedFunctionalGroupsSequence = DicomSequence([shared])

    ds.DimensionOrganizationSequence = DicomSequence([item(DimensionOrganizationUID=make_uid("dim", seed))])
    ds.DimensionIndexSequence = DicomSequence([  # the usual vendor order: stack, position in stack, echo
        item(DimensionOrganizationUID=make_uid("dim", seed), DimensionIndexPointer=0x00209056,
             FunctionalGroupPointer=0x00209111, DimensionDescriptionLabel="Stack ID"),
        item(DimensionOrganizationUID=make_uid("dim", seed), DimensionIndexPointer=0x00209057,
             FunctionalGroupPointer=0x00209111, DimensionDescriptionLabel="In-Stack Position Number"),
        item(DimensionOrganizationUID=make_uid("dim", seed), DimensionIndexPointer=0x00189082,
             FunctionalGroupPointer=0x00189114, DimensionDescriptionLabel="Effective Echo Time"),
    ])
    per_frame, frames = [], []
    for e, te in enumerate(echoes):  # echo-major (dcm2niix needs it to split echoes); positions descending
        for k in reversed(range(n_slices)):
            fg = Dataset()
            fg.FrameContentSequence = DicomSequence([item(DimensionIndexValues=[1, k + 1, e + 1], StackID="1",
                                                          InStackPositionNumber=k + 1, TemporalPositionIndex=1,
                                                          FrameAcquisitionDateTime="20260101090500",
                                                          FrameReferenceDateTime="20260101090500",
                                                          FrameAcquisitionDuration=100.0)])
            fg.PlanePositionSequence = DicomSequence([item(ImagePositionPatient=list(origin + k * step * normal))])
            fg.MREchoSequence = DicomSequence([item(EffectiveEchoTime=te)])
            fg.MRImageFrameTypeSequence = DicomSequence([item(FrameType=["ORIGINAL", "PRIMARY", "T2", "NONE"],
                                                              PixelPresentation="MONOCHROME",
                                                              VolumetricProperties="VOLUME",
                                                              VolumeBasedCalculationTechnique="NONE",
                                                              ComplexImageComponent="MAGNITUDE",
                                                              AcquisitionContrast="T2")])
            per_frame.append(fg)
            frames.append(stored[te][k])
    ds.PerFrameFunctionalGroupsSequence = DicomSequence(per_frame)
    ds.PixelData = np.stack(frames).astype("<u2").tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    values = {te: stored[te].astype(np.float64) * slope + intercept for te in echoes}
    return dict(values=values, origin=origin, direction=np.column_stack([row_dir, col_dir, normal]),
                spacing=(spacing[1], spacing[0], step), series_uid=str(ds.SeriesInstanceUID))


# --------------------------------------------------------------------------- dcm2niix oracle
def dcm2niix(folder: Path, out: Path, extra: tuple[str, ...] = ()) -> list[Path]:
    """Convert ``folder`` with dcm2niix (uncompressed NIfTI ``<series number>_<description>_<echo>.nii``, no BIDS
    sidecar); the .nii files written."""
    out.mkdir(parents=True, exist_ok=True)
    subprocess.run([DCM2NIIX, "-z", "n", "-b", "n", *extra, "-f", "%s_%d_%e", "-o", str(out), str(folder)],
                   check=True, capture_output=True, timeout=120)
    return sorted(out.glob("*.nii"))


def nifti_lps(path: Path):
    """(scaled data [i, j, k], 4x4 voxel-to-LPS affine) of a NIfTI written by dcm2niix."""
    import nibabel as nib

    img = nib.load(str(path))
    affine = img.affine.copy()
    affine[:2] *= -1  # RAS -> LPS
    return np.asarray(img.get_fdata(dtype=np.float64)), affine


def corners(shape, affine: np.ndarray) -> np.ndarray:
    """World positions (mm) of the 8 corner voxel centres of a grid, shape (8, 3)."""
    idx = np.array(np.meshgrid(*[[0, n - 1] for n in shape], indexing="ij")).reshape(3, -1).T
    return (affine[:3, :3] @ idx.T).T + affine[:3, 3]


def sitk_affine(image) -> np.ndarray:
    """Voxel-to-LPS affine of a SimpleITK image (index order i, j, k)."""
    a = np.eye(4)
    a[:3, :3] = np.asarray(image.GetDirection()).reshape(3, 3) @ np.diag(image.GetSpacing())
    a[:3, 3] = image.GetOrigin()
    return a


def resample_to(data: np.ndarray, affine: np.ndarray, target_shape, target_affine: np.ndarray) -> np.ndarray:
    """``data`` (on ``affine``) re-indexed onto the target grid; both grids must coincide up to axis flips/permutations."""
    m = np.linalg.solve(affine, target_affine)  # target index -> source index
    perm = np.rint(m[:3, :3])
    if not np.allclose(m[:3, :3], perm, atol=1e-4) or not np.allclose(m[:3, 3], np.rint(m[:3, 3]), atol=1e-3):
        raise AssertionError(f"grids differ by more than a flip/permutation:\n{m}")
    idx = np.array(np.meshgrid(*[np.arange(n) for n in target_shape], indexing="ij")).reshape(3, -1)
    src = (perm @ idx + np.rint(m[:3, 3])[:, None]).astype(int)
    return data[src[0], src[1], src[2]].reshape(target_shape)
