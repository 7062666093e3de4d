"""Regenerate the bundled sample studies, deterministically: ``python sample_data/make_sample_data.py``.

Writes ``sample_data/<case>/`` (DICOM + truth, layout of :func:`bmepipe.phantom.write_study`) and
``sample_data/montage.png`` (coronal STIR and T1 through the femoral-head centres with truth contours).
Needs matplotlib for the montage (``pip install -e ".[notebooks]"``).
"""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

from bmepipe.phantom import AcquisitionSpec, PhantomSpec, generate_study, write_study

HERE = Path(__file__).resolve().parent
SMALL = dict(fov_mm=380.0, matrix=192, acquired_matrix=(192, 160), slices=16, slice_thickness_mm=4.0, slice_gap_mm=0.5)


def cases() -> dict[str, PhantomSpec]:
    """The sample studies: name -> spec (fixed seeds and explicit lesion parameters)."""
    out = {}
    out["case01_normal"] = PhantomSpec.random(
        101, "normal", "normal", AcquisitionSpec(field_strength_t=1.5, vendor="siemens", snr=22.0, **SMALL))
    s = PhantomSpec.random(102, "toh", "normal", AcquisitionSpec(field_strength_t=3.0, vendor="ge", snr=18.0,
                                                                 bias_amplitude=0.35, with_localizer=True, **SMALL))
    out["case02_toh_right"] = replace(s, right=replace(s.right, bme_peak=0.8, bme_extent="intertrochanteric",
                                                       bme_medial_sparing=0.5, effusion_ml=9.0))
    s = PhantomSpec.random(103, "avn", "avn", AcquisitionSpec(field_strength_t=1.5, vendor="philips", snr=20.0,
                                                              obliquity_deg=4.0, **SMALL))
    out["case03_avn_bilateral"] = replace(
        s, right=replace(s.right, necrosis_extent_pct=35.0, collapse_mm=2.5, necrosis_content="fluid", bme_peak=0.6,
                         bme_focus_mm=25.0, bme_extent="head_neck", effusion_ml=6.0),
        left=replace(s.left, necrosis_extent_pct=15.0, collapse_mm=0.0, necrosis_content="fat", bme_peak=0.0,
                     effusion_ml=0.0))
    s = PhantomSpec.random(104, "normal", "sif", AcquisitionSpec(field_strength_t=3.0, vendor="siemens", snr=16.0,
                                                                 bias_amplitude=0.25, **SMALL))
    out["case04_sif_left"] = replace(s, left=replace(s.left, line_length_mm=18.0, line_thickness_mm=1.5,
                                                     line_depth_mm=1.8, bme_peak=0.75, effusion_ml=7.0))
    return out


def head_slice(study) -> int:
    """Index of the coronal slice nearest the femoral-head centres."""
    g = study.geometry
    c = 0.5 * (np.asarray(study.truth["sides"]["right"]["head_center_lps_mm"])
               + np.asarray(study.truth["sides"]["left"]["head_center_lps_mm"]))
    ijk = np.linalg.solve(g.matrix * np.asarray(g.spacing_mm), c - np.asarray(g.origin_lps_mm))
    return int(np.clip(round(ijk[2]), 0, g.size[2] - 1))


def montage(studies: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colours = {"femoral_head": "#ff5050", "bme": "#ffd000", "necrosis": "#00e0ff", "subchondral_line": "#ff40ff",
               "effusion": "#4080ff"}
    fig, axes = plt.subplots(2, len(studies), figsize=(3.2 * len(studies), 6.6), squeeze=False)
    for col, (name, study) in enumerate(studies.items()):
        k = head_slice(study)
        for row, series in enumerate(("cor_fluid", "cor_t1")):
            volume = study.get(series).signal
            ax = axes[row, col]
            # one window per series (99.9th percentile of the volume), as a reader would set it
            ax.imshow(volume[k], cmap="gray", vmin=0, vmax=np.percentile(volume, 99.9), interpolation="nearest")
            for structure, colour in colours.items():
                for side in ("right", "left"):
                    m = study.labels[f"{side}_{structure}"][k]
                    if m.any():
                        ax.contour(m, [0.5], colors=colour, linewidths=0.6)
            ax.set_axis_off()
            p = study.get(series).protocol
            label = "STIR" if p.kind == "stir" else p.kind.upper()
            t = study.truth["sides"]
            ax.set_title(f"{name}\n{label}  R={t['right']['pattern']} L={t['left']['pattern']}" if row == 0 else label,
                         fontsize=7)
    fig.text(0.5, 0.005, "contours: red femoral head, yellow BME, cyan necrotic segment, magenta subchondral line, "
             "blue effusion (image left = patient right)", ha="center", fontsize=7)
    fig.tight_layout(rect=(0, 0.02, 1, 1))
    fig.savefig(path, dpi=90)
    plt.close(fig)


def main() -> int:
    studies = {}
    for name, spec in cases().items():
        study = generate_study(spec)
        write_study(study, HERE / name, overwrite=True)
        studies[name] = study
        print(name, {s: study.truth["sides"][s]["pattern"] for s in ("right", "left")})
    montage(studies, HERE / "montage.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
