"""Notebook helpers: one row per hip as a pandas DataFrame, and a compact HTML card.

``AnalysisResult.to_frame()`` / ``_repr_html_`` call these; they work on any
report dict (e.g. one read back from ``report.json``).
"""

from __future__ import annotations

from html import escape
from typing import Mapping

from .html import LABEL_NAMES, format_value
from .schema import DISCLAIMER, REGIONS, SIDES, lookup

__all__ = ["FRAME_COLUMNS", "report_to_frame", "report_repr_html"]

#: (column, path in sides.<side>) of report_to_frame, after "study" and "side".
FRAME_COLUMNS = (
    [("status", "status"), ("reason", "reason"),
     ("pattern_label", "pattern.label"), ("pattern_score", "pattern.score"),
     ("pattern_confidence", "pattern.confidence"),
     ("head_radius_mm", "femoral_head.radius_mm")]
    + [(f"{r}_volume_ml", f"regions.{r}.volume_ml") for r in REGIONS]
    + [("bme_present", "bme.present"), ("bme_volume_ml", "bme.volume_ml")]
    + [(f"bme_fraction_{r}", f"bme.fraction.{r}") for r in REGIONS]
    + [("bme_mean_intensity", "bme.mean_intensity"), ("bme_peak_intensity", "bme.peak_intensity"),
       ("avn_present", "avn.present"), ("necrotic_extent_pct", "avn.necrotic_extent_pct"),
       ("collapse_mm", "avn.collapse_mm"), ("jic_type", "avn.jic_type"),
       ("kerboul_angle_deg", "avn.kerboul_angle_deg"), ("double_line", "avn.double_line"),
       ("arco_extent_group", "avn.arco_extent_group"), ("arco_stage_hint", "avn.arco_stage_hint"),
       ("sif_present", "sif.present"), ("line_length_mm", "sif.line_length_mm"),
       ("line_thickness_mm", "sif.line_thickness_mm"),
       ("line_exceeds_vande_berg", "sif.line_exceeds_vande_berg"), ("effusion_ml", "effusion_ml")]
)


def report_to_frame(report: Mapping):
    """One row per hip with the key measurements flattened.

    Columns: ``study``, ``side``, then :data:`FRAME_COLUMNS` (null -> NaN/None).
    Concatenate frames of many reports for a cohort table.

    Returns
    -------
    pandas.DataFrame
    """
    import pandas as pd

    study = lookup(report, "inputs.study.pseudonym")
    rows = []
    for side in SIDES:
        side_report = lookup(report, f"sides.{side}")
        if side_report is None:
            continue
        row = {"study": study, "side": side}
        row.update({column: lookup(side_report, path) for column, path in FRAME_COLUMNS})
        rows.append(row)
    columns = ["study", "side"] + [c for c, _ in FRAME_COLUMNS]
    return pd.DataFrame(rows, columns=columns)


def report_repr_html(report: Mapping) -> str:
    """A compact HTML card: pattern and key numbers per hip, QC flags, disclaimer (for ``_repr_html_``)."""
    items = [
        ("pattern", lambda s: LABEL_NAMES.get(lookup(s, "pattern.label"), "n/a")),
        ("score / confidence", lambda s: f"{format_value(lookup(s, 'pattern.score'), None, 2)} / "
                                          f"{format_value(lookup(s, 'pattern.confidence'))}"),
        ("BME volume", lambda s: format_value(lookup(s, "bme.volume_ml"), "ml", 2)),
        ("BME fraction head / neck / intertroch.", lambda s: " / ".join(
            format_value(None if v is None else 100 * v, "%", 0)
            for v in (lookup(s, f"bme.fraction.{r}") for r in REGIONS[:3]))),
        ("necrotic extent", lambda s: format_value(lookup(s, "avn.necrotic_extent_pct"), "%")),
        ("collapse", lambda s: format_value(lookup(s, "avn.collapse_mm"), "mm")),
        ("subchondral line", lambda s: f"{format_value(lookup(s, 'sif.line_length_mm'), 'mm')} long, "
                                        f"{format_value(lookup(s, 'sif.line_thickness_mm'), 'mm')} thick"),
        ("effusion", lambda s: format_value(lookup(s, "effusion_ml"), "ml")),
    ]
    sides = [(side, lookup(report, f"sides.{side}")) for side in SIDES if lookup(report, f"sides.{side}") is not None]
    head = "".join(f"<th>{escape(side)}</th>" for side, _ in sides)
    body = []
    for name, fn in items:
        cells = "".join(
            f"<td>{escape(fn(s) if s.get('status') == 'analysed' else 'failed: ' + str(s.get('reason')))}</td>"
            for _, s in sides
        )
        body.append(f"<tr><th style='text-align:left'>{escape(name)}</th>{cells}</tr>")
    flags = [f for f in lookup(report, "qc.flags") or [] if f.get("flagged")]
    flag_text = ", ".join(escape(str(f.get("name"))) for f in flags) or "none"
    study = escape(str(lookup(report, "inputs.study.pseudonym") or "n/a"))
    return (
        f"<div class='bmepipe-report'><strong>bmepipe report</strong> study {study}"
        f"<table><thead><tr><th></th>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"
        f"<div>QC flags raised: {flag_text}</div>"
        f"<div style='font-size:smaller;color:#8a6d00'>{escape(DISCLAIMER)}</div></div>"
    )
