"""DICOM SEG and SR (TID 1500): re-read with highdicom, checked by dciodvfy and dsrdump, reproducible."""

from __future__ import annotations

import shutil
import subprocess

import highdicom as hd
import numpy as np
import pydicom
import pytest
from pydicom.sr.codedict import codes
from report_synth import make_report, write_series

from bmepipe.errors import OutputError
from bmepipe.report import (
    SegmentationReference,
    build_measurement_report,
    build_segmentation,
    plan_segmentation,
    write_dicom_seg,
    write_dicom_sr,
)

SHAPE = (12, 40, 48)


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    paths, _ = write_series(tmp_path_factory.mktemp("stir"), shape=SHAPE)
    return [pydicom.dcmread(p) for p in paths]  # slice order: InstanceNumber 1..n, ascending along the normal


@pytest.fixture(scope="module")
def masks():
    head = np.zeros(SHAPE, bool)
    head[3:8, 10:22, 6:18] = True
    bme = np.zeros(SHAPE, bool)
    bme[5:7, 12:16, 8:12] = True
    neck = np.zeros(SHAPE, bool)
    neck[4:6, 20:26, 18:24] = True
    left_head = np.zeros(SHAPE, bool)
    left_head[2:9, 10:20, 30:42] = True
    return {"right": {"femoral_head": head, "bme": bme, "femoral_neck": neck},
            "left": {"femoral_head": left_head, "necrosis": np.zeros(SHAPE, bool)}}


def _dciodvfy_errors(path):
    if shutil.which("dciodvfy") is None:
        pytest.skip("dciodvfy (Debian package dicom3tools) is not installed")
    out = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, timeout=60)
    lines = (out.stdout + out.stderr).splitlines()
    return [line for line in lines if line.startswith("Error")]


def _expected(masks, source, label, sop_uid):
    """Mask slice of the source instance ``sop_uid``: the test's own slice index = InstanceNumber - 1."""
    side, structure = label.split(" ")
    k = {ds.SOPInstanceUID: int(ds.InstanceNumber) - 1 for ds in source}[sop_uid]
    return masks[side][structure][k]


@pytest.fixture(scope="module")
def seg_file(source, masks, tmp_path_factory):
    shuffled = [source[i] for i in np.random.default_rng(3).permutation(len(source))]  # order must not matter
    seg = build_segmentation(masks, shuffled, uid_seed=11)
    return write_dicom_seg(seg, tmp_path_factory.mktemp("seg") / "seg.dcm")


def test_seg_reads_back_with_segments_and_pixels(seg_file, source, masks):
    seg = hd.seg.segread(seg_file)
    labels = {seg.get_segment_description(n).SegmentLabel: n for n in seg.get_segment_numbers()}
    # non-empty masks only, in side then structure order
    assert list(labels) == ["right femoral_head", "right femoral_neck", "right bme", "left femoral_head"]
    assert seg.SegmentationType == "BINARY"
    ref_series = {item.SeriesInstanceUID for item in seg.ReferencedSeriesSequence}
    assert ref_series == {source[0].SeriesInstanceUID}
    assert seg.FrameOfReferenceUID == source[0].FrameOfReferenceUID
    head = seg.get_segment_description(labels["right femoral_head"])
    assert head.segmented_property_type.value == codes.SCT.FemoralHead.value
    modifier = head.SegmentedPropertyTypeCodeSequence[0].SegmentedPropertyTypeModifierCodeSequence[0]
    assert modifier.CodeValue == codes.SCT.Right.value
    bme = seg.get_segment_description(labels["right bme"])
    assert bme.segmented_property_type.value == codes.SCT.Edema.value
    assert bme.algorithm_identification[0].AlgorithmName == "bmepipe"

    uids = [ds.SOPInstanceUID for ds in source]
    pixels = seg.get_pixels_by_source_instance(uids, segment_numbers=list(labels.values()),
                                               ignore_spatial_locations=False, assert_missing_frames_are_empty=True)
    for s, label in enumerate(labels):
        for f, uid in enumerate(uids):
            np.testing.assert_array_equal(pixels[f, :, :, s].astype(bool), _expected(masks, source, label, uid))


