"""normalize_study end to end on an analytic two-series study (bias, grid, standardization, QC)."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest
import SimpleITK as sitk
from scipy import ndimage

import normalize_synth as ns
from bmepipe.errors import SeriesSelectionError
from bmepipe.normalize import normalize_study

CORONAL = ns.CORONAL
volume = ns.volume


def test_normalize_study_chains_every_step():
    fluid_grid = ns.make_grid((192, 192, 24), (2.0, 2.0, 5.0), direction=CORONAL)
    t1_grid = ns.make_grid((176, 176, 20), (2.2, 2.2, 6.0), direction=CORONAL)  # another grid, same frame
    p = ns.physical_points(fluid_grid)
    field = ns.smooth_bias(p, 0.4, seed=5)
    fluid = ns.series(fluid_grid, "stir", bias=field, sigma=0.3 / 20, seed=1)
    t1_field = ns.smooth_bias(ns.physical_points(t1_grid), 0.4, seed=5)  # the same coil field on the T1 grid
    t1 = ns.series(t1_grid, "t1", bias=t1_field, sigma=0.35 / 30, seed=2)
    sel = SimpleNamespace(fluid_sensitive=volume(fluid, "stir"), t1=volume(t1, "t1"))
    out = normalize_study(sel)

    assert out.t1.GetSize() == fluid.GetSize() and out.grid.method == "geometry"
    labels = ns.labels_at(p)
    inner = lambda lab: ndimage.binary_erosion(labels == lab, structure=np.ones((1, 3, 3), bool))  # noqa: E731
    fluid_lab, muscle_lab = ns.TISSUES["fluid"][0], ns.TISSUES["muscle"][0]
    # STIR fluid/muscle of the object = 1.0 / 0.30, after bias removal and standardization
    assert abs(out.standardized.value(inner(fluid_lab)) / (1.0 / 0.30) - 1) < 0.05
    assert abs(out.standardized.value(inner(muscle_lab), "t1") - 1) < 0.03
    est = sitk.GetArrayFromImage(out.fluid_bias_field)[labels > 0]
    ratio = field[labels > 0] / est
    assert ratio.std() / ratio.mean() < 0.3 * field[labels > 0].std() / field[labels > 0].mean()
    assert out.quality.passed
    summary = json.loads(json.dumps(out.to_dict()))
    assert summary["standardization"]["reference_tissue"] == "skeletal_muscle"
    assert {f["name"] for f in summary["quality"]["flags"]} >= {"snr_fluid", "fat_suppression", "coverage"}


def test_normalize_study_needs_a_fluid_sensitive_series():
    with pytest.raises(SeriesSelectionError):
        normalize_study(SimpleNamespace(fluid_sensitive=None, t1=None))


@pytest.mark.parametrize("moved, pixel_mm", [(False, 2.2), (True, 2.2), (False, 0.7)],
                         ids=["still", "moved", "still-fine-pixels"])
def test_threads_change_nothing(monkeypatch, moved, pixel_mm):
    """Bias fields on two threads, QC in the background and the motion check beside standardization (its result
    discarded when the patient moved) give the serial result, bit for bit."""
    n = int(round(160 * 2.2 / pixel_mm))  # fine pixels: the QC samples every n-th row and column
    fluid_grid = ns.make_grid((n, n, 20), (pixel_mm, pixel_mm, 5.0), direction=CORONAL)
    p = ns.physical_points(fluid_grid)
    field = ns.smooth_bias(p, 0.4, seed=8)
    fluid = ns.series(fluid_grid, "stir", bias=field, sigma=0.3 / 20, seed=3)
    motion = sitk.Euler3DTransform()
    if moved:
        motion.SetRotation(0.0, 0.0, np.deg2rad(2.0))
        motion.SetTranslation((4.0, 0.0, -3.0))
    t1 = ns.series(fluid_grid, "t1", bias=field, transform=motion.GetInverse(), sigma=0.35 / 30, seed=4)
    sel = SimpleNamespace(fluid_sensitive=volume(fluid, "stir"), t1=volume(t1, "t1"))
    runs = []
    for threads in ("1", "2"):
        monkeypatch.setenv("BMEPIPE_THREADS", threads)
        out = normalize_study(sel)
        assert out.grid.method == ("rigid" if moved else "geometry")
        arrays = [sitk.GetArrayFromImage(im) for im in (out.fluid_bias_field, out.t1_bias_field, out.fluid_rel,
                                                         out.t1_rel, out.body)]
        runs.append((arrays, out.to_dict()["quality"], out.to_dict()["standardization"], out.grid.to_dict()))
    for a, b in zip(runs[0][0], runs[1][0]):
        assert np.array_equal(a, b)
    assert runs[0][1:] == runs[1][1:]



def _small_pair():
    grid = ns.make_grid((128, 128, 16), (2.5, 2.5, 5.0), direction=CORONAL)
    field = ns.smooth_bias(ns.physical_points(grid), 0.3, seed=2)
    fluid = ns.series(grid, "stir", bias=field, sigma=0.3 / 20, seed=5)
    t1 = ns.series(grid, "t1", bias=field, sigma=0.35 / 30, seed=6)
    return SimpleNamespace(fluid_sensitive=volume(fluid, "stir"), t1=volume(t1, "t1"))


def test_background_landmarks_and_qc_join_their_thread(monkeypatch):
    """QC runs beside the next stages and the landmark scale when first read; reading them leaves no thread
    behind (the report writer forks only when bmepipe's threads are gone)."""
    import threading

    monkeypatch.setenv("BMEPIPE_THREADS", "2")
    before = threading.active_count()
    out = normalize_study(_small_pair())
    assert out.quality.flags and out.standardized.landmarks is not None
    assert {"bias", "standardize", "landmarks", "qc"} <= set(out.timings_s)
    assert threading.active_count() == before


@pytest.mark.parametrize("threads", ["1", "2"])
def test_background_errors_reach_the_reader(monkeypatch, threads):
    from bmepipe.errors import InputError
    from bmepipe.normalize import study as study_module

    def broken(*args, **kwargs):
        raise InputError("QC exploded")

    monkeypatch.setenv("BMEPIPE_THREADS", threads)
    monkeypatch.setattr(study_module, "assess_quality", broken)
    out = normalize_study(_small_pair())
    assert out.fluid_rel is not None  # the images for segmentation are there
    with pytest.raises(InputError, match="QC exploded"):
        out.quality
    with pytest.raises(InputError, match="QC exploded"):
        out.quality  # every reader gets it
    assert out.standardized.landmarks is not None  # the landmark scale does not depend on QC

def test_blas_runs_on_one_thread_inside_the_pipeline_only():
    """analyze and compare hold BLAS to one thread (the stage threads are the parallelism) and restore it."""
    from threadpoolctl import threadpool_info, threadpool_limits

    from bmepipe._threads import single_threaded_blas

    def blas_threads():
        return [lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"]

    if not blas_threads():
        pytest.skip("no BLAS library loaded that threadpoolctl can control")
    with threadpool_limits(limits=2, user_api="blas"):
        inside = single_threaded_blas(blas_threads)()
        assert inside and all(n == 1 for n in inside)
        assert all(n == 2 for n in blas_threads())  # restored
        # overlapping calls (compare runs two analyses inside its own call): the last one out restores
        seen = {}

        def outer():
            single_threaded_blas(lambda: None)()
            seen["after inner"] = blas_threads()

        single_threaded_blas(outer)()
        assert seen["after inner"] and all(n == 1 for n in seen["after inner"])
        assert all(n == 2 for n in blas_threads())
    import bmepipe
    from bmepipe.compare import compare

    assert bmepipe.analyze.__wrapped__ and compare.__wrapped__  # both entry points are wrapped
