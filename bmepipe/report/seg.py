"""DICOM Segmentation (BINARY) of the label maps, referencing the fluid-sensitive source series.

One segment per side x structure (label ``"<side> <structure>"``, e.g.
``"right femoral_head"``), coded with SNOMED CT where a code exists and the
private 99BMEPIPE scheme elsewhere (:mod:`bmepipe.report.codes`); laterality
is a SegmentedPropertyTypeModifier (SCT Right / Left). Works with classic
single-frame sources (one dataset per slice) and enhanced/legacy-converted
multi-frame sources (one dataset).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Optional, Sequence, Union

import numpy as np

from bmepipe._version import __version__
from bmepipe.errors import OutputError
from bmepipe.io.atomic import atomic_path

from .codes import (
    STRUCTURE_COLORS,
    coding_scheme_identification,
    derive_uid,
    dicom_datetime,
    laterality_code,
    structure_codes,
)
from .labels import check_masks
from .schema import SIDES, STRUCTURES

__all__ = ["SegmentationReference", "build_segmentation", "plan_segmentation", "segment_label", "source_slice_order",
           "write_dicom_seg"]

#: SOP Class UID of Segmentation Storage.
SEGMENTATION_STORAGE = "1.2.840.10008.5.1.4.1.1.66.4"

PathLike = Union[str, "os.PathLike[str]"]


def segment_label(side: str, structure: str) -> str:
    """The SegmentLabel used for one side and structure, e.g. ``"right femoral_head"``."""
    return f"{side} {structure}"


def _is_multiframe(ds) -> bool:
    """An enhanced / legacy-converted image: its frames are described per frame (even if there is one)."""
    return "PerFrameFunctionalGroupsSequence" in ds


def _frame_geometry(source_datasets: Sequence) -> tuple[np.ndarray, np.ndarray, int, int]:
    """(positions (N, 3), orientation (6,), rows, columns) of every source slice or frame."""
    first = source_datasets[0]
    if any(map(_is_multiframe, source_datasets)) and len(source_datasets) > 1:
        raise OutputError("give one multi-frame source dataset, or single-frame datasets, not a mix of several")
    if _is_multiframe(first):
        shared = first.SharedFunctionalGroupsSequence[0]
        per_frame = first.PerFrameFunctionalGroupsSequence
        if "PlaneOrientationSequence" in shared:
            iop = shared.PlaneOrientationSequence[0].ImageOrientationPatient
        else:
            iop = per_frame[0].PlaneOrientationSequence[0].ImageOrientationPatient
        positions = [f.PlanePositionSequence[0].ImagePositionPatient for f in per_frame]
    else:
        iop = first.ImageOrientationPatient
        positions = [ds.ImagePositionPatient for ds in source_datasets]
        for ds in source_datasets:
            if not np.allclose(np.asarray(ds.ImageOrientationPatient, float), np.asarray(iop, float), atol=1e-4):
                raise OutputError("source slices have different ImageOrientationPatient")
    return np.asarray(positions, float), np.asarray(iop, float), int(first.Rows), int(first.Columns)


def source_slice_order(source_datasets: Sequence) -> np.ndarray:
    """Rank of each source slice (or frame) along the slice normal (row x column), ascending.

    Masks are indexed ``[slice, row, column]`` with slices ascending along the
    normal (bmepipe.io / SimpleITK order), so mask slice ``rank[f]`` belongs to
    source slice/frame ``f``.
    """
    positions, iop, _, _ = _frame_geometry(source_datasets)
    return _rank(positions, iop)


def _rank_on_grid(positions: np.ndarray, image) -> np.ndarray:
    """Slice index of each source position on the grid of a SimpleITK image (exact, any slice order)."""
    ijk = np.array([image.TransformPhysicalPointToContinuousIndex(tuple(map(float, p))) for p in positions])
    k = np.round(ijk[:, 2]).astype(int)
    on_grid = np.allclose(ijk[:, :2], 0.0, atol=0.01) and np.allclose(ijk[:, 2], k, atol=0.01)
    if not on_grid or sorted(k.tolist()) != list(range(image.GetSize()[2])):
        raise OutputError("the source slices do not lie on the reference image grid, slice for slice")
    return k


def _rank(positions: np.ndarray, iop: np.ndarray) -> np.ndarray:
    normal = np.cross(iop[:3], iop[3:])
    distance = positions @ normal
    order = np.argsort(distance, kind="stable")
    if np.any(np.diff(distance[order]) < 1e-3):
        raise OutputError("two source slices share one position; cannot map mask slices to them")
    rank = np.empty_like(order)
    rank[order] = np.arange(order.size)
    return rank


def _slice_ranks(source_datasets: Sequence, reference_image=None) -> tuple[np.ndarray, tuple[int, int, int]]:
    """(mask slice of each source slice or frame, mask shape) for the source series."""
    if not source_datasets:
        raise OutputError("no source datasets for the segmentation")
    positions, iop, rows, columns = _frame_geometry(source_datasets)
    rank = _rank(positions, iop) if reference_image is None else _rank_on_grid(positions, reference_image)
    return rank, (len(rank), rows, columns)


def _selected_masks(masks: Mapping, shape: tuple[int, int, int], include_empty: bool) -> list[tuple]:
    """``(side, structure, bool mask)`` of every segment, in segment-number order (non-empty ones only by default)."""
    check_masks(masks, shape)
    selected = []
    for side in SIDES:
        for structure in STRUCTURES:
            mask = masks.get(side, {}).get(structure)
            mask = np.zeros(shape, bool) if mask is None else np.asarray(mask, dtype=bool)  # no copy if bool
            if include_empty or mask.any():
                selected.append((side, structure, mask))
    if not selected:
        raise OutputError("every mask is empty; nothing to put in a DICOM Segmentation")
    return selected


@dataclass(frozen=True)
class SegmentationReference:
    """What a measurement report needs of a DICOM Segmentation, without building it.

    Attributes
    ----------
    study_instance_uid, series_instance_uid, sop_instance_uid : str
        The Segmentation's UIDs.
    source_series_uid : str
        SeriesInstanceUID of the source series.
    segments : dict
        ``{segment label: (segment number, source references)}``; each source
        reference is ``(SOPClassUID, SOPInstanceUID, frame numbers or None)``
        of a source image (or frames of a multi-frame one) the segment covers,
        sorted by SOPInstanceUID (empty for a segment with no pixel set).
    """

    study_instance_uid: str
    series_instance_uid: str
    sop_instance_uid: str
    source_series_uid: str
    segments: Mapping[str, tuple[int, tuple[tuple[str, str, Optional[tuple[int, ...]]], ...]]]
    sop_class_uid: str = SEGMENTATION_STORAGE

    @classmethod
    def from_segmentation(cls, segmentation) -> "SegmentationReference":
        """The reference of a built Segmentation (its segments and, per frame, the source it derives from)."""
        covered: dict[int, dict[tuple[str, str], set]] = {}
        for frame in segmentation.PerFrameFunctionalGroupsSequence:
            number = int(frame.SegmentIdentificationSequence[0].ReferencedSegmentNumber)
            for derivation in frame.get("DerivationImageSequence", []):
                for source in derivation.get("SourceImageSequence", []):
                    key = (str(source.ReferencedSOPClassUID), str(source.ReferencedSOPInstanceUID))
                    frames = covered.setdefault(number, {}).setdefault(key, set())
                    if "ReferencedFrameNumber" in source:
                        value = source.ReferencedFrameNumber
                        frames.update(map(int, value if source["ReferencedFrameNumber"].VM > 1 else [value]))
        segments = {str(item.SegmentLabel): (int(item.SegmentNumber),
                                             _sorted_references(covered.get(int(item.SegmentNumber), {})))
                    for item in segmentation.SegmentSequence}
        return cls(str(segmentation.StudyInstanceUID), str(segmentation.SeriesInstanceUID),
                   str(segmentation.SOPInstanceUID), str(segmentation.ReferencedSeriesSequence[0].SeriesInstanceUID),
                   segments, str(segmentation.SOPClassUID))

    def evidence(self):
        """A pydicom Dataset with the four UIDs an SR's evidence sequence takes from the Segmentation."""
        from pydicom.dataset import Dataset

        item = Dataset()
        item.SOPClassUID = self.sop_class_uid
        item.SOPInstanceUID = self.sop_instance_uid
        item.StudyInstanceUID = self.study_instance_uid
        item.SeriesInstanceUID = self.series_instance_uid
        return item


