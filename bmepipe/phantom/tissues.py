"""Tissue relaxation properties and MR signal equations for the hip phantom.

Relaxation times (ms) and relative proton density (water = 1) at 1.5 T and 3 T
come from ``shared/reference/mr_physics.md`` section 1. Figures marked
``[src]`` there are de Bazelaire et al., Radiology 2004;230:652 (3 T fat,
muscle, red marrow) and Pai, Li & Majumdar, Magn Reson Imaging 2008;26:1215
(3 T marrow, muscle and cartilage T2); everything else is ``[approx]``, so each
study samples a value uniformly inside the range instead of using one number.

Signal equations (mr_physics.md section 3), magnitude, per compartment:

* spin echo / TSE: ``S = PD (1 - exp(-TR/T1)) exp(-TE/T2)``
* inversion recovery (STIR): ``S = PD |1 - 2 exp(-TI/T1) + exp(-TR/T1)| exp(-TE/T2)``
* spectral fat saturation: fat compartments multiplied by ``1 - eta`` (eta = local
  fat-saturation efficiency), water compartments unchanged.

A voxel's signal is the sum of its compartments' signals weighted by their
volume fractions, so one set of tissue-fraction maps gives every sequence.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = [
    "COMPARTMENTS",
    "FAT_COMPARTMENTS",
    "TissueProperties",
    "sample_tissue_properties",
    "spin_echo_signal",
    "inversion_recovery_signal",
    "stir_null_inversion_time_ms",
    "compartment_signals",
]

#: Signal compartments of a voxel (index = position in the fraction vector).
COMPARTMENTS = (
    "air",  # no signal
    "fat",  # subcutaneous, intermuscular and pelvic fat
    "muscle",
    "urine",  # bladder
    "cortex",  # cortical bone: no visible signal (T2* ~0.3-0.5 ms)
    "marrow_fat",  # fat of (yellow) marrow
    "marrow_water",  # normal marrow water
    "edema",  # edema water replacing marrow (regions.md convention)
    "cartilage",  # hyaline cartilage
    "fluid",  # synovial fluid / effusion
    "fibrous",  # sclerotic/fibrous tissue: AVN band, subchondral fracture line, labrum
    "granulation",  # AVN inner rim (hypervascular granulation tissue)
    "flow_void",  # fast-flowing blood in the femoral vessels: dark on spin echo
)
FAT_COMPARTMENTS = ("fat", "marrow_fat")

# name: (T1 1.5 T, T1 3 T, T2 1.5 T, T2 3 T, PD), each a (low, high) range.
# Sources: mr_physics.md table 1. [src] rows: fat 3 T 382 +- 13 / 68 +- 4, muscle 3 T
# 898 +- 33 / 29 +- 4 (de Bazelaire 2004); marrow 3 T T2 42-160 and muscle 34 +- 7,
# cartilage 36 +- 6 (Pai 2008). Others [approx]. Marrow T2 taken inside the TSE part of
# the reported range (fat looks brighter on TSE, mr_physics.md section 3).
_RANGES = {
    "fat": ((330, 350), (369, 395), (55, 60), (64, 72), (0.9, 1.0)),
    "muscle": ((850, 1000), (865, 1100), (27, 44), (27, 36), (0.7, 0.8)),
    "urine": ((2500, 3500), (3000, 4000), (1000, 2000), (800, 1600), (1.0, 1.0)),
    "marrow_fat": ((260, 300), (360, 390), (60, 100), (60, 95), (0.9, 1.0)),
    "marrow_water": ((500, 600), (513, 659), (45, 50), (45, 53), (0.8, 0.9)),
    "edema": ((900, 1400), (1100, 1700), (60, 120), (55, 110), (0.9, 1.0)),
    "cartilage": ((1000, 1100), (1150, 1250), (30, 45), (30, 42), (0.7, 0.8)),
    "fluid": ((2800, 3600), (3500, 4800), (500, 1200), (400, 1100), (1.0, 1.0)),
    # [approx] fibrous/sclerotic tissue: tendon-like, low visible proton density
    "fibrous": ((600, 1000), (700, 1100), (12, 25), (12, 25), (0.2, 0.3)),
    # [approx] granulation tissue: water-rich, edema-like relaxation
    "granulation": ((1000, 1300), (1200, 1600), (80, 120), (75, 110), (0.85, 0.95)),
}


@dataclass(frozen=True)
class TissueProperties:
    """Relaxation times (ms) and proton density of every compartment at one field strength.

    ``t1_ms``, ``t2_ms`` and ``pd`` map compartment names to values; silent
    compartments (air, cortex, flow void) have ``pd = 0``.
    """

    field_strength_t: float
    t1_ms: dict
    t2_ms: dict
    pd: dict

    def as_dict(self) -> dict:
        """JSON-ready copy (rounded)."""
        return {
            name: {"t1_ms": round(self.t1_ms[name], 1), "t2_ms": round(self.t2_ms[name], 2), "pd": round(self.pd[name], 3)}
            for name in COMPARTMENTS
        }


def sample_tissue_properties(field_strength_t: float, rng: np.random.Generator) -> TissueProperties:
    """Draw one set of tissue properties inside the literature ranges.

    Parameters
    ----------
    field_strength_t : float
        1.5 or 3 (other values use the nearer of the two tables).
    rng : numpy.random.Generator
        Seeded generator.
    """
    high = field_strength_t >= 2.25
    t1, t2, pd = {}, {}, {}
    for name in COMPARTMENTS:
        if name in _RANGES:
            r = _RANGES[name]
            t1[name] = float(rng.uniform(*r[1 if high else 0]))
            t2[name] = float(rng.uniform(*r[3 if high else 2]))
            pd[name] = float(rng.uniform(*r[4]))
        else:  # silent: signal 0 on every sequence
            t1[name], t2[name], pd[name] = 1000.0, 1.0, 0.0
    return TissueProperties(float(field_strength_t), t1, t2, pd)


def spin_echo_signal(pd, t1_ms, t2_ms, tr_ms: float, te_ms: float):
    """Spin-echo / TSE magnitude ``PD (1 - exp(-TR/T1)) exp(-TE/T2)`` (effective TE for TSE)."""
    return pd * (1.0 - np.exp(-tr_ms / t1_ms)) * np.exp(-te_ms / t2_ms)


def inversion_recovery_signal(pd, t1_ms, t2_ms, tr_ms: float, te_ms: float, ti_ms: float):
    """Magnitude inversion recovery ``PD |1 - 2 exp(-TI/T1) + exp(-TR/T1)| exp(-TE/T2)``."""
    return pd * np.abs(1.0 - 2.0 * np.exp(-ti_ms / t1_ms) + np.exp(-tr_ms / t1_ms)) * np.exp(-te_ms / t2_ms)


def stir_null_inversion_time_ms(t1_ms: float, tr_ms: float) -> float:
    """Inversion time nulling a tissue: ``T1 (ln 2 - ln(1 + exp(-TR/T1)))`` (mr_physics.md section 3)."""
    return float(t1_ms * (np.log(2.0) - np.log1p(np.exp(-tr_ms / t1_ms))))


def compartment_signals(props: TissueProperties, kind: str, tr_ms: float, te_ms: float,
                        ti_ms: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Per-compartment signal of one sequence, split into water and fat parts.

    Parameters
    ----------
    props : TissueProperties
    kind : {'stir', 't1', 'pd_fs', 't2_fs'}
    tr_ms, te_ms, ti_ms : float
        Repetition, (effective) echo and inversion time.

    Returns
    -------
    water, fat : ndarray, shape (len(COMPARTMENTS),)
        Signal per unit volume fraction; ``fat`` is non-zero only for the fat
        compartments and is the part a spectral fat saturation scales by ``1 - eta``.
    """
    t1 = np.array([props.t1_ms[c] for c in COMPARTMENTS])
    t2 = np.array([props.t2_ms[c] for c in COMPARTMENTS])
    pd = np.array([props.pd[c] for c in COMPARTMENTS])
    if kind == "stir":
        s = inversion_recovery_signal(pd, t1, t2, tr_ms, te_ms, ti_ms)
    else:
        s = spin_echo_signal(pd, t1, t2, tr_ms, te_ms)
    is_fat = np.array([c in FAT_COMPARTMENTS for c in COMPARTMENTS])
    return np.where(is_fat, 0.0, s), np.where(is_fat, s, 0.0)
