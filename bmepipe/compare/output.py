"""Write a comparison: ``compare.json`` (validated), change label maps (NIfTI) and ``compare.html``."""

from __future__ import annotations

import html as _html
import json
from importlib import resources
from pathlib import Path

from bmepipe.errors import OutputError
from bmepipe.io.atomic import atomic_write_text

__all__ = ["load_compare_schema", "validate_compare", "write_compare", "render_compare_html"]


def load_compare_schema(version: str | None = None) -> dict:
    """The ``compare.json`` JSON Schema (default the current version); :class:`OutputError` if unknown."""
    from .core import COMPARE_SCHEMA_VERSION

    name = f"compare-{version or COMPARE_SCHEMA_VERSION}.json"
    try:
        text = resources.files("bmepipe.report").joinpath("schemas", name).read_text("utf-8")
    except FileNotFoundError:
        raise OutputError(f"no compare schema for version {version!r}", name) from None
    return json.loads(text)


def validate_compare(report: dict, path=None) -> None:
    """Raise :class:`OutputError` (JSON path and problem) unless ``report`` follows the schema version it names."""
    import jsonschema

    from bmepipe.report.schema import _check_finite

    if not isinstance(report, dict) or not isinstance(report.get("schema_version", ""), str):
        raise OutputError("$: compare report must be an object with a string schema_version", path)
    try:
        schema = load_compare_schema(report.get("schema_version"))
    except OutputError:
        raise OutputError(f"$.schema_version: unknown compare schema version {report.get('schema_version')!r}",
                          path) from None
    errors = list(jsonschema.Draft202012Validator(schema).iter_errors(report))
    if errors:
        err = jsonschema.exceptions.best_match(errors)
        raise OutputError(f"{err.json_path}: {err.message[:200]}", path)
    _check_finite(report, "$", path)