def _sorted_references(covered: Mapping[tuple[str, str], set]) -> tuple:
    return tuple((cls, uid, tuple(sorted(frames)) or None) for (cls, uid), frames in sorted(covered.items(),
                                                                                            key=lambda kv: kv[0][1]))


def plan_segmentation(
    masks: Mapping[str, Mapping[str, np.ndarray]],
    source_datasets: Sequence,
    *,
    include_empty: bool = False,
    uid_seed: Optional[Union[int, str]] = None,
    reference_image=None,
    series_instance_uid: Optional[str] = None,
    sop_instance_uid: Optional[str] = None,
) -> SegmentationReference:
    """The :class:`SegmentationReference` of the Segmentation :func:`build_segmentation` makes of the same input.

    Cheap (no pixel encoding), so a measurement report can be built beside the
    Segmentation. Same parameters as :func:`build_segmentation`; with
    ``uid_seed=None`` give the UIDs, and the same ones to both.
    """
    rank, shape = _slice_ranks(source_datasets, reference_image)
    selected = _selected_masks(masks, shape, include_empty)
    base_uid = str(source_datasets[0].SeriesInstanceUID)
    multiframe = len(source_datasets) == 1 and _is_multiframe(source_datasets[0])
    # highdicom omits a segment's empty frames, unless every frame of every segment is empty
    present = np.array([mask.any(axis=(1, 2)) for _, _, mask in selected])  # [segment, mask slice]
    if not present.any():
        present[:] = True
    segments = {}
    for number, ((side, structure, _), slices) in enumerate(zip(selected, present), start=1):
        frames = np.flatnonzero(slices[rank])  # source slices / frames (0-based) this segment covers
        if multiframe:
            ds = source_datasets[0]
            covered = {(str(ds.SOPClassUID), str(ds.SOPInstanceUID)): {int(f) + 1 for f in frames}}
        else:
            covered = {(str(source_datasets[f].SOPClassUID), str(source_datasets[f].SOPInstanceUID)): set()
                       for f in frames}
        segments[segment_label(side, structure)] = (number, _sorted_references(covered))
    return SegmentationReference(
        study_instance_uid=str(source_datasets[0].StudyInstanceUID),
        series_instance_uid=series_instance_uid or derive_uid(base_uid, uid_seed, "seg-series"),
        sop_instance_uid=sop_instance_uid or derive_uid(base_uid, uid_seed, "seg-instance"),
        source_series_uid=base_uid,
        segments=segments,
    )


