"""Coronal slice viewer for notebooks: slice slider, sequence switch, overlay toggles.

>>> from bmepipe.viewer import view, slice_figure
>>> view(result)                      # doctest: +SKIP  (widget in Jupyter, static figure elsewhere)
>>> slice_figure(result).savefig("slices.png")  # doctest: +SKIP  (always a matplotlib Figure)

What can be viewed (``source``):

- :class:`bmepipe.AnalysisResult`: the bias-corrected fluid-sensitive image and the T1 registered onto it,
  with the analysis masks as overlays;
- :class:`bmepipe.io.Study`: the series :func:`bmepipe.io.select_series` picks (T1 resampled onto the
  fluid-sensitive grid), no overlays;
- :class:`bmepipe.io.Volume` or a SimpleITK image: that one image, no overlays;
- :class:`bmepipe.phantom.SyntheticStudy`: the simulated series, with the truth masks as overlays.

Slices are shown coronal in radiological convention, as in the HTML report
(:func:`bmepipe.report.figures.coronal_view`): patient right on the image's left,
head at the top, true pixel aspect (axes in mm). Slice 0 is the most anterior.

ipywidgets and matplotlib are imported inside the functions, so importing this
module costs nothing.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from typing import Any, Optional, Sequence

import numpy as np

from .errors import ConfigError
from .report.codes import STRUCTURE_COLORS
from .report.figures import display_window, choose_slices, coronal_view
from .report.schema import SIDES

__all__ = ["SEQUENCES", "OVERLAYS", "view", "slice_viewer", "slice_figure", "in_kernel"]

#: Sequence keys of the switch and their display names.
SEQUENCES = {"fluid_sensitive": "fluid-sensitive", "t1": "T1"}
#: Overlay toggles and the structures each one draws (colours of :data:`bmepipe.report.STRUCTURE_COLORS`).
OVERLAYS = {
    "regions": ("femoral_head", "femoral_neck", "intertrochanteric"),
    "bme": ("bme",),
    "necrosis": ("necrosis",),
    "subchondral_line": ("subchondral_line",),
    "effusion": ("effusion",),
}
_OVERLAY_LABELS = {"regions": "head/neck/intertroch.", "bme": "BME", "necrosis": "necrosis",
                   "subchondral_line": "subchondral line", "effusion": "effusion"}
_LINE_WIDTH = {"bme": 1.6, "necrosis": 1.6, "subchondral_line": 1.6, "effusion": 1.2}


@dataclass
class _Views:
    """Everything to draw, already in coronal display order ``[anterior->posterior, S->I, R->L]``."""

    images: dict  # sequence key -> float32 array
    spacing_mm: np.ndarray  # mm per step along the three display axes
    masks: dict = field(default_factory=dict)  # side -> structure -> bool array
    title: str = ""

    @property
    def n_slices(self) -> int:
        return next(iter(self.images.values())).shape[0]


def in_kernel() -> bool:
    """True inside a running Jupyter/IPython kernel (where widgets can display)."""
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and getattr(shell, "kernel", None) is not None


def _image_view(image, direction=None, spacing_zyx=None):
    """Coronal display view of a SimpleITK image (or of an array with its geometry)."""
    import SimpleITK as sitk

    if isinstance(image, sitk.Image):
        array = sitk.GetArrayFromImage(image)  # a copy: a view would dangle once a temporary image is freed
        spacing_zyx, direction = image.GetSpacing()[::-1], image.GetDirection()
    else:
        array = image
    view, spacing = coronal_view(np.asarray(array, np.float32), spacing_zyx, direction)
    return view, spacing


def _on_grid(image, reference):
    """``image`` resampled onto ``reference``'s grid (linear; 0 outside), unless it is already on it."""
    import SimpleITK as sitk

    same = (image.GetSize() == reference.GetSize()
            and np.allclose(image.GetSpacing(), reference.GetSpacing())
            and np.allclose(image.GetOrigin(), reference.GetOrigin())
            and np.allclose(image.GetDirection(), reference.GetDirection()))
    if same:
        return image
    return sitk.Resample(sitk.Cast(image, sitk.sitkFloat32), reference, sitk.Transform(), sitk.sitkLinear, 0.0)


