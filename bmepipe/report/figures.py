"""Coronal overlay figures for the HTML report (matplotlib, Agg; no display needed).

Every figure shows one coronal slice of the fluid-sensitive series (and of
the T1 series registered onto the same grid, side by side) with contours of
the structures below, in radiological convention: the patient's right on the
image's left, head at the top. Pixels keep their true aspect (extent in mm).

=================  ==========  =====================
structure          colour      line
=================  ==========  =====================
femoral_head       gold        solid
femoral_neck       orange      solid
intertrochanteric  yellow-green solid
bme                sky blue    solid, thicker
necrosis           magenta     solid, thicker
subchondral_line   red         solid, thicker
=================  ==========  =====================
"""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass, field
from typing import Mapping, Optional, Sequence

import numpy as np

from bmepipe.errors import OutputError

from .codes import STRUCTURE_COLORS
from .schema import SIDES

__all__ = ["Figure", "OVERLAY_STRUCTURES", "overlay_figures", "coronal_view", "choose_slices", "display_window"]

#: Structures drawn as contours, in drawing order (lesions last, on top).
OVERLAY_STRUCTURES = ("femoral_head", "femoral_neck", "intertrochanteric", "bme", "necrosis", "subchondral_line")
_LINE_WIDTH = {"bme": 1.6, "necrosis": 1.6, "subchondral_line": 1.6}
#: Default SimpleITK direction of a coronal series: rows along +x (patient left), columns along -z (feet).
CORONAL_DIRECTION = (1.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, -1.0, 0.0)


@dataclass(frozen=True)
class Figure:
    """One rendered figure: a PNG and what it shows.

    Attributes
    ----------
    title : str
    caption : str
        Orientation, colour key and slice.
    png : bytes
    slice_index : int
        Coronal slice index in the displayed (coronal) orientation.
    reasons : tuple of str
        Why this slice was chosen (e.g. ``"right femoral head centre"``).
    """

    title: str
    caption: str
    png: bytes = field(repr=False)
    slice_index: int = 0
    reasons: tuple[str, ...] = ()

    def data_uri(self) -> str:
        """``data:image/png;base64,...`` for inline HTML."""
        return "data:image/png;base64," + base64.b64encode(self.png).decode("ascii")

    def _repr_png_(self) -> bytes:
        return self.png


def coronal_view(array: np.ndarray, spacing_mm: Sequence[float], direction: Optional[Sequence[float]] = None):
    """Reorient a ``[slice, row, column]`` array to coronal display order.

    Parameters
    ----------
    array : ndarray, 3-D
    spacing_mm : (slice, row, column) spacing of ``array``'s axes, mm
    direction : 9 floats, optional
        SimpleITK direction of the grid (columns: row direction, column
        direction, slice normal, LPS). Default a coronal series as bmepipe.io
        loads it (already in display order). Oblique grids go to the nearest axes.

    Returns
    -------
    view : ndarray
        Indexed ``[anterior->posterior, superior->inferior, patient right->left]``.
    spacing : (3,) ndarray
        mm per step along those axes.
    """
    d = np.asarray(CORONAL_DIRECTION if direction is None else direction, float).reshape(3, 3)
    axis_vectors = [d[:, 2], d[:, 1], d[:, 0]]  # array axes 0, 1, 2 in LPS
    targets = ((1, 1.0), (2, -1.0), (0, 1.0))  # (LPS axis, sign): +y posterior, -z down, +x patient left
    order, flips = [], []
    for lps_axis, sign in targets:
        a = int(np.argmax([abs(v[lps_axis]) for v in axis_vectors]))
        order.append(a)
        flips.append(np.sign(axis_vectors[a][lps_axis]) != sign)
    if sorted(order) != [0, 1, 2]:
        raise OutputError("cannot show this grid in coronal orientation (oblique by about 45 degrees)")
    view = np.transpose(np.asarray(array), order)
    for axis, flip in enumerate(flips):
        if flip:
            view = np.flip(view, axis)
    return view, np.asarray(spacing_mm, float)[order]