def test_seg_passes_dciodvfy(seg_file):
    assert _dciodvfy_errors(seg_file) == []


def test_seg_on_a_multiframe_source(source, masks, tmp_path):
    enhanced = hd.legacy.LegacyConvertedEnhancedMRImage(source, "1.2.826.0.1.3680043.8.498.1", 30,
                                                        "1.2.826.0.1.3680043.8.498.2", 1)
    seg = build_segmentation(masks, [enhanced], uid_seed=11)
    path = write_dicom_seg(seg, tmp_path / "seg_mf.dcm")
    seg = hd.seg.segread(path)
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == enhanced.SeriesInstanceUID
    labels = {seg.get_segment_description(n).SegmentLabel: n for n in seg.get_segment_numbers()}
    frames = list(range(1, int(enhanced.NumberOfFrames) + 1))
    pixels = seg.get_pixels_by_source_frame(enhanced.SOPInstanceUID, frames, segment_numbers=list(labels.values()),
                                            assert_missing_frames_are_empty=True)
    # truth: the classic slice at the same ImagePositionPatient as each enhanced frame
    by_position = {tuple(np.round(np.asarray(ds.ImagePositionPatient, float), 3)): int(ds.InstanceNumber) - 1
                   for ds in source}
    for f, item in enumerate(enhanced.PerFrameFunctionalGroupsSequence):
        k = by_position[tuple(np.round(np.asarray(item.PlanePositionSequence[0].ImagePositionPatient, float), 3))]
        for s, label in enumerate(labels):
            side, structure = label.split(" ")
            np.testing.assert_array_equal(pixels[f, :, :, s].astype(bool), masks[side][structure][k])
    assert _dciodvfy_errors(path) == []


def test_seg_matches_slices_by_position_on_a_reference_grid(source, masks, tmp_path):
    import SimpleITK as sitk

    # a reference volume whose slices run the other way (descending along row x column)
    descending = sorted(source, key=lambda ds: -int(ds.InstanceNumber))
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames([ds.filename for ds in descending])
    reference = reader.Execute()
    assert np.dot(np.reshape(reference.GetDirection(), (3, 3))[:, 2],
                  np.cross(*np.reshape(source[0].ImageOrientationPatient, (2, 3)))) < 0
    flipped = {side: {name: m[::-1] for name, m in per_side.items()} for side, per_side in masks.items()}
    seg = build_segmentation(flipped, source, reference_image=reference, uid_seed=1)
    seg = hd.seg.segread(write_dicom_seg(seg, tmp_path / "seg.dcm"))
    labels = {seg.get_segment_description(n).SegmentLabel: n for n in seg.get_segment_numbers()}
    uids = [ds.SOPInstanceUID for ds in source]
    pixels = seg.get_pixels_by_source_instance(uids, segment_numbers=list(labels.values()))
    for s, label in enumerate(labels):
        for f, uid in enumerate(uids):
            np.testing.assert_array_equal(pixels[f, :, :, s].astype(bool), _expected(masks, source, label, uid))
    shifted = sitk.Image(reference)
    shifted.SetOrigin(tuple(np.add(reference.GetOrigin(), (0.4, 0.0, 0.0))))
    with pytest.raises(OutputError, match="grid"):
        build_segmentation(flipped, source, reference_image=shifted)


def test_seg_is_reproducible_with_a_seed(source, masks, tmp_path):
    a = write_dicom_seg(build_segmentation(masks, source, uid_seed=5), tmp_path / "a.dcm")
    b = write_dicom_seg(build_segmentation(masks, source, uid_seed=5), tmp_path / "b.dcm")
    c = build_segmentation(masks, source, uid_seed=6)
    assert a.read_bytes() == b.read_bytes()
    assert c.SOPInstanceUID != pydicom.dcmread(a).SOPInstanceUID
    assert build_segmentation(masks, source).SeriesInstanceUID != build_segmentation(masks, source).SeriesInstanceUID


def test_seg_include_empty_and_bad_input(source, masks):
    seg = build_segmentation(masks, source, include_empty=True, uid_seed=1)
    assert len(seg.SegmentSequence) == 18
    with pytest.raises(OutputError, match="empty"):
        build_segmentation({"right": {"bme": np.zeros(SHAPE, bool)}}, source)
    with pytest.raises(OutputError, match="shape"):
        build_segmentation({"right": {"bme": np.ones((3, 40, 48), bool)}}, source)


