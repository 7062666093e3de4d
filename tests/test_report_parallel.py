"""write_outputs builds the DICOM half beside the rest (forked child, thread or serial): same files, same errors."""

from __future__ import annotations

import os
import sys
import threading

import numpy as np
import pytest
import SimpleITK as sitk
from report_synth import make_report, write_series

import bmepipe.report.bundle as bundle
from bmepipe.errors import OutputError
from bmepipe.report import read_source_datasets, write_outputs

SHAPE = (8, 32, 36)
MODES = ("fork", "thread", "serial")


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    paths, _ = write_series(tmp_path_factory.mktemp("stir"), shape=SHAPE)
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames([str(p) for p in paths])
    head = np.zeros(SHAPE, bool)
    head[2:6, 8:20, 4:16] = True
    bme = np.zeros(SHAPE, bool)
    bme[3:5, 9:13, 6:10] = True
    return reader.Execute(), read_source_datasets(paths), {"right": {"femoral_head": head, "bme": bme}}


def _set_mode(monkeypatch, mode):
    """Force one way of running the DICOM half (the choice itself depends on the process)."""
    monkeypatch.setenv("BMEPIPE_THREADS", "1" if mode == "serial" else "2")
    monkeypatch.setattr(bundle.threading, "active_count", lambda: 1 if mode == "fork" else 2)


def _tree(folder):
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_every_mode_writes_the_same_bytes(inputs, tmp_path, monkeypatch):
    image, datasets, masks = inputs
    where = {}

    def recording(name):  # records which process and thread built each DICOM object
        original = getattr(bundle, name)

        def write(out, *args):
            (out.parent / f"{out.name}.{name}").write_text(f"{os.getpid()} {threading.get_ident()}")
            return original(out, *args)

        monkeypatch.setattr(bundle, name, write)

    recording("_write_seg")
    recording("_write_sr")
    trees = {}
    for mode in MODES:
        _set_mode(monkeypatch, mode)
        written = write_outputs(tmp_path / mode, make_report(), masks, image, datasets, html=False)
        assert written["dicom_seg"] == tmp_path / mode / "dicom" / "seg.dcm"
        assert written["dicom_sr"] == tmp_path / mode / "dicom" / "sr.dcm"
        trees[mode] = _tree(tmp_path / mode)
        where[mode] = [tuple(map(int, (tmp_path / f"{mode}.{name}").read_text().split()))
                       for name in ("_write_seg", "_write_sr")]
    here = (os.getpid(), threading.get_ident())
    assert where["serial"] == [here, here]
    for pid, thread in where["thread"]:
        assert pid == here[0] and thread != here[1]
    if sys.platform == "linux":
        seg_child, sr_child = where["fork"]
        assert here[0] != seg_child[0] != sr_child[0] != here[0]  # one child each, beside this process
    assert {"dicom/seg.dcm", "dicom/sr.dcm", "report.json"} <= set(trees["serial"])
    assert trees["fork"] == trees["serial"]
    assert trees["thread"] == trees["serial"]


@pytest.mark.parametrize("mode", MODES)
def test_an_error_in_the_dicom_half_is_raised_and_report_json_is_not_written(inputs, tmp_path, monkeypatch, mode):
    image, datasets, masks = inputs
    shifted = sitk.Image(image)
    shifted.SetOrigin(tuple(np.add(image.GetOrigin(), (0.0, 0.0, 1.3))))  # the sources are off its grid
    _set_mode(monkeypatch, mode)
    with pytest.raises(OutputError, match="do not lie on the reference image grid"):
        write_outputs(tmp_path / "out", make_report(), masks, shifted, datasets, html=False)
    assert not (tmp_path / "out" / "report.json").exists()
    assert not (tmp_path / "out" / "dicom" / "seg.dcm").exists()


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("failing", ["build_segmentation", "build_measurement_report"])
def test_an_error_in_one_dicom_object_waits_for_the_other_and_is_raised(inputs, tmp_path, monkeypatch, mode,
                                                                         failing):
    image, datasets, masks = inputs

    def fail(*args, **kwargs):
        raise OutputError(f"{failing} failed on purpose")

    monkeypatch.setattr(bundle, failing, fail)  # also in a forked child: it inherits the patched module
    _set_mode(monkeypatch, mode)
    with pytest.raises(OutputError, match=f"{failing} failed on purpose"):
        write_outputs(tmp_path / "out", make_report(), masks, image, datasets, html=False)
    assert not (tmp_path / "out" / "report.json").exists()
    other = "sr.dcm" if failing == "build_segmentation" else "seg.dcm"
    assert (tmp_path / "out" / "dicom" / other).exists()  # the other object was finished, not cut off


def test_preload_initialises_the_writers_without_leaving_threads():
    before = threading.active_count()
    bundle.preload()
    bundle.preload()  # a second call is harmless
    assert {"highdicom", "matplotlib.figure", "skimage.measure"} <= set(sys.modules)
    assert threading.active_count() == before  # write_outputs may still fork afterwards


@pytest.mark.skipif(sys.platform != "linux", reason="the DICOM half runs in a forked child on Linux only")
def test_a_child_that_dies_without_answering_is_replaced_by_the_work_done_here(inputs, tmp_path, monkeypatch):
    image, datasets, masks = inputs
    _set_mode(monkeypatch, "serial")
    write_outputs(tmp_path / "serial", make_report(), masks, image, datasets, html=False)
    _set_mode(monkeypatch, "fork")
    monkeypatch.setattr(bundle, "_run_and_send", lambda send, fn, args: os._exit(3))  # as if killed
    write_outputs(tmp_path / "died", make_report(), masks, image, datasets, html=False)
    assert _tree(tmp_path / "died") == _tree(tmp_path / "serial")


def test_a_failed_rerun_into_a_finished_folder_does_not_leave_its_old_report_json(inputs, tmp_path, monkeypatch):
    image, datasets, masks = inputs
    _set_mode(monkeypatch, "fork")
    write_outputs(tmp_path / "out", make_report(), masks, image, datasets, html=False)
    assert (tmp_path / "out" / "report.json").exists()

    def fail(*args, **kwargs):
        raise OutputError("the SEG failed on purpose")

    monkeypatch.setattr(bundle, "build_segmentation", fail)
    with pytest.raises(OutputError, match="on purpose"):
        write_outputs(tmp_path / "out", make_report(), masks, image, datasets, html=False)
    assert not (tmp_path / "out" / "report.json").exists()  # the folder no longer looks complete
