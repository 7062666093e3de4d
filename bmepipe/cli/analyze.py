"""``bmepipe analyze STUDY_DIR -o OUT``: the whole pipeline on one study."""

from __future__ import annotations

import argparse


def _csv(choices):
    def parse(text: str) -> tuple[str, ...]:
        items = tuple(t.strip() for t in text.split(",") if t.strip())
        bad = [t for t in items if t not in choices]
        if not items or bad:
            raise argparse.ArgumentTypeError(f"choose from {', '.join(choices)} (comma-separated), got {text!r}")
        return items

    return parse


def register(subparsers) -> None:
    from ..config import FORMATS, SIDES

    p = subparsers.add_parser(
        "analyze",
        help="analyse one study: report.json, report.html, NIfTI labels, DICOM SEG and SR",
        description=(
            "Load a hip MRI study (any folder layout), normalize it, segment both proximal femurs, quantify "
            "bone marrow edema and lay out TOH/AVN/SIF evidence per hip. Writes OUT/report.json (validated "
            "against the shipped JSON Schema), OUT/report.html, OUT/labels/<side>_<structure>.nii.gz and "
            "OUT/dicom/seg.dcm + sr.dcm. Research use only; never a diagnosis."
        ),
    )
    p.add_argument("study", metavar="STUDY_DIR", help="folder holding the study's DICOM files")
    p.add_argument("-o", "--out", metavar="OUT", default="bmepipe-out",
                   help="output folder (default ./bmepipe-out; files are replaced atomically)")
    p.add_argument("--config", metavar="TOML", help="parameter file (see README, 'Configuration')")
    p.add_argument("--fluid", metavar="UID|GLOB", help="fluid-sensitive series to use: SeriesInstanceUID or "
                   "glob on SeriesDescription (default: best coronal STIR / T2-FS / PD-FS)")
    p.add_argument("--t1", metavar="UID|GLOB", help="T1 series to use (default: best coronal T1)")
    p.add_argument("--sides", type=_csv(SIDES), metavar="right,left", help="hips to report (default both)")
    p.add_argument("--formats", type=_csv(FORMATS), metavar="LIST",
                   help=f"outputs to write, comma-separated from {','.join(FORMATS)} (default all; "
                        "report.json is always written)")
    p.add_argument("--timings", action="store_true",
                   help="record stage timings in report.json (makes reports differ between runs)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..analysis import analyze
    from ..config import load_config

    cfg = load_config(args.config)
    formats = args.formats
    if formats is not None and "json" not in formats:
        formats = ("json",) + formats
    cfg = cfg.updated(fluid=args.fluid, t1=args.t1, sides=args.sides, formats=formats)
    result = analyze(args.study, args.out, config=cfg, record_timings=args.timings)
    for side in ("right", "left"):
        s = result.report["sides"][side]
        if s["status"] != "analysed":
            print(f"{side:>5}: not analysed ({s['reason']})")
            continue
        p, bme = s["pattern"], s["bme"]
        score = "n/a" if p["score"] is None else f"{p['score']:.2f}"
        volume = "n/a" if bme["volume_ml"] is None else f"{bme['volume_ml']:.1f} ml"
        print(f"{side:>5}: {p['label']} (score {score}, confidence {p['confidence']}); BME {volume}")
    out = Path(args.out)
    html = result.outputs.get("report_html")
    print(f"report: {html if html else out / 'report.json'}")
    print("research use only; not a diagnosis")
    return 0
