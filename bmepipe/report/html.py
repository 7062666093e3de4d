"""``report.html``: one self-contained page (inline CSS, figures as base64 PNG, no external URLs).

Order: title and research-use disclaimer; inputs and QC flags; one card per
hip (pattern label, score, confidence, key numbers, evidence table); the
coronal overlay figures; the right-left comparison; every parameter in force.
"""

from __future__ import annotations

import json
from html import escape
from typing import Any, Iterable, Mapping, Sequence

from .figures import Figure
from .schema import DISCLAIMER, REGIONS, SIDES, lookup

__all__ = ["render_html", "LABEL_NAMES", "format_value", "key_numbers"]

LABEL_NAMES = {
    "toh_like": "TOH-like",
    "avn_like": "AVN-like",
    "sif_like": "SIF-like",
    "normal": "normal",
    "indeterminate": "indeterminate",
}
_LABEL_COLORS = {"toh_like": "#1f77b4", "avn_like": "#b0339b", "sif_like": "#d62728", "normal": "#2ca02c",
                 "indeterminate": "#7f7f7f"}

_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Helvetica,Arial,sans-serif;margin:0 auto;max-width:1200px;
padding:16px 24px;color:#1b1b1b;background:#fff;font-size:14px;line-height:1.4}
h1{font-size:22px;margin:4px 0}h2{font-size:18px;margin:18px 0 8px}h3{font-size:15px;margin:10px 0 6px}
.disclaimer{background:#fff3cd;border:1px solid #e0c060;padding:8px 12px;border-radius:4px}
.meta{color:#555}table{border-collapse:collapse;margin:4px 0 10px}
th,td{border:1px solid #ccc;padding:3px 7px;text-align:left;vertical-align:top}th{background:#f2f2f2}
td.num{text-align:right;font-variant-numeric:tabular-nums}
tr.flagged td{background:#fde2e1}
.cards{display:grid;grid-template-columns:repeat(auto-fit,minmax(460px,1fr));gap:14px}
.card{border:1px solid #bbb;border-radius:6px;padding:10px 14px;min-width:0}
.card table{width:100%;table-layout:fixed;overflow-wrap:anywhere;font-size:12.5px}
.badge{display:inline-block;color:#fff;border-radius:4px;padding:2px 10px;font-weight:bold;font-size:16px}
.failed{color:#a00;font-weight:bold}
.warning{color:#8a5a00;font-weight:bold}
figure{margin:10px 0 18px}figure img{max-width:100%;height:auto;border:1px solid #ddd;display:block}
figcaption{color:#444;font-size:12px}pre{background:#f7f7f7;padding:8px;overflow:auto;font-size:12px}
"""


def format_value(value: Any, unit: str | None = None, digits: int = 1) -> str:
    """Display text of a report value: ``"n/a"`` for null, yes/no for booleans, rounded numbers.

    ``digits`` decimals for floats; negative: up to 3 decimals without trailing zeros.
    """
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float) and digits < 0:  # shortest: up to 3 decimals, no trailing zeros
        text = f"{value:.3f}".rstrip("0").rstrip(".")
    elif isinstance(value, (int, float)):
        text = f"{value:.{digits}f}" if isinstance(value, float) else str(value)
    elif isinstance(value, (list, tuple)):
        text = "(" + ", ".join(format_value(v, None, digits) for v in value) + ")"
    else:
        text = str(value)
    return f"{text} {unit}" if unit else text


def key_numbers(side: Mapping) -> list[tuple[str, str]]:
    """(name, display value) of one hip's key measurements, in reading order."""
    g = lambda *keys: lookup(side, ".".join(keys))  # noqa: E731
    rows = [
        ("femoral head radius", format_value(g("femoral_head", "radius_mm"), "mm")),
        ("femoral head centre (LPS)", format_value(g("femoral_head", "center_lps_mm"), "mm")),
    ]
    rows += [(f"{r.replace('_', ' ')} volume", format_value(g("regions", r, "volume_ml"), "ml")) for r in REGIONS]
    rows += [
        ("BME present", format_value(g("bme", "present"))),
        ("BME volume", format_value(g("bme", "volume_ml"), "ml", 2)),
    ]
    for r in ("femoral_head", "femoral_neck", "intertrochanteric"):
        fraction = g("bme", "fraction", r)
        rows.append((f"BME fraction of {r.replace('_', ' ')}",
                     format_value(None if fraction is None else 100.0 * fraction, "%")))
    rows += [
        ("necrotic segment present", format_value(g("avn", "present"))),
        ("necrotic extent", format_value(g("avn", "necrotic_extent_pct"), "% of head")),
        ("collapse depth", format_value(g("avn", "collapse_mm"), "mm")),
        ("JIC type", format_value(g("avn", "jic_type"))),
        ("Kerboul combined angle", format_value(g("avn", "kerboul_angle_deg"), "deg", 0)),
        ("double-line sign", format_value(g("avn", "double_line"))),
        ("ARCO extent group / stage hint",
         f"{format_value(g('avn', 'arco_extent_group'))} / {format_value(g('avn', 'arco_stage_hint'))}"),
        ("subchondral line present", format_value(g("sif", "present"))),
        ("subchondral line length", format_value(g("sif", "line_length_mm"), "mm")),
        ("subchondral line thickness", format_value(g("sif", "line_thickness_mm"), "mm")),
        ("line beyond Vande Berg limits", format_value(g("sif", "line_exceeds_vande_berg"))),
        ("effusion", format_value(g("effusion_ml"), "ml")),
    ]
    return rows


def _table(headers: Sequence[str], rows: Iterable[Sequence[Any]], flagged: Sequence[bool] | None = None) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = []
    for i, row in enumerate(rows):
        cls = ' class="flagged"' if flagged is not None and flagged[i] else ""
        cells = "".join(
            f'<td class="num">{escape(format_value(v, None, -1))}</td>' if isinstance(v, (int, float))
            and not isinstance(v, bool) else f"<td>{escape(format_value(v))}</td>" for v in row
        )
        body.append(f"<tr{cls}>{cells}</tr>")
    if not body:
        body.append(f'<tr><td colspan="{len(headers)}">none</td></tr>')
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _badge(label: str) -> str:
    color = _LABEL_COLORS.get(label, "#7f7f7f")
    return f'<span class="badge" style="background:{color}">{escape(LABEL_NAMES.get(label, label))}</span>'


def _side_card(name: str, side: Mapping) -> str:
    pattern = side.get("pattern") or {}
    parts = [f'<div class="card" id="side-{name}"><h2>{escape(name.capitalize())} hip</h2>']
    if side.get("status") != "analysed":
        parts.append(f'<p class="failed">Not analysed: {escape(str(side.get("reason") or "unknown reason"))}</p>')
    for warning in side.get("warnings") or []:
        parts.append(f'<p class="warning">Caution: {escape(str(warning))}</p>')
    label = str(pattern.get("label", "indeterminate"))
    parts.append(
        f"<p>{_badge(label)} score {escape(format_value(pattern.get('score'), None, 2))}, "
        f"confidence {escape(format_value(pattern.get('confidence')))}"
        + (", <strong>follow-up MRI advised</strong>" if pattern.get("follow_up_advised") else "")
        + "</p>"
    )
    if pattern.get("summary"):
        parts.append(f"<p>{escape(str(pattern['summary']))}</p>")
    parts.append("<h3>Key numbers</h3>" + _table(["measurement", "value"], key_numbers(side)))
    evidence = [(e.get("feature"), _num_unit(e.get("value"), e.get("unit")), _threshold(e),
                 LABEL_NAMES.get(e.get("favours"), e.get("favours")), e.get("source"))
                for e in pattern.get("evidence", [])]
    parts.append("<h3>Evidence</h3>" + _table(["feature", "value", "threshold", "favours", "source"], evidence))
    parts.append("</div>")
    return "".join(parts)


def _num_unit(value: Any, unit: Any) -> str:
    return format_value(value, unit if unit not in (None, "1") else None, 2)


def _threshold(item: Mapping) -> str:
    threshold, direction = item.get("threshold"), item.get("direction")
    if direction in ("present", "absent"):
        return direction
    if threshold is None:
        return "n/a"
    return f"{direction or ''} {format_value(threshold, None, 2)}".strip()


def render_html(report: Mapping, figures: Sequence[Figure] = ()) -> str:
    """The report as one self-contained HTML page (no scripts, no external resources).

    Parameters
    ----------
    report : dict
        A report following the bmepipe report schema.
    figures : sequence of Figure
        From :func:`bmepipe.report.overlay_figures`; embedded as base64 PNG.
    """
    software = report.get("software", {})
    inputs = report.get("inputs", {})
    study = inputs.get("study", {})
    disclaimer = report.get("disclaimer") or DISCLAIMER
    out = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>bmepipe report {escape(str(study.get('pseudonym', '')))}</title>",
        f"<style>{_CSS}</style></head><body>",
        "<header><h1>bmepipe hip MRI report: bone marrow edema evidence</h1>",
        f'<p class="disclaimer" id="disclaimer"><strong>{escape(disclaimer)}</strong></p>',
        f'<p class="meta">Study {escape(str(study.get("pseudonym", "n/a")))}; '
        f"sex {escape(format_value(study.get('patient_sex')))}, "
        f"age {escape(format_value(study.get('patient_age_years'), 'y', 0))}; "
        f"{escape(str(software.get('name', 'bmepipe')))} {escape(str(software.get('version', '')))}; "
        f"report schema {escape(str(report.get('schema_version', '')))}"
        + (f"; created {escape(str(report['created']))}" if report.get("created") else "")
        + "</p></header>",
    ]
    used = [(s.get("role"), s.get("series_description"), s.get("sequence_kind"), s.get("plane"),
             s.get("field_strength_t"), s.get("repetition_time_ms"), s.get("echo_time_ms"),
             s.get("inversion_time_ms"), s.get("reason")) for s in inputs.get("series_used", [])]
    skipped = [(s.get("path") or s.get("description"), s.get("reason")) for s in inputs.get("series_skipped", [])]
    out.append('<section id="inputs"><h2>Inputs</h2>'
               + _table(["role", "series", "kind", "plane", "field (T)", "TR (ms)", "TE (ms)", "TI (ms)", "why"], used)
               + "<h3>Skipped</h3>" + _table(["file or series", "reason"], skipped) + "</section>")
    flags = report.get("qc", {}).get("flags", [])
    registration = report.get("registration")
    reg_text = ("none (no T1 series)" if not registration else
                f"{registration.get('method')}, residual {format_value(registration.get('residual_mm'), 'mm', 2)}")
    out.append('<section id="qc"><h2>Quality control</h2>'
               + _table(["check", "value", "threshold", "flagged", "message"],
                        [(f.get("name"), f.get("value"), f.get("threshold"), f.get("flagged"), f.get("message"))
                         for f in flags], [bool(f.get("flagged")) for f in flags])
               + f"<p>T1 registration: {escape(reg_text)}</p></section>")
    sides = report.get("sides", {})
    out.append('<section id="sides"><div class="cards">'
               + "".join(_side_card(s, sides[s]) for s in SIDES if s in sides) + "</div></section>")
    out.append('<section id="figures"><h2>Figures</h2>')
    if not figures:
        out.append("<p>No figures.</p>")
    for i, fig in enumerate(figures):
        out.append(f'<figure id="figure-{i + 1}"><img src="{fig.data_uri()}" alt="{escape(fig.title)}">'
                   f"<figcaption>{escape(fig.caption)}</figcaption></figure>")
    out.append("</section>")
    bilateral = report.get("bilateral") or {}
    out.append('<section id="bilateral"><h2>Right-left comparison</h2>'
               + _table(["item", "value"], [(k.replace("_", " "), v if not isinstance(v, dict) else
                                             ", ".join(f"{a}: {b}" for a, b in v.items()))
                                            for k, v in sorted(bilateral.items())]) + "</section>")
    params = json.dumps(report.get("parameters", {}), indent=2, sort_keys=True, default=str)
    out.append(f'<section id="parameters"><details><summary>Parameters in force</summary><pre>{escape(params)}</pre>'
               "</details></section>")
    out.append(f'<footer><p class="disclaimer">{escape(disclaimer)}</p></footer></body></html>')
    return "\n".join(out) + "\n"