def _views(source: Any) -> _Views:
    """Resolve any supported ``source`` into display-ordered images and masks."""
    import SimpleITK as sitk

    if hasattr(source, "normalized") and hasattr(source, "masks"):  # AnalysisResult
        norm = source.normalized
        if norm is None:
            raise ConfigError("this AnalysisResult holds no images (normalized is None); view the study instead")
        images = {"fluid_sensitive": norm.fluid}
        if norm.t1 is not None:
            images["t1"] = norm.t1
        ref = norm.fluid
        direction, spacing_zyx = ref.GetDirection(), ref.GetSpacing()[::-1]
        masks = {side: {s: coronal_view(np.asarray(m, bool), spacing_zyx, direction)[0] for s, m in per.items()}
                 for side, per in (source.masks or {}).items()}
        views = {k: _image_view(v) for k, v in images.items()}
        pseudonym = ((source.report or {}).get("inputs") or {}).get("study", {}).get("pseudonym", "")
        return _Views({k: v[0] for k, v in views.items()}, views["fluid_sensitive"][1], masks,
                      f"analysis {pseudonym}".strip())
    if hasattr(source, "series") and hasattr(source, "labels"):  # phantom SyntheticStudy
        geom = source.geometry
        spacing_zyx, direction = tuple(geom.spacing_mm)[::-1], geom.direction
        views = {"fluid_sensitive": _image_view(source.get("cor_fluid").signal, direction, spacing_zyx)}
        try:
            views["t1"] = _image_view(source.get("cor_t1").signal, direction, spacing_zyx)
        except KeyError:
            pass
        masks: dict = {}
        for name, mask in source.labels.items():
            side, structure = name.split("_", 1)
            masks.setdefault(side, {})[structure] = coronal_view(np.asarray(mask, bool), spacing_zyx, direction)[0]
        return _Views({k: v[0] for k, v in views.items()}, views["fluid_sensitive"][1], masks, "phantom truth")
    if hasattr(source, "volumes"):  # bmepipe.io.Study
        from .io import select_series

        sel = select_series(source)
        ref = sel.fluid_sensitive.image
        images = {"fluid_sensitive": ref}
        if sel.t1 is not None:
            images["t1"] = _on_grid(sel.t1.image, ref)
        return _Views({k: _image_view(v)[0] for k, v in images.items()}, _image_view(ref)[1],
                      title=sel.fluid_sensitive.meta.series_description or "")
    if hasattr(source, "image") and hasattr(source, "meta"):  # bmepipe.io.Volume
        key = "t1" if source.meta.sequence_class == "t1" else "fluid_sensitive"
        view, spacing = _image_view(source.image)
        return _Views({key: view}, spacing, title=source.meta.series_description or "")
    if isinstance(source, sitk.Image):
        view, spacing = _image_view(source)
        return _Views({"fluid_sensitive": view}, spacing)
    raise TypeError(f"cannot view a {type(source).__name__}: pass an AnalysisResult, Study, Volume, "
                    "SyntheticStudy or SimpleITK image")


def _check_overlays(overlays: Optional[Sequence[str]]) -> tuple[str, ...]:
    if overlays is None:
        return tuple(OVERLAYS)
    overlays = (overlays,) if isinstance(overlays, str) else tuple(overlays)
    bad = [o for o in overlays if o not in OVERLAYS]
    if bad:
        raise ConfigError(f"unknown overlay(s) {bad}; choose from {list(OVERLAYS)}")
    return overlays


