"""write_outputs: the whole output folder in the stable layout, reproducible byte for byte."""

from __future__ import annotations

import json

import highdicom as hd
import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk
from report_synth import make_report, write_series

from bmepipe.errors import OutputError
from bmepipe.report import STRUCTURES, read_report_json, read_source_datasets, write_outputs

SHAPE = (12, 40, 48)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    paths, _ = write_series(tmp_path_factory.mktemp("stir"), shape=SHAPE)
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames([str(p) for p in paths])
    head = np.zeros(SHAPE, bool)
    head[3:9, 8:20, 4:16] = True
    bme = np.zeros(SHAPE, bool)
    bme[5:7, 9:13, 6:10] = True
    masks = {"right": {"femoral_head": head, "bme": bme}}
    return reader.Execute(), read_source_datasets(paths + paths[:1]), masks  # a repeated file is read once


def _tree(folder):
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_writes_the_stable_layout_reproducibly(inputs, tmp_path):
    image, datasets, masks = inputs
    assert len(datasets) == SHAPE[0]
    written = write_outputs(tmp_path / "a", make_report(), masks, image, datasets)
    write_outputs(tmp_path / "b", make_report(), masks, image, datasets)
    a, b = _tree(tmp_path / "a"), _tree(tmp_path / "b")
    expected = {f"labels/{s}_{t}.nii.gz" for s in ("right", "left") for t in STRUCTURES}
    expected |= {"report.json", "report.html", "dicom/seg.dcm", "dicom/sr.dcm"}
    assert set(a) == expected  # nothing else (no temporary files)
    assert a == b  # same input, same bytes
    report = read_report_json(written["report_json"])
    assert set(report["outputs"].values()) == expected
    seg = hd.seg.segread(written["dicom_seg"])
    assert [item.SegmentLabel for item in seg.SegmentSequence] == ["right femoral_head", "right bme"]
    sr = hd.sr.srread(written["dicom_sr"])
    evidence = sr.CurrentRequestedProcedureEvidenceSequence[0].ReferencedSeriesSequence
    assert {item.SeriesInstanceUID for item in evidence} == {datasets[0].SeriesInstanceUID, seg.SeriesInstanceUID}
    assert int(np.asarray(nib.load(written["labels/right_bme"]).dataobj).sum()) == int(masks["right"]["bme"].sum())


def test_other_parameters_give_other_uids(inputs, tmp_path):
    image, datasets, masks = inputs
    changed = make_report()
    changed["parameters"]["quantify"]["bme_threshold_sd"] = 2.5
    a = write_outputs(tmp_path / "a", make_report(), masks, image, datasets, html=False)
    b = write_outputs(tmp_path / "b", changed, masks, image, datasets, html=False)
    uid = lambda p: hd.seg.segread(p).SOPInstanceUID  # noqa: E731
    assert uid(a["dicom_seg"]) != uid(b["dicom_seg"])
    assert not (tmp_path / "a" / "report.html").exists()
    assert "report_html" not in json.loads((tmp_path / "a" / "report.json").read_text())["outputs"]


def test_an_invalid_report_writes_nothing(inputs, tmp_path):
    image, datasets, masks = inputs
    report = make_report()
    del report["sides"]["right"]["pattern"]
    with pytest.raises(OutputError, match=r"\$\.sides\.right"):
        write_outputs(tmp_path / "out", report, masks, image, datasets)
    assert not (tmp_path / "out").exists()