@pytest.fixture(scope="module")
def sr_file(source, masks, tmp_path_factory):
    seg = build_segmentation(masks, source, uid_seed=11)
    sr = build_measurement_report(make_report()["sides"], source, seg, uid_seed=11)
    folder = tmp_path_factory.mktemp("sr")
    write_dicom_seg(seg, folder / "seg.dcm")
    return write_dicom_sr(sr, folder / "sr.dcm"), seg


def _values(group):
    return {(m.name.value, m.name.scheme_designator): (m.value, m.unit.value) for m in group.get_measurements()}


def test_sr_reads_back_with_measurements_and_segment_references(sr_file, source):
    path, seg = sr_file
    sr = hd.sr.srread(path)
    assert isinstance(sr, hd.sr.Comprehensive3DSR)
    side = make_report()["sides"]["right"]
    report = sr.content
    volumetric = {g.tracking_identifier: g for g in report.get_volumetric_roi_measurement_groups()}
    plain = {g.tracking_identifier: g for g in report.get_image_measurement_groups()}
    # groups with a segment in the SEG reference it; the failed left side is left out
    assert set(volumetric) == {"right femoral_head", "right femoral_neck", "right bme"}
    assert not any(name.startswith("left") for name in list(volumetric) + list(plain))
    head = volumetric["right femoral_head"]
    segment_numbers = {seg.SegmentSequence[n - 1].SegmentLabel: n for n in range(1, len(seg.SegmentSequence) + 1)}
    for name, group in volumetric.items():
        assert group.referenced_segment.referenced_sop_instance_uid == seg.SOPInstanceUID
        assert list(group.referenced_segment.referenced_segment_numbers) == [segment_numbers[name]]
    values = _values(head)
    assert values[("118565006", "SCT")] == (side["regions"]["femoral_head"]["volume_ml"], "mL")
    assert values[("BMEFRAC", "99BMEPIPE")] == (side["bme"]["fraction"]["femoral_head"], "1")
    assert values[("131190003", "SCT")] == (side["femoral_head"]["radius_mm"], "mm")
    assert _values(volumetric["right bme"])[("118565006", "SCT")] == (side["bme"]["volume_ml"], "mL")
    line = _values(plain["right subchondral_line"])
    assert line[("410668003", "SCT")] == (side["sif"]["line_length_mm"], "mm")
    assert line[("103355008", "SCT")] == (side["sif"]["line_thickness_mm"], "mm")
    assert _values(plain["right effusion"])[("118565006", "SCT")] == (side["effusion_ml"], "mL")
    assert _values(plain["right necrosis"])[("NECEXT", "99BMEPIPE")] == (side["avn"]["necrotic_extent_pct"], "%")
    assert ("KERBOUL", "99BMEPIPE") not in _values(plain["right necrosis"])  # null values are left out
    pattern = plain["right pattern"]
    assert _values(pattern)[("PATSCORE", "99BMEPIPE")] == (side["pattern"]["score"], "1")
    assert pattern.get_qualitative_evaluations()[0].value.value == "TOH_LIKE"
    # evidence: the source series and the SEG
    evidence_series = sr.CurrentRequestedProcedureEvidenceSequence[0].ReferencedSeriesSequence
    evidence = {item.SeriesInstanceUID for item in evidence_series}
    assert evidence == {source[0].SeriesInstanceUID, seg.SeriesInstanceUID}


