"""Expected standardized signal of edema water on a given sequence (signal equations).

BME is measured as an edema-equivalent fraction ``e`` of the marrow (regions.md):
a voxel's fluid-sensitive signal rises linearly from the normal-marrow level
(``e`` = 0) to the signal of pure edema water (``e`` = 1). Standardized images
divide by skeletal muscle, so pure edema sits at ``S_edema / S_muscle`` of the
sequence, computed here from the signal equations of mr_physics.md section 3
(spin echo ``PD (1 - exp(-TR/T1)) exp(-TE/T2)``; magnitude inversion recovery
``PD |1 - 2 exp(-TI/T1) + exp(-TR/T1)| exp(-TE/T2)``) with mid-range relaxation
times of mr_physics.md table 1: muscle 1.5 T T1 925 ms / T2 35.5 ms [approx],
3 T T1 982 ms (de Bazelaire et al., Radiology 2004;230:652 [src] and [approx]
range) / T2 31.5 ms (Pai et al., Magn Reson Imaging 2008;26:1215 [src]); edema
1.5 T T1 1150 / T2 90 ms, 3 T T1 1400 / T2 82.5 ms [approx]; proton density muscle
0.75, edema 0.95 [approx]; synovial fluid 1.5 T T1 3200 / T2 850 ms, 3 T T1 4150 /
T2 750 ms, PD 1.0 (mr_physics.md, commonly quoted from Gold et al., AJR
2004;183:343 [approx]). Relaxation times of real edema vary (T2 60-120 ms), so
the result is a calibration with about +-30 % spread (on T2-FS, where edema and
muscle T2 both matter, up to 2x), not a measurement; ``pv_factor`` [tuned] absorbs
the partial volume of a clinical voxel. :func:`edema_signal_range` gives the span the
literature ranges allow; where the study shows enough edema on T1,
:func:`bmepipe.quantify.bme.edema_signal_from_marrow` calibrates on the study itself.
"""

from __future__ import annotations

import math
from typing import Optional

__all__ = ["signal_ratio", "edema_signal_range", "RELAXATION", "RELAXATION_RANGES"]

#: (T1 ms, T2 ms, proton density) at 1.5 and 3 T, mid-range of mr_physics.md table 1 (see module docstring).
RELAXATION = {
    1.5: {"muscle": (925.0, 35.5, 0.75), "edema": (1150.0, 90.0, 0.95), "fluid": (3200.0, 850.0, 1.0)},
    3.0: {"muscle": (982.0, 31.5, 0.75), "edema": (1400.0, 82.5, 0.95), "fluid": (4150.0, 750.0, 1.0)},
}


#: Literature ranges (T1 ms, T2 ms, proton density), each (low, high), of muscle and edema water at 1.5 and 3 T
#: (mr_physics.md table 1; muscle 3 T T1 de Bazelaire et al. 2004 [src] widened to the [approx] range, T2 Pai et
#: al. 2008 [src]; the rest [approx]).
RELAXATION_RANGES = {
    1.5: {"muscle": ((850.0, 1000.0), (27.0, 44.0), (0.7, 0.8)), "edema": ((900.0, 1400.0), (60.0, 120.0), (0.9, 1.0))},
    3.0: {"muscle": ((865.0, 1100.0), (27.0, 36.0), (0.7, 0.8)), "edema": ((1100.0, 1700.0), (55.0, 110.0), (0.9, 1.0))},
}


def _sequence(kind: str, field_strength_t, repetition_time_ms, echo_time_ms, inversion_time_ms):
    """``(1.5 or 3.0, signal arguments)`` of a sequence; None when a needed header value is missing."""
    if field_strength_t is None or repetition_time_ms is None or echo_time_ms is None:
        return None
    if kind == "stir" and not inversion_time_ms:
        return None
    field = 3.0 if field_strength_t >= 2.25 else 1.5
    return field, (str(kind), float(repetition_time_ms), float(echo_time_ms), inversion_time_ms)


def _signal(t1: float, t2: float, pd: float, kind: str, tr: float, te: float, ti: Optional[float]) -> float:
    if kind == "stir":
        return pd * abs(1.0 - 2.0 * math.exp(-ti / t1) + math.exp(-tr / t1)) * math.exp(-te / t2)
    return pd * (1.0 - math.exp(-tr / t1)) * math.exp(-te / t2)


def signal_ratio(tissue: str, kind: str, field_strength_t: Optional[float], repetition_time_ms: Optional[float],
                       echo_time_ms: Optional[float], inversion_time_ms: Optional[float] = None,
                       *, pv_factor: float = 1.0) -> Optional[float]:
    """Signal of a tissue (``'edema'`` water or joint ``'fluid'``) / signal of skeletal muscle on one sequence.

    Parameters
    ----------
    tissue : {'edema', 'fluid'}
    kind : str
        ``'stir'`` (magnitude inversion recovery; needs TI), ``'t1'`` or any
        fat-suppressed / Dixon-water spin-echo kind (``'t2_fs'``, ``'pd_fs'``, ...).
    field_strength_t : float
        The nearer of 1.5 and 3 T tables is used.
    repetition_time_ms, echo_time_ms, inversion_time_ms : float
    pv_factor : float
        Multiplies the ratio (partial volume of clinical voxels) [tuned].

    Returns
    -------
    float or None
        None when a needed header value is missing (the caller falls back to a
        parameter).
    """
    seq = _sequence(kind, field_strength_t, repetition_time_ms, echo_time_ms, inversion_time_ms)
    if seq is None:
        return None
    field, args = seq
    table = RELAXATION[field]
    muscle = _signal(*table["muscle"], *args)
    if muscle <= 0:
        return None
    return pv_factor * _signal(*table[tissue], *args) / muscle


def edema_signal_range(kind: str, field_strength_t: Optional[float], repetition_time_ms: Optional[float],
                       echo_time_ms: Optional[float], inversion_time_ms: Optional[float] = None
                       ) -> Optional[tuple[float, float]]:
    """(Lowest, highest) signal of pure edema water / signal of muscle that the literature ranges allow.

    Every combination of the ends of :data:`RELAXATION_RANGES` for edema and muscle
    (and the middle of the T1 ranges, where magnitude inversion recovery is not
    monotonic) on the sequence; arguments as in :func:`signal_ratio`. None when a
    needed header value is missing.
    """
    seq = _sequence(kind, field_strength_t, repetition_time_ms, echo_time_ms, inversion_time_ms)
    if seq is None:
        return None
    field, args = seq
    ranges = RELAXATION_RANGES[field]

    def corners(tissue):
        (t1a, t1b), t2s, pds = ranges[tissue]
        return [(t1, t2, pd) for t1 in (t1a, 0.5 * (t1a + t1b), t1b) for t2 in t2s for pd in pds]

    ratios = [_signal(*e, *args) / _signal(*m, *args) for e in corners("edema") for m in corners("muscle")]
    return min(ratios), max(ratios)
