"""Sequence recognition, imaging plane and series selection (bmepipe.io), on vendor-like tag sets
(shared/reference/mr_physics.md section 6), phantom series of every vendor and kind, and a phantom study."""

from __future__ import annotations

import json

import numpy as np
import pytest

import io_corpus as C
from bmepipe.cli import main
from bmepipe.errors import NoUsableSeriesError, SeriesSelectionError
from bmepipe.io import classify_sequence, load_study, plane_of, select_series

# Tag sets as the three vendors write them (mr_physics.md section 6). Expected (class, kind) from the physics.
VENDOR_TAGS = {
    "siemens stir": (dict(scanning_sequence="SE\\IR", sequence_variant="SK\\SP\\MP\\OSP", scan_options="IR",
                          sequence_name="*tir2d1_13", repetition_time_ms=4500, echo_time_ms=45,
                          inversion_time_ms=160, field_strength_t=1.5, series_description="t2_tirm_cor"),
                     ("fluid_sensitive", "stir")),
    "siemens stir 3T": (dict(scanning_sequence=["SE", "IR"], scan_options="IR", repetition_time_ms=5000,
                             echo_time_ms=50, inversion_time_ms=230, field_strength_t=3.0,
                             series_description="stir_cor"), ("fluid_sensitive", "stir")),
    "siemens t1": (dict(scanning_sequence="SE", sequence_variant="SK\\SP\\OSP", scan_options="",
                        sequence_name="*tse2d1_3", repetition_time_ms=550, echo_time_ms=12,
                        series_description="t1_tse_cor"), ("t1", "t1")),
    "siemens pd fs": (dict(scanning_sequence="SE", scan_options="FS", sequence_name="*tse2d1_9",
                           repetition_time_ms=3000, echo_time_ms=35, series_description="pd_tse_fs_cor"),
                      ("fluid_sensitive", "pd_fs")),
    "siemens t2 spair (description only)": (dict(scanning_sequence="SE", scan_options="", repetition_time_ms=4000,
                                                 echo_time_ms=80, series_description="T2_TSE_TRA_SPAIR"),
                                            ("fluid_sensitive", "t2_fs")),
    "siemens flair": (dict(scanning_sequence="SE\\IR", scan_options="IR", sequence_name="*tir2d1_16",
                           repetition_time_ms=9000, echo_time_ms=90, inversion_time_ms=2500,
                           series_description="t2_tirm_tra_dark-fluid"), ("other", "flair")),
    "siemens dixon water": (dict(scanning_sequence="GR", image_type="DERIVED\\PRIMARY\\DIXON\\WATER",
                                 repetition_time_ms=7, echo_time_ms=2.4, series_description="t1_vibe_dixon_cor_W"),
                            ("fluid_sensitive", "dixon_water")),
    "siemens dixon fat": (dict(scanning_sequence="GR", image_type="DERIVED\\PRIMARY\\DIXON\\FAT",
                               repetition_time_ms=7, echo_time_ms=2.4, series_description="t1_vibe_dixon_cor_F"),
                          ("other", "dixon_other")),
    "ge stir": (dict(scanning_sequence="IR", sequence_variant="SK\\MP", scan_options="FAST_GEMS\\IR_GEMS",
                     repetition_time_ms=4200, echo_time_ms=40, inversion_time_ms=150, series_description="COR STIR"),
                ("fluid_sensitive", "stir")),
    "ge t1": (dict(scanning_sequence="SE", sequence_variant="SK", scan_options="FAST_GEMS\\FILTERED_GEMS",
                   repetition_time_ms=600, echo_time_ms=10, series_description="Cor T1 FSE"), ("t1", "t1")),
    "ge t2 fs": (dict(scanning_sequence="SE", scan_options="FAST_GEMS\\FILTERED_GEMS\\FS", repetition_time_ms=4000,
                      echo_time_ms=70, series_description="COR T2 FS"), ("fluid_sensitive", "t2_fs")),
    "ge pd fs": (dict(scanning_sequence="SE", scan_options=["FAST_GEMS", "FS"], repetition_time_ms=2800,
                      echo_time_ms=30, series_description="PD FS"), ("fluid_sensitive", "pd_fs")),
    "ge ideal water": (dict(scanning_sequence="SE", image_type="ORIGINAL\\PRIMARY\\WATER",
                            repetition_time_ms=3500, echo_time_ms=60, series_description="COR T2 IDEAL WATER"),
                       ("fluid_sensitive", "dixon_water")),
    "ge flair": (dict(scanning_sequence="SE\\IR", scan_options="FAST_GEMS\\IR_GEMS", repetition_time_ms=9000,
                      echo_time_ms=120, inversion_time_ms=2400, series_description="AX T2 FLAIR"),
                 ("other", "flair")),
    "philips stir": (dict(scanning_sequence="SE\\IR", sequence_variant="SK\\MP", scan_options="IR",
                          image_type="ORIGINAL\\PRIMARY\\M_IR\\M\\IR", repetition_time_ms=4000, echo_time_ms=50,
                          inversion_time_ms=165, series_description="STIR_COR"), ("fluid_sensitive", "stir")),
    "philips t1": (dict(scanning_sequence="SE", scan_options="", image_type="ORIGINAL\\PRIMARY\\M_SE\\M\\SE",
                        repetition_time_ms=500, echo_time_ms=15, series_description="T1W_TSE_COR"), ("t1", "t1")),
    "philips pd spair": (dict(scanning_sequence="SE", scan_options="", repetition_time_ms=3000, echo_time_ms=30,
                              series_description="PDW_TSE_SPAIR"), ("fluid_sensitive", "pd_fs")),
    "philips t2 spir": (dict(scanning_sequence="SE", scan_options="FS", repetition_time_ms=4000, echo_time_ms=90,
                             series_description="T2W_SPIR"), ("fluid_sensitive", "t2_fs")),
    "philips mdixon water": (dict(scanning_sequence="GR", image_type="ORIGINAL\\PRIMARY\\W\\DIXON\\W",
                                  repetition_time_ms=6, echo_time_ms=1.8, series_description="mDIXON W"),
                             ("fluid_sensitive", "dixon_water")),
    "philips flair": (dict(scanning_sequence="SE\\IR", scan_options="IR", repetition_time_ms=11000,
                           echo_time_ms=125, inversion_time_ms=2800, series_description="T2W_FLAIR"),
                      ("other", "flair")),
    "t1 fat-sat is not t1": (dict(scanning_sequence="SE", scan_options="FS", repetition_time_ms=600,
                                  echo_time_ms=10, series_description="t1_tse_fs_cor"), ("other", "t1_fs")),
    "plain t2 is not fluid-sensitive": (dict(scanning_sequence="SE", repetition_time_ms=4000, echo_time_ms=90,
                                             series_description="t2_tse_cor"), ("other", "t2")),
    "misleading description": (dict(scanning_sequence="SE", repetition_time_ms=550, echo_time_ms=12,
                                    series_description="STIR cor"), ("t1", "t1")),
}


