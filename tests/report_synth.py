"""Synthetic inputs for the report tests: a complete report dict and a small classic MR series."""

from __future__ import annotations

import copy

import numpy as np

from bmepipe.report import SCHEMA_VERSION

REGIONS = ("femoral_head", "femoral_neck", "intertrochanteric", "proximal_shaft", "acetabulum")


def _side(sign: float, label: str, bme_ml: float) -> dict:
    return {
        "status": "analysed",
        "reason": None,
        "femoral_head": {"center_lps_mm": [sign * 90.5, 12.25, -3.0], "radius_mm": 24.5},
        "regions": {r: {"volume_ml": v} for r, v in zip(REGIONS, (61.2, 21.3, 84.4, 40.5, 95.6))},
        "bme": {
            "present": bme_ml > 0,
            "volume_ml": bme_ml,
            "fraction": {"femoral_head": 0.31, "femoral_neck": 0.22, "intertrochanteric": 0.05,
                         "proximal_shaft": 0.0, "acetabulum": None},
            "mean_intensity": 3.2,
            "peak_intensity": 5.7,
            "distribution": {"pattern": "diffuse", "medial_sparing": True, "homogeneity_cv": 0.18},
        },
        "avn": {"present": False, "necrotic_extent_pct": 0.0, "collapse_mm": 0.0, "jic_type": None,
                "kerboul_angle_deg": None, "double_line": False, "arco_extent_group": None,
                "arco_stage_hint": None},
        "sif": {"present": True, "line_length_mm": 8.4, "line_thickness_mm": 1.5,
                "line_exceeds_vande_berg": False},
        "effusion_ml": 3.3,
        "pattern": {
            "label": label,
            "score": 0.71,
            "confidence": "moderate",
            "follow_up_advised": True,
            "evidence": [
                {"feature": "bme.fraction.femoral_neck", "value": 0.22, "unit": "1", "threshold": 0.1,
                 "direction": ">", "favours": "toh_like", "source": "Radiopaedia TOH; clinical.md 3"},
                {"feature": "sif.line_length_mm", "value": 8.4, "unit": "mm", "threshold": 12.5,
                 "direction": "<=", "favours": "toh_like",
                 "source": "Vande Berg et al. Radiology 1999 [approx]"},
            ],
        },
    }


def _nulls(obj):
    """The same structure with every leaf value null (what a failed side reports)."""
    if isinstance(obj, dict):
        return {k: _nulls(v) if isinstance(v, dict) else None for k, v in obj.items()}
    return None


def make_report() -> dict:
    """A report with every contract field (right TOH-like with BME, left failed)."""
    left = _nulls(_side(1.0, "indeterminate", 0.0))
    left.update(status="failed", reason="no femoral head inside the field of view")
    left["pattern"].update(label="indeterminate", evidence=[])
    return copy.deepcopy({
        "schema_version": SCHEMA_VERSION,
        "software": {"name": "bmepipe", "version": "0.1.0"},
        "created": None,
        "disclaimer": "Research use only; not a diagnosis.",
        "inputs": {
            "study": {"pseudonym": "S3f2a9c01bd", "patient_sex": "M", "patient_age_years": 45},
            "series_used": [
                {"role": "fluid_sensitive", "series_instance_uid": "1.2.3.4.5", "series_number": 3,
                 "series_description": "t2_tirm_cor", "sequence_kind": "stir", "plane": "coronal",
                 "reason": "STIR: ScanningSequence IR, TI 150 ms", "field_strength_t": 1.5,
                 "repetition_time_ms": 4000.0, "echo_time_ms": 40.0, "inversion_time_ms": 150.0},
                {"role": "t1", "series_instance_uid": "1.2.3.4.6", "series_description": "t1_tse_cor",
                 "sequence_kind": "t1", "plane": "coronal", "reason": "T1 TSE, TR 600 ms",
                 "field_strength_t": 1.5, "repetition_time_ms": 600.0, "echo_time_ms": 12.0,
                 "inversion_time_ms": None},
            ],
            "series_skipped": [{"path": "series_1", "reason": "localizer", "kind": "series"}],
        },
        "qc": {"flags": [
            {"name": "fat_suppression", "value": 0.42, "threshold": 0.6, "flagged": False,
             "message": "subcutaneous fat suppressed"},
            {"name": "motion", "value": 0.3, "threshold": 0.2, "flagged": True, "message": "possible motion"},
        ]},
        "parameters": {"quantify": {"bme_threshold_sd": 3.0}, "patterns": {"vande_berg_length_mm": 12.5}},
        "registration": {"method": "rigid mutual information", "residual_mm": 0.8},
        "sides": {"right": _side(-1.0, "toh_like", 12.5), "left": left},
        "bilateral": {"bme_both_sides": False, "bme_volume_difference_ml": 12.5, "bme_asymmetry_index": 1.0,
                      "labels": {"right": "toh_like", "left": "indeterminate"}, "note": None},
        "timings_s": None,
    })


def write_series(out_dir, shape=(12, 40, 48), spacing=(4.0, 2.0, 1.5), seed=0, rotate_deg=7.0):
    """Write a small coronal STIR series (slightly rotated about z) with the phantom writer.

    ``shape`` is (slices, rows, columns), ``spacing`` (slice, row, column) in mm.
    Returns (paths in slice order, signal array).
    """
    from bmepipe.phantom.dicom_writer import Geometry, SeriesProtocol, StudyInfo, write_mr_series

    a = np.deg2rad(rotate_deg)
    row_dir = (np.cos(a), np.sin(a), 0.0)  # mostly +x (patient left)
    col_dir = (0.0, 0.0, -1.0)  # feet
    geometry = Geometry.from_orientation(shape[::-1], spacing[::-1], (-100.0, -20.0, 60.0), row_dir, col_dir)
    rng = np.random.default_rng(seed)
    signal = rng.uniform(50.0, 150.0, size=shape)
    protocol = SeriesProtocol(kind="stir", vendor="siemens", field_strength_t=1.5, repetition_time_ms=4000.0,
                              echo_time_ms=40.0, inversion_time_ms=150.0, flip_angle_deg=150.0,
                              echo_train_length=12, slice_thickness_mm=3.5, series_number=3)
    paths = write_mr_series(signal, geometry, protocol, StudyInfo.from_seed(seed), out_dir, file_names="dcm")
    return paths, signal
