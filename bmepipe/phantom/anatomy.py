"""Parametric anatomy of both hips and the marrow patterns (TOH, AVN, SIF, effusion).

Everything is an implicit function of the position in patient coordinates (LPS,
mm), painted onto sample points in a fixed priority order (soft tissue, pelvis,
joint, effusion, femur, lesions), so any acquisition grid can be sampled exactly
and truth never depends on an image.

Per hip a local frame is used: ``u`` lateral (``-x`` for the right hip, ``+x`` for
the left one), ``v`` posterior (``+y``), ``w`` superior (``+z``), origin at the
femoral-head centre C. Axes and regions follow ``shared/reference/regions.md``:
neck axis ``n`` (from C towards the shaft), shaft axis ``s`` (towards the feet),
X = C + L n where both axes meet, planes P1 (``t = d1 = sqrt(R^2 - r_n^2)``), P2
(``t = L``) and P3 (50 mm below X along ``s``). Default dimensions follow
``shared/reference/anatomy.md``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from bmepipe.errors import ConfigError

__all__ = [
    "PATTERNS",
    "HipSpec",
    "HipModel",
    "REGIONS",
    "head_region_volume_mm3",
    "lens_volume_mm3",
    "spherical_cap_volume_mm3",
]

PATTERNS = ("normal", "toh", "avn", "sif")
#: Truth regions per side (regions.md), in label order 1..5.
REGIONS = ("femoral_head", "femoral_neck", "intertrochanteric", "proximal_shaft", "acetabulum")

# Sample tissue codes (painted per sample point) -> compartments in tissues.COMPARTMENTS.
AIR, FAT, MUSCLE, URINE, CORTEX, MARROW, CARTILAGE, FLUID, FIBROUS, GRANULATION, FLOW_VOID, GLUTEAL = range(12)
CODE_COMPARTMENT = {AIR: "air", FAT: "fat", MUSCLE: "muscle", URINE: "urine", CORTEX: "cortex",
                    CARTILAGE: "cartilage", FLUID: "fluid", FIBROUS: "fibrous", GRANULATION: "granulation",
                    FLOW_VOID: "flow_void", GLUTEAL: "muscle"}  # MARROW is a mixture (fat, water, edema)
# Per-sample truth: region code = side_offset + (1..5 femur/acetabulum, 6 other pelvic bone)
OTHER_PELVIS = 6
SIDE_OFFSET = {"right": 0, "left": 8}
# Per-sample flags
F_NECROSIS, F_EFFUSION, F_LINE = 1, 2, 4

BME_EXTENTS = ("head", "head_neck", "intertrochanteric")
NECROTIC_CONTENTS = ("fat", "fluid", "fibrous")


# --------------------------------------------------------------------------- analytic volumes
def spherical_cap_volume_mm3(radius_mm: float, height_mm: float) -> float:
    """Volume of a spherical cap ``pi h^2 (3R - h) / 3``."""
    h = float(np.clip(height_mm, 0.0, 2 * radius_mm))
    return math.pi * h * h * (3 * radius_mm - h) / 3.0


def head_region_volume_mm3(head_radius_mm: float, neck_radius_mm: float) -> float:
    """Bone on the head side of P1: the ball minus the cap beyond ``d1 = sqrt(R^2 - r_n^2)``."""
    r = head_radius_mm
    d1 = math.sqrt(r * r - neck_radius_mm**2)
    return 4.0 / 3.0 * math.pi * r**3 - spherical_cap_volume_mm3(r, r - d1)


def lens_volume_mm3(radius_mm: float, distance_mm: float) -> float:
    """Intersection of two balls of equal radius ``R`` whose centres are ``D`` apart.

    Two caps of height ``R - D/2``: ``pi (4R + D)(2R - D)^2 / 12``.
    """
    r, d = radius_mm, float(np.clip(distance_mm, 0.0, 2 * radius_mm))
    return math.pi * (4 * r + d) * (2 * r - d) ** 2 / 12.0


def _unit(v) -> np.ndarray:
    v = np.asarray(v, dtype=float)
    return v / np.linalg.norm(v)


def _sigmoid(x):
    return 0.5 * (1.0 + np.tanh(0.5 * x))


# --------------------------------------------------------------------------- spec
@dataclass(frozen=True)
class HipSpec:
    """Anatomy and marrow pattern of one hip (lengths in mm, angles in degrees).

    Use :meth:`HipSpec.random` for seeded, plausible values; every field can be
    overridden with :func:`dataclasses.replace`.

    Parameters
    ----------
    pattern : {'normal', 'toh', 'avn', 'sif'}
        Label stored in the truth; the lesion parameters below define the images.
    head_radius_mm, neck_radius_mm : float
        Femoral head sphere radius R (21-28) and narrowest neck radius r_n.
    neck_length_mm : float
        Distance from C to X (neck axis meets shaft axis), 45-60.
    neck_shaft_angle_deg, anteversion_deg : float
        Coronal neck-shaft angle (125-140) and femoral anteversion (about 5-25).
    shaft_adduction_deg : float
        Tilt of the shaft axis from vertical (knees closer together than hips).
    shaft_radius_mm : float
        Outer radius of the diaphysis below the lesser trochanter (12.5-16.5).
    cortex_head_mm, cortex_neck_mm, cortex_shaft_mm : float
        Cortical thickness: subchondral plate, neck/trochanters, shaft (3-5).
    cartilage_femoral_mm, cartilage_acetabular_mm, joint_space_mm : float
        Hyaline cartilage thicknesses and the fluid film between them.
    acetabular_inclination_deg, acetabular_anteversion_deg : float
        Orientation of the acetabular opening.
    marrow_fat_fraction : float
        Fat fraction of normal yellow marrow of the head and neck (0.8-0.95).
    red_marrow : float
        0..1, amount of residual red marrow (lower fat fraction, patchy) in the
        intertrochanteric region and shaft.
    bme_peak : float
        Peak edema fraction e (0 = no BME).
    bme_extent : {'head', 'head_neck', 'intertrochanteric'}
        How far down the femur the BME front reaches.
    bme_margin_mm : float
        10-90 % width of the BME front (ill-defined margin).
    bme_focus_mm : float
        0 for diffuse BME (TOH); otherwise the Gaussian radius of BME centred on
        the lesion (AVN segment or SIF line).
    bme_medial_sparing : float
        0..1 reduction of BME in the medial third of the head.
    bme_heterogeneity : float
        Relative amplitude of smooth spatial variation of e.
    necrosis_extent_pct : float
        AVN necrotic segment (band and rim included) as % of the femoral_head
        region (0 = none). The segment is the head ball intersected with a ball of
        the same radius shifted along the lesion axis (a lens: analytic volume).
    necrosis_anterior_deg, necrosis_lateral_deg : float
        Lesion axis tilt from superior towards anterior and lateral.
    necrosis_content : {'fat', 'fluid', 'fibrous'}
        Centre of the segment (Mitchell class A, C or D).
    band_thickness_mm, rim_thickness_mm : float
        Low-signal reactive band and the inner high-signal rim (double line).
    collapse_mm : float
        Depth of articular collapse over the lesion (0 = none).
    line_length_mm, line_thickness_mm, line_depth_mm : float
        Subchondral low-signal line (0 length = none): length along the curve on
        the mid-coronal plane, thickness across, depth below the surface.
    line_lateral_deg : float
        Tilt of the line's centre from superior towards lateral.
    effusion_ml : float
        Joint effusion distending the recess along the neck.
    """

    pattern: str = "normal"
    head_radius_mm: float = 24.0
    neck_radius_mm: float = 15.0
    neck_length_mm: float = 52.0
    neck_shaft_angle_deg: float = 130.0
    anteversion_deg: float = 12.0
    shaft_adduction_deg: float = 7.0
    shaft_radius_mm: float = 14.0
    cortex_head_mm: float = 1.0
    cortex_neck_mm: float = 1.8
    cortex_shaft_mm: float = 4.0
    cartilage_femoral_mm: float = 1.6
    cartilage_acetabular_mm: float = 1.5
    joint_space_mm: float = 0.4
    acetabular_inclination_deg: float = 55.0
    acetabular_anteversion_deg: float = 18.0
    marrow_fat_fraction: float = 0.88
    red_marrow: float = 0.3
    bme_peak: float = 0.0
    bme_extent: str = "head_neck"
    bme_margin_mm: float = 12.0
    bme_focus_mm: float = 0.0
    bme_medial_sparing: float = 0.0
    bme_heterogeneity: float = 0.15
    necrosis_extent_pct: float = 0.0
    necrosis_anterior_deg: float = 25.0
    necrosis_lateral_deg: float = 8.0
    necrosis_content: str = "fat"
    band_thickness_mm: float = 2.0
    rim_thickness_mm: float = 1.5
    collapse_mm: float = 0.0
    line_length_mm: float = 0.0
    line_thickness_mm: float = 1.2
    line_depth_mm: float = 2.0
    line_lateral_deg: float = 10.0
    effusion_ml: float = 0.0

    def __post_init__(self) -> None:
        if self.pattern not in PATTERNS:
            raise ConfigError(f"unknown hip pattern {self.pattern!r}; expected one of {PATTERNS}")
        if self.bme_extent not in BME_EXTENTS:
            raise ConfigError(f"bme_extent must be one of {BME_EXTENTS}")
        if self.necrosis_content not in NECROTIC_CONTENTS:
            raise ConfigError(f"necrosis_content must be one of {NECROTIC_CONTENTS}")
        if not 15 <= self.head_radius_mm <= 35 or not 0.4 * self.head_radius_mm <= self.neck_radius_mm < self.head_radius_mm:
            raise ConfigError("head_radius_mm must be 15-35 and neck_radius_mm between 0.4 R and R")
        if not 0 <= self.bme_peak <= 1 or not 0 <= self.necrosis_extent_pct <= 70:
            raise ConfigError("bme_peak must be in [0, 1] and necrosis_extent_pct in [0, 70]")
        for name in ("collapse_mm", "line_length_mm", "effusion_ml", "red_marrow", "bme_medial_sparing"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be >= 0")
        if not 90 < self.neck_shaft_angle_deg < 170:
            raise ConfigError("neck_shaft_angle_deg must be between 90 and 170")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def random(cls, rng: np.random.Generator, pattern: str = "normal", **overrides) -> "HipSpec":
        """Plausible anatomy (anatomy.md ranges) with a pattern drawn at a seeded severity.

        Parameters
        ----------
        rng : numpy.random.Generator
        pattern : {'normal', 'toh', 'avn', 'sif'}
            ``'toh'``: diffuse BME of head and neck (intertrochanteric in about half),
            no segment. ``'avn'``: ARCO-like segment of 10-45 % of the head, with
            collapse and secondary BME in some cases. ``'sif'``: subchondral line
            4-25 mm long, 0.8-2 mm thick, with BME around it.
        **overrides
            Fields to fix instead of drawing them.
        """
        if pattern not in PATTERNS:
            raise ConfigError(f"unknown hip pattern {pattern!r}; expected one of {PATTERNS}")
        u = rng.uniform
        r = u(21.5, 27.0)
        p = dict(
            pattern=pattern,
            head_radius_mm=r,
            neck_radius_mm=r * u(0.58, 0.68),
            neck_length_mm=u(47, 58),
            neck_shaft_angle_deg=u(125, 140),
            anteversion_deg=u(5, 22),
            shaft_adduction_deg=u(5, 9),
            shaft_radius_mm=u(12.5, 16.0),
            cortex_head_mm=u(0.8, 1.3),
            cortex_neck_mm=u(1.4, 2.2),
            cortex_shaft_mm=u(3.0, 5.0),
            cartilage_femoral_mm=u(1.2, 2.2),
            cartilage_acetabular_mm=u(1.2, 2.0),
            joint_space_mm=u(0.3, 0.6),
            acetabular_inclination_deg=u(50, 60),
            acetabular_anteversion_deg=u(12, 24),
            marrow_fat_fraction=u(0.84, 0.93),
            red_marrow=u(0.0, 0.6),
            effusion_ml=0.0,
        )
        if pattern == "toh":
            p.update(bme_peak=u(0.55, 0.9), bme_extent=("head_neck", "intertrochanteric")[int(rng.integers(2))],
                     bme_margin_mm=u(10, 20), bme_medial_sparing=u(0.3, 0.8) if rng.random() < 0.6 else 0.0,
                     effusion_ml=u(4, 15))
        elif pattern == "avn":
            collapse = u(0.5, 4.0) if rng.random() < 0.4 else 0.0
            p.update(necrosis_extent_pct=u(10, 45), necrosis_anterior_deg=u(15, 35), necrosis_lateral_deg=u(0, 15),
                     necrosis_content="fat" if collapse == 0 or rng.random() < 0.5 else "fluid",
                     band_thickness_mm=u(1.6, 2.8), rim_thickness_mm=u(1.2, 2.0), collapse_mm=collapse,
                     effusion_ml=u(2, 10) if rng.random() < 0.5 else 0.0)
            if collapse > 0 or rng.random() < 0.3:  # BME appears with subchondral fracture (clinical.md)
                p.update(bme_peak=u(0.4, 0.7), bme_extent="head_neck", bme_focus_mm=u(18, 30), bme_margin_mm=u(8, 14))
        elif pattern == "sif":
            p.update(line_length_mm=u(6, 25), line_thickness_mm=u(0.8, 2.0), line_depth_mm=u(1.0, 3.0),
                     line_lateral_deg=u(0, 20), bme_peak=u(0.55, 0.85), bme_extent="head_neck",
                     bme_focus_mm=u(25, 40), bme_margin_mm=u(10, 18), collapse_mm=u(0.5, 2.0) if rng.random() < 0.25 else 0.0,
                     effusion_ml=u(3, 12))
        p.update(overrides)
        return cls(**p)


# --------------------------------------------------------------------------- model
def _smooth_noise_params(rng: np.random.Generator, n: int = 6, wavelength_mm=(14.0, 40.0)) -> np.ndarray:
    k = rng.normal(size=(n, 3))
    k *= (2 * np.pi / rng.uniform(*wavelength_mm, size=n))[:, None] / np.linalg.norm(k, axis=1, keepdims=True)
    return np.column_stack([k, rng.uniform(0, 2 * np.pi, n)]).astype(np.float32)


def _smooth_noise(params: np.ndarray, u, v, w):
    """Smooth random field with unit RMS (sum of plane waves)."""
    out = np.zeros(np.shape(u), np.float32)
    for kx, ky, kz, ph in params:
        out += np.cos(kx * u + ky * v + kz * w + ph)
    return out * np.float32(math.sqrt(2.0 / len(params)))


def _ellipsoid_sdf(u, v, w, centre, semi):
    """Approximate signed distance (mm) to an axis-aligned ellipsoid."""
    a, b, c = (float(x) for x in semi)
    centre = np.asarray(centre, float).tolist()
    k = np.sqrt(((u - centre[0]) / a) ** 2 + ((v - centre[1]) / b) ** 2 + ((w - centre[2]) / c) ** 2)
    return (k - 1.0) * min(a, b, c)


def _capsule_sdf(u, v, w, p0, p1, radius):
    """Signed distance to a capsule (segment p0-p1 with a radius)."""
    p0, p1 = np.asarray(p0, float), np.asarray(p1, float)
    d = (p1 - p0).tolist()  # python floats keep float32 arrays float32 (NEP 50)
    L2 = d[0] * d[0] + d[1] * d[1] + d[2] * d[2]
    p0 = p0.tolist()
    du, dv, dw = u - p0[0], v - p0[1], w - p0[2]
    h = np.clip((du * d[0] + dv * d[1] + dw * d[2]) / L2, 0.0, 1.0)
    return np.sqrt((du - h * d[0]) ** 2 + (dv - h * d[1]) ** 2 + (dw - h * d[2]) ** 2) - radius


def _dot(u, v, w, vec):
    """``(u, v, w) . vec`` keeping float32 arrays float32 (vec as python floats, NEP 50)."""
    a, b, c = (float(x) for x in vec)
    return u * a + v * b + w * c


def _dist(u, v, w, centre):
    a, b, c = (float(x) for x in centre)
    return np.sqrt((u - a) ** 2 + (v - b) ** 2 + (w - c) ** 2)


def _smin(a, b, k):
    """Polynomial smooth minimum (fillet of width ~k mm)."""
    h = np.clip(0.5 + 0.5 * (b - a) / k, 0.0, 1.0)
    return b + (a - b) * h - k * h * (1.0 - h)


class HipModel:
    """Geometry of one hip in its local frame, derived from a :class:`HipSpec`.

    Parameters
    ----------
    spec : HipSpec
    side : {'right', 'left'}
    head_centre_lps_mm : 3 floats
    midline_x_mm : float
        x of the pelvic midline (pubic symphysis).
    rng : numpy.random.Generator
        Draws the smooth marrow textures.
    """

    def __init__(self, spec: HipSpec, side: str, head_centre_lps_mm, midline_x_mm: float, rng: np.random.Generator):
        self.spec, self.side = spec, side
        self.sign = -1.0 if side == "right" else 1.0  # local u = sign * (x - Cx)
        self.c = np.asarray(head_centre_lps_mm, float)
        self.off = SIDE_OFFSET[side]
        sp = spec
        R, rn, L = sp.head_radius_mm, sp.neck_radius_mm, sp.neck_length_mm
        self.R, self.rn, self.L = R, rn, L
        self.d1 = math.sqrt(R * R - rn * rn)
        tilt, nsa, av = map(math.radians, (sp.shaft_adduction_deg, sp.neck_shaft_angle_deg, sp.anteversion_deg))
        self.s = _unit([-math.sin(tilt), 0.0, -math.cos(tilt)])  # towards the feet, slightly medial
        ang = tilt + nsa  # angle of n from +w towards lateral in the coronal plane
        nu, nw = math.sin(ang), math.cos(ang)
        # anteversion: head anterior to the shaft, so going head -> shaft the neck runs posteriorly
        self.n = _unit([nu, nu * math.tan(av), nw])
        self.x = L * self.n  # X, local
        self.r_base = 1.45 * rn
        self.t_waist = self.d1 + 0.3 * (L - self.d1)
        ai, aa = math.radians(sp.acetabular_inclination_deg), math.radians(sp.acetabular_anteversion_deg)
        self.o = _unit([math.sin(ai) * math.cos(aa), -math.sin(ai) * math.sin(aa), -math.cos(ai)])  # cup opening
        self.cup_in = R + sp.cartilage_femoral_mm + sp.joint_space_mm + sp.cartilage_acetabular_mm
        self.cup_out = self.cup_in + 16.0
        self.mid_u = self.sign * (midline_x_mm - self.c[0])  # local u of the midline (negative)
        self.noise_e = _smooth_noise_params(rng)
        self.noise_red = _smooth_noise_params(rng, wavelength_mm=(10.0, 25.0))
        self.noise_line = float(rng.uniform(0, 2 * np.pi))
        # lesion axes
        an, al = math.radians(sp.necrosis_anterior_deg), math.radians(sp.necrosis_lateral_deg)
        self.a = _unit([math.sin(al), -math.sin(an), math.cos(an) * math.cos(al)])
        self.lens_d = self._solve_lens_distance() if sp.necrosis_extent_pct > 0 else None
        ll = math.radians(sp.line_lateral_deg)
        self.b = _unit([math.sin(ll), 0.0, math.cos(ll)])
        self.e1 = _unit(np.cross([0.0, 1.0, 0.0], self.b))  # lateral tangent (in the coronal plane)
        self.e1 *= np.sign(self.e1[0]) or 1.0
        self.e2 = np.cross(self.b, self.e1)
        if sp.line_length_mm > 0:
            rl = R - sp.line_depth_mm
            self.line_half_angle = (sp.line_length_mm / 2.0) / rl
            self.line_half_angle_ap = 0.8 * self.line_half_angle
            if self.line_half_angle > 1.3:
                raise ConfigError("line_length_mm too long for the head radius")
        # collapse: axis and angular footprint
        if sp.necrosis_extent_pct > 0:
            self.collapse_axis, self.collapse_half_angle = self.a, math.acos(min(1.0, self.lens_d / (2 * R)))
        elif sp.line_length_mm > 0:
            self.collapse_axis, self.collapse_half_angle = self.b, 1.2 * self.line_half_angle
        else:
            self.collapse_axis, self.collapse_half_angle = _unit([0, 0, 1.0]), math.radians(30)
        self._muscles = self._muscle_primitives()
        self.effusion_w = self._solve_effusion_width() if sp.effusion_ml > 0 else 0.0
        self.bme_front = {"head": self.d1 + 2.0, "head_neck": 0.9 * L, "intertrochanteric": L + 28.0}[sp.bme_extent]
        if sp.necrosis_extent_pct > 0:
            self.bme_focus_point = (self.lens_d / 2.0) * self.a  # centre of the segment's base
        elif sp.line_length_mm > 0:
            self.bme_focus_point = (R - sp.line_depth_mm - 6.0) * self.b
        else:
            self.bme_focus_point = np.zeros(3)

    # ---- derived values
    def _solve_lens_distance(self) -> float:
        target = self.spec.necrosis_extent_pct / 100.0 * head_region_volume_mm3(self.R, self.rn)
        lo, hi = 0.0, 2 * self.R
        for _ in range(60):
            mid = 0.5 * (lo + hi)
            lo, hi = (mid, hi) if lens_volume_mm3(self.R, mid) > target else (lo, mid)
        return 0.5 * (lo + hi)

    def _neck_radius(self, t):
        f = np.clip((t - self.t_waist) / (self.L - self.t_waist), 0.0, 1.0)
        return self.rn + (self.r_base - self.rn) * f

    def effusion_extent(self) -> tuple[float, float]:
        """Range of the neck-axis coordinate ``t`` covered by the effusion recess."""
        return self.d1, 0.72 * self.L

    def _solve_effusion_width(self) -> float:
        t0, t1 = self.effusion_extent()
        t = np.linspace(t0, t1, 401)
        int_r = float(np.trapezoid(self._neck_radius(t), t))
        a, b, c = math.pi * (t1 - t0), 2 * math.pi * int_r, -self.spec.effusion_ml * 1000.0
        return (-b + math.sqrt(b * b - 4 * a * c)) / (2 * a)

    def collapse_depth(self, q) -> np.ndarray:
        """Inward displacement (mm) of the articular surface along unit directions ``q`` (..., 3)."""
        if self.spec.collapse_mm <= 0:
            return np.zeros(np.shape(q)[:-1])
        cosang = np.clip(np.tensordot(q, self.collapse_axis, axes=([-1], [0])), -1, 1)
        x = np.clip(np.arccos(cosang) / self.collapse_half_angle, 0, 1)
        return self.spec.collapse_mm * np.cos(0.5 * np.pi * x) ** 2

    def to_lps(self, p_local) -> np.ndarray:
        p = np.array(p_local, float)
        p[..., 0] *= self.sign
        return p + self.c

    def dir_to_lps(self, d_local) -> np.ndarray:
        d = np.array(d_local, float)
        d[..., 0] *= self.sign
        return d

    def local_box_to_lps(self, lo, hi):
        """LPS axis-aligned box of a local box."""
        a, b = self.to_lps(lo), self.to_lps(hi)
        return np.minimum(a, b), np.maximum(a, b)

    # ---- bounding boxes (local)
    def femur_box(self):
        R, L = self.R, self.L
        lo = np.array([-R - 3, -R - 15, -260.0])
        hi = np.array([L * self.n[0] + 45, R + 30, R + 4])
        return lo, hi

    def pelvis_box(self):
        return np.array([self.mid_u - 2, -70.0, -85.0]), np.array([75.0, 70.0, 160.0])

    def thin_structure_box(self, margin_mm: float = 2.0):
        """Local box around the subchondral line (None without one), for finer sampling.

        The line is 0.8-2 mm thick: sampled at voxel centres it vanishes wherever it runs between
        two of them, so the renderer samples this box more finely.
        """
        sp = self.spec
        if sp.line_length_mm <= 0:
            return None
        # directions within the footprint's larger half-angle of b, on the shell the line can occupy
        half = self.line_half_angle
        g = np.linspace(-half, half, 9)
        t1, t2 = (a.ravel() for a in np.meshgrid(g, g))
        q = (np.cos(t1)[:, None] * np.cos(t2)[:, None] * self.b + np.sin(t1)[:, None] * self.e1
             + np.sin(t2)[:, None] * self.e2)
        q /= np.linalg.norm(q, axis=1, keepdims=True)
        r_mid = self.R - sp.line_depth_mm
        reach = 0.3 + 0.5 * sp.line_thickness_mm
        pts = np.concatenate([q * (r_mid + reach), q * (r_mid - reach - sp.collapse_mm)])
        return pts.min(axis=0) - margin_mm, pts.max(axis=0) + margin_mm

    # ---- painting
    def local(self, blk):
        return (self.sign * (blk.x - np.float32(self.c[0])), blk.y - np.float32(self.c[1]), blk.z - np.float32(self.c[2]))

    def _muscle_primitives(self):
        """(kind, params, code) of the muscle groups and femoral vessels, local mm."""
        X, m = self.x, self.mid_u
        lt = X + 30 * self.s + np.array([-14.0, 10.0, 0.0])
        return [
            ("ellipsoid", ((30, 22, 62), (30, 38, 50)), GLUTEAL),  # gluteus medius/minimus (SNR reference)
            ("capsule", ((-25, -10, 150), (-8, -38, 10), 22.0), MUSCLE),  # iliopsoas
            ("capsule", ((-8, -38, 10), lt, 14.0), MUSCLE),
            ("ellipsoid", ((-37, 12, -12), (9, 28, 28)), MUSCLE),  # obturator internus
            ("ellipsoid", ((-22, 2, -46), (14, 20, 11)), MUSCLE),  # obturator externus
            ("capsule", ((m + 35, -5, -48), (-30, 5, -260), 34.0), MUSCLE),  # adductors
            ("capsule", (X + np.array([6, -4, -8]), X + 250 * self.s, self.spec.shaft_radius_mm + 27), MUSCLE),  # vasti
            ("capsule", ((-22, 45, -70), (-8, 40, -260), 26.0), MUSCLE),  # hamstrings
            ("capsule", ((55, 0, 40), (45, -25, -120), 9.0), MUSCLE),  # tensor fasciae latae
            ("ellipsoid", ((10, 62, -15), (62, 30, 90)), GLUTEAL),  # gluteus maximus (SNR reference)
            ("capsule", ((-20, -48, 70), (-8, -40, -260), 4.0), FLOW_VOID),  # femoral artery
            ("capsule", ((-32, -44, 70), (-20, -34, -260), 5.0), FLOW_VOID),  # femoral vein
        ]

    def paint_muscles(self, blk) -> None:
        """Muscle groups and femoral vessels inside the subcutaneous fat (``blk.inner``)."""
        for kind, prm, code in self._muscles:
            if kind == "capsule":
                p0, p1, r = np.asarray(prm[0], float), np.asarray(prm[1], float), prm[2]
                lo, hi = np.minimum(p0, p1) - r, np.maximum(p0, p1) + r
            else:
                lo, hi = np.subtract(prm[0], prm[1]), np.add(prm[0], prm[1])
            sub = blk.sub(*self.local_box_to_lps(lo, hi))
            if sub is None:
                continue
            u, v, w = self.local(sub)
            d = _capsule_sdf(u, v, w, *prm) if kind == "capsule" else _ellipsoid_sdf(u, v, w, *prm)
            sub.code[(d < 0) & sub.inner] = code

    def pelvis_sdf(self, u, v, w):
        rr = np.sqrt(u * u + v * v + w * w)
        pd_o = _dot(u, v, w, self.o)
        mid_r = 0.5 * (self.cup_in + self.cup_out)
        cup = np.maximum(np.abs(rr - mid_r) - 0.5 * (self.cup_out - self.cup_in), pd_o)
        m = self.mid_u
        d = cup
        for part in (
            _capsule_sdf(u, v, w, (-4, 4, 30), (6, 14, 112), 16.0),  # iliac body
            _capsule_sdf(u, v, w, (-12, 0, 5), (m + 8, -46, -16), 10.0),  # superior pubic ramus
            _ellipsoid_sdf(u, v, w, (m + 14, -47, -26), (12, 10, 22)),  # pubic body
            _capsule_sdf(u, v, w, (m + 12, -44, -42), (-30, 12, -64), 7.0),  # inferior pubic / ischial ramus
            _capsule_sdf(u, v, w, (-10, 16, -18), (-24, 32, -62), 14.0),  # ischium
        ):
            d = _smin(d, part, 7.0)
        # iliac wing: thin plate running from anterolateral (ASIS) to posteromedial (SI joint)
        ca, sa = 0.6, 0.8
        du, dv, dw = u - 2.0, v - 14.0, w - 110.0
        a1 = -ca * du + sa * dv
        a2 = sa * du + ca * dv
        wing = (np.sqrt((a1 / 58) ** 2 + (a2 / 7) ** 2 + (dw / 45) ** 2) - 1.0) * 7.0
        return _smin(d, wing, 10.0), rr, pd_o

    def paint_pelvis(self, blk) -> None:
        u, v, w = self.local(blk)
        d, rr, pd_o = self.pelvis_sdf(u, v, w)
        bone = d < 0
        blk.code[bone] = CORTEX
        marrow = d < -1.5
        blk.code[marrow] = MARROW
        blk.ff[marrow] = 0.65 + 0.1 * _smooth_noise(self.noise_red, u[marrow], v[marrow], w[marrow])
        blk.e[marrow] = 0.0
        blk.region[bone] = self.off + np.where(rr[bone] <= self.R + 15.0, 5, OTHER_PELVIS)
        # joint: acetabular cartilage, fluid film, fossa fat pad, labrum
        sp = self.spec
        covered = pd_o < 0
        fossa = pd_o < -0.9 * rr
        r_fc = self.R + sp.cartilage_femoral_mm
        shell = (rr >= r_fc + sp.joint_space_mm) & (rr < self.cup_in) & covered
        blk.code[shell & ~fossa] = CARTILAGE
        blk.code[(rr >= r_fc) & (rr < self.cup_in + 3.0) & fossa] = FAT
        blk.code[(rr >= self.R) & (rr < r_fc + sp.joint_space_mm) & covered] = FLUID
        labrum = (rr >= r_fc) & (rr < self.cup_in + 5.0) & (pd_o >= 0) & (pd_o < 6.0 - 0.8 * (rr - r_fc))
        blk.code[labrum] = FIBROUS

    def paint_effusion(self, blk) -> None:
        if self.effusion_w <= 0:
            return
        u, v, w = self.local(blk)
        t = _dot(u, v, w, self.n)
        rho = np.sqrt(np.maximum(u * u + v * v + w * w - t * t, 0))
        t0, t1 = self.effusion_extent()
        rn = self._neck_radius(t)
        eff = (t >= t0) & (t < t1) & (rho >= rn) & (rho < rn + self.effusion_w)
        eff &= (blk.code != CORTEX) & (blk.code != MARROW)
        blk.code[eff] = FLUID
        blk.flags[eff] |= F_EFFUSION

    def femur_sdf(self, u, v, w):
        """Signed distance-like field of the femur (negative inside) and helper coordinates."""
        sp = self.spec
        rr = np.sqrt(u * u + v * v + w * w)
        t = _dot(u, v, w, self.n)
        rho = np.sqrt(np.maximum(rr * rr - t * t, 0))
        d_neck = np.maximum(np.maximum(rho - self._neck_radius(t), -t), t - (self.L + 6))
        X, s = self.x, self.s
        qu, qv, qw = u - float(X[0]), v - float(X[1]), w - float(X[2])
        h = _dot(qu, qv, qw, s)
        rho_s = np.sqrt(np.maximum(qu * qu + qv * qv + qw * qw - h * h, 0))
        r_meta = sp.shaft_radius_mm + 9.0
        rs = sp.shaft_radius_mm + (r_meta - sp.shaft_radius_mm) * np.clip(1 - h / 60.0, 0, 1) ** 2
        d_shaft = np.where(h >= 0, rho_s - rs, (np.sqrt((rho_s / r_meta) ** 2 + (h / 14.0) ** 2) - 1) * 14.0)
        gt = _ellipsoid_sdf(u, v, w, X + np.array([9.0, 7.0, 19.0]), (13.0, 17.0, 24.0))
        lt = _ellipsoid_sdf(u, v, w, X + 30 * s + np.array([-13.0, 9.0, 0.0]), (8.0, 8.0, 11.0))
        d = _smin(_smin(_smin(d_neck, d_shaft, 7.0), gt, 6.0), lt, 4.0)
        r_eff = self.R
        if sp.collapse_mm > 0:
            q = np.stack([u, v, w], axis=-1) / np.maximum(rr, 1e-3)[..., None]
            r_eff = self.R - self.collapse_depth(q)
        d_head = rr - r_eff
        return np.minimum(d_head, d), rr, t, rho, h, d_head

    def cortex_thickness(self, t, h):
        sp = self.spec
        tc = np.interp(h, [-10.0, 45.0], [sp.cortex_neck_mm, sp.cortex_shaft_mm]).astype(np.float32)
        return np.where(t < self.d1, np.float32(sp.cortex_head_mm), tc)

    def paint_femur(self, blk) -> None:
        """Femoral cartilage, cortex, marrow with its fat fraction and edema, lesions, regions."""
        sp = self.spec
        u, v, w = self.local(blk)
        d, rr, t, rho, h, d_head = self.femur_sdf(u, v, w)
        # femoral head cartilage over the articular surface (not over the neck)
        cart = (d_head >= 0) & (d_head < sp.cartilage_femoral_mm) & (t < self.d1 - 1.0) & (d >= 0)
        blk.code[cart] = CARTILAGE
        # joint fluid filling any gap left by collapse, under the acetabular cover
        if sp.collapse_mm > 0:
            pd_o = _dot(u, v, w, self.o)
            gap = (d_head >= sp.cartilage_femoral_mm) & (rr < self.R + sp.cartilage_femoral_mm) & (pd_o < 0)
            blk.code[gap] = FLUID
        bone = d < 0
        if not bone.any():
            return
        # restrict the rest to bone samples
        idx = np.nonzero(bone)
        u, v, w, rr, t, rho, h, d = (a[idx] for a in (u, v, w, rr, t, rho, h, d))
        marrow = d < -self.cortex_thickness(t, h)
        code = np.where(marrow, MARROW, CORTEX).astype(np.uint8)
        region = np.where(t < self.d1, 1, np.where((t < self.L) & (rho <= 1.5 * self.rn), 2, np.where(h < 50.0, 3, 4)))
        flags = np.zeros(u.shape, np.uint8)
        # marrow composition: yellow marrow, red marrow towards the metaphysis
        red = sp.red_marrow * np.clip((t - self.d1 - 8.0) / 30.0, 0, 1)
        red = red * np.clip(0.6 + 0.5 * _smooth_noise(self.noise_red, u, v, w), 0, 1)
        ff = (sp.marrow_fat_fraction - 0.35 * red).astype(np.float32)
        e = self._edema(u, v, w, t)
        # AVN segment: lens = head ball x ball(D a, R); band, inner rim, centre
        if self.lens_d is not None:
            D = self.lens_d
            dl = _dist(u, v, w, D * self.a)
            lens = (dl < self.R) & (t < self.d1)
            flags[lens] |= F_NECROSIS
            seg = lens & marrow
            band = seg & (dl >= self.R - sp.band_thickness_mm)
            rim = seg & ~band & (dl >= self.R - sp.band_thickness_mm - sp.rim_thickness_mm)
            centre = seg & ~band & ~rim
            code[band] = FIBROUS
            code[rim] = GRANULATION
            e[lens] = 0.0
            if sp.necrosis_content == "fluid":
                code[centre] = FLUID
            elif sp.necrosis_content == "fibrous":
                code[centre] = FIBROUS
            else:
                ff[centre] = np.maximum(ff[centre], 0.9)
        if sp.line_length_mm > 0:
            line = self.line_inside(u, v, w, rr) & marrow
            code[line] = FIBROUS
            flags[line] |= F_LINE
        sl = tuple(idx)
        blk.code[sl] = code
        blk.ff[sl] = ff
        blk.e[sl] = np.where(code == MARROW, e, 0.0)
        blk.region[sl] = self.off + region
        blk.flags[sl] |= flags

    def line_inside(self, u, v, w, rr):
        """Subchondral line: a patch at constant depth (gently undulating), elliptical footprint."""
        sp = self.spec
        rr_safe = np.maximum(rr, 1e-3)  # a sample at the head centre
        q = [u / rr_safe, v / rr_safe, w / rr_safe]
        cb = _dot(q[0], q[1], q[2], self.b)
        c1 = _dot(q[0], q[1], q[2], self.e1)
        c2 = _dot(q[0], q[1], q[2], self.e2)
        th1, th2 = np.arctan2(c1, cb), np.arctan2(c2, cb)
        foot = (th1 / self.line_half_angle) ** 2 + (th2 / self.line_half_angle_ap) ** 2 <= 1.0
        r_line = self.line_radius(th1)
        if sp.collapse_mm > 0:
            qq = np.stack(q, axis=-1)
            r_line = r_line - self.collapse_depth(qq)
        return foot & (np.abs(rr - r_line) < 0.5 * sp.line_thickness_mm) & (cb > 0)

    def line_radius(self, th1):
        """Radius of the line's centre surface as a function of the lateral angle (irregular, +-0.3 mm)."""
        sp = self.spec
        return (self.R - sp.line_depth_mm) + 0.3 * np.sin(3.0 * np.pi * th1 / self.line_half_angle + self.noise_line)

    def _edema(self, u, v, w, t):
        sp = self.spec
        if sp.bme_peak <= 0:
            return np.zeros(u.shape, np.float32)
        scale = sp.bme_margin_mm / 4.394  # 10-90 % width of the logistic = 4.394 scale
        e = _sigmoid((self.bme_front - t) / scale)
        if sp.bme_focus_mm > 0:
            e = e * np.exp(-_dist(u, v, w, self.bme_focus_point) ** 2 / (2 * sp.bme_focus_mm**2))
        if sp.bme_medial_sparing > 0:
            medial = _sigmoid((-self.R / 3.0 - u) / 2.5) * (t < self.d1 + 5)
            e = e * (1 - sp.bme_medial_sparing * medial)
        e = e * (1 + sp.bme_heterogeneity * _smooth_noise(self.noise_e, u, v, w))
        return np.clip(sp.bme_peak * e, 0, 1).astype(np.float32)


def hip_summary(model: HipModel) -> dict:
    """Axes and analytic quantities of one hip in LPS (for truth.json)."""
    sp = model.spec
    out = {
        "pattern": sp.pattern,
        "head_center_lps_mm": [round(float(x), 3) for x in model.c],
        "head_radius_mm": round(model.R, 3),
        "neck_radius_mm": round(model.rn, 3),
        "neck_axis_lps": [round(float(x), 6) for x in model.dir_to_lps(model.n)],
        "shaft_axis_lps": [round(float(x), 6) for x in model.dir_to_lps(model.s)],
        "neck_shaft_point_lps_mm": [round(float(x), 3) for x in model.to_lps(model.x)],
        "neck_length_mm": round(model.L, 3),
        "neck_shaft_angle_deg": round(sp.neck_shaft_angle_deg, 3),
        "anteversion_deg": round(sp.anteversion_deg, 3),
        "analytic": {
            "femoral_head_volume_ml": round(head_region_volume_mm3(model.R, model.rn) / 1000.0, 4),
        },
        "spec": sp.to_dict(),
    }
    return out

