"""The edema signal calibrated on the study's own marrow against the phantom's tissue truth.

Probe study 9640015 (``make_suite(24, seed=9640, small=True)``, a diagnosis probe, not a tuning
or held-out seed): T2-FS at 3 T, a subchondral insufficiency fracture with about 75 ml of BME in
each hip. Its edema water has a shorter T2 than the signal equations' mid-range value, so the
equations expect edema about 1.5x brighter than it is; with that expectation only 7-11 ml of the
BME crossed the threshold. The oracle is the phantom's truth: the tissues' relaxation times
(``truth.json``, ``tissues``) put into the spin-echo signal equation written out here, and the
BME label maps. The segmentation is the phantom's. Fixture about 5 s on one core.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from bmepipe.phantom import generate_study, make_suite
from test_quantify_phantom import quantify_with_truth

pytestmark = pytest.mark.slow


def _spin_echo(tissue: dict, tr_ms: float, te_ms: float) -> float:
    return tissue["pd"] * (1.0 - math.exp(-tr_ms / tissue["t1_ms"])) * math.exp(-te_ms / tissue["t2_ms"])


@pytest.fixture(scope="module")
def measured():
    study = generate_study(next(s for s in make_suite(24, seed=9640, small=True) if s.seed == 9640015))
    return study, quantify_with_truth(study)[1]


def test_calibrated_edema_signal_is_nearer_the_truth_than_the_equations(measured):
    study, m = measured
    p = study.fluid.protocol
    assert p.kind == "t2_fs"
    tissues = study.truth["tissues"]
    truth = (_spin_echo(tissues["edema"], p.repetition_time_ms, p.echo_time_ms)
             / _spin_echo(tissues["muscle"], p.repetition_time_ms, p.echo_time_ms))
    d = m.details
    assert "marrow" in d["edema_signal_fluid_from"]
    assert d["edema_signal_fluid"] == d["edema_signal_fluid_marrow"]
    assert abs(d["edema_signal_fluid"] / truth - 1.0) < 0.25
    assert abs(d["edema_signal_fluid"] - truth) < abs(d["edema_signal_fluid_equations"] - truth) / 2


def test_bme_of_both_hips_is_found(measured):
    study, m = measured
    vox_ml = float(np.prod(study.geometry.spacing_mm)) / 1000.0
    for side in ("right", "left"):
        truth = study.labels[f"{side}_bme"]
        got = m.sides[side].masks["bme"]
        dice = 2.0 * float((truth & got).sum()) / float(truth.sum() + got.sum())
        assert float(truth.sum()) * vox_ml > 50.0
        assert dice >= 0.8, (side, dice)
        assert abs(m.sides[side].bme.volume_ml / (float(truth.sum()) * vox_ml) - 1.0) <= 0.2
