"""Follow-up phantom studies: the same patient and anatomy, a new pose, noise and bias, an evolved pattern.

The new pose moves the patient, not the scanner: the coronal stacks of the follow-up are the baseline's
(same origin, direction and size), and the anatomy inside them is rotated about the scanner's S-I axis
through the stack centre and shifted. The phantom renders a scene on arbitrary sample points, so the
follow-up is rendered on the baseline stack expressed in the patient's own frame (the inverse pose) and
then written with the baseline stack's geometry; every LPS position and direction in ``truth.json`` is
mapped into the scanner frame with the same rigid transform (``truth['followup_pose']``).
"""

from __future__ import annotations

import dataclasses
import datetime as _dt

import numpy as np

from bmepipe.errors import ConfigError

from .dicom_writer import Geometry, StudyInfo, make_uid
from .study import PhantomSpec, SyntheticStudy, generate_study

__all__ = ["followup_spec", "generate_followup", "followup_pose"]


def followup_spec(spec: PhantomSpec, *, shift_lps_mm=(0.0, 0.0, 0.0), rotation_deg: float = 0.0,
                  toh_bme_factor: float = 0.3, avn_collapse_mm: float | None = None,
                  sif_line: str = "healed", noise_seed: int = 1, side_changes=None) -> PhantomSpec:
    """The spec a follow-up of ``spec`` is rendered from (patient frame; see :func:`generate_followup`).

    Parameters
    ----------
    shift_lps_mm : 3 floats
        Translation of the patient in the scanner (each |component| <= 20 mm); the stack stays put.
    rotation_deg : float
        Rotation of the patient about the scanner's S-I axis through the stack centre (|value| <= 10 degrees;
        positive turns +x (patient left) towards +y (posterior)). The stack stays a plain coronal stack.
    toh_bme_factor : float
        TOH hips: peak edema fraction multiplied by this factor (0 = resolved).
    avn_collapse_mm : float, optional
        AVN hips: new collapse depth (segment unchanged); default unchanged.
    sif_line : {'healed', 'collapsed'}
        SIF hips: 'healed' removes the line and shrinks BME as TOH does; 'collapsed' adds 2 mm collapse.
    noise_seed : int
        Seed of the new noise (the bias amplitude is kept; its pattern follows the rendered stack).
    side_changes : dict, optional
        ``{side: {HipSpec field: value}}`` applied after the rules above, for changes that differ between the
        hips, e.g. ``{"left": {"collapse_mm": 3.0}}`` or new BME in a normal hip
        ``{"right": {"pattern": "toh", "bme_peak": 0.7, "bme_extent": "head_neck", "bme_margin_mm": 15.0}}``.

    Returns
    -------
    PhantomSpec
        The patient moved by ``shift_lps_mm`` (FOV offset compensated, so the stack centre is the baseline's)
        and the stack turned by ``-rotation_deg`` relative to the patient: rendering it gives the follow-up's
        pixels, which :func:`generate_followup` labels with the baseline stack geometry.
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

    changes = dict(side_changes or {})
    if set(changes) - {"right", "left"}:
        raise ConfigError("side_changes keys must be 'right' or 'left'")
    try:
        right, left = (dataclasses.replace(evolve(getattr(spec, k)), **changes.get(k, {})) for k in ("right", "left"))
    except TypeError as exc:
        raise ConfigError(f"side_changes: {exc}") from None
    a = spec.acquisition
    acq = dataclasses.replace(a, noise_seed=int(noise_seed), obliquity_deg=a.obliquity_deg - float(rotation_deg),
                              center_offset_lps_mm=tuple(float(v) for v in np.asarray(a.center_offset_lps_mm) - shift))
    midpoint = tuple(float(v) for v in np.asarray(spec.midpoint_lps_mm) + shift)
    return dataclasses.replace(spec, right=right, left=left, acquisition=acq,
                               midpoint_lps_mm=midpoint)


def followup_pose(rendered: Geometry, declared: Geometry) -> tuple[np.ndarray, np.ndarray]:
    """Rigid map ``p_scanner = M @ p_patient + t`` from the stack a follow-up was rendered on to the stack
    it is written with (same voxel index = same anatomy)."""
    d_r = np.asarray(rendered.direction, float).reshape(3, 3)
    d_d = np.asarray(declared.direction, float).reshape(3, 3)
    m = d_d @ d_r.T
    return m, np.asarray(declared.origin_lps_mm, float) - m @ np.asarray(rendered.origin_lps_mm, float)


def _move_truth(obj, m, t):
    """``obj`` with every ``*_lps_mm`` point and ``*_lps`` direction (3-vectors) moved into the scanner frame."""
    if isinstance(obj, dict):
        out = {}
        for k, v in obj.items():
            if isinstance(v, (list, tuple)) and len(v) == 3 and k.endswith(("_lps_mm", "_lps")):
                p = m @ np.asarray(v, float) + (t if k.endswith("_lps_mm") else 0.0)
                out[k] = [round(float(x), 6) for x in p]
            else:
                out[k] = _move_truth(v, m, t)
        return out
    return obj


def generate_followup(baseline: SyntheticStudy, *, days: int = 90, **evolution) -> SyntheticStudy:
    """A follow-up study of ``baseline``: same patient identifiers, StudyDate ``days`` later, new StudyInstanceUID.

    ``evolution`` is passed to :func:`followup_spec`. The follow-up's series have the baseline's stack
    geometry; the patient inside has moved (see the module notes). ``truth['followup_pose']`` holds the rigid
    map from baseline scanner coordinates to follow-up scanner coordinates (``matrix`` 3x3 row-major,
    ``translation_mm``). ``study.spec`` is the spec the pixels were rendered from (patient frame).
    A rotated follow-up cannot carry an axial series or a localizer (the phantom renders those on fixed
    stacks): :class:`ConfigError`.
    """
    if days < 1:
        raise ConfigError("a follow-up must be at least one day after the baseline")
    rotation = float(evolution.get("rotation_deg", 0.0))
    acq0 = baseline.spec.acquisition
    if rotation and (acq0.with_axial or acq0.with_localizer):
        raise ConfigError("a rotated follow-up cannot include the axial series or the localizer")
    spec = followup_spec(baseline.spec, **evolution)
    study = generate_study(spec)
    declared = {s.name: s.geometry for s in baseline.series}
    # the patient-frame pose of the rendered coronal stack -> the baseline stack in the scanner
    m, t = followup_pose(study.geometry, declared[study.fluid.name])
    study.series = [dataclasses.replace(s, geometry=declared[s.name]) for s in study.series]
    # the baseline patient's points in the follow-up scanner: shift (patient frame), then the stack relabel
    shift = np.asarray(spec.midpoint_lps_mm, float) - np.asarray(baseline.spec.midpoint_lps_mm, float)
    truth = _move_truth(study.truth, m, t)
    truth["grid"] = baseline.truth["grid"]
    truth["acquisition"]["series"] = baseline.truth["acquisition"]["series"]
    truth["acquisition"]["obliquity_deg"] = acq0.obliquity_deg
    truth["acquisition"]["center_offset_lps_mm"] = list(acq0.center_offset_lps_mm)
    truth["followup_pose"] = {
        "matrix": [round(float(x), 9) for x in m.ravel()],
        "translation_mm": [round(float(x), 6) for x in m @ shift + t],
        "rotation_deg": rotation, "shift_lps_mm": [float(x) for x in shift],
        "definition": "p_followup_scanner = matrix @ p_baseline_scanner + translation_mm (rigid; same patient)",
    }
    study.truth = truth
    info = baseline.study_info
    date = (_dt.datetime.strptime(info.study_date, "%Y%m%d") + _dt.timedelta(days=int(days))).strftime("%Y%m%d")
    study.study_info = dataclasses.replace(
        info, study_date=date, study_id=str(int(info.study_id) + 1 if info.study_id.isdigit() else 2),
        study_instance_uid=make_uid("bmepipe.phantom", "followup-study", info.study_instance_uid, days),
        frame_of_reference_uid=make_uid("bmepipe.phantom", "followup-for", info.study_instance_uid, days))
    assert isinstance(study.study_info, StudyInfo)
    return study
