"""Label maps as NIfTI: one binary mask per side and structure on the fluid-sensitive grid.

Layout (stable; users' scripts and the cohort tools read it)::

    OUT/labels/<side>_<structure>.nii.gz     side: right | left
                                             structure: see bmepipe.report.schema.STRUCTURES

Every file is written, empty where nothing was found, as uint8 (0/1) with the
reference image's exact geometry, so it opens aligned with the images in 3D
Slicer or ITK-SNAP. SimpleITK converts the LPS geometry to the NIfTI RAS
qform/sform.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping, Union

import numpy as np

from bmepipe.errors import OutputError
from bmepipe.io.atomic import atomic_path

from .schema import SIDES, STRUCTURES

__all__ = ["label_path", "write_label_maps", "write_mask", "check_masks"]

PathLike = Union[str, "os.PathLike[str]"]


def label_path(out_dir: PathLike, side: str, structure: str) -> Path:
    """``out_dir/labels/<side>_<structure>.nii.gz``."""
    return Path(out_dir) / "labels" / f"{side}_{structure}.nii.gz"


def check_masks(masks: Mapping[str, Mapping[str, np.ndarray]], shape: tuple[int, int, int]) -> None:
    """Refuse unknown sides/structures and masks whose shape is not ``shape`` ``(slices, rows, columns)``."""
    for side, per_side in masks.items():
        if side not in SIDES:
            raise OutputError(f"unknown side {side!r}; expected one of {SIDES}")
        for structure, mask in per_side.items():
            if structure not in STRUCTURES:
                raise OutputError(f"unknown structure {structure!r}; expected one of {STRUCTURES}")
            if mask is not None and tuple(np.shape(mask)) != tuple(shape):
                raise OutputError(
                    f"{side} {structure} mask has shape {tuple(np.shape(mask))}, "
                    f"the reference grid (slices, rows, columns) is {tuple(shape)}"
                )


def write_label_maps(
    masks: Mapping[str, Mapping[str, np.ndarray]],
    reference_image,
    out_dir: PathLike,
) -> dict[str, Path]:
    """Write every side x structure mask as ``out_dir/labels/<side>_<structure>.nii.gz``.

    Parameters
    ----------
    masks : dict
        ``{side: {structure: bool ndarray [slice, row, column]}}`` on the
        reference grid. Missing sides, structures or ``None`` masks are written empty.
    reference_image : SimpleITK.Image
        The fluid-sensitive series; its size, spacing, origin and direction are copied.
    out_dir : path
        The analysis output folder (``labels/`` is created inside).

    Returns
    -------
    dict of str -> Path
        ``"<side>_<structure>"`` -> file, for all 18 combinations.
    """
    shape = tuple(reference_image.GetSize())[::-1]
    check_masks(masks, shape)
    written: dict[str, Path] = {}
    for side in SIDES:
        for structure in STRUCTURES:
            mask = masks.get(side, {}).get(structure)
            path = label_path(out_dir, side, structure)
            written[f"{side}_{structure}"] = write_mask(np.zeros(shape, bool) if mask is None else mask,
                                                       reference_image, path)
    return written


def write_mask(mask: np.ndarray, reference_image, path: PathLike, *, what: str = "label map") -> Path:
    """One binary mask ``[slice, row, column]`` as a compressed uint8 NIfTI on ``reference_image``'s grid.

    Written atomically; a failure raises :class:`OutputError` naming ``what`` and the file.
    """
    import SimpleITK as sitk

    image = sitk.GetImageFromArray(np.asarray(mask, dtype=bool).view(np.uint8))  # 0/1 bytes, no copy if bool
    image.CopyInformation(reference_image)
    try:
        with atomic_path(path) as tmp:
            sitk.WriteImage(image, str(tmp), useCompression=True)
    except (OSError, RuntimeError) as exc:
        raise OutputError(f"cannot write {what} ({' '.join(str(exc).split())[:200]})", path) from exc
    return Path(path)
