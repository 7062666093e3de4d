"""Figures and report.html: slice choice, orientation, aspect, self-containment, and headless Chromium rendering."""

from __future__ import annotations

import base64
import io
import json
import re
import shutil
import subprocess

import numpy as np
import pytest
from PIL import Image
from report_synth import make_report

from bmepipe.errors import OutputError
from bmepipe.report import overlay_figures, render_html, report_repr_html
from bmepipe.report.figures import coronal_view

SHAPE = (20, 60, 80)  # coronal slices (anterior -> posterior), rows (head -> feet), columns (right -> left)
SPACING = (3.0, 2.0, 1.0)  # mm: slice, row, column (anisotropic on purpose)
MAGENTA = np.array([255, 0, 255])
SKY_BLUE = np.array([0, 191, 255])


def _ball(center, radius_mm):
    z, y, x = np.ogrid[: SHAPE[0], : SHAPE[1], : SHAPE[2]]
    d2 = sum(((c - o) * s) ** 2 for c, o, s in zip((z, y, x), center, SPACING))
    return d2 <= radius_mm**2


@pytest.fixture(scope="module")
def scene():
    rng = np.random.default_rng(0)
    fluid = rng.normal(100.0, 5.0, SHAPE)
    fluid[:, :, :8] = 400.0  # bright band at the patient's right edge (low column index)
    t1 = 500.0 - fluid
    right_head = _ball((8, 25, 20), 12.0)  # centre slice 8
    left_head = _ball((12, 25, 60), 12.0)  # centre slice 12
    bme = _ball((5, 25, 20), 6.0)  # most BME on slice 5
    necrosis = np.zeros(SHAPE, bool)
    necrosis[14, 20:35, 50:80] = True  # 15 rows x 2 mm = 30 mm high, 30 cols x 1 mm = 30 mm wide: a square
    masks = {"right": {"femoral_head": right_head, "bme": bme},
             "left": {"femoral_head": left_head, "necrosis": necrosis}}
    return fluid, t1, masks


@pytest.fixture(scope="module")
def figures(scene):
    fluid, t1, masks = scene
    return overlay_figures(fluid, t1, masks, SPACING)


