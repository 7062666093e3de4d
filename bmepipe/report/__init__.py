"""Report stage: ``report.json`` (versioned JSON Schema), NIfTI label maps, DICOM SEG and SR, HTML.

Output layout of one analysis (stable; users' scripts and the cohort tools read it)::

    OUT/report.json                         validated against schemas/report-<version>.json
    OUT/report.html                         self-contained page (opens offline)
    OUT/labels/<side>_<structure>.nii.gz    one binary mask per side and structure
    OUT/dicom/seg.dcm, OUT/dicom/sr.dcm     DICOM Segmentation and TID 1500 measurement report

:func:`write_outputs` writes them all (report.json last).

Heavy libraries (highdicom, matplotlib, pandas, jsonschema) are imported inside
the functions that need them, so ``import bmepipe.report`` stays cheap.
"""

from .bundle import OUTPUT_FILES, read_source_datasets, write_outputs
from .codes import STRUCTURE_COLORS
from .figures import Figure, overlay_figures
from .html import render_html
from .json_report import dumps_report, read_report_json, write_report_json
from .labels import label_path, write_label_maps
from .notebook import report_repr_html, report_to_frame
from .schema import (
    DISCLAIMER,
    PATTERN_LABELS,
    REGIONS,
    SCHEMA_VERSION,
    SIDES,
    STRUCTURES,
    load_schema,
    to_jsonable,
    validate_report,
)
from .seg import SegmentationReference, build_segmentation, plan_segmentation, write_dicom_seg
from .sr import build_measurement_report, write_dicom_sr

__all__ = [
    "DISCLAIMER",
    "OUTPUT_FILES",
    "PATTERN_LABELS",
    "REGIONS",
    "SCHEMA_VERSION",
    "SIDES",
    "STRUCTURES",
    "STRUCTURE_COLORS",
    "Figure",
    "SegmentationReference",
    "build_measurement_report",
    "build_segmentation",
    "dumps_report",
    "label_path",
    "load_schema",
    "overlay_figures",
    "plan_segmentation",
    "read_report_json",
    "read_source_datasets",
    "render_html",
    "report_repr_html",
    "report_to_frame",
    "to_jsonable",
    "validate_report",
    "write_dicom_seg",
    "write_dicom_sr",
    "write_label_maps",
    "write_outputs",
    "write_report_json",
]