def test_sr_passes_dciodvfy_and_dsrdump(sr_file):
    path, _ = sr_file
    assert _dciodvfy_errors(path) == []
    if shutil.which("dsrdump") is None:
        pytest.skip("dsrdump (Debian package dcmtk) is not installed")
    out = subprocess.run(["dsrdump", str(path)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "Imaging Measurement Report" in out.stdout
    assert '"Bone marrow edema fraction of region")="0.31"' in out.stdout.replace("(,,", "(")
    assert "right subchondral_line" in out.stdout


def test_sr_without_seg_and_reproducible(source, tmp_path):
    sides = make_report()["sides"]
    a = write_dicom_sr(build_measurement_report(sides, source, uid_seed=2), tmp_path / "a.dcm")
    b = write_dicom_sr(build_measurement_report(sides, source, uid_seed=2), tmp_path / "b.dcm")
    assert a.read_bytes() == b.read_bytes()
    sr = hd.sr.srread(a)
    assert sr.content.get_volumetric_roi_measurement_groups() == []
    # right side only (left failed): 5 regions + bme, necrosis, subchondral line, effusion, pattern
    assert len(sr.content.get_image_measurement_groups()) == 10
    with pytest.raises(OutputError, match="unknown side"):
        build_measurement_report({"middle": {}}, source)
    sides["right"]["pattern"]["score"] = None  # the label is still reported
    c = write_dicom_sr(build_measurement_report(sides, source), tmp_path / "c.dcm")
    groups = hd.sr.srread(c).content.get_image_measurement_groups()
    (pattern,) = [g for g in groups if g.tracking_identifier == "right pattern"]
    assert pattern.get_measurements() == [] and pattern.get_qualitative_evaluations()[0].value.value == "TOH_LIKE"


def _highdicom_sources(seg, number):
    """Source (instance UID, frame numbers) of one segment, as highdicom's own SR reference finds them."""
    reference = hd.sr.ReferencedSegment.from_segmentation(seg, number)
    found = {}
    for item in reference[1:]:
        sop = item.ReferencedSOPSequence[0]
        frames = sop.get("ReferencedFrameNumber")
        found.setdefault(str(sop.ReferencedSOPInstanceUID), set()).update(
            [] if frames is None else map(int, frames if sop["ReferencedFrameNumber"].VM > 1 else [frames]))
    return found


@pytest.mark.parametrize("multiframe", [False, True])
def test_plan_segmentation_is_what_the_built_segmentation_references(source, masks, tmp_path, multiframe):
    shuffled = [source[i] for i in np.random.default_rng(4).permutation(len(source))]
    if multiframe:
        shuffled = [hd.legacy.LegacyConvertedEnhancedMRImage(source, "1.2.826.0.1.3680043.8.498.1", 30,
                                                             "1.2.826.0.1.3680043.8.498.2", 1)]
    plan = plan_segmentation(masks, shuffled, uid_seed=7)
    seg = hd.seg.segread(write_dicom_seg(build_segmentation(masks, shuffled, uid_seed=7), tmp_path / "seg.dcm"))
    assert plan == SegmentationReference.from_segmentation(seg)
    assert (plan.sop_instance_uid, plan.series_instance_uid) == (seg.SOPInstanceUID, seg.SeriesInstanceUID)
    for label, (number, sources) in plan.segments.items():
        assert seg.get_segment_description(number).SegmentLabel == label
        if multiframe:  # highdicom's reference keeps one frame per instance; the frames come from the test's masks
            ((_, uid, frames),) = sources
            side, structure = label.split(" ")
            by_position = {tuple(np.round(np.asarray(ds.ImagePositionPatient, float), 3)): int(ds.InstanceNumber) - 1
                           for ds in source}
            expected = [f + 1 for f, item in enumerate(shuffled[0].PerFrameFunctionalGroupsSequence)
                        if masks[side][structure][by_position[tuple(np.round(np.asarray(
                            item.PlanePositionSequence[0].ImagePositionPatient, float), 3))]].any()]
            assert uid == shuffled[0].SOPInstanceUID and list(frames) == expected
            assert set(_highdicom_sources(seg, number)) == {uid}
        else:
            assert {uid: set() for _, uid, _ in sources} == _highdicom_sources(seg, number)
    # the SR made from the plan is the one made from the built SEG, byte for byte
    sides = make_report()["sides"]
    a = write_dicom_sr(build_measurement_report(sides, shuffled, plan, uid_seed=7), tmp_path / "a.dcm")
    b = write_dicom_sr(build_measurement_report(sides, shuffled, seg, uid_seed=7), tmp_path / "b.dcm")
    assert a.read_bytes() == b.read_bytes()
    assert _dciodvfy_errors(a) == []
