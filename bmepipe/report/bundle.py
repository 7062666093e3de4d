"""Write every output of one analysis into its folder, in the stable layout.

``report.json`` is written last, so its presence means the folder is complete.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Mapping, Optional, Sequence, Union

import numpy as np

from bmepipe.errors import DicomReadError, OutputError
from bmepipe.io.atomic import atomic_write_text

from .figures import overlay_figures
from .html import render_html
from .json_report import dumps_report, write_report_json
from .labels import write_label_maps
from .schema import SIDES, STRUCTURES, to_jsonable, validate_report
from .seg import build_segmentation, write_dicom_seg
from .sr import build_measurement_report, write_dicom_sr

__all__ = ["OUTPUT_FILES", "read_source_datasets", "write_outputs"]

PathLike = Union[str, "os.PathLike[str]"]

#: Files besides the label maps, relative to the output folder.
OUTPUT_FILES = {"report_json": "report.json", "report_html": "report.html",
                "dicom_seg": "dicom/seg.dcm", "dicom_sr": "dicom/sr.dcm"}


def read_source_datasets(source_files: Sequence[PathLike]) -> list:
    """Read the source series for SEG/SR (``VolumeMeta.source_files``; a repeated multi-frame file is read once)."""
    from pydicom import dcmread
    from pydicom.errors import InvalidDicomError

    datasets, seen = [], set()
    for path in source_files:
        if os.fspath(path) in seen:
            continue
        seen.add(os.fspath(path))
        try:
            datasets.append(dcmread(path))
        except (InvalidDicomError, OSError, ValueError) as exc:
            raise DicomReadError(f"cannot re-read the source image ({type(exc).__name__})", path) from exc
    return datasets


def write_outputs(
    out_dir: PathLike,
    report: Mapping,
    masks: Mapping[str, Mapping[str, np.ndarray]],
    reference_image,
    source_datasets: Sequence,
    *,
    t1_zyx: Optional[np.ndarray] = None,
    uid_seed: Optional[int] = 0,
    dicom: bool = True,
    html: bool = True,
    labels: bool = True,
) -> dict[str, Path]:
    """Write report.json, report.html, the label maps, the DICOM SEG and SR of one analysis.

    Parameters
    ----------
    out_dir : path
        Output folder (created).
    report : dict
        The report (schema :data:`bmepipe.report.SCHEMA_VERSION`); ``outputs`` is filled in here.
    masks : dict
        ``{side: {structure: bool ndarray [slice, row, column]}}`` on the fluid-sensitive grid.
    reference_image : SimpleITK.Image
        The fluid-sensitive series (geometry of the label maps, background of the figures).
    source_datasets : sequence of pydicom.Dataset
        That series' DICOM datasets (see :func:`read_source_datasets`).
    t1_zyx : ndarray, optional
        T1 volume registered onto the fluid-sensitive grid, shown beside it in the figures.
    uid_seed : int or None
        DICOM UIDs derived from the source series, this seed and the report
        content (same input and parameters, same files; different parameters,
        different UIDs). ``None``: random UIDs and the current time.
    dicom, html, labels : bool
        Write the DICOM objects / the HTML page / the NIfTI label maps.

    Returns
    -------
    dict of str -> Path
        Every file written: the keys of :data:`OUTPUT_FILES` and ``labels/<side>_<structure>``.
    """
    import SimpleITK as sitk

    out = Path(out_dir)
    report = to_jsonable(report)
    outputs = {f"labels/{s}_{t}": f"labels/{s}_{t}.nii.gz" for s in SIDES for t in STRUCTURES} if labels else {}
    skipped = ({"dicom_seg", "dicom_sr"} if not dicom else set()) | ({"report_html"} if not html else set())
    outputs.update({k: v for k, v in OUTPUT_FILES.items() if k not in skipped})
    report["outputs"] = dict(sorted(outputs.items()))
    validate_report(report, out / OUTPUT_FILES["report_json"])  # refuse before writing anything

    written = {}
    if labels:
        written = {f"labels/{key}": path for key, path in write_label_maps(masks, reference_image, out).items()}
    if dicom:
        seed = None
        if uid_seed is not None:  # the report's content joins the seed: other parameters, other UIDs
            seed = f"{uid_seed}:{hashlib.sha256(dumps_report(report).encode()).hexdigest()[:16]}"
        any_mask = any(np.any(m) for per_side in masks.values() for m in per_side.values() if m is not None)
        options = dict(uid_seed=seed, content_datetime=report.get("created"))
        seg = build_segmentation(masks, source_datasets, include_empty=not any_mask,
                                 reference_image=reference_image, **options)
        written["dicom_seg"] = write_dicom_seg(seg, out / OUTPUT_FILES["dicom_seg"])
        sr = build_measurement_report(report["sides"], source_datasets, seg, **options)
        written["dicom_sr"] = write_dicom_sr(sr, out / OUTPUT_FILES["dicom_sr"])
    if html:
        fluid = sitk.GetArrayFromImage(reference_image)
        spacing = reference_image.GetSpacing()[::-1]
        figures = overlay_figures(fluid, t1_zyx, masks, spacing, direction=reference_image.GetDirection())
        path = out / OUTPUT_FILES["report_html"]
        try:
            written["report_html"] = atomic_write_text(path, render_html(report, figures))
        except OSError as exc:
            raise OutputError(f"cannot write the HTML report ({exc.strerror or exc})", path) from exc
    written["report_json"] = write_report_json(report, out / OUTPUT_FILES["report_json"])
    return written
