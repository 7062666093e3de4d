"""DICOM SR measurement report (TID 1500, Comprehensive 3D SR) of the per-side measurements.

Per analysed side, one measurement group per finding, tracked as
``"<side> <structure>"`` (the SEG segment label); when a Segmentation is given,
each group that has a segment is a volumetric ROI group referencing it (TID
1411), else a plain measurement group (TID 1501) with finding sites.

=====================  =============================================  ======
group                  measurements (report field)                    unit
=====================  =============================================  ======
<region> (5 regions)   SCT Volume (regions.<r>.volume_ml),            mL
                       99BMEPIPE BMEFRAC (bme.fraction.<r>)           1
femoral_head           + SCT Radius (femoral_head.radius_mm),         mm
                       99BMEPIPE COLLAPSE (avn.collapse_mm)           mm
bme                    SCT Volume (bme.volume_ml)                     mL
necrosis               99BMEPIPE NECEXT (avn.necrotic_extent_pct),    %
                       99BMEPIPE KERBOUL (avn.kerboul_angle_deg)      deg
subchondral_line       SCT Length (sif.line_length_mm),               mm
                       SCT Width (sif.line_thickness_mm)              mm
effusion               SCT Volume (effusion_ml)                       mL
pattern                99BMEPIPE PATSCORE (pattern.score),            1
                       qualitative 99BMEPIPE PATTERN = label
=====================  =============================================  ======

Values that are ``null`` are left out; failed sides are left out.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping, Optional, Sequence, Union

from bmepipe._version import __version__
from bmepipe.errors import OutputError

from .codes import (
    coding_scheme_identification,
    derive_uid,
    dicom_datetime,
    laterality_code,
    local_code,
    structure_codes,
    ucum,
)
from .schema import REGIONS, SIDES, lookup
from .seg import SegmentationReference, fix_creation_times, segment_label, write_dicom_seg

__all__ = ["build_measurement_report", "write_dicom_sr", "measurement_rows"]

PathLike = Union[str, "os.PathLike[str]"]


def measurement_rows(side_report: Mapping) -> list[tuple[str, str, str, float]]:
    """``(structure, concept, unit, value)`` of every non-null measurement of one side.

    ``concept`` is ``"SCT:<code>"`` or ``"99BMEPIPE:<code>"``; the order is the SR's.
    """
    rows = []

    def add(structure, concept, unit, field):
        value = lookup(side_report, field)
        if value is not None:
            rows.append((structure, concept, unit, float(value)))

    for region in REGIONS:
        add(region, "SCT:118565006", "mL", f"regions.{region}.volume_ml")
        add(region, "99BMEPIPE:BMEFRAC", "1", f"bme.fraction.{region}")
        if region == "femoral_head":
            add(region, "SCT:131190003", "mm", "femoral_head.radius_mm")
            add(region, "99BMEPIPE:COLLAPSE", "mm", "avn.collapse_mm")
    add("bme", "SCT:118565006", "mL", "bme.volume_ml")
    add("necrosis", "99BMEPIPE:NECEXT", "%", "avn.necrotic_extent_pct")
    add("necrosis", "99BMEPIPE:KERBOUL", "deg", "avn.kerboul_angle_deg")
    add("subchondral_line", "SCT:410668003", "mm", "sif.line_length_mm")
    add("subchondral_line", "SCT:103355008", "mm", "sif.line_thickness_mm")
    add("effusion", "SCT:118565006", "mL", "effusion_ml")
    add("pattern", "99BMEPIPE:PATSCORE", "1", "pattern.score")
    return rows


def _concept(name: str):
    from highdicom.sr import CodedConcept
    from pydicom.sr.codedict import codes

    scheme, value = name.split(":")
    if scheme == "99BMEPIPE":
        return local_code(value)
    by_value = {"118565006": codes.SCT.Volume, "131190003": codes.SCT.Radius,
                "410668003": codes.SCT.Length, "103355008": codes.SCT.Width}
    return CodedConcept.from_code(by_value[value])


def _referenced_segment(reference: SegmentationReference, label: str):
    """TID 1411 reference to one segment and the source images (or frames) it covers."""
    import highdicom as hd

    number, sources = reference.segments[label]
    images = [hd.sr.SourceImageForSegmentation(cls, uid, None if frames is None else list(frames))
              for cls, uid, frames in sources]
    return hd.sr.ReferencedSegment(reference.sop_class_uid, reference.sop_instance_uid, number,
                                   source_images=images or None,
                                   source_series=None if images else hd.sr.SourceSeriesForSegmentation(
                                       reference.source_series_uid))


def build_measurement_report(
    measurements: Mapping[str, Mapping],
    source_datasets: Sequence,
    segmentation=None,
    *,
    series_number: int = 902,
    uid_seed: Optional[Union[int, str]] = None,
    content_datetime=None,
    series_description: str = "bmepipe measurements (research use)",
):
    """Build a TID 1500 measurement report of both hips.

    Parameters
    ----------
    measurements : dict
        The ``sides`` part of the report: ``{"right": {...}, "left": {...}}``
        with the contract field names (``regions.<r>.volume_ml``, ``bme.volume_ml``, ...).
    source_datasets : sequence of pydicom.Dataset
        The fluid-sensitive series the measurements were made on (evidence).
    segmentation : highdicom.seg.Segmentation or SegmentationReference, optional
        The SEG from :func:`bmepipe.report.build_segmentation`, or its
        :func:`bmepipe.report.plan_segmentation` (the same report, without
        waiting for the SEG); groups whose structure has a segment reference
        it and the source images that segment covers.
    uid_seed, content_datetime
        As for :func:`bmepipe.report.build_segmentation` (reproducible output).

    Returns
    -------
    highdicom.sr.Comprehensive3DSR
    """
    import highdicom as hd
    from pydicom.sr.codedict import codes

    if not source_datasets:
        raise OutputError("no source datasets for the measurement report")
    unknown = set(measurements) - set(SIDES)
    if unknown:
        raise OutputError(f"unknown side(s) {sorted(unknown)}; expected {SIDES}")
    first = source_datasets[0]
    base_uid = str(first.SeriesInstanceUID)
    if segmentation is not None and not isinstance(segmentation, SegmentationReference):
        segmentation = SegmentationReference.from_segmentation(segmentation)
    segments = segmentation.segments if segmentation is not None else {}
    algorithm = hd.sr.AlgorithmIdentification(name="bmepipe", version=__version__)

    groups = []
    for side in SIDES:
        side_report = measurements.get(side)
        if not side_report or side_report.get("status") != "analysed":
            continue
        by_structure: dict[str, list] = {"pattern": []}  # the pattern label is reported even without a score
        for structure, concept, unit, value in measurement_rows(side_report):
            by_structure.setdefault(structure, []).append(
                hd.sr.Measurement(name=_concept(concept), value=value, unit=ucum(unit))
            )
        for structure, items in by_structure.items():
            label = segment_label(side, structure)
            tracking = hd.sr.TrackingIdentifier(uid=derive_uid(base_uid, uid_seed, "sr-track", side, structure),
                                                identifier=label)
            if structure == "pattern":
                pattern_label = str(side_report["pattern"]["label"])
                groups.append(hd.sr.MeasurementsAndQualitativeEvaluations(
                    tracking_identifier=tracking,
                    finding_type=local_code("PATTERN"),
                    algorithm_id=algorithm,
                    finding_sites=[hd.sr.FindingSite(codes.SCT.HipJoint, laterality=laterality_code(side))],
                    measurements=items or None,
                    qualitative_evaluations=[hd.sr.QualitativeEvaluation(
                        local_code("PATTERN"), local_code(pattern_label.upper()))],
                ))
                continue
            code = structure_codes(structure)
            common = dict(
                tracking_identifier=tracking,
                finding_type=code["type"],
                algorithm_id=algorithm,
                finding_sites=[hd.sr.FindingSite(code["site"], laterality=laterality_code(side))],
                measurements=items,
            )
            if label in segments:
                groups.append(hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations(
                    referenced_segment=_referenced_segment(segmentation, label), **common))
            else:
                groups.append(hd.sr.MeasurementsAndQualitativeEvaluations(**common))

    device = hd.sr.DeviceObserverIdentifyingAttributes(
        uid=derive_uid(base_uid, uid_seed, "device"), name="bmepipe",
        manufacturer_name="bmepipe developers", model_name=f"bmepipe {__version__}",
    )
    context = hd.sr.ObservationContext(
        observer_device_context=hd.sr.ObserverContext(observer_type=codes.DCM.Device,
                                                      observer_identifying_attributes=device)
    )
    report = hd.sr.MeasurementReport(
        observation_context=context,
        procedure_reported=codes.LN.MRIUnspecifiedBodyRegion,
        imaging_measurements=groups or None,
    )
    evidence = list(source_datasets) + ([segmentation.evidence()] if segmentation is not None else [])
    sr = hd.sr.Comprehensive3DSR(
        evidence=evidence,
        content=report[0],
        series_instance_uid=derive_uid(base_uid, uid_seed, "sr-series"),
        series_number=int(series_number),
        sop_instance_uid=derive_uid(base_uid, uid_seed, "sr-instance"),
        instance_number=1,
        manufacturer="bmepipe developers",
        is_complete=True,
        is_final=False,
    )
    sr.SeriesDescription = series_description
    sr.CodingSchemeIdentificationSequence = [coding_scheme_identification()]
    if uid_seed is not None or content_datetime is not None:
        sr.ContentDate, sr.ContentTime = dicom_datetime(first, content_datetime)
        fix_creation_times(sr, sr.ContentDate, sr.ContentTime)
    return sr


def write_dicom_sr(sr, path: PathLike) -> Path:
    """Write a Structured Report atomically as a DICOM file."""
    return write_dicom_seg(sr, path)
