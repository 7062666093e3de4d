"""Sequence recognition and imaging plane from DICOM header facts.

Physics tags decide, descriptions only support (``shared/reference/mr_physics.md``
section 6: "never trust descriptions alone"):

* IR in ScanningSequence (or an IR scan option / Siemens ``*tir`` sequence name)
  with a short inversion time -> STIR (``fluid_sensitive``). The fat null is at
  TI = T1_fat ln 2: about 140-180 ms at 1.5 T and 210-265 ms at 3 T, so TI up to
  :data:`STIR_MAX_TI_MS` counts as STIR; FLAIR-like long TI (> 1500 ms) does not.
* Spectral fat suppression (ScanOptions ``FS``/``SFS``/``FAT_SAT``/``SPAIR``/``SPIR``
  or such description tokens) with a long TR -> PD-FS (TE < 60 ms) or T2-FS.
* Dixon water images (ImageType ``WATER`` / ``W`` with ``DIXON``) -> fluid-sensitive.
* Short TR (< 1000 ms) and short TE (< 30 ms) without suppression -> T1.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterable, Optional, Sequence

import numpy as np

__all__ = ["SequenceInfo", "classify_sequence", "plane_of", "STIR_MAX_TI_MS"]

#: Longest inversion time still read as STIR (fat null at 3 T about 265 ms, mr_physics.md 3) [calc + margin].
STIR_MAX_TI_MS = 320.0
#: Shortest inversion time of a FLAIR / fluid-nulled series [approx].
FLAIR_MIN_TI_MS = 1500.0
#: T1-weighted spin echo / TSE: TR and TE below these (mr_physics.md 5: TR 400-800, TE 8-20) [approx].
T1_MAX_TR_MS = 1000.0
T1_MAX_TE_MS = 30.0
#: Long-TR series: PD below this effective TE, T2 at or above it [approx].
T2_MIN_TE_MS = 60.0
#: Angle (degrees) from the nearest cardinal plane beyond which a stack is "oblique".
OBLIQUE_DEG = 25.0

_FS_OPTIONS = {"FS", "SFS", "FAT_SAT", "FATSAT", "SPAIR", "SPIR", "SPECIAL", "CHESS", "FS_GEMS", "FAT_SAT_GEMS"}
_FS_WORDS = re.compile(r"(?<![a-z])(fs|fsat|fatsat|fat[ _-]?sat|spair|spir|spectral|chess|fat[ _-]?sup\w*)(?![a-z])",
                       re.I)
_STIR_WORDS = re.compile(r"(stir|tirm|tir(?![a-z])|short[ _-]?tau)", re.I)
_T1_WORDS = re.compile(r"(?<![a-z0-9])t1(?![0-9])", re.I)
_T2_WORDS = re.compile(r"(?<![a-z0-9])t2(?![0-9])", re.I)
_PD_WORDS = re.compile(r"(?<![a-z0-9])(pd|pdw|dp|proton)", re.I)
_DIXON_WORDS = re.compile(r"(dixon|ideal|flex|mdixon)", re.I)
_WATER_WORDS = re.compile(r"(?<![a-z])(w|water|wat)(?![a-z])", re.I)


@dataclass(frozen=True)
class SequenceInfo:
    """Result of :func:`classify_sequence`."""

    sequence_class: str  # fluid_sensitive | t1 | other
    kind: str  # stir, t2_fs, pd_fs, dixon_water, t1, t1_fs, t2, pd, flair, dixon_fat, ...
    reason: str
    confidence: float


def _tokens(value) -> set[str]:
    if value is None:
        return set()
    if isinstance(value, str):
        items: Iterable[str] = re.split(r"[\\/ ,]+", value)
    else:
        items = value
    return {str(v).strip().upper() for v in items if str(v).strip()}


def classify_sequence(
    *,
    scanning_sequence: Sequence[str] | str | None = (),
    sequence_variant: Sequence[str] | str | None = (),
    scan_options: Sequence[str] | str | None = (),
    image_type: Sequence[str] | str | None = (),
    repetition_time_ms: Optional[float] = None,
    echo_time_ms: Optional[float] = None,
    inversion_time_ms: Optional[float] = None,
    field_strength_t: Optional[float] = None,
    series_description: str = "",
    protocol_name: str = "",
    sequence_name: str = "",
    modality: str = "MR",
) -> SequenceInfo:
    """Classify a series as fluid-sensitive, T1-weighted or other.

    Parameters
    ----------
    scanning_sequence, sequence_variant, scan_options, image_type
        The DICOM multi-valued attributes (lists or backslash-separated strings).
    repetition_time_ms, echo_time_ms, inversion_time_ms : float, optional
    field_strength_t : float, optional
    series_description, protocol_name, sequence_name : str
        Vendor text; supports or, without physics tags, decides with low confidence.

    Returns
    -------
    SequenceInfo
        ``sequence_class`` in ``fluid_sensitive``, ``t1``, ``other``; the finer
        ``kind``; the ``reason`` (which tags decided); ``confidence`` 0-1.
    """
    if modality and modality.upper() != "MR":
        return SequenceInfo("other", "not_mr", f"Modality {modality}", 1.0)
    ss, opts, itype = _tokens(scanning_sequence), _tokens(scan_options), _tokens(image_type)
    text = " ".join(t for t in (series_description, protocol_name) if t)
    seqname = (sequence_name or "").lower()
    tr, te, ti = repetition_time_ms, echo_time_ms, inversion_time_ms
    desc_stir = bool(_STIR_WORDS.search(text))
    desc_fs = bool(_FS_WORDS.search(text))
    field = f" at {field_strength_t:g} T" if field_strength_t else ""

    # Dixon: the water image is the fluid-sensitive equivalent; fat / in- / opposed-phase are other.
    if "DIXON" in itype or _DIXON_WORDS.search(text):
        if "WATER" in itype or "W" in itype or _WATER_WORDS.search(text):
            return SequenceInfo("fluid_sensitive", "dixon_water", "Dixon water image (ImageType/description)", 0.9)
        return SequenceInfo("other", "dixon_other", "Dixon fat / in-phase / opposed-phase image", 0.8)

    is_ir = "IR" in ss or "IR" in opts or seqname.startswith(("*tir", "tir"))
    if is_ir:
        if ti is not None and ti > 0:
            if ti <= STIR_MAX_TI_MS:
                conf = 0.95 if desc_stir or not text else 0.85
                return SequenceInfo("fluid_sensitive", "stir",
                                    f"inversion recovery (ScanningSequence {'/'.join(sorted(ss)) or '?'}) "
                                    f"with TI {ti:g} ms{field}: short-tau fat nulling", conf)
            if ti >= FLAIR_MIN_TI_MS:
                return SequenceInfo("other", "flair", f"inversion recovery with long TI {ti:g} ms (fluid nulled)", 0.9)
            return SequenceInfo("other", "t1_ir", f"inversion recovery with intermediate TI {ti:g} ms", 0.7)
        if desc_stir:
            return SequenceInfo("fluid_sensitive", "stir", "inversion recovery without TI; description says STIR",
                                0.6)
    fat_sat = bool(opts & _FS_OPTIONS) or any(o.startswith("FS") and o.endswith("_GEMS") for o in opts) or desc_fs
    fs_why = ("ScanOptions " + "/".join(sorted(opts & _FS_OPTIONS))) if opts & _FS_OPTIONS else "description"
    if tr is not None and te is not None:
        if tr < T1_MAX_TR_MS and te < T1_MAX_TE_MS:
            if fat_sat:
                return SequenceInfo("other", "t1_fs", f"short TR {tr:g} / TE {te:g} ms with fat suppression "
                                    f"({fs_why}): T1 fat-saturated (often post-contrast)", 0.8)
            conf = 0.95 if _T1_WORDS.search(text) else 0.85
            return SequenceInfo("t1", "t1", f"short TR {tr:g} ms and TE {te:g} ms, no fat suppression: "
                                "T1-weighted", conf)
        if tr >= 1500.0:
            weighting = "t2" if te >= T2_MIN_TE_MS else "pd"
            if fat_sat:
                conf = 0.9 if fs_why != "description" else 0.75
                return SequenceInfo("fluid_sensitive", f"{weighting}_fs", f"long TR {tr:g} ms, TE {te:g} ms, fat "
                                    f"suppression ({fs_why}): {weighting.upper()}-weighted fat-saturated", conf)
            return SequenceInfo("other", weighting, f"long TR {tr:g} ms, TE {te:g} ms without fat suppression", 0.8)
    # No usable timing: descriptions decide, with low confidence.
    if desc_stir:
        return SequenceInfo("fluid_sensitive", "stir", "description says STIR/TIRM (no timing tags)", 0.5)
    if desc_fs and (_T2_WORDS.search(text) or _PD_WORDS.search(text)):
        kind = "t2_fs" if _T2_WORDS.search(text) else "pd_fs"
        return SequenceInfo("fluid_sensitive", kind, "description says fat-suppressed T2/PD (no timing tags)", 0.5)
    if _T1_WORDS.search(text) and not desc_fs:
        return SequenceInfo("t1", "t1", "description says T1 (no timing tags)", 0.5)
    return SequenceInfo("other", "other", "no tag or description identifies the contrast", 0.3)


def plane_of(direction: Sequence[float]) -> str:
    """Imaging plane of a stack from its SimpleITK direction (9 floats; third column = slice normal).

    ``coronal`` (normal along y), ``axial`` (z), ``sagittal`` (x), or ``oblique``
    when the normal is more than :data:`OBLIQUE_DEG` degrees from every axis.
    """
    normal = np.asarray(direction, dtype=float).reshape(3, 3)[:, 2]
    axis = int(np.argmax(np.abs(normal)))
    angle = np.degrees(np.arccos(min(1.0, abs(normal[axis]) / max(np.linalg.norm(normal), 1e-12))))
    if angle > OBLIQUE_DEG:
        return "oblique"
    return ("sagittal", "coronal", "axial")[axis]