def _chart(report: dict) -> bytes:
    """A small chart: BME volume at baseline and follow-up per side."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4, 2.6), dpi=90)
    for side, colour in (("right", "tab:blue"), ("left", "tab:orange")):
        s = report["sides"][side]
        if s["status"] != "compared":
            continue
        v = s["bme"]["volume_ml"]
        ax.plot([0, report["interval_days"] or 1], [v["then"] or 0, v["now"] or 0], "o-", color=colour,
                label=f"{side} ({s['trajectory']['label']})")
    ax.set_xlabel("days since baseline")
    ax.set_ylabel("BME volume (ml)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata={"Software": None})
    plt.close(fig)
    return buf.getvalue()


def render_compare_html(report: dict, figures=(), chart_png: bytes | None = None) -> str:
    """One self-contained page: per side measurements then/now, trajectory and evidence, overlays, chart.

    ``figures`` holds ``(title, baseline Figure, follow-up Figure)`` rows, shown side by side and labelled
    with each study's date.
    """
    import base64

    e = _html.escape
    out = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8"><title>bmepipe follow-up comparison</title>',
           "<style>body{font-family:sans-serif;max-width:1100px;margin:auto}td,th{padding:2px 8px;"
           "border-bottom:1px solid #ddd}img{max-width:100%}.pair{display:flex;gap:8px}.pair figure{flex:1;margin:0}"
           ".caption{font-size:80%}</style></head><body>",
           "<h1>Follow-up comparison</h1>", f"<p><b>{e(report['disclaimer'])}</b></p>",
           f"<p>{e(_date_label(report, 'baseline'))}; {e(_date_label(report, 'followup'))}; "
           f"interval: {e(str(report['interval_days']))} days</p>"]
    for side in ("right", "left"):
        s = report["sides"][side]
        out.append(f"<h2>{side} hip</h2>")
        if s["status"] != "compared":
            out.append(f"<p>not compared: {e(s['reason'])}</p>")
            continue
        rows = [("BME volume (ml)", s["bme"]["volume_ml"]), ("necrotic extent (% head)", s["avn"]["necrotic_extent_pct"]),
                ("collapse (mm)", s["avn"]["collapse_mm"]), ("subchondral line (mm)", s["sif"]["line_length_mm"]),
                ("effusion (ml)", s["effusion_ml"])]
        rows += [(f"BME fraction {r.replace('_', ' ')}", p) for r, p in s["bme"]["fraction"].items()]
        out.append("<table><tr><th>measurement</th><th>then</th><th>now</th><th>change</th></tr>")
        for name, p in rows:
            out.append(f"<tr><td>{e(name)}</td>" + "".join(f"<td>{'n/a' if p[k] is None else p[k]}</td>"
                                                          for k in ("then", "now", "change")) + "</tr>")
        out.append("</table>")
        b = s["bme"]
        out.append(f"<p>BME resolved {b['resolved_ml']} ml, persisted {b['persisted_ml']} ml, new {b['new_ml']} ml. "
                   f"Pattern then <b>{e(str(s['pattern']['then']))}</b>, now <b>{e(str(s['pattern']['now']))}</b>. "
                   f"Trajectory: <b>{e(s['trajectory']['label'])}</b>. Registration residual: head-centre mismatch "
                   f"{s['registration']['center_mismatch_mm']} mm.</p><ul>")
        for item in s["trajectory"]["evidence"]:
            out.append(f"<li>{e(item['feature'])}: {item['then']:.2f} &rarr; {item['now']:.2f} "
                       f"(threshold {e(item['threshold'])})</li>")
        out.append("</ul>")
    if chart_png:
        out.append('<h2>Over time</h2><img alt="BME volume over time" src="data:image/png;base64,'
                   + base64.b64encode(chart_png).decode("ascii") + '">')
    if figures:
        then_label, now_label = _date_label(report, "baseline"), _date_label(report, "followup")
        out.append("<h2>Baseline and follow-up (registered) at matching slices</h2>")
        for title, f0, f1 in figures:
            out.append(f'<h3>{e(title)}</h3><div class="pair">')
            for label, fig, note in ((then_label, f0, ""), (now_label, f1, " (registered onto the baseline grid)")):
                out.append(f'<figure><figcaption><b>{e(label)}</b>{e(note)}</figcaption><img alt="{e(label)}: '
                           f'{e(fig.title)}" src="{fig.data_uri()}"></figure>')
            out.append(f"</div><p class=\"caption\">{e(f0.caption)}</p>")
    out.append("</body></html>")
    return "\n".join(out) + "\n"


def _figures(result) -> list:
    """Per compared side: (title, baseline figure, follow-up figure) at the same coronal slices.

    The baseline panel shows the baseline fluid-sensitive image with its BME and femoral head; the follow-up
    panel the follow-up image resampled onto the baseline grid (that side's registration) with its BME.
    """
    import SimpleITK as sitk

    from bmepipe.report.figures import overlay_figures

    a, b = result.baseline, result.followup
    fixed = a.normalized.fluid
    spacing, direction = fixed.GetSpacing()[::-1], fixed.GetDirection()
    then = sitk.GetArrayFromImage(fixed)
    rows = []
    for side, tx in result.transforms.items():
        moved = sitk.GetArrayFromImage(sitk.Resample(sitk.Cast(b.normalized.fluid, sitk.sitkFloat32), fixed, tx,
                                                     sitk.sitkLinear, 0.0))
        head = a.masks[side]["femoral_head"]
        now_bme = result.maps[side]["persisted"] | result.maps[side]["new"]
        base_figs = overlay_figures(then, None, {side: {"bme": a.masks[side]["bme"], "femoral_head": head}},
                                    spacing, direction=direction)
        slices = [f.slice_index for f in base_figs]
        fu_figs = overlay_figures(moved, None, {side: {"bme": now_bme, "femoral_head": head}}, spacing, slices,
                                  direction=direction)
        rows += [(f"{side} hip, {f0.title}", f0, f1) for f0, f1 in zip(base_figs, fu_figs)]
    return rows


def _date_label(report: dict, which: str) -> str:
    date = ((report.get("studies") or {}).get(which) or {}).get("study_date")
    return ("Baseline" if which == "baseline" else "Follow-up") + (f", {date}" if date else ", date unknown")


def write_compare(result, out_dir) -> dict:
    """Write ``compare.json``, ``labels/<side>_bme_{resolved,persisted,new}.nii.gz`` and ``compare.html``."""
    from bmepipe.report.labels import write_mask
    from bmepipe.report.schema import to_jsonable

    out = Path(out_dir)
    report = to_jsonable(result.report)
    validate_compare(report, out / "compare.json")
    written = {}
    fixed = result.grid
    for side, maps in result.maps.items():
        for kind, mask in maps.items():
            written[f"{side}_bme_{kind}"] = write_mask(mask, fixed, out / "labels" / f"{side}_bme_{kind}.nii.gz",
                                                       what="change map")
    figures = _figures(result) if result.baseline is not None and result.followup is not None else []
    html = render_compare_html(report, figures, _chart(report))
    written["html"] = atomic_write_text(out / "compare.html", html)
    text = json.dumps(report, sort_keys=True, indent=2, allow_nan=False) + "\n"
    written["json"] = atomic_write_text(out / "compare.json", text)  # last: its presence means complete
    return written
