"""End to end on a phantom study: truth measurements -> write_outputs, checked against the phantom's own truth files.

The phantom (bmepipe.phantom) writes realistic DICOM and its truth label maps; here the truth
stands in for a perfect segmentation/quantification, so every output can be checked against it.
Takes about 8 s (phantom simulation about 5 s).
"""

from __future__ import annotations

import shutil
import subprocess

import highdicom as hd
import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk
from report_synth import make_report

from bmepipe.phantom import AcquisitionSpec, PhantomSpec, generate_study, write_study
from bmepipe.report import STRUCTURES, read_report_json, read_source_datasets, write_outputs


def _report_from_truth(truth: dict) -> dict:
    report = make_report()
    for side, t in truth["sides"].items():
        necrosis, line = t["necrosis"], t["subchondral_line"]
        report["sides"][side] = {
            "status": "analysed", "reason": None,
            "femoral_head": {"center_lps_mm": t["head_center_lps_mm"], "radius_mm": t["head_radius_mm"]},
            "regions": t["regions"],
            "bme": {"present": t["bme"]["volume_ml"] > 0, "volume_ml": t["bme"]["volume_ml"],
                    "fraction": t["bme"]["fraction"], "mean_intensity": None, "peak_intensity": None,
                    "distribution": {"extent": t["bme"]["extent"]}},
            "avn": {"present": necrosis["present"], "necrotic_extent_pct": necrosis.get("extent_pct"),
                    "collapse_mm": t["collapse_mm"], "jic_type": necrosis.get("jic_type"),
                    "kerboul_angle_deg": (necrosis.get("kerboul_angle_deg") or {}).get("combined"),
                    "double_line": None, "arco_extent_group": None, "arco_stage_hint": None},
            "sif": {"present": line["present"], "line_length_mm": line["length_mm"],
                    "line_thickness_mm": line["thickness_mm"], "line_exceeds_vande_berg": None},
            "effusion_ml": t["effusion_ml"],
            "pattern": {"label": {"toh": "toh_like", "avn": "avn_like", "sif": "sif_like"}.get(t["pattern"], "normal"),
                        "score": None, "confidence": None, "evidence": []},
        }
    return report


@pytest.fixture(scope="module")
def phantom(tmp_path_factory):
    acquisition = AcquisitionSpec(matrix=128, acquired_matrix=(128, 128), slices=14, obliquity_deg=6.0)
    study = generate_study(PhantomSpec.random(1, right="avn", left="toh", acquisition=acquisition))
    folder = write_study(study, tmp_path_factory.mktemp("phantom") / "study")
    series_dir = next(p for p in (folder / "dicom").iterdir() if "tirm" in p.name)  # Siemens STIR
    files = sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(series_dir))
    reference = sitk.ReadImage(files)
    masks = {side: {s: study.labels[f"{side}_{s}"] for s in STRUCTURES} for side in ("right", "left")}
    return study, folder, files, reference, masks


def test_outputs_match_the_phantom_truth(phantom, tmp_path):
    study, folder, files, reference, masks = phantom
    datasets = read_source_datasets(files)
    out = write_outputs(tmp_path, _report_from_truth(study.truth), masks, reference, datasets)

    # label maps: the same voxels, on the same grid as the phantom's own truth files
    for name in ("right_necrosis", "left_bme", "right_femoral_head", "left_effusion"):
        ours, truth = nib.load(out[f"labels/{name}"]), nib.load(folder / "truth" / "labels" / f"{name}.nii.gz")
        np.testing.assert_allclose(ours.affine, truth.affine, atol=1e-3)
        np.testing.assert_array_equal(np.asarray(ours.dataobj) > 0, np.asarray(truth.dataobj) > 0)

    # SEG: each source image carries its slice of the truth masks
    seg = hd.seg.segread(out["dicom_seg"])
    labels = {seg.get_segment_description(n).SegmentLabel: n for n in seg.get_segment_numbers()}
    assert {"right necrosis", "left bme", "right femoral_head"} <= set(labels)
    uids = [ds.SOPInstanceUID for ds in datasets]
    wanted = ["right necrosis", "left bme"]
    pixels = seg.get_pixels_by_source_instance(uids, segment_numbers=[labels[w] for w in wanted])
    for f, ds in enumerate(datasets):
        k = int(ds.InstanceNumber) - 1  # the phantom numbers slices in order
        for s, name in enumerate(wanted):
            side, structure = name.split()
            np.testing.assert_array_equal(pixels[f, :, :, s] > 0, masks[side][structure][k])

    # SR: the truth numbers come back
    sr = hd.sr.srread(out["dicom_sr"])
    groups = {g.tracking_identifier: g for g in sr.content.get_volumetric_roi_measurement_groups()}
    values = {m.name.value: m.value for m in groups["right necrosis"].get_measurements()}
    assert values["NECEXT"] == pytest.approx(study.truth["sides"]["right"]["necrosis"]["extent_pct"])
    report = read_report_json(out["report_json"])
    assert report["sides"]["left"]["bme"]["volume_ml"] == study.truth["sides"]["left"]["bme"]["volume_ml"]

    for key in ("dicom_seg", "dicom_sr"):
        if shutil.which("dciodvfy"):
            result = subprocess.run(["dciodvfy", str(out[key])], capture_output=True, text=True, timeout=60)
            assert not [x for x in (result.stdout + result.stderr).splitlines() if x.startswith("Error")]
    html = out["report_html"].read_text()
    assert html.count("<img ") >= 2 and "AVN-like" in html and "TOH-like" in html
