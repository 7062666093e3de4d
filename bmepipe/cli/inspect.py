"""``bmepipe inspect DIR``: every series and volume found, what would be analysed, and what was set aside."""

from __future__ import annotations

import argparse


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "inspect",
        help="list the series and volumes of a DICOM folder and what was set aside",
        description=(
            "Scan a folder (any layout, any file names) and print every volume found (plane, sequence class and "
            "the tags that decided it, slices, spacing, manufacturer, selected for analysis or not) and every file "
            "or series set aside with the reason. Never prints patient names or IDs."
        ),
    )
    p.add_argument("folder", metavar="DIR", help="folder holding DICOM files")
    p.add_argument("--json", action="store_true", help="machine-readable JSON on stdout")
    p.add_argument("--fluid", metavar="UID|GLOB", help="fluid-sensitive series override (as in analyze)")
    p.add_argument("--t1", metavar="UID|GLOB", help="T1 series override (as in analyze)")
    p.add_argument("--strict", action="store_true", help="fail on the first unusable series instead of setting it aside")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..errors import NoUsableSeriesError
    from ..io import load_study, select_series
    from ._common import format_table, print_json

    study = load_study(args.folder, strict=args.strict)
    try:
        selection = select_series(study, fluid=args.fluid, t1=args.t1)
        chosen = {id(selection.fluid_sensitive): "fluid_sensitive"}
        if selection.t1 is not None:
            chosen[id(selection.t1)] = "t1"
        selection_note = None
    except NoUsableSeriesError as err:
        chosen, selection_note = {}, err.message
    if args.json:
        print_json({
            "root": str(study.root),
            "volumes": [dict(v.meta.to_dict(), size=list(v.image.GetSize()), selected_as=chosen.get(id(v)))
                        for v in study.volumes],
            "skipped": [{"path": s.path, "reason": s.reason, "kind": s.kind} for s in study.skipped],
            "non_dicom_files": study.non_dicom_files,
            "selection_problem": selection_note,
        })
        return 0
    rows = []
    for v in study.volumes:
        m = v.meta
        rows.append([m.series_number, (m.series_description or "")[:28] + (f" [{m.stack_label}]" if m.stack_label else ""),
                     m.plane, f"{m.sequence_class}/{m.sequence_kind}", m.slice_count,
                     "x".join(f"{s:.2f}" for s in v.image.GetSpacing()), m.manufacturer or "",
                     chosen.get(id(v), ""), m.sequence_reason])
    print(format_table(["#", "series", "plane", "class/kind", "slices", "spacing mm", "manufacturer", "selected",
                        "reason"], rows))
    if selection_note:
        print(f"\nno series selected for analysis: {selection_note}")
    if study.skipped:
        print(f"\nset aside ({len(study.skipped)}):")
        print(format_table(["what", "path", "reason"], [[s.kind, s.path, s.reason] for s in study.skipped]))
    print(f"\n{study.non_dicom_files} non-DICOM file(s) ignored")
    return 0
