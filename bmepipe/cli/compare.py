"""``bmepipe compare BASELINE FOLLOWUP -o OUT``: how each hip changed between two studies of one patient."""

from __future__ import annotations

import argparse


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "compare",
        help="follow-up comparison of two studies of one patient: compare.json, compare.html, change maps",
        description=(
            "Analyse a baseline and a follow-up study of the same patient, register the follow-up onto the "
            "baseline per hip (rigid, initialised from the femoral-head centres) and report per side the BME "
            "volume then and now, BME resolved/persisted/new, necrotic extent, collapse, subchondral line, "
            "effusion and a trajectory (resolving, stable, progressing, new) with its evidence. Writes "
            "OUT/compare.json, OUT/compare.html and OUT/labels/<side>_bme_{resolved,persisted,new}.nii.gz. "
            "Research use only; never a diagnosis."
        ),
    )
    p.add_argument("baseline", metavar="BASELINE", help="folder of the earlier study's DICOM files")
    p.add_argument("followup", metavar="FOLLOWUP", help="folder of the later study's DICOM files")
    p.add_argument("-o", "--out", metavar="OUT", default="bmepipe-compare",
                   help="output folder (default ./bmepipe-compare)")
    p.add_argument("--config", metavar="TOML", help="analysis parameter file (as for analyze)")
    p.add_argument("--force", action="store_true",
                   help="compare even if the patient identifiers of the two studies differ")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..compare import compare
    from ..config import load_config

    result = compare(args.baseline, args.followup, args.out, force=args.force, config=load_config(args.config))
    for side in ("right", "left"):
        s = result.sides[side]
        if s["status"] != "compared":
            print(f"{side}: not compared ({s['reason']})")
            continue
        v = s["bme"]["volume_ml"]
        print(f"{side}: {s['trajectory']['label']} (BME {v['then']} -> {v['now']} ml; pattern "
              f"{s['pattern']['then']} -> {s['pattern']['now']})")
    print(f"report: {result.outputs['html']}")
    return 0