@pytest.mark.parametrize("case", VENDOR_TAGS)
def test_classify_vendor_tag_sets(case):
    tags, (cls, kind) = VENDOR_TAGS[case]
    info = classify_sequence(**tags)
    assert (info.sequence_class, info.kind) == (cls, kind), info
    assert 0 < info.confidence <= 1 and info.reason


def test_physics_tags_decide_over_descriptions():
    # STIR vs FLAIR both *tir2d1: inversion time decides (mr_physics.md 6)
    stir = classify_sequence(scanning_sequence="SE\\IR", sequence_name="*tir2d1_13", inversion_time_ms=150,
                             repetition_time_ms=4500, echo_time_ms=40, series_description="tirm")
    flair = classify_sequence(scanning_sequence="SE\\IR", sequence_name="*tir2d1_13", inversion_time_ms=2500,
                              repetition_time_ms=9000, echo_time_ms=90, series_description="tirm")
    assert stir.kind == "stir" and flair.kind == "flair"
    # description alone: low confidence
    guess = classify_sequence(series_description="COR STIR")
    assert guess.kind == "stir" and guess.confidence < 0.6
    assert classify_sequence(modality="CT", series_description="COR STIR").sequence_class == "other"


KINDS = ("stir", "t1", "pd_fs", "t2_fs")
EXPECTED = {"stir": "fluid_sensitive", "t1": "t1", "pd_fs": "fluid_sensitive", "t2_fs": "fluid_sensitive"}


