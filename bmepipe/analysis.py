"""``bmepipe.analyze``: one study in, a structured report out.

The stages run in one direction, each taking the previous stage's typed value::

    load_study -> select_series -> normalize_study -> segment_hips
               -> quantify_hips -> assess_patterns -> report (JSON, HTML, NIfTI, DICOM SEG + SR)

Research use only: the result lays out measured evidence, it never makes a diagnosis.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Optional, Union

import numpy as np

from ._memory import use_one_heap
from ._threads import single_threaded_blas
from ._version import __version__
from .config import AnalysisConfig
from .privacy import pseudonym as make_pseudonym

if TYPE_CHECKING:  # pragma: no cover
    from .io import SeriesSelection, Study
    from .normalize import NormalizedStudy
    from .quantify import HipMeasurements
    from .segment import HipSegmentation

__all__ = ["AnalysisResult", "analyze", "build_report", "report_inputs", "STRUCTURES"]

log = logging.getLogger(__name__)

PathLike = Union[str, "os.PathLike[str]"]

SIDES = ("right", "left")
#: One binary label file per side and structure: OUT/labels/<side>_<structure>.nii.gz.
STRUCTURES = ("femoral_head", "femoral_neck", "intertrochanteric", "proximal_shaft", "acetabulum",
              "bme", "necrosis", "subchondral_line", "effusion")
_SEGMENT_STRUCTURES = STRUCTURES[:5]
_QUANTIFY_STRUCTURES = STRUCTURES[5:]


@dataclass
class AnalysisResult:
    """Everything one analysis produced.

    Attributes
    ----------
    report : dict
        The content of ``report.json`` (schema :data:`bmepipe.report.SCHEMA_VERSION`).
    masks : dict
        ``{side: {structure: bool ndarray [slice, row, column]}}`` on the fluid-sensitive grid.
    outputs : dict of str -> Path
        Files written (empty when no output folder was given).
    timings_s : dict
        Seconds per stage of this run.
    study, selection, normalized, segmentation, measurements, patterns
        The intermediate values of every stage, for exploration.
    """

    report: dict
    masks: dict
    outputs: dict = field(default_factory=dict)
    timings_s: dict = field(default_factory=dict)
    study: Any = None
    selection: Any = None
    normalized: Any = None
    segmentation: Any = None
    measurements: Any = None
    patterns: Any = None

    @property
    def sides(self) -> dict:
        """``report['sides']``: per side status, measurements and pattern."""
        return self.report["sides"]

    def to_dict(self) -> dict:
        """The report as a plain dict (a deep copy)."""
        import copy

        return copy.deepcopy(self.report)

    def to_frame(self):
        """One row per side with the key measurements (pandas DataFrame)."""
        from .report import report_to_frame

        return report_to_frame(self.report)

    def _repr_html_(self) -> str:
        from .report import report_repr_html

        return report_repr_html(self.report)

    def __repr__(self) -> str:
        parts = []
        for side in SIDES:
            s = self.report["sides"][side]
            if s["status"] == "analysed":
                bme = s["bme"]["volume_ml"]
                parts.append(f"{side}: {s['pattern']['label']} (score {s['pattern']['score']:.2f}, "
                             f"BME {bme if bme is not None else 'n/a'} ml)")
            else:
                parts.append(f"{side}: failed ({s['reason']})")
        return f"AnalysisResult({'; '.join(parts)}; research use only, not a diagnosis)"


@single_threaded_blas
def analyze(
    source: Union[PathLike, "Study"],
    out_dir: Optional[PathLike] = None,
    *,
    config: Optional[AnalysisConfig] = None,
    record_timings: bool = False,
    pseudonym: Optional[str] = None,
    **overrides: Any,
) -> AnalysisResult:
    """Run the whole pipeline on one study and (optionally) write its outputs.

    Parameters
    ----------
    source : path, list of paths, or bmepipe.io.Study
        A study folder (any layout), the study's files, or an already loaded study.
    out_dir : path, optional
        Output folder: ``report.json``, ``report.html``, ``labels/<side>_<structure>.nii.gz``,
        ``dicom/seg.dcm``, ``dicom/sr.dcm`` (each written atomically; report.json last).
    config : AnalysisConfig, optional
        Every parameter (see :mod:`bmepipe.config`); defaults if omitted.
    record_timings : bool
        Put the stage timings into report.json (they differ between runs, so by
        default the report is byte-identical for the same input and stays free of them).
    pseudonym : str, optional
        Study pseudonym for the report (the batch passes its salted one); default: an
        unsalted hash of the StudyInstanceUID.
    **overrides
        Top-level :class:`AnalysisConfig` fields, e.g. ``fluid="*stir*"``, ``sides=("left",)``.

    Returns
    -------
    AnalysisResult

    Raises
    ------
    bmepipe.errors.BmepipeError
        Unreadable input, no usable series, no overlap between series, invalid configuration.
    """
    from .io import load_study, select_series
    from .io.types import Study
    from .normalize import normalize_study
    from .patterns import assess_patterns, bilateral_comparison
    from .quantify import quantify_hips
    from .segment import segment_hips

    cfg = (config or AnalysisConfig()).updated(**overrides)
    use_one_heap()  # freed buffers serve the next stage's threads (bmepipe._memory)
    timings: dict[str, float] = {}

    def timed(name, func, *args, **kwargs):
        t0 = time.perf_counter()
        value = func(*args, **kwargs)
        timings[name] = round(time.perf_counter() - t0, 4)
        return value

    study = source if isinstance(source, Study) else timed("load", load_study, source)
    selection = timed("select", select_series, study, fluid=cfg.fluid, t1=cfg.t1)
    normalized = timed("normalize", normalize_study, selection, bias_method=cfg.bias_method, register=cfg.register)
    segmentation = timed("segment", segment_hips, normalized, subchondral_depth_mm=cfg.subchondral_depth_mm)
    t1_meta = selection.t1.meta if selection.t1 is not None else None
    measurements = timed("quantify", quantify_hips, normalized, segmentation, params=cfg.quantify,
                         fluid_protocol=selection.fluid_sensitive.meta, t1_protocol=t1_meta)
    assessments = timed("patterns", assess_patterns, measurements, normalized.quality, params=cfg.patterns)

    report = build_report(study, selection, normalized, segmentation, measurements, assessments,
                          bilateral_comparison(measurements, assessments), cfg, pseudonym=pseudonym)
    masks = collect_masks(segmentation, measurements, cfg.sides, _grid_shape(normalized))
    outputs: dict = {}
    if out_dir is not None:
        outputs = timed("write", write_analysis, out_dir, report, masks, selection, normalized, cfg,
                        timings if record_timings else None)
    if record_timings:
        report["timings_s"] = dict(timings)
    return AnalysisResult(report=report, masks=masks, outputs=outputs, timings_s=timings, study=study,
                          selection=selection, normalized=normalized, segmentation=segmentation,
                          measurements=measurements, patterns=assessments)


def _grid_shape(normalized: "NormalizedStudy") -> tuple[int, int, int]:
    return tuple(int(n) for n in normalized.fluid.GetSize()[::-1])


def collect_masks(segmentation: "HipSegmentation", measurements: "HipMeasurements", sides, shape) -> dict:
    """``{side: {structure: bool mask}}`` for every side and structure (empty where nothing was found)."""
    out: dict = {}
    for side in SIDES:
        seg = segmentation.sides.get(side)
        meas = measurements.sides.get(side)
        per: dict = {}
        for name in STRUCTURES:
            mask = None
            if side in sides:
                if name in _SEGMENT_STRUCTURES and seg is not None and seg.ok:
                    mask = seg.regions.get(name)
                elif name in _QUANTIFY_STRUCTURES and meas is not None and meas.ok:
                    mask = meas.masks.get(name)
            per[name] = np.zeros(shape, dtype=bool) if mask is None else np.asarray(mask, dtype=bool)
        out[side] = per
    return out


def _series_used(role: str, volume, reason: str) -> dict:
    m = volume.meta
    return {
        "role": role,
        "series_instance_uid": m.series_instance_uid,
        "series_number": m.series_number,
        "series_description": m.series_description or "",
        "sequence_kind": m.sequence_kind,
        "plane": m.plane,
        "reason": reason,
        "field_strength_t": m.field_strength_t,
        "repetition_time_ms": m.repetition_time_ms,
        "echo_time_ms": m.echo_time_ms,
        "inversion_time_ms": m.inversion_time_ms,
        "spacing_mm": [float(v) for v in volume.image.GetSpacing()],
        "size": [int(v) for v in volume.image.GetSize()],
        "manufacturer": m.manufacturer,
    }


def report_inputs(study: "Study", selection: "SeriesSelection", pseudonym_: Optional[str] = None) -> dict:
    """The ``inputs`` section of report.json: series used and why, series set aside, study pseudonym."""
    used = [_series_used("fluid_sensitive", selection.fluid_sensitive,
                         selection.reasons.get("fluid_sensitive", selection.fluid_sensitive.meta.sequence_reason))]
    if selection.t1 is not None:
        used.append(_series_used("t1", selection.t1, selection.reasons.get("t1", selection.t1.meta.sequence_reason)))
    chosen = {id(selection.fluid_sensitive), id(selection.t1)}
    # load_study already gives set-aside paths relative to the study folder.
    skipped = [{"path": s.path, "reason": s.reason, "kind": s.kind,
                "series_instance_uid": s.series_instance_uid} for s in study.skipped]
    for vol in study.volumes:
        if id(vol) not in chosen:
            skipped.append({"description": vol.meta.series_description or "(no description)",
                            "reason": f"not selected ({vol.meta.sequence_class}/{vol.meta.sequence_kind}, "
                                      f"{vol.meta.plane})",
                            "kind": "series", "series_instance_uid": vol.meta.series_instance_uid})
    if pseudonym_ is None:
        meta = selection.fluid_sensitive.meta
        pseudonym_ = make_pseudonym(meta.study_instance_uid or meta.series_instance_uid)
    return {"study": {"pseudonym": pseudonym_}, "series_used": used, "series_skipped": skipped}


def _qc(normalized: "NormalizedStudy") -> dict:
    flags = []
    for f in normalized.quality.flags:
        d = f.to_dict()
        flags.append({"name": d["name"], "value": d["value"], "threshold": d["threshold"],
                      "flagged": d["passed"] is False, "message": d["message"]})
    return {"flags": flags}


def _registration(normalized: "NormalizedStudy") -> Optional[dict]:
    if normalized.grid is None:
        return None
    g = normalized.grid.to_dict()
    return {"method": g["method"], "residual_mm": g["residual_mm"], "metric_value": g.get("metric")}


def _failed_side(template: dict, reason: str) -> dict:
    def nulls(obj):
        if isinstance(obj, dict):
            return {k: nulls(v) for k, v in obj.items()}
        return None

    side = nulls(template)
    side.update(status="failed", reason=reason)
    side["pattern"] = {"label": "indeterminate", "score": None, "confidence": None, "evidence": []}
    return side


def build_report(study, selection, normalized, segmentation, measurements, assessments, bilateral,
                 cfg: AnalysisConfig, *, pseudonym: Optional[str] = None) -> dict:
    """Assemble the report.json content from the stage results."""
    from .report import DISCLAIMER, SCHEMA_VERSION

    sides = {}
    for side in SIDES:
        meas = measurements.sides[side]
        entry = meas.to_dict()
        if side not in cfg.sides:
            entry = _failed_side(entry, f"not requested (sides: {', '.join(cfg.sides)})")
        elif not meas.ok:
            entry = _failed_side(entry, meas.reason or segmentation.sides[side].reason or "analysis failed")
        else:
            entry["pattern"] = assessments[side].to_dict()
        seg = segmentation.sides.get(side)
        warnings = (seg.extras or {}).get("warnings") if seg is not None and side in cfg.sides else None
        entry["warnings"] = [str(w) for w in warnings or []]
        sides[side] = entry
    return {
        "schema_version": SCHEMA_VERSION,
        "software": {"name": "bmepipe", "version": __version__},
        "created": None,
        "disclaimer": DISCLAIMER,
        "inputs": report_inputs(study, selection, pseudonym),
        "qc": _qc(normalized),
        "parameters": cfg.to_dict(),
        "registration": _registration(normalized),
        "sides": sides,
        "bilateral": bilateral,
        "timings_s": None,
    }


def write_analysis(out_dir: PathLike, report: dict, masks: dict, selection, normalized, cfg: AnalysisConfig,
                   timings: Optional[dict] = None) -> dict:
    """Write the output folder (report.json last, each file atomically)."""
    import SimpleITK as sitk

    from .report import read_source_datasets, write_outputs

    if timings is not None:
        report = dict(report, timings_s=dict(timings))
    dicom = "dicom" in cfg.formats
    sources = read_source_datasets(selection.fluid_sensitive.meta.source_files) if dicom else []
    t1 = None if normalized.t1 is None else sitk.GetArrayFromImage(normalized.t1)
    return write_outputs(out_dir, report, masks, selection.fluid_sensitive.image, sources, t1_zyx=t1,
                         uid_seed=cfg.uid_seed, dicom=dicom, html="html" in cfg.formats,
                         labels="nifti" in cfg.formats)