def _rgb(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(int)


def _near(rgb, color, tol=40):
    return np.abs(rgb - color).sum(axis=-1) < tol


def test_figures_are_at_the_slices_that_matter(figures):
    got = {f.slice_index: f.reasons for f in figures}
    assert got == {5: ("most BME",), 8: ("right femoral head centre",), 12: ("left femoral head centre",),
                   14: ("most necrosis",)}
    for f in figures:
        assert f.png.startswith(b"\x89PNG") and "radiological convention" in f.caption.lower()


def test_patient_right_is_on_the_image_left_and_aspect_is_true(figures):
    fig = next(f for f in figures if f.slice_index == 14)
    rgb = _rgb(fig.png)
    height, width, _ = rgb.shape
    first_panel = rgb[: int(height * 0.8), : width // 2]  # STIR panel, above the legend
    bright = first_panel.mean(axis=-1) > 240
    cols = np.nonzero(bright.mean(axis=0) > 0.5)[0]
    assert cols.size and cols.max() < first_panel.shape[1] * 0.2  # the bright right-side band is on the left
    ys, xs = np.nonzero(_near(first_panel, MAGENTA))
    assert xs.min() > first_panel.shape[1] / 2  # the left hip's necrosis is on the image right
    h, w = ys.max() - ys.min(), xs.max() - xs.min()
    assert abs(h - w) <= 0.08 * w  # a 30 mm x 30 mm square stays square with 2 mm x 1 mm pixels


def test_without_t1_one_panel_at_a_requested_slice(scene, figures):
    fluid, _, masks = scene
    (single,) = overlay_figures(fluid, None, masks, SPACING, slices=[8])
    assert single.slice_index == 8 and single.reasons == ("requested",)
    assert _rgb(single.png).shape[1] * 2 == _rgb(figures[0].png).shape[1]


def test_coronal_view_of_an_axial_grid():
    z, y, x = np.meshgrid(np.arange(4), np.arange(5), np.arange(6), indexing="ij")
    axial = 100 * z + 10 * y + x  # axial [slice=z (+head), row=y (+posterior), column=x (+left)]
    view, spacing = coronal_view(axial, (3.0, 2.0, 1.0), direction=(1, 0, 0, 0, 1, 0, 0, 0, 1))
    # coronal display: [anterior->posterior, head->feet, right->left]
    expected = np.transpose(axial, (1, 0, 2))[:, ::-1, :]
    np.testing.assert_array_equal(view, expected)
    np.testing.assert_array_equal(spacing, [2.0, 3.0, 1.0])


def test_bad_figure_input_is_refused(scene):
    fluid, t1, masks = scene
    with pytest.raises(OutputError, match="shape"):
        overlay_figures(fluid, t1[:-1], masks, SPACING)
    with pytest.raises(OutputError, match="outside"):
        overlay_figures(fluid, None, masks, SPACING, slices=[99])


def test_html_is_self_contained(figures):
    report = make_report()
    report["inputs"]["series_used"][0]["series_description"] = "<script>alert(1)</script>"
    html = render_html(report, figures)
    text = re.sub(r"data:image/png;base64,[A-Za-z0-9+/=]+", "", html)
    assert not re.search(r"(https?:)?//[a-z0-9]", text, re.I) and "url(" not in text
    assert "<script" not in html and "&lt;script&gt;" in html
    sources = re.findall(r'<img src="data:image/png;base64,([^"]+)"', html)
    assert [base64.b64decode(s) for s in sources] == [f.png for f in figures]
    body = html[html.index("<body>"):]
    assert body.index("Research use only") < body.index('id="inputs"') < body.index('id="sides"')
    assert "TOH-like" in html and "no femoral head inside the field of view" in html
    assert "Vande Berg et al. Radiology 1999 [approx]" in html  # evidence source
    assert render_html(report, figures) == html  # deterministic


def _chromium(*args, tmp_path):
    cmd = ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           "--hide-scrollbars", "--force-device-scale-factor=1", f"--user-data-dir={tmp_path / 'profile'}", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


def test_html_renders_in_headless_chromium_with_figures(figures, tmp_path):
    if shutil.which("chromium") is None:
        pytest.skip("chromium (Debian package chromium) is not installed; CI installs it")
    html = render_html(make_report(), figures)
    page = tmp_path / "report.html"
    page.write_text(html, encoding="utf-8")
    # 1) layout: a copy that writes every <img>'s content box into the DOM, read with --dump-dom
    probe = tmp_path / "probe.html"
    script = ("<script>window.addEventListener('load',()=>{const r=[...document.images].map(i=>{const b="
              "i.getBoundingClientRect();return [b.left+scrollX+i.clientLeft,b.top+scrollY+i.clientTop,"
              "i.clientWidth,i.clientHeight,i.naturalWidth]});"
              "const p=document.createElement('pre');p.id='layout';p.textContent=JSON.stringify(r);"
              "document.body.appendChild(p);});</script>")
    probe.write_text(html.replace("</body>", script + "</body>"), encoding="utf-8")
    out = _chromium("--window-size=1280,2400", "--virtual-time-budget=3000", "--dump-dom", probe.as_uri(),
                    tmp_path=tmp_path)
    layout = json.loads(re.search(r'<pre id="layout">(.*?)</pre>', out.stdout).group(1))
    assert len(layout) == len(figures)
    assert all(natural == Image.open(io.BytesIO(f.png)).width for (*_, natural), f in zip(layout, figures))
    left, top, width, height, _ = (int(round(v)) for v in layout[0])
    # 2) screenshot of the real page, tall enough to hold the first figure
    shot = tmp_path / "shot.png"
    out = _chromium(f"--window-size=1280,{max(2400, top + height + 20)}", f"--screenshot={shot}", page.as_uri(),
                    tmp_path=tmp_path)
    assert shot.exists(), out.stderr[-500:]
    screen = np.asarray(Image.open(shot).convert("RGB")).astype(int)
    crop = screen[top: top + height, left: left + width]
    assert crop.std() > 20  # not blank
    assert _near(crop, SKY_BLUE).sum() > 20  # the BME contour colour is on screen
    first = _rgb(figures[0].png)
    assert crop.shape == first.shape  # shown at its natural size (1280-px window is wide enough)
    # the screenshot shows the first figure where the layout says it is (another figure differs by ~5)
    assert np.abs(crop - first).mean() < 1.0
    disclaimer_box = screen[:200]
    assert _near(disclaimer_box, np.array([0xFF, 0xF3, 0xCD]), tol=12).sum() > 1000  # yellow disclaimer rendered


def test_repr_html_card():
    card = report_repr_html(make_report())
    assert "TOH-like" in card and "12.50 ml" in card
    assert "failed: no femoral head inside the field of view" in card
    assert "Research use only" in card and "motion" in card  # the raised QC flag is named
