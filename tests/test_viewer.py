"""bmepipe.viewer: static figure grid, ipywidgets viewer, orientation and overlay toggles.

Ground truth comes from geometry we build here: a marker placed at a known LPS
point (SimpleITK's index -> physical mapping) must appear at patient right on
the image's left and superior at the top, whatever the grid's orientation.
"""

from __future__ import annotations

import io
import sys
from types import SimpleNamespace

import numpy as np
import pytest

pytest.importorskip("matplotlib")
sitk = pytest.importorskip("SimpleITK")

from bmepipe.analysis import AnalysisResult  # noqa: E402
from bmepipe.errors import ConfigError  # noqa: E402
from bmepipe.report.codes import STRUCTURE_COLORS  # noqa: E402
from bmepipe.viewer import OVERLAYS, slice_figure, slice_viewer, view  # noqa: E402

CORONAL = (1.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, -1.0, 0.0)  # rows +x (patient left), columns -z (down), normal +y
AXIAL = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)  # rows +x, columns +y (posterior), slices +z (up)
SHAPE = (10, 24, 30)  # [slice, row, column]


def _image(array, direction, spacing_xyz=(2.0, 2.0, 4.0)):
    img = sitk.GetImageFromArray(np.asarray(array, np.float32))
    img.SetSpacing(spacing_xyz)
    img.SetDirection(direction)
    img.SetOrigin((-30.0, -20.0, 40.0))
    return img


def _marker_index(img, lps_mm):
    """Array index [slice, row, column] of the voxel nearest an LPS point (SimpleITK's own mapping)."""
    return tuple(reversed(img.TransformPhysicalPointToIndex(lps_mm)))


def _grid_corners(img):
    """LPS of the volume's extreme voxel centres, to place markers inside it."""
    size = img.GetSize()
    pts = np.array([img.TransformIndexToPhysicalPoint((i, j, k)) for i in (0, size[0] - 1)
                    for j in (0, size[1] - 1) for k in (0, size[2] - 1)])
    return pts.min(axis=0), pts.max(axis=0)


def _result_on(direction):
    """A minimal AnalysisResult on a synthetic grid with a right-hip BME blob and a left effusion blob."""
    fluid = np.full(SHAPE, 100.0, np.float32)
    t1 = np.full(SHAPE, 300.0, np.float32)
    img = _image(fluid, direction)
    lo, hi = _grid_corners(img)
    mid = (lo + hi) / 2
    # right hip = patient right = smaller x (LPS); superior = larger z
    right_sup = (lo[0] + 0.2 * (hi[0] - lo[0]), mid[1], lo[2] + 0.8 * (hi[2] - lo[2]))
    left_inf = (lo[0] + 0.8 * (hi[0] - lo[0]), lo[1] + 0.2 * (hi[1] - lo[1]), lo[2] + 0.2 * (hi[2] - lo[2]))
    masks = {side: {s: np.zeros(SHAPE, bool) for s in ("femoral_head", "bme", "necrosis", "effusion")}
             for side in ("right", "left")}
    r = _marker_index(img, right_sup)
    l_ = _marker_index(img, left_inf)
    for side, structure, (k, j, i) in (("right", "bme", r), ("left", "effusion", l_)):
        masks[side][structure][k, max(j - 2, 0):j + 3, max(i - 2, 0):i + 3] = True
    fluid[r] = 1000.0  # a bright marker voxel inside the BME blob
    normalized = SimpleNamespace(fluid=_image(fluid, direction), t1=_image(t1, direction))
    report = {"inputs": {"study": {"pseudonym": "Stest"}}}
    return AnalysisResult(report=report, masks=masks, normalized=normalized), r, l_


@pytest.mark.parametrize("direction", [CORONAL, AXIAL], ids=["coronal", "axial"])
def test_marker_shown_patient_right_on_image_left_and_superior_at_top(direction):
    result, _, _ = _result_on(direction)
    slices = range(_n_coronal(direction))
    fig = slice_figure(result, slices=slices, sequences=["fluid_sensitive"], overlays=[])
    assert len(fig.axes) == len(slices)
    shown = [ax for ax in fig.axes if ax.images[0].get_array().max() >= 1000.0]
    assert len(shown) == 1
    data = np.asarray(shown[0].images[0].get_array())
    row, col = np.unravel_index(np.argmax(data), data.shape)
    assert col < data.shape[1] / 2, "patient right must be on the image's left"
    assert row < data.shape[0] / 2, "superior must be at the top"


def _n_coronal(direction):
    # number of coronal (A-P) slices: the array axis that runs along LPS y
    d = np.asarray(direction).reshape(3, 3)
    axis_xyz = int(np.argmax(np.abs(d[1])))  # which image axis (x=column, y=row, z=slice) is along y
    return {0: SHAPE[2], 1: SHAPE[1], 2: SHAPE[0]}[axis_xyz]