def choose_slices(masks_view: Mapping[str, Mapping[str, np.ndarray]], n_slices: int) -> list[tuple[int, list[str]]]:
    """Coronal slices that matter, with the reasons, in slice order.

    Through each femoral head centre (mask centroid), and the slices with the
    most BME, necrosis and subchondral line (both sides together). The middle
    slice if no mask has any voxel.
    """
    chosen: dict[int, list[str]] = {}
    for side in SIDES:
        head = masks_view.get(side, {}).get("femoral_head")
        counts = None if head is None else head.sum(axis=(1, 2), dtype=np.int64)
        if counts is not None and counts.any():  # centroid slice: mean slice index over the head's voxels
            centre = int(round(float(counts @ np.arange(n_slices)) / float(counts.sum())))
            chosen.setdefault(centre, []).append(f"{side} femoral head centre")
    for structure, words in (("bme", "most BME"), ("necrosis", "most necrosis"),
                             ("subchondral_line", "most subchondral line")):
        counts = np.zeros(n_slices)
        for side in SIDES:
            mask = masks_view.get(side, {}).get(structure)
            if mask is not None:
                counts += mask.sum(axis=(1, 2))
        if counts.max() > 0:
            chosen.setdefault(int(np.argmax(counts)), []).append(words)
    if not chosen:
        chosen[n_slices // 2] = ["middle slice"]
    return sorted(chosen.items())


def display_window(volume: np.ndarray) -> tuple[float, float]:
    """Display range (1st and 99.5th percentile of the finite voxels) of a volume."""
    sample = volume.ravel()[:: max(1, volume.size // 1_000_000)]  # a million voxels fix the window
    finite = sample[np.isfinite(sample)]
    if finite.size == 0:
        return 0.0, 1.0
    lo, hi = np.percentile(finite, [1.0, 99.5])
    return float(lo), float(hi if hi > lo else lo + 1.0)


def _render(panels, masks_view, index, spacing, title) -> bytes:
    from matplotlib import patheffects
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure as MplFigure
    from matplotlib.lines import Line2D
    from skimage.measure import find_contours

    rows, cols = panels[0][1].shape[1:]
    height_mm, width_mm = rows * spacing[1], cols * spacing[2]
    panel_w = 4.8
    panel_h = panel_w * height_mm / width_mm
    legend_rows = 1 if len(panels) > 1 else 2  # one panel is too narrow for six entries in a row
    bottom = 0.55 + 0.25 * legend_rows  # inches below the images: legend, then the title line(s)
    total_h = panel_h + bottom
    fig = MplFigure(figsize=(panel_w * len(panels), total_h), dpi=100)
    FigureCanvasAgg(fig)
    extent = (0.0, width_mm, height_mm, 0.0)
    outline = [patheffects.withStroke(linewidth=2.5, foreground="black")]  # letters readable on bright marrow
    # Contours (mm) once per structure, traced on the mask's bounding box only: the same on every panel.
    contours = []
    for structure in OVERLAY_STRUCTURES:
        for side in SIDES:
            mask = masks_view.get(side, {}).get(structure)
            if mask is None or not mask[index].any():
                continue
            rows_any, cols_any = np.flatnonzero(mask[index].any(axis=1)), np.flatnonzero(mask[index].any(axis=0))
            r0, c0 = rows_any[0], cols_any[0]
            padded = np.pad(mask[index, r0 : rows_any[-1] + 1, c0 : cols_any[-1] + 1].astype(np.float32), 1)
            for contour in find_contours(padded, 0.5):
                y = (contour[:, 0] + r0 - 1 + 0.5) * spacing[1]
                x = (contour[:, 1] + c0 - 1 + 0.5) * spacing[2]
                contours.append((structure, x, y))
    for p, (name, volume, window) in enumerate(panels):
        ax = fig.add_axes((p / len(panels), bottom / total_h, 1.0 / len(panels), panel_h / total_h))
        ax.imshow(volume[index], cmap="gray", vmin=window[0], vmax=window[1], extent=extent,
                  interpolation="nearest", aspect="equal")
        for structure, x, y in contours:
            ax.plot(x, y, color=STRUCTURE_COLORS[structure], linewidth=_LINE_WIDTH.get(structure, 1.0))
        ax.set_xlim(0, width_mm)
        ax.set_ylim(height_mm, 0)
        ax.set_axis_off()
        style = dict(color="white", fontsize=11, fontweight="bold", transform=ax.transAxes, path_effects=outline)
        ax.text(0.02, 0.5, "R", ha="left", va="center", **style)
        ax.text(0.98, 0.5, "L", ha="right", va="center", **style)
        ax.text(0.5, 0.98, "S", ha="center", va="top", **style)
        ax.text(0.02, 0.98, name, ha="left", va="top", color="yellow", fontsize=9, transform=ax.transAxes,
                path_effects=outline)
    handles = [Line2D([], [], color=STRUCTURE_COLORS[s], linewidth=2) for s in OVERLAY_STRUCTURES]
    fig.legend(handles, [s.replace("_", " ") for s in OVERLAY_STRUCTURES], loc="lower center",
               ncol=len(OVERLAY_STRUCTURES) // legend_rows, fontsize=8, frameon=False,
               bbox_to_anchor=(0.5, 0.3 / total_h))
    separator = "  |  " if len(panels) > 1 else "\n"
    fig.text(0.5, 0.04 / total_h, title + separator + "radiological convention: patient right on image left",
             ha="center", va="bottom", fontsize=8)
    buf = io.BytesIO()
    # zlib level 1: a third of the default level's time for a PNG about a tenth larger (pixels identical)
    fig.savefig(buf, format="png", facecolor="white", metadata={"Software": None}, pil_kwargs={"compress_level": 1})
    return buf.getvalue()


def overlay_figures(
    fluid_image_zyx: np.ndarray,
    t1_image_zyx_or_None: Optional[np.ndarray],
    masks: Mapping[str, Mapping[str, np.ndarray]],
    spacing: Sequence[float],
    slices: Optional[Sequence[int]] = None,
    *,
    direction: Optional[Sequence[float]] = None,
) -> list[Figure]:
    """Coronal overlay figures at the slices that matter.

    Parameters
    ----------
    fluid_image_zyx : ndarray [slice, row, column]
        Fluid-sensitive (STIR / fat-suppressed) volume.
    t1_image_zyx_or_None : ndarray or None
        T1 volume on the same grid (registered), shown beside it.
    masks : dict
        ``{side: {structure: bool ndarray}}`` on the same grid.
    spacing : (slice, row, column) mm
        Voxel spacing along the array axes.
    slices : sequence of int, optional
        Coronal slice indices (display orientation); default :func:`choose_slices`.
    direction : 9 floats, optional
        SimpleITK direction of the grid, for non-coronal series (see :func:`coronal_view`).

    Returns
    -------
    list of Figure
    """
    fluid = np.asarray(fluid_image_zyx, dtype=np.float32)
    if fluid.ndim != 3:
        raise OutputError(f"fluid image must be 3-D, got shape {fluid.shape}")
    if t1_image_zyx_or_None is not None and np.shape(t1_image_zyx_or_None) != fluid.shape:
        raise OutputError(f"T1 image shape {np.shape(t1_image_zyx_or_None)} != fluid image shape {fluid.shape}")
    fluid_view, spacing_view = coronal_view(fluid, spacing, direction)
    panels = [("fluid-sensitive (STIR)", fluid_view, display_window(fluid_view))]
    if t1_image_zyx_or_None is not None:
        t1_view = coronal_view(np.asarray(t1_image_zyx_or_None, np.float32), spacing, direction)[0]
        panels.append(("T1", t1_view, display_window(t1_view)))
    masks_view: dict[str, dict[str, np.ndarray]] = {}
    for side, per_side in masks.items():
        for structure, mask in per_side.items():
            if mask is None:
                continue
            if np.shape(mask) != fluid.shape:
                raise OutputError(f"{side} {structure} mask shape {np.shape(mask)} != image shape {fluid.shape}")
            masks_view.setdefault(side, {})[structure] = coronal_view(np.asarray(mask, bool), spacing, direction)[0]

    n = fluid_view.shape[0]
    if slices is None:
        chosen = choose_slices(masks_view, n)
    else:
        chosen = [(int(k), ["requested"]) for k in slices]
    figures = []
    for index, reasons in chosen:
        if not 0 <= index < n:
            raise OutputError(f"coronal slice {index} outside 0..{n - 1}")
        title = f"Coronal slice {index + 1} of {n}: " + ", ".join(reasons)
        caption = (title + ". Radiological convention (patient right on image left, head at top). Contours: "
                   + ", ".join(f"{s.replace('_', ' ')} {STRUCTURE_COLORS[s]}" for s in OVERLAY_STRUCTURES) + ".")
        png = _render(panels, masks_view, index, spacing_view, title)
        figures.append(Figure(title=title, caption=caption, png=png, slice_index=index, reasons=tuple(reasons)))
    return figures