def build_segmentation(
    masks: Mapping[str, Mapping[str, np.ndarray]],
    source_datasets: Sequence,
    *,
    series_number: int = 901,
    include_empty: bool = False,
    uid_seed: Optional[Union[int, str]] = None,
    content_datetime=None,
    series_description: str = "bmepipe segmentation (research use)",
    reference_image=None,
    series_instance_uid: Optional[str] = None,
    sop_instance_uid: Optional[str] = None,
):
    """Build a BINARY DICOM Segmentation of the masks on the source series.

    Parameters
    ----------
    masks : dict
        ``{side: {structure: bool ndarray [slice, row, column]}}`` on the grid of
        the source series: ``reference_image``'s grid if given, else slices
        ascending along the slice normal (row x column).
    source_datasets : sequence of pydicom.Dataset
        The fluid-sensitive series: one dataset per slice (classic MR) or one
        multi-frame dataset (enhanced / legacy converted enhanced MR).
    series_number : int
        SeriesNumber of the segmentation series.
    include_empty : bool
        Also encode empty masks as segments (default: non-empty ones only).
    uid_seed : int or str, optional
        Derive SeriesInstanceUID, SOPInstanceUID and the tracking/dimension UIDs
        from the source SeriesInstanceUID and this seed, and the content date
        from the source study, so the same input gives the same file. ``None``:
        fresh random UIDs.
    content_datetime : datetime or ISO 8601 str, optional
        ContentDate/ContentTime; default the source's StudyDate/StudyTime when
        ``uid_seed`` is given, else now.
    reference_image : SimpleITK.Image, optional
        The volume the masks were made on; each source slice is matched to its
        slice by position (safe for any slice order), and a source that does
        not lie on its grid is refused.
    series_instance_uid, sop_instance_uid : str, optional
        The new object's UIDs (default: derived from ``uid_seed``, or random);
        give the ones a :func:`plan_segmentation` was made with.

    Returns
    -------
    highdicom.seg.Segmentation
    """
    import highdicom as hd
    from pydicom.sr.codedict import codes

    rank, shape = _slice_ranks(source_datasets, reference_image)
    selected = _selected_masks(masks, shape, include_empty)
    first = source_datasets[0]
    base_uid = str(first.SeriesInstanceUID)
    algorithm = hd.AlgorithmIdentificationSequence(
        name="bmepipe", family=codes.DCM.MultispectralProcessing, version=__version__
    )
    descriptions = []
    for number, (side, structure, _) in enumerate(selected, start=1):
        code = structure_codes(structure)
        label = segment_label(side, structure)
        description = hd.seg.SegmentDescription(
            segment_number=number,
            segment_label=label,
            segmented_property_category=code["category"],
            segmented_property_type=code["type"],
            algorithm_type="AUTOMATIC",
            algorithm_identification=algorithm,
            tracking_uid=derive_uid(base_uid, uid_seed, "track", side, structure),
            tracking_id=label,
            anatomic_regions=[code["site"]],
            display_color=hd.color.CIELabColor.from_string(STRUCTURE_COLORS[structure]),
        )
        # Laterality goes inside the property type item, as the Segment Description Macro (PS3.3) defines.
        side_code = hd.sr.CodedConcept.from_code(laterality_code(side))
        description.SegmentedPropertyTypeCodeSequence[0].SegmentedPropertyTypeModifierCodeSequence = [side_code]
        descriptions.append(description)

    # Source slice (or frame) f holds mask slice rank[f], whatever order the datasets come in. Each segment
    # is one contiguous block (segment-major), handed over as a [frame, row, column, segment] view: copying
    # whole masks and reading one segment's frame is contiguous, where stacking on the last axis is not.
    pixels = np.empty((len(selected),) + shape, bool)
    for block, (_, _, mask) in zip(pixels, selected):
        np.take(mask, rank, axis=0, out=block)
    pixels = np.moveaxis(pixels, 0, -1)

    seg = hd.seg.Segmentation(
        source_images=list(source_datasets),
        pixel_array=pixels,
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=descriptions,
        series_instance_uid=series_instance_uid or derive_uid(base_uid, uid_seed, "seg-series"),
        series_number=int(series_number),
        sop_instance_uid=sop_instance_uid or derive_uid(base_uid, uid_seed, "seg-instance"),
        instance_number=1,
        manufacturer="bmepipe developers",
        manufacturer_model_name="bmepipe",
        software_versions=__version__,
        device_serial_number="none",
        content_label="BMEPIPE",
        content_description="Hip MRI regions and findings (research use only)",
    )
    seg.SeriesDescription = series_description
    seg.CodingSchemeIdentificationSequence = [coding_scheme_identification()]
    if uid_seed is not None or content_datetime is not None:
        seg.ContentDate, seg.ContentTime = dicom_datetime(first, content_datetime)
        fix_creation_times(seg, seg.ContentDate, seg.ContentTime)
    if uid_seed is not None:
        _fix_generated_uids(seg, base_uid, uid_seed)
    return seg