@pytest.fixture(scope="module")
def every_vendor_and_kind(tmp_path_factory):
    root = tmp_path_factory.mktemp("vendors")
    number = 2
    for vendor in ("siemens", "ge", "philips"):
        for kind in KINDS:
            C.write_series(root / f"{vendor}_{kind}", kind, vendor, C.geometry(size=(8, 6, 3)),
                           series_number=number, seed=number)
            number += 1
    return root


def test_phantom_series_of_every_vendor_and_kind_are_recognised(every_vendor_and_kind):
    study = load_study(every_vendor_and_kind)
    assert len(study.volumes) == 12 and not study.skipped
    for i, v in enumerate(study.volumes):  # series numbers 2.. follow the writing order
        vendor, kind = ("siemens", "ge", "philips")[i // 4], KINDS[i % 4]
        assert v.meta.series_number == i + 2
        assert (v.meta.sequence_class, v.meta.sequence_kind) == (EXPECTED[kind], kind), (vendor, v.meta)
        assert v.meta.manufacturer.lower().startswith(vendor)
        assert v.meta.plane == "coronal"


# --------------------------------------------------------------------------- plane
def _direction(rot):
    g = C.geometry(rot=rot)
    return g.direction


@pytest.mark.parametrize("axis", [(0, 0, 1), (1, 0, 0)])
def test_plane_of_coronal_with_obliquity(axis):
    assert plane_of(_direction(None)) == "coronal"
    assert plane_of(_direction(C.rotation(axis, 10.0))) == "coronal"
    assert plane_of(_direction(C.rotation(axis, -10.0))) == "coronal"
    assert plane_of(_direction(C.rotation(axis, 40.0))) == "oblique"
    assert plane_of(_direction(C.rotation(axis, 90.0))) == ("sagittal" if axis == (0, 0, 1) else "axial")


def test_plane_of_loaded_volumes(tmp_path):
    C.write_series(tmp_path / "a", g=C.geometry(size=(8, 6, 3), rot=C.rotation((0, 0, 1), 10.0)), series_number=2)
    C.write_series(tmp_path / "b", g=C.geometry(size=(8, 6, 3), rot=C.rotation((0, 0, 1), 40.0)), series_number=3,
                   seed=1)
    planes = [v.meta.plane for v in load_study(tmp_path).volumes]
    assert planes == ["coronal", "oblique"]


# --------------------------------------------------------------------------- selection
@pytest.fixture(scope="module")
def selectable(tmp_path_factory):
    root = tmp_path_factory.mktemp("select")
    small = dict(size=(8, 6, 4))
    C.write_series(root / "ax_stir", "stir", "siemens", C.geometry(rot=C.rotation((1, 0, 0), 90.0), **small),
                   series_number=2, seed=2, series_description="t2_tirm_tra")
    C.write_series(root / "cor_stir", "stir", "siemens", C.geometry(**small), series_number=3, seed=3)
    C.write_series(root / "cor_t1", "t1", "siemens", C.geometry(**small), series_number=4, seed=4)
    C.write_series(root / "cor_pdfs", "pd_fs", "siemens", C.geometry(**small), series_number=5, seed=5)
    return load_study(root)


def test_select_prefers_coronal(selectable):
    sel = select_series(selectable)
    assert sel.fluid_sensitive.meta.series_description == "t2_tirm_cor"
    assert sel.t1.meta.series_description == "t1_tse_cor"
    assert "coronal" in sel.reasons["fluid_sensitive"] and "t1" in sel.reasons


def test_select_override_by_uid(selectable):
    axial = [v for v in selectable.volumes if v.meta.plane == "axial"][0]
    sel = select_series(selectable, fluid=axial.meta.series_instance_uid)
    assert sel.fluid_sensitive is axial and "chosen by the user" in sel.reasons["fluid_sensitive"]


def test_select_override_by_glob(selectable):
    sel = select_series(selectable, fluid="PD_TSE_FS*", t1="*T1*")
    assert sel.fluid_sensitive.meta.sequence_kind == "pd_fs" and sel.t1.meta.sequence_kind == "t1"
    with pytest.raises(SeriesSelectionError, match="no series matches the fluid-sensitive choice '.spair.'"):
        select_series(selectable, fluid="*spair*")
    with pytest.raises(SeriesSelectionError, match="T1 choice"):
        select_series(selectable, t1="1.2.3.4")


def test_select_without_fluid_sensitive_series(tmp_path):
    C.write_series(tmp_path, "t1", "ge", C.geometry(size=(8, 6, 3)), series_number=3)
    study = load_study(tmp_path)
    with pytest.raises(NoUsableSeriesError, match="no fluid-sensitive series"):
        select_series(study)


# --------------------------------------------------------------------------- phantom study and inspect
@pytest.fixture(scope="module")
def phantom(tmp_path_factory):
    from bmepipe.phantom import AcquisitionSpec, PhantomSpec, generate_study, write_study

    acq = AcquisitionSpec(matrix=64, acquired_matrix=(64, 64), slices=8, vendor="philips", obliquity_deg=6.0,
                          with_localizer=True, supersample=(1, 1, 1))
    study = generate_study(PhantomSpec.random(5, right="toh", left="normal", acquisition=acq))
    out = write_study(study, tmp_path_factory.mktemp("phantom") / "case")
    return study, out


def test_phantom_study_selects_stir_and_t1_with_the_phantom_geometry(phantom):
    truth, out = phantom
    study = load_study(out / "dicom")
    sel = select_series(study)
    assert sel.fluid_sensitive.meta.sequence_kind == "stir" and sel.t1.meta.sequence_kind == "t1"
    for vol, series in ((sel.fluid_sensitive, truth.get("cor_fluid")), (sel.t1, truth.get("cor_t1"))):
        g, img = series.geometry, vol.image
        assert img.GetSize() == g.size
        np.testing.assert_allclose(img.GetSpacing(), g.spacing_mm, atol=1e-4)
        np.testing.assert_allclose(img.GetOrigin(), g.origin_lps_mm, atol=1e-3)
        np.testing.assert_allclose(img.GetDirection(), g.direction, atol=1e-5)
        # Philips display values: the simulated signal times a single positive gain (quantised to integers)
        gain = vol.array.max() / series.signal.max()
        np.testing.assert_allclose(vol.array, series.signal * gain, atol=0.5 * 1.37 + 1e-3)
    assert [s.reason.split(" ")[0] for s in study.skipped] == ["localizer"]


def test_inspect_json(phantom, capsys):
    truth, out = phantom
    assert main(["inspect", "--json", str(out / "dicom")]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["non_dicom_files"] == 0 and doc["selection_problem"] is None
    chosen = {v["selected_as"]: v for v in doc["volumes"] if v["selected_as"]}
    assert set(chosen) == {"fluid_sensitive", "t1"}
    assert chosen["fluid_sensitive"]["sequence_kind"] == "stir"
    assert chosen["fluid_sensitive"]["size"] == list(truth.geometry.size)
    assert chosen["t1"]["manufacturer"] == "Philips Medical Systems"
    assert [s["kind"] for s in doc["skipped"]] == ["series"] and "localizer" in doc["skipped"][0]["reason"]
    assert "source_files" not in chosen["t1"]  # file paths only on request
    text = json.dumps(doc)
    assert "PHANTOM^HIP" not in text and "PHANTOM0001" not in text  # no patient name or ID


def test_inspect_table_and_overrides(phantom, capsys):
    truth, out = phantom
    assert main(["inspect", str(out / "dicom"), "--fluid", "*stir*"]) == 0
    text = capsys.readouterr().out
    assert "fluid_sensitive/stir" in text and "set aside (1)" in text and "PHANTOM" not in text
    assert main(["inspect", str(out / "dicom"), "--t1", "*nothing*"]) == 2
    assert "no series matches the T1 choice" in capsys.readouterr().err


@pytest.mark.parametrize("vendor", ["siemens", "ge", "philips"])
def test_three_plane_localizer_is_set_aside_for_every_vendor(vendor, tmp_path):
    from bmepipe.io import load_series
    from bmepipe.phantom.dicom_writer import write_localizer

    files = write_localizer((0.0, 10.0, 30.0), C.STUDY, tmp_path, vendor=vendor, matrix=16)
    with pytest.raises(NoUsableSeriesError, match="localizer"):
        load_study(tmp_path)
    # explicit files: one volume per plane (the three orientations split), each through the given centre
    vols = load_series(files)
    assert sorted(v.meta.plane for v in vols) == ["axial", "coronal", "sagittal"]
    for v in vols:
        centre = np.asarray(v.image.TransformContinuousIndexToPhysicalPoint((7.5, 7.5, 0.0)))
        np.testing.assert_allclose(centre, (0.0, 10.0, 30.0), atol=1e-3)