def _available_overlays(views: _Views) -> tuple[str, ...]:
    """Overlay toggles with at least one voxel to draw."""
    return tuple(name for name, structures in OVERLAYS.items()
                 if any(views.masks.get(side, {}).get(s) is not None and views.masks[side][s].any()
                        for side in SIDES for s in structures))


def _draw(ax, views: _Views, sequence: str, index: int, overlays: Sequence[str], windows: dict) -> int:
    """Draw one slice with its contours on ``ax``; returns the number of contour sets drawn."""
    image = views.images[sequence][index]
    rows, cols = image.shape
    dy, dx = views.spacing_mm[1], views.spacing_mm[2]
    lo, hi = windows[sequence]
    ax.imshow(image, cmap="gray", vmin=lo, vmax=hi, extent=(0.0, cols * dx, rows * dy, 0.0),
              interpolation="nearest", aspect="equal")
    x, y = (np.arange(cols) + 0.5) * dx, (np.arange(rows) + 0.5) * dy  # pixel centres, mm
    drawn = 0
    for name in overlays:
        for structure in OVERLAYS[name]:
            for side in SIDES:
                mask = views.masks.get(side, {}).get(structure)
                if mask is None or not mask[index].any():
                    continue
                ax.contour(x, y, mask[index].astype(np.float32), levels=[0.5], colors=STRUCTURE_COLORS[structure],
                           linewidths=_LINE_WIDTH.get(structure, 1.0))
                drawn += 1
    ax.set_xlim(0, cols * dx)
    ax.set_ylim(rows * dy, 0)
    ax.set_axis_off()
    for text, xy, ha in (("R", (0.02, 0.5), "left"), ("L", (0.98, 0.5), "right")):
        ax.text(*xy, text, ha=ha, va="center", color="white", fontsize=10, fontweight="bold", transform=ax.transAxes)
    ax.set_title(f"{SEQUENCES.get(sequence, sequence)}, slice {index + 1}/{views.n_slices}", fontsize=9)
    return drawn


def _legend(fig, overlays: Sequence[str]) -> None:
    from matplotlib.lines import Line2D

    structures = [s for name in overlays for s in OVERLAYS[name]]
    if structures:
        handles = [Line2D([], [], color=STRUCTURE_COLORS[s], linewidth=2) for s in structures]
        fig.legend(handles, [s.replace("_", " ") for s in structures], loc="lower center",
                   ncol=min(len(structures), 4), fontsize=8, frameon=False)


