"""Typed values produced by :func:`bmepipe.io.load_study`.

These names are public API (notebooks and users' scripts rely on them):
``Study.volumes`` lists :class:`Volume` objects with ``.image`` (a SimpleITK
image in LPS) and ``.meta`` (:class:`VolumeMeta`); ``Study.skipped`` lists every
file or series set aside with its reason (:class:`Skipped`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Optional

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np
    import SimpleITK as sitk

__all__ = ["VolumeMeta", "Volume", "Skipped", "Study"]

SEQUENCE_CLASSES = ("fluid_sensitive", "t1", "other")
PLANES = ("coronal", "axial", "sagittal", "oblique")


@dataclass(frozen=True)
class VolumeMeta:
    """What the headers say about one volume (one geometric stack).

    Times are in ms, lengths in mm, field strength in tesla. ``None`` where the
    header does not say.
    """

    series_instance_uid: str
    series_description: str
    sequence_class: str  # one of SEQUENCE_CLASSES
    sequence_kind: str  # finer kind: stir, t2_fs, pd_fs, dixon_water, t1, t2, pd, localizer, other, ...
    sequence_reason: str  # which tags decided the class
    sequence_confidence: float  # 0..1
    plane: str  # one of PLANES
    modality: str = "MR"
    study_instance_uid: str = ""
    frame_of_reference_uid: str = ""
    series_number: Optional[int] = None
    manufacturer: Optional[str] = None
    manufacturer_model: Optional[str] = None
    field_strength_t: Optional[float] = None
    repetition_time_ms: Optional[float] = None
    echo_time_ms: Optional[float] = None
    inversion_time_ms: Optional[float] = None
    flip_angle_deg: Optional[float] = None
    scanning_sequence: tuple[str, ...] = ()
    sequence_variant: tuple[str, ...] = ()
    scan_options: tuple[str, ...] = ()
    sequence_name: Optional[str] = None
    image_type: tuple[str, ...] = ()
    slice_thickness_mm: Optional[float] = None
    spacing_mm: tuple[float, float, float] = (1.0, 1.0, 1.0)  # (column step, row step, slice step)
    slice_count: int = 0
    rows: int = 0
    columns: int = 0
    stack_label: str = ""  # why this stack was split off its series ("echo 2", "orientation 2", ...); "" if not split
    source_files: tuple[str, ...] = ()  # one per slice, in slice order (multi-frame: the same file repeated)
    repairs: tuple[str, ...] = ()  # safe repairs applied (e.g. "dropped 1 exact duplicate instance")

    @property
    def is_fluid_sensitive(self) -> bool:
        return self.sequence_class == "fluid_sensitive"

    def to_dict(self, *, with_files: bool = False) -> dict:
        """JSON-friendly dict (tuples as lists); ``source_files`` only if asked (long, and paths)."""
        d = asdict(self)
        if not with_files:
            d.pop("source_files")
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}


@dataclass
class Volume:
    """One 3-D volume: a SimpleITK image (LPS, slices ascending) and its metadata."""

    image: "sitk.Image"
    meta: VolumeMeta

    @property
    def array(self) -> "np.ndarray":
        """Voxel values as a float32 array indexed ``[slice, row, column]`` (a copy)."""
        import SimpleITK as sitk

        return sitk.GetArrayFromImage(self.image)

    def __repr__(self) -> str:
        m = self.meta
        return (
            f"Volume({m.series_description!r}, {m.sequence_class}/{m.sequence_kind}, {m.plane}, "
            f"size={self.image.GetSize()}, spacing={tuple(round(s, 3) for s in self.image.GetSpacing())})"
        )


@dataclass(frozen=True)
class Skipped:
    """A file or series that was set aside, and why."""

    path: str  # file, or folder/series description for a whole series
    reason: str
    series_instance_uid: Optional[str] = None
    kind: str = "file"  # "file" or "series"


@dataclass
class Study:
    """Everything :func:`bmepipe.io.load_study` found under one folder."""

    root: Path
    volumes: list[Volume] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    non_dicom_files: int = 0
    study_instance_uids: tuple[str, ...] = ()

    def __repr__(self) -> str:
        lines = [f"Study({len(self.volumes)} volumes, {len(self.skipped)} set aside, "
                 f"{self.non_dicom_files} non-DICOM files)"]
        lines += [f"  {v!r}" for v in self.volumes]
        lines += [f"  set aside: {s.path}: {s.reason}" for s in self.skipped]
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        from html import escape

        rows = "".join(
            f"<tr><td>{escape(v.meta.series_description or '')}</td><td>{v.meta.sequence_class}</td>"
            f"<td>{v.meta.sequence_kind}</td><td>{v.meta.plane}</td><td>{v.meta.slice_count}</td>"
            f"<td>{' x '.join(f'{s:.2f}' for s in v.image.GetSpacing())}</td>"
            f"<td>{escape(v.meta.stack_label)}</td></tr>"
            for v in self.volumes)
        aside = "".join(f"<li>{escape(s.path)}: {escape(s.reason)}</li>" for s in self.skipped)
        return ("<table><tr><th>series</th><th>class</th><th>kind</th><th>plane</th><th>slices</th>"
                f"<th>spacing (mm)</th><th>stack</th></tr>{rows}</table>"
                + (f"<p>Set aside:</p><ul>{aside}</ul>" if aside else "")
                + f"<p>{self.non_dicom_files} non-DICOM files ignored.</p>")