def _contour_colours(ax):
    from matplotlib.colors import to_hex

    colours = []
    for coll in ax.collections:
        colours += [to_hex(c) for c in np.atleast_2d(coll.get_edgecolor())]
    return colours


def test_static_grid_axes_and_one_contour_set_per_structure_present():
    result, r, l_ = _result_on(CORONAL)
    # coronal grid: array slice axis is the coronal axis, unflipped (normal +y = posterior)
    slices = [r[0], l_[0], 0]
    fig = slice_figure(result, slices=slices)
    assert len(fig.axes) == 2 * len(slices)  # fluid-sensitive and T1 rows
    for i, k in enumerate(slices):
        expected = sorted(
            STRUCTURE_COLORS[s] for side in ("right", "left") for s in ("bme", "effusion")
            if result.masks[side][s][k].any())
        for ax in (fig.axes[i], fig.axes[len(slices) + i]):
            assert sorted(_contour_colours(ax)) == expected
    assert r[0] != l_[0]  # the two slices really differ in what they show


def test_overlay_subset_draws_only_the_chosen_structures():
    result, r, _ = _result_on(CORONAL)
    fig = slice_figure(result, slices=[r[0]], overlays=["effusion"])
    assert all(_contour_colours(ax) == [] for ax in fig.axes)  # no effusion on the BME slice
    fig = slice_figure(result, slices=[r[0]], overlays=["bme"])
    assert all(_contour_colours(ax) == [STRUCTURE_COLORS["bme"]] for ax in fig.axes)


def test_contour_lies_on_the_mask_in_mm():
    result, r, _ = _result_on(CORONAL)
    fig = slice_figure(result, slices=[r[0]], sequences=["fluid_sensitive"], overlays=["bme"])
    ax = fig.axes[0]
    (path,) = [p for coll in ax.collections for p in coll.get_paths()]
    # CORONAL rows run +x and columns -z, so display [S->I, R->L] is the array's [row, column] order (2 mm each)
    rows = np.nonzero(result.masks["right"]["bme"][r[0]].any(axis=1))[0]
    cols = np.nonzero(result.masks["right"]["bme"][r[0]].any(axis=0))[0]
    x, y = path.vertices[:, 0], path.vertices[:, 1]
    # the 0.5 iso-line runs half a voxel (1 mm) outside the outermost voxel centres
    assert x.min() == pytest.approx(cols.min() * 2.0 + 1.0 - 1.0, abs=1e-6)
    assert x.max() == pytest.approx(cols.max() * 2.0 + 1.0 + 1.0, abs=1e-6)
    assert y.min() == pytest.approx(rows.min() * 2.0 + 1.0 - 1.0, abs=1e-6)
    assert y.max() == pytest.approx(rows.max() * 2.0 + 1.0 + 1.0, abs=1e-6)


def test_bad_arguments_raise_typed_errors():
    result, _, _ = _result_on(CORONAL)
    with pytest.raises(ConfigError, match="unknown overlay"):
        slice_figure(result, overlays=["tumour"])
    with pytest.raises(ConfigError, match="outside"):
        slice_figure(result, slices=[99])
    with pytest.raises(ConfigError, match="not available"):
        slice_figure(AnalysisResult(report={}, masks={}, normalized=SimpleNamespace(
            fluid=result.normalized.fluid, t1=None)), sequences=["t1"])
    with pytest.raises(TypeError, match="cannot view"):
        slice_figure(np.zeros((3, 3, 3)))


def _colour_pixels(png: bytes, hex_colour: str) -> int:
    from matplotlib.colors import to_rgb
    from matplotlib.image import imread

    rgb = imread(io.BytesIO(png), format="png")[..., :3]
    return int((np.abs(rgb - np.asarray(to_rgb(hex_colour))).max(axis=-1) < 0.08).sum())


def test_widget_controls_and_toggles_change_the_image():
    pytest.importorskip("ipywidgets")
    import ipywidgets as widgets

    result, r, l_ = _result_on(CORONAL)
    box = slice_viewer(result, slice_index=r[0])
    c = box.controls
    assert isinstance(c["slice"], widgets.IntSlider)
    assert (c["slice"].min, c["slice"].max, c["slice"].value) == (0, SHAPE[0] - 1, r[0])
    assert [v for _, v in c["sequence"].options] == ["fluid_sensitive", "t1"]
    # one checkbox per overlay that has voxels: BME and effusion only
    assert sorted(k for k in c if k in OVERLAYS) == ["bme", "effusion"]
    image = box.children[2]
    assert isinstance(image, widgets.Image)

    with_bme = _colour_pixels(image.value, STRUCTURE_COLORS["bme"])
    assert with_bme > 0
    c["bme"].value = False
    assert _colour_pixels(image.value, STRUCTURE_COLORS["bme"]) < with_bme / 10
    c["bme"].value = True
    assert _colour_pixels(image.value, STRUCTURE_COLORS["bme"]) == with_bme

    c["slice"].value = l_[0]  # the effusion slice: effusion drawn, BME gone
    assert _colour_pixels(image.value, STRUCTURE_COLORS["effusion"]) > 0
    assert _colour_pixels(image.value, STRUCTURE_COLORS["bme"]) < with_bme / 10

    before = image.value
    c["sequence"].value = "t1"
    assert image.value != before