def _new_figure(width_in: float, height_in: float):
    """A matplotlib Figure outside pyplot's state (nothing to close in scripts), Agg canvas."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width_in, height_in), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def _show_figures_in_kernel() -> None:
    """Let a Jupyter kernel display bare matplotlib Figures as PNG.

    IPython does so only after ``%matplotlib inline`` or a pyplot import; figures
    made without pyplot (as here) would otherwise show as ``<Figure size ...>``.
    """
    if not in_kernel():
        return
    from IPython import get_ipython
    from matplotlib.figure import Figure

    shell = get_ipython()
    formatter = getattr(getattr(shell, "display_formatter", None), "formatters", {}).get("image/png")
    if formatter is None:
        return
    try:
        formatter.lookup_by_type(Figure)
    except KeyError:
        formatter.for_type(Figure, _figure_png)


def _figure_png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", facecolor="white", metadata={"Software": None})
    return buf.getvalue()


def _default_slices(views: _Views, max_slices: int) -> list[int]:
    n = views.n_slices
    if any(m.any() for per in views.masks.values() for m in per.values()):
        chosen = [k for k, _ in choose_slices(views.masks, n)]
    else:
        chosen = []
    if len(chosen) < 2:  # nothing chosen by the masks: spread over the middle of the stack
        chosen = sorted(set(chosen) | {int(round(v)) for v in np.linspace(0.25 * (n - 1), 0.75 * (n - 1), max_slices)})
    if len(chosen) > max_slices:
        chosen = [chosen[int(round(i))] for i in np.linspace(0, len(chosen) - 1, max_slices)]
    return chosen


def _check_slice(index: int, n: int) -> int:
    index = int(index)
    if not 0 <= index < n:
        raise ConfigError(f"slice {index} outside 0..{n - 1}")
    return index


def slice_figure(
    source: Any,
    slices: Optional[Sequence[int]] = None,
    *,
    sequences: Optional[Sequence[str]] = None,
    overlays: Optional[Sequence[str]] = None,
    max_slices: int = 4,
    panel_width_in: float = 3.2,
):
    """A static grid of coronal slices: one row per sequence, one column per slice.

    Parameters
    ----------
    source : AnalysisResult, Study, Volume, SyntheticStudy or SimpleITK.Image
        What to show (see the module docstring).
    slices : sequence of int, optional
        Coronal slice indices (0 = most anterior). Default: the slices that
        matter (femoral-head centres, most BME, necrosis, subchondral line; as
        in the HTML report), else evenly spread over the middle of the stack.
    sequences : sequence of {'fluid_sensitive', 't1'}, optional
        Rows; default every sequence the source has.
    overlays : sequence of str, optional
        Keys of :data:`OVERLAYS` to draw; default all. Ignored for sources without masks.
    max_slices : int
        At most this many default slices.
    panel_width_in : float
        Width of one panel in inches.

    Returns
    -------
    matplotlib.figure.Figure
        ``len(sequences) * len(slices)`` axes; one contour set per side and
        structure drawn on each. Not registered with pyplot (Jupyter shows it
        with ``display(fig)``; scripts ``fig.savefig(path)``).
    """
    views = _views(source)
    overlays = _check_overlays(overlays)
    sequences = tuple(views.images) if sequences is None else tuple(sequences)
    missing = [s for s in sequences if s not in views.images]
    if missing or not sequences:
        raise ConfigError(f"sequence(s) {missing} not available; this source has {list(views.images)}")
    n = views.n_slices
    slices = _default_slices(views, max_slices) if slices is None else [_check_slice(k, n) for k in slices]
    windows = {s: display_window(views.images[s]) for s in sequences}
    rows_mm, cols_mm = views.images[sequences[0]].shape[1] * views.spacing_mm[1], \
        views.images[sequences[0]].shape[2] * views.spacing_mm[2]
    panel_h = panel_width_in * rows_mm / cols_mm + 0.3
    drawn_overlays = [o for o in overlays if o in _available_overlays(views)]
    legend_h = 0.5 if drawn_overlays else 0.1
    fig = _new_figure(panel_width_in * len(slices), panel_h * len(sequences) + legend_h + 0.5)
    axes = fig.subplots(len(sequences), len(slices), squeeze=False)
    for r, sequence in enumerate(sequences):
        for c, index in enumerate(slices):
            _draw(axes[r, c], views, sequence, index, drawn_overlays, windows)
    _legend(fig, drawn_overlays)
    fig.suptitle(f"{views.title}  (coronal, patient right on image left)".strip(), fontsize=9)
    fig.subplots_adjust(left=0.01, right=0.99, top=1 - 0.55 / fig.get_figheight(),
                        bottom=legend_h / fig.get_figheight(), wspace=0.03, hspace=0.12)
    _show_figures_in_kernel()
    return fig


def _png(views: _Views, sequence: str, index: int, overlays: Sequence[str], windows: dict, width_in: float) -> bytes:
    rows_mm = views.images[sequence].shape[1] * views.spacing_mm[1]
    cols_mm = views.images[sequence].shape[2] * views.spacing_mm[2]
    fig = _new_figure(width_in, width_in * rows_mm / cols_mm + 0.8)
    ax = fig.add_axes((0.0, 0.5 / fig.get_figheight(), 1.0, 1 - 0.8 / fig.get_figheight()))
    _draw(ax, views, sequence, index, overlays, windows)
    _legend(fig, overlays)
    return _figure_png(fig)


def slice_viewer(
    source: Any,
    *,
    sequence: str = "fluid_sensitive",
    slice_index: Optional[int] = None,
    overlays: Optional[Sequence[str]] = None,
    width_in: float = 6.0,
):
    """An ipywidgets viewer: slice slider, sequence switch, one checkbox per overlay.

    Parameters
    ----------
    source : AnalysisResult, Study, Volume, SyntheticStudy or SimpleITK.Image
        What to show (see the module docstring).
    sequence : {'fluid_sensitive', 't1'}
        Sequence shown first.
    slice_index : int, optional
        Coronal slice shown first (0 = most anterior); default the first slice
        that matters (see :func:`slice_figure`), else the middle one.
    overlays : sequence of str, optional
        Keys of :data:`OVERLAYS` switched on at first; default all. Only
        overlays with voxels in ``source`` get a checkbox.
    width_in : float
        Width of the rendered image in inches (100 dpi).

    Returns
    -------
    ipywidgets.VBox
        Children: ``HBox(slice IntSlider, sequence ToggleButtons)``,
        ``HBox(overlay Checkboxes)``, ``Image`` (PNG, re-rendered on every
        change). The controls are also in its ``controls`` dict
        (``'slice'``, ``'sequence'`` and the overlay keys).

    Raises
    ------
    ImportError
        ipywidgets is not installed (use :func:`view`, which falls back to :func:`slice_figure`).
    """
    import ipywidgets as widgets

    views = _views(source)
    on = _check_overlays(overlays)
    if sequence not in views.images:
        raise ConfigError(f"sequence {sequence!r} not available; this source has {list(views.images)}")
    n = views.n_slices
    index = _default_slices(views, 1)[0] if slice_index is None else _check_slice(slice_index, n)
    windows = {s: display_window(v) for s, v in views.images.items()}

    slider = widgets.IntSlider(value=index, min=0, max=n - 1, description="slice", continuous_update=False)
    switch = widgets.ToggleButtons(options=[(SEQUENCES[s], s) for s in views.images], value=sequence,
                                   description="sequence")
    checks = {name: widgets.Checkbox(value=name in on, description=_OVERLAY_LABELS[name], indent=False,
                                     layout=widgets.Layout(width="auto"))
              for name in _available_overlays(views)}
    image = widgets.Image(format="png")

    def update(_change=None) -> None:
        active = [name for name, box in checks.items() if box.value]
        image.value = _png(views, switch.value, slider.value, active, windows, width_in)

    for control in (slider, switch, *checks.values()):
        control.observe(update, names="value")
    update()
    box = widgets.VBox([widgets.HBox([slider, switch]), widgets.HBox(list(checks.values())), image])
    box.controls = {"slice": slider, "sequence": switch, **checks}
    return box


def view(
    source: Any,
    *,
    sequence: str = "fluid_sensitive",
    slice_index: Optional[int] = None,
    overlays: Optional[Sequence[str]] = None,
    interactive: Optional[bool] = None,
):
    """Show ``source``: the widget viewer in a Jupyter kernel, else a static figure.

    Parameters
    ----------
    source : AnalysisResult, Study, Volume, SyntheticStudy or SimpleITK.Image
    sequence, slice_index, overlays
        As in :func:`slice_viewer`; the static figure shows every sequence, and
        ``slice_index`` as its only slice when given.
    interactive : bool, optional
        Force the widget (True) or the static figure (False). Default: the
        widget when ipywidgets is importable and a kernel is running.

    Returns
    -------
    ipywidgets.VBox or matplotlib.figure.Figure
    """
    if interactive is None:
        try:
            import ipywidgets  # noqa: F401
        except ImportError:
            interactive = False
        else:
            interactive = in_kernel()
    if interactive:
        return slice_viewer(source, sequence=sequence, slice_index=slice_index, overlays=overlays)
    return slice_figure(source, None if slice_index is None else [slice_index], overlays=overlays)