def fix_creation_times(ds, date: str, time: str) -> None:
    """Set every creation time highdicom takes from the clock to ``date``/``time``."""
    ds.SeriesDate, ds.SeriesTime = date, time
    ds.InstanceCreationDate, ds.InstanceCreationTime = date, time
    for item in ds.get("ContributingEquipmentSequence", []):
        if "ContributionDateTime" in item:
            item.ContributionDateTime = date + time


def _fix_generated_uids(seg, base_uid: str, seed) -> None:
    """Replace the UIDs highdicom draws at random with derived ones (reproducible output)."""
    dim_uid = derive_uid(base_uid, seed, "dimension-organization")
    for item in seg.get("DimensionOrganizationSequence", []):
        item.DimensionOrganizationUID = dim_uid
    for item in seg.get("DimensionIndexSequence", []):
        if "DimensionOrganizationUID" in item:
            item.DimensionOrganizationUID = dim_uid


def write_dicom_seg(segmentation, path: PathLike) -> Path:
    """Write a Segmentation (or any pydicom Dataset) atomically as a DICOM file."""
    from pydicom import dcmwrite

    try:
        with atomic_path(path) as tmp:
            dcmwrite(tmp, segmentation, enforce_file_format=True)
    except OSError as exc:
        raise OutputError(f"cannot write DICOM output ({exc.strerror or exc})", path) from exc
    return Path(path)