def test_view_falls_back_to_a_static_figure(monkeypatch):
    from matplotlib.figure import Figure

    result, _, _ = _result_on(CORONAL)
    assert isinstance(view(result), Figure)  # pytest runs outside a kernel
    monkeypatch.setattr("bmepipe.viewer.in_kernel", lambda: True)
    monkeypatch.setitem(sys.modules, "ipywidgets", None)  # import ipywidgets now raises ImportError
    assert isinstance(view(result), Figure)
    fig = view(result, slice_index=3)
    assert len(fig.axes) == 2  # one slice, two sequences
    assert "slice 4/" in fig.axes[0].get_title()


def test_static_figure_displays_as_png_in_a_kernel(monkeypatch):
    IPython = pytest.importorskip("IPython")
    from IPython.core.formatters import PNGFormatter
    from matplotlib.figure import Figure

    png = PNGFormatter()
    shell = SimpleNamespace(kernel=object(), display_formatter=SimpleNamespace(formatters={"image/png": png}))
    monkeypatch.setattr(IPython, "get_ipython", lambda: shell)
    result, _, _ = _result_on(CORONAL)
    with pytest.raises(KeyError):
        png.lookup_by_type(Figure)  # a bare Figure has no PNG formatter until the viewer registers one
    fig = slice_figure(result)
    assert png(fig).startswith(b"\x89PNG")


def test_view_gives_the_widget_in_a_kernel(monkeypatch):
    widgets = pytest.importorskip("ipywidgets")
    result, _, _ = _result_on(CORONAL)
    monkeypatch.setattr("bmepipe.viewer.in_kernel", lambda: True)
    assert isinstance(view(result), widgets.VBox)


def test_phantom_truth_overlays_right_hip_on_image_left():
    from bmepipe.phantom import AcquisitionSpec, PhantomSpec, generate_study

    acq = AcquisitionSpec(matrix=64, acquired_matrix=(64, 64), slices=10, with_localizer=False,
                          supersample=(1, 1, 3))
    study = generate_study(PhantomSpec.random(7, right="toh", left="normal", acquisition=acq))
    # independent truth: right head centre at negative LPS x (patient right)
    assert study.truth["sides"]["right"]["head_center_lps_mm"][0] < 0
    fig = slice_figure(study, overlays=["regions", "bme"], sequences=["fluid_sensitive"])
    head_x = []
    bme_x = []
    for ax in fig.axes:
        width = ax.get_xlim()[1]
        for coll in ax.collections:
            colour = _contour_colours(SimpleNamespace(collections=[coll]))[0]
            xs = np.concatenate([p.vertices[:, 0] for p in coll.get_paths()]) / width
            (bme_x if colour == STRUCTURE_COLORS["bme"] else head_x).append(xs.mean())
    assert bme_x and all(x < 0.5 for x in bme_x), "the TOH (right) hip's BME must be drawn on the image's left"
    assert any(x < 0.5 for x in head_x) and any(x > 0.5 for x in head_x)


def test_study_source_shows_both_sequences_on_one_grid():
    from pathlib import Path

    from bmepipe.io import load_study

    root = Path(__file__).resolve().parents[1] / "sample_data" / "case01_normal"
    study = load_study(root)
    fig = slice_figure(study, slices=[8])
    assert [ax.get_title().split(",")[0] for ax in fig.axes] == ["fluid-sensitive", "T1"]
    fluid, t1 = (np.asarray(ax.images[0].get_array()) for ax in fig.axes)
    assert fluid.shape == t1.shape == (192, 192)
    assert all(not ax.collections for ax in fig.axes)  # a study has no masks to draw


def test_single_volume_and_image_sources():
    result, r, _ = _result_on(CORONAL)
    image = result.normalized.fluid
    fig = slice_figure(image, slices=[r[0]])
    assert len(fig.axes) == 1 and not fig.axes[0].collections  # one image, nothing to overlay
    t1 = SimpleNamespace(image=result.normalized.t1, meta=SimpleNamespace(sequence_class="t1",
                                                                          series_description="T1"))
    fig = slice_figure(t1, slices=[0, 1])
    assert [ax.get_title() for ax in fig.axes] == [f"T1, slice {k}/{SHAPE[0]}" for k in (1, 2)]
