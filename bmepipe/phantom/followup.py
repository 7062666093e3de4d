"""Follow-up phantom studies: the same patient and anatomy, a new pose, noise and bias, an evolved pattern."""

from __future__ import annotations

import dataclasses
import datetime as _dt

import numpy as np

from bmepipe.errors import ConfigError

from .dicom_writer import StudyInfo, make_uid
from .study import PhantomSpec, SyntheticStudy, generate_study

__all__ = ["followup_spec", "generate_followup"]


def followup_spec(spec: PhantomSpec, *, shift_lps_mm=(0.0, 0.0, 0.0), rotation_deg: float = 0.0,
                  toh_bme_factor: float = 0.3, avn_collapse_mm: float | None = None,
                  sif_line: str = "healed", noise_seed: int = 1) -> PhantomSpec:
    """The spec of a follow-up of ``spec``.

    Parameters
    ----------
    shift_lps_mm : 3 floats
        Translation of the patient in the scanner (each |component| <= 20 mm).
    rotation_deg : float
        Change of stack obliquity about S-I (|value| <= 10 degrees): a rotation of the patient relative to the grid.
    toh_bme_factor : float
        TOH hips: peak edema fraction multiplied by this factor (0 = resolved).
    avn_collapse_mm : float, optional
        AVN hips: new collapse depth (segment unchanged); default unchanged.
    sif_line : {'healed', 'collapsed'}
        SIF hips: 'healed' removes the line and shrinks BME as TOH does; 'collapsed' adds 2 mm collapse.
    noise_seed : int
        Seed of the new noise (the bias amplitude is kept; its pattern follows the new pose).
    """
    shift = np.asarray(shift_lps_mm, dtype=float)
    if shift.shape != (3,) or np.any(np.abs(shift) > 20) or abs(rotation_deg) > 10:
        raise ConfigError("follow-up pose: shift up to 20 mm per axis and rotation up to 10 degrees")
    if sif_line not in ("healed", "collapsed"):
        raise ConfigError("sif_line must be 'healed' or 'collapsed'")

    def evolve(hip):
        if hip.pattern == "toh" or (hip.pattern == "sif" and sif_line == "healed"):
            changes = dict(bme_peak=hip.bme_peak * toh_bme_factor)
            if hip.pattern == "sif":
                changes["line_length_mm"] = 0.0
            return dataclasses.replace(hip, **changes)
        if hip.pattern == "sif":
            return dataclasses.replace(hip, collapse_mm=hip.collapse_mm + 2.0)
        if hip.pattern == "avn" and avn_collapse_mm is not None:
            return dataclasses.replace(hip, collapse_mm=float(avn_collapse_mm))
        return hip

    acq = dataclasses.replace(spec.acquisition, noise_seed=int(noise_seed),
                              obliquity_deg=spec.acquisition.obliquity_deg + float(rotation_deg))
    midpoint = tuple(float(v) for v in np.asarray(spec.midpoint_lps_mm) + shift)
    return dataclasses.replace(spec, right=evolve(spec.right), left=evolve(spec.left), acquisition=acq,
                               midpoint_lps_mm=midpoint)


def generate_followup(baseline: SyntheticStudy, *, days: int = 90, **evolution) -> SyntheticStudy:
    """A follow-up study of ``baseline``: same patient identifiers, StudyDate ``days`` later, new StudyInstanceUID.

    ``evolution`` is passed to :func:`followup_spec`.
    """
    if days < 1:
        raise ConfigError("a follow-up must be at least one day after the baseline")
    study = generate_study(followup_spec(baseline.spec, **evolution))
    info = baseline.study_info
    date = (_dt.datetime.strptime(info.study_date, "%Y%m%d") + _dt.timedelta(days=int(days))).strftime("%Y%m%d")
    study.study_info = dataclasses.replace(
        info, study_date=date, study_id=str(int(info.study_id) + 1 if info.study_id.isdigit() else 2),
        study_instance_uid=make_uid("bmepipe.phantom", "followup-study", info.study_instance_uid, days),
        frame_of_reference_uid=make_uid("bmepipe.phantom", "followup-for", info.study_instance_uid, days))
    assert isinstance(study.study_info, StudyInfo)
    return study
