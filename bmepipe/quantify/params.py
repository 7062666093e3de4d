"""Every number the quantification uses, as one serializable parameter set.

Sources: ``shared/reference/regions.md`` (definitions), ``clinical.md`` (staging
cut-offs) and the phantom tuning suites (``bmepipe.phantom.make_suite(24, seed=11,
small=True)`` for tuning, seeds 33 and 44 for validation; tests use seed 22 and
the benchmark reports the held-out seed 55 by default).
A value marked [tuned] was chosen on the tuning suite only; [approx] means
commonly cited but not confirmed (clinical.md); [src] means confirmed in the
named source.
"""

from __future__ import annotations

from dataclasses import dataclass

from bmepipe._params import NumericParams
from bmepipe.errors import ConfigError

__all__ = ["QuantifyParams", "TUNING_SUITE"]

#: The phantom suites the [tuned] values were chosen on: make_suite(n_cases, seed, small=True) for each seed
#: (11 tuning, 33 and 44 validation). Tests use seed 22; benchmarks/bench_quantify.py reports seed 55 (held out).
TUNING_SUITE = {"n_cases": 24, "seeds": (11, 33, 44), "small": True}


@dataclass(frozen=True)
class QuantifyParams(NumericParams):
    """Thresholds and settings of :func:`bmepipe.quantify.quantify_hips` (lengths in mm, volumes in ml).

    Signal levels are standardized intensities (skeletal muscle = 1.0, see
    :mod:`bmepipe.normalize.standardize`).

    Parameters
    ----------
    bme_edema_fraction : float
        A marrow voxel is BME when its edema-equivalent fraction e (share of the
        voxel's marrow replaced by edema water, estimated from the signal) is at
        least this: 0.3, the regions.md convention shared with the phantom truth.
    edema_signal_fluid : float
        Standardized fluid-sensitive signal of pure edema water (e = 1). STIR,
        T2-FS and PD-FS bone-marrow edema is 2-5x brighter than muscle at 1.5 and
        3 T (mr_physics.md relaxation tables [approx]); [tuned] on the tuning suite.
    edema_signal_t1 : float
        Standardized T1 signal of pure edema water: a little brighter than muscle on
        T1 TSE (longer T1 but higher proton density) [approx; tuned].
    edema_pv_factor : float
        Multiplies the signal-equation estimate of pure edema
        (:mod:`bmepipe.quantify.calibration`) for the partial volume of clinical
        voxels; with sequence headers it replaces ``edema_signal_fluid`` [tuned].
    edema_calibration_min_t1_fraction : float
        Where a T1 series shows at least ``edema_calibration_min_ml`` of femoral head and
        neck marrow with a T1 edema fraction of at least this, the fluid-sensitive signal
        of pure edema is calibrated on the study's own marrow
        (:func:`bmepipe.quantify.bme.edema_signal_from_marrow`) [chosen on the tuning
        suite: below about 0.45 the T1 spread of normal marrow dominates].
    edema_calibration_min_ml : float
        See ``edema_calibration_min_t1_fraction``: enough edema to calibrate on [chosen on
        the tuning and probe suites: at 2 ml, studies with a necrotic segment and little
        or no BME were calibrated on the segment].
    edema_calibration_min_ratio, edema_calibration_max_ratio : float
        The calibrated edema contrast (``F_ed - F_n``) replaces the signal equations' one
        only when it lies in this range of multiples of it, and the calibrated ``F_ed`` is
        not dimmer than ``edema_pv_factor`` x the dimmest edema the literature relaxation
        times of edema and muscle allow on the sequence
        (:func:`bmepipe.quantify.calibration.edema_signal_range`), and it leaves at least
        ``min_edema_contrast`` (the ratio estimate used under failed fat suppression keeps
        the equations' levels: on calibrated levels it put 43 ml of BME into a normal hip). T2 variation of edema and
        muscle (mr_physics.md table 1) moves the true contrast on T2-FS about 2x either
        way from the equations' mid-range value, and the studies whose BME the equations
        missed most calibrate at 0.34-0.49x. Below 0.3x the marrow holds no usable edema
        (a necrotic segment or red marrow: 0.1x); closer to 1x the calibration's own
        errors (necrotic segments in the heads, femur masks grown into muscle, normal
        levels raised by edema in both hips: 2.7x) outweighed its gain, and between 1.5
        and 2x it moved the BME volume away from the truth in 13 of the 18 hips it changed
        [chosen on seeds 11, 33, 44 and probes 9640-9643].
    t1_support_fraction : float
        Where a T1 series exists, a BME voxel's T1 must also be lowered by at least
        this edema-equivalent fraction (low T1 signal of edematous marrow,
        clinical.md section 2; rejects fat left bright by failed fat suppression) [tuned].
    min_edema_contrast : float
        When pure edema is expected less than this above normal marrow on the
        fluid-sensitive image (fat left bright by failed fat suppression,
        mr_physics.md section 3), BME is measured on the ratio of the
        fluid-sensitive to the T1 signal
        (:func:`bmepipe.quantify.bme.edema_fraction_from_ratio`) [tuned].
    normal_marrow_percentile_fluid : float
        Normal-appearing marrow level = this percentile of the fluid-sensitive
        signal of the femoral marrow of both hips (most marrow is normal even in
        TOH, which rarely reaches the shaft) [tuned].
    normal_marrow_percentile_t1 : float
        Normal (fatty) marrow T1 level = this percentile of the T1 signal in the
        femoral marrow of both hips [tuned].
    bme_smoothing_mm : float
        Gaussian sigma (in-plane, mm) applied to the edema estimate before
        thresholding (noise at SNR 8) [tuned].
    bme_min_component_ml : float
        Connected BME components smaller than this are dropped as noise [tuned].
    bme_present_ml : float
        BME is reported present from this volume on [tuned; no literature cut-off,
        clinical.md section 5].
    bme_diffuse_fraction : float
        BME covering at least this fraction of the head+neck marrow is "diffuse";
        less is "focal" (TOH diffuse vs focal AVN/SIF, clinical.md section 2) [tuned].
    margin_ill_defined_mm : float
        BME fronts wider (10-90 %) than this are "ill-defined" (TOH), narrower
        ones "sharp" (clinical.md section 2) [tuned].
    subchondral_depth_mm : float
        Depth of the subchondral zone (regions.md: 5 mm).
    band_t1_drop : float
        A T1 dip deeper than this fraction of normal marrow T1 counts as a
        low-signal band (JIC criterion "low-intensity band on T1", clinical.md) [tuned].
    band_t1_rise : float
        ... and T1 at least this fraction of normal marrow T1 brighter on both sides
        of the dip (a band, not the edge of diffuse edema) [tuned].
    band_t1_step : float
        A T1-dark segment centre (fluid or fibrous, Mitchell classes C and D) shows
        as a T1 drop of at least this fraction of normal marrow within 4 mm that
        lasts to the surface [tuned].
    band_min_depth_mm : float
        The necrotic band lies deeper than this below the articular surface
        (AVN bands are deep, mean 15.4 mm, vs SIF 1.6 mm: depth-of-band study,
        clinical.md section 3) [tuned].
    band_min_radius_fraction : float
        Dips closer to the head centre than this fraction of the radius are ignored:
        there every ray crosses the same few voxels [tuned].
    necrosis_border_mm : float
        The fitted band surface (centre of the T1 dip) is moved this far outwards
        so that the segment includes its whole reactive border, as regions.md
        defines the necrotic extent [tuned].
    necrosis_min_area_deg2 : float
        Smallest footprint (solid angle, square degrees on the head sphere) of a
        necrotic segment [tuned].
    necrosis_present_pct : float
        A segment is reported present from this % of the head volume on [tuned].
    double_line_contrast : float
        Inner high-signal rim on the fluid-sensitive image: standardized signal
        inside the band at least this much above the band itself (Mitchell et al.,
        Radiology 1987;162:709: double-line sign) [tuned].
    line_max_depth_mm : float
        Subchondral lines are searched from the surface down to this depth (SIF band
        depth ~1.6 mm, clinical.md section 3; regions.md subchondral zone 5 mm).
    line_min_length_mm : float
        Shorter lines are not reported [tuned].
    line_min_thickness_mm : float
        Rays whose excess signal deficit corresponds to a thinner dark layer do not
        belong to the line [tuned].
    vande_berg_thickness_mm, vande_berg_length_mm : float
        A subchondral low-signal line thicker than 4 mm or longer than 12.5 mm
        pointed to an irreversible lesion in idiopathic BME of the femoral head
        (Vande Berg et al., Radiology 1999;212:527; the reference notes say the
        figures and ">" vs ">=" still need checking against the original, so they
        are parameters; implemented as ">").
    collapse_min_mm : float
        Smallest surface depression counted as collapse, above the measurement's
        noise floor: phantom hips without collapse read up to 1.0-1.35 mm
        (``benchmarks/bench_segment.py``, mostly SIF hips whose fracture line
        lies under the plate) [tuned].
    arco_iiib_collapse_mm : float
        ARCO 2019: stage IIIA depression <= 2 mm, IIIB > 2 mm (Yoon et al.,
        J Arthroplasty 2020, doi 10.1016/j.arth.2019.11.029) [src].
    effusion_pv_factor : float
        Multiplies the signal-equation estimate of joint fluid (partial volume) [tuned].
    effusion_signal : float
        Standardized fluid-sensitive signal of joint fluid; a joint-space voxel's
        fluid share is its signal between muscle (1.0) and this [approx; tuned].
    effusion_min_fraction : float
        Joint-space voxels with a smaller fluid share are ignored (noise) [tuned].
    weight_bearing_half_angle_deg : float
        Weight-bearing cone half-angle around superior (regions.md: 45 degrees).
    """

    bme_edema_fraction: float = 0.3
    edema_signal_fluid: float = 3.0
    edema_signal_t1: float = 1.3
    edema_pv_factor: float = 0.9
    edema_calibration_min_t1_fraction: float = 0.45
    edema_calibration_min_ml: float = 10.0
    edema_calibration_min_ratio: float = 0.3
    edema_calibration_max_ratio: float = 0.7
    t1_support_fraction: float = 0.1
    min_edema_contrast: float = 1.0
    normal_marrow_percentile_fluid: float = 25.0
    normal_marrow_percentile_t1: float = 80.0
    bme_smoothing_mm: float = 1.0
    bme_min_component_ml: float = 0.1
    bme_present_ml: float = 1.0
    bme_diffuse_fraction: float = 0.4
    margin_ill_defined_mm: float = 3.0
    subchondral_depth_mm: float = 5.0
    band_t1_drop: float = 0.25
    band_t1_rise: float = 0.15
    band_t1_step: float = 0.4
    band_min_depth_mm: float = 4.0
    band_min_radius_fraction: float = 0.1
    necrosis_border_mm: float = 2.0
    necrosis_min_area_deg2: float = 150.0
    necrosis_present_pct: float = 3.0
    double_line_contrast: float = 0.3
    line_max_depth_mm: float = 5.0
    line_min_length_mm: float = 4.0
    line_min_thickness_mm: float = 0.8
    vande_berg_thickness_mm: float = 4.0
    vande_berg_length_mm: float = 12.5
    collapse_min_mm: float = 1.5
    arco_iiib_collapse_mm: float = 2.0
    effusion_pv_factor: float = 0.9
    effusion_signal: float = 6.0
    effusion_min_fraction: float = 0.25
    weight_bearing_half_angle_deg: float = 45.0

    _kind = "quantify"

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0 < self.bme_edema_fraction < 1:
            raise ConfigError("bme_edema_fraction must be in (0, 1)")
        if not 0 < self.edema_calibration_min_ratio <= self.edema_calibration_max_ratio:
            raise ConfigError("edema_calibration_min_ratio must be positive and at most edema_calibration_max_ratio")
        if not 0 < self.edema_calibration_min_t1_fraction < 1:
            raise ConfigError("edema_calibration_min_t1_fraction must be in (0, 1)")
        if self.edema_signal_fluid <= 1 or self.effusion_signal <= 1:
            raise ConfigError("edema_signal_fluid and effusion_signal must exceed muscle (1.0)")
