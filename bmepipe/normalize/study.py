"""normalize_study: bias -> one grid -> standardization -> QC, what later stages call.

Segmentation and quantification need only the images in muscle units. The input QC (about 0.8 s of CPU on
a 512 x 512 x 30 study) is needed later, by the pattern assessment and the report: on a 2-core machine it
runs on a background thread while the next stages proceed, and :attr:`NormalizedStudy.quality` waits for it
when first read. The landmark scale (``standardized.landmarks``, ``fluid_std``), which no later stage uses,
is measured when :attr:`NormalizedStudy.standardized` is first read. The values are the same as when
computed in line (``BMEPIPE_THREADS=1``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable, Optional

import SimpleITK as sitk

from .._threads import map_in_threads, max_threads
from ..errors import BmepipeError, SeriesSelectionError
from ..io.types import Volume
from .bias import body_mask, correct_bias
from .grid import GridResult, resample_images, resample_label, resample_to_reference
from .landmarks import in_plane_depth_mm
from .qc import QualityReport, assess_quality
from .standardize import Standardized, standardize, with_landmarks

__all__ = ["NormalizedStudy", "normalize_study", "QC_SPACING_MM"]

#: In-plane sampling (mm) of the input QC: every n-th row and column, n = round(QC_SPACING_MM / pixel size).
#: The QC values are statistics over thousands of voxels (muscle SNR, fat/muscle ratios, background), and
#: 512-matrix series are mostly interpolated from ~1.5 mm acquisitions; on 512 x 512 phantoms every flag
#: agreed with full resolution, the fat/muscle ratios within 0.5-8 % (less edge partial volume), for a
#: quarter of the voxels.
QC_SPACING_MM = 1.4


class _Pending:
    """``fn()`` on a background thread (or in line), its value or exception handed over by :meth:`result`."""

    def __init__(self, fn: Callable[[], tuple], background: bool):
        self._value: Optional[tuple] = None
        self._error: Optional[BaseException] = None
        self._thread: Optional[threading.Thread] = None
        if background:
            self._thread = threading.Thread(target=self._run, args=(fn,), name="bmepipe-qc")
            self._thread.start()
        else:
            self._run(fn)

    def _run(self, fn):
        try:
            self._value = fn()
        except Exception as err:  # handed to the reader, as if computed there (Ctrl-C is not held back)
            self._error = err

    def result(self) -> tuple:
        thread = self._thread  # several readers may wait at once: each joins its own reference
        if thread is not None:
            thread.join()  # joined, not only finished: a later fork must see no other thread
            self._thread = None
        if self._error is not None:
            raise self._error
        return self._value


@dataclass
class NormalizedStudy:
    """A study ready for segmentation and quantification, all on the fluid-sensitive grid.

    Attributes
    ----------
    fluid : SimpleITK.Image
        Bias-corrected fluid-sensitive series (its own grid = the reference grid).
    t1 : SimpleITK.Image or None
        Bias-corrected T1 series resampled on that grid (0 outside its coverage).
    fluid_rel, t1_rel : SimpleITK.Image
        The same divided by skeletal muscle (muscle = 1.0).
    body : SimpleITK.Image
        ``sitkUInt8`` body mask on the grid.
    fluid_bias_field : SimpleITK.Image
        Estimated field of the fluid-sensitive series.
    t1_bias_field : SimpleITK.Image or None
        Estimated field of the T1 series, on the T1's own grid.
    grid : GridResult or None
        How T1 was mapped (None without T1).
    muscle_units : Standardized
        The images in muscle units, without the landmark scale.
    standardized : Standardized
        Muscle units and the landmark scale (measured on first read).
    quality : QualityReport
        Input QC (waits for the background step).
    timings_s : dict
        Seconds per step.
    """

    fluid: sitk.Image
    t1: Optional[sitk.Image]
    fluid_rel: sitk.Image
    t1_rel: Optional[sitk.Image]
    body: sitk.Image
    fluid_bias_field: sitk.Image
    t1_bias_field: Optional[sitk.Image]
    grid: Optional[GridResult]
    muscle_units: Standardized
    pending: _Pending = field(repr=False, compare=False)
    steps_s: dict = field(default_factory=dict, repr=False)
    _scaled: Optional[Standardized] = field(default=None, init=False, repr=False, compare=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False, compare=False)

    @property
    def standardized(self) -> Standardized:
        with self._lock:
            if self._scaled is None:
                t0 = time.perf_counter()
                self._scaled = with_landmarks(self.muscle_units, self.body)  # measures the depth itself
                self.steps_s["landmarks"] = time.perf_counter() - t0
        return self._scaled

    @property
    def quality(self) -> QualityReport:
        return self.pending.result()[0]

    @property
    def timings_s(self) -> dict:
        return {**self.steps_s, **self.pending.result()[1]}

    def to_dict(self) -> dict:
        """JSON-ready summary for the report (no images)."""
        return {
            "grid": None if self.grid is None else self.grid.to_dict(),
            "standardization": self.standardized.to_dict(),
            "quality": self.quality.to_dict(),
            "timings_s": {k: round(v, 3) for k, v in self.timings_s.items()},
        }


def normalize_study(
    selection,
    *,
    bias_method: str = "n4_coarse",
    register: str = "auto",
    head_centres_mm=None,
    head_radii_mm=None,
) -> NormalizedStudy:
    """Bias-correct, put T1 on the fluid-sensitive grid, standardize to muscle and run QC.

    Parameters
    ----------
    selection : object
        Has ``fluid_sensitive`` (:class:`bmepipe.io.Volume`) and ``t1``
        (Volume or None), as returned by ``bmepipe.io.select_series``.
    bias_method : str
        Passed to :func:`correct_bias`.
    register : {"auto", "never", "always"}
        Passed to :func:`resample_to_reference`.
    head_centres_mm, head_radii_mm : optional
        Femoral-head spheres for the exact coverage check.

    Returns
    -------
    NormalizedStudy
        Its QC may still be running on a background thread (reading ``quality``
        waits); the landmark scale is measured when ``standardized`` is first
        read (see the module docstring).
    """
    fluid_vol: Optional[Volume] = getattr(selection, "fluid_sensitive", None)
    t1_vol: Optional[Volume] = getattr(selection, "t1", None)
    if fluid_vol is None:
        raise SeriesSelectionError("no fluid-sensitive series selected: nothing to normalize")
    timings: dict = {}
    t1 = t1_native = t1_field = grid = None
    background = max_threads() > 1
    # The two fields are independent: one thread each (ITK releases the GIL). Their output is the same
    # as one after the other, bit for bit (checked in tests/test_normalize_study.py).
    t0 = time.perf_counter()
    images = [fluid_vol.image] + ([t1_vol.image] if t1_vol is not None else [])

    def corrected(image):
        # each body mask on its series' own thread, on its own grid; T1's is mapped with the T1 image
        out, field = correct_bias(image, method=bias_method)
        return out, field, body_mask(out)

    (fluid, fluid_field, body), *rest = map_in_threads(corrected, images)
    if rest:
        t1_native, t1_field, t1_body = rest[0]
    timings["bias"] = time.perf_counter() - t0
    t1_moving, fluid_ref = (Volume(t1_native, t1_vol.meta), Volume(fluid, fluid_vol.meta)) if t1_vol else (None, None)

    def finish(grid):
        """Body and muscle units on the fluid grid, given how T1 was mapped (or None); QC started (in the
        background when threads are allowed)."""
        t1_img, full_body = None, body
        if grid is not None:
            t1_img = grid.image
            # T1 shows the subcutaneous fat that STIR nulls: the union is the body.
            full_body = sitk.Or(body, sitk.And(resample_label(t1_body, fluid, grid.transform), grid.inside))
        t0 = time.perf_counter()
        std = standardize(fluid, t1_img, body=full_body, landmarks=False)
        steps = {"standardize": time.perf_counter() - t0}

        def quality():
            t0 = time.perf_counter()
            step = max(1, int(round(QC_SPACING_MM / min(fluid.GetSpacing()[:2]))))
            every = (lambda im: sitk.Shrink(im, [step, step, 1])) if step > 1 else (lambda im: im)
            fluid_q, body_q = every(fluid), every(full_body)
            depth = in_plane_depth_mm(sitk.GetArrayViewFromImage(body_q) > 0, fluid_q.GetSpacing())
            report = assess_quality(
                fluid_q, None if t1_img is None else every(t1_img), body=body_q,
                muscle=sitk.GetArrayFromImage(every(std.reference_mask)) > 0,
                head_centres_mm=head_centres_mm, head_radii_mm=head_radii_mm,
                noise_sigma_fluid=std.noise_sigma_fluid_rel * std.reference_value_fluid,
                noise_sigma_t1=None if t1_img is None else std.noise_sigma_t1_rel * std.reference_value_t1,
                depth_mm=depth,
            )
            return report, {"qc": time.perf_counter() - t0}

        return t1_img, full_body, std, _Pending(quality, background), steps

    def map_t1(mode, resample=True):
        # the bias-corrected series are registered (a bias field misleads mutual information)
        t0 = time.perf_counter()
        grid = resample_to_reference(t1_moving, fluid_ref, register=mode, reference_body=body, resample=resample)
        return grid, time.perf_counter() - t0

    grid = done = None
    if t1_vol is None:
        done = finish(None)
    elif register == "auto" and background:
        # Most same-frame pairs show no motion, and the motion check then keeps the header geometry. Run the
        # check on a second thread while standardization and QC proceed on the header-geometry
        # resampling; redo them only if the check moved T1 (motion, or other frames of reference). The
        # result is the same as waiting for the check first.
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="bmepipe-grid") as pool:
            check = pool.submit(map_t1, register, resample=False)  # images only if it moves T1
            try:
                guess, _ = map_t1("never")
                speculative = finish(guess)
            except BmepipeError:  # e.g. no header overlap across frames: only the registration can tell
                guess = speculative = None
            try:
                grid, timings["grid"] = check.result()
            except BaseException:
                if speculative is not None:  # no QC thread left running behind the error
                    with contextlib.suppress(Exception):
                        speculative[3].result()
                raise
        if speculative is not None and grid.method == "geometry":
            grid, done = dataclasses.replace(grid, image=guess.image, inside=guess.inside), speculative
        else:
            t0 = time.perf_counter()
            image, inside = resample_images(t1_native, fluid, grid.transform)
            grid = dataclasses.replace(grid, image=image, inside=inside)
            timings["grid"] += time.perf_counter() - t0
            if speculative is not None:  # wait for the discarded background step: one at a time
                with contextlib.suppress(Exception):
                    speculative[3].result()
    else:
        grid, timings["grid"] = map_t1(register)
    if done is None:
        done = finish(grid)
    t1, body, std, pending, steps = done
    timings.update(steps)
    return NormalizedStudy(
        fluid=fluid, t1=t1, fluid_rel=std.fluid_rel, t1_rel=std.t1_rel, body=body,
        fluid_bias_field=fluid_field, t1_bias_field=t1_field, grid=grid, muscle_units=std, pending=pending,
        steps_s=timings,
    )
