"""``bmepipe validate-report``: check report.json files against their schema; print the schema."""

from __future__ import annotations


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "validate-report",
        help="check report.json files against the bmepipe report schema",
        description="Validate each REPORT (a report.json written by `bmepipe analyze`) against the JSON Schema "
        "version it names. Prints one line per file ('ok' or the JSON path of the first problem); exit code 0 "
        "if all are valid, 2 otherwise. With --schema, print the current schema instead.",
    )
    p.add_argument("reports", metavar="REPORT", nargs="*", help="report.json file(s)")
    p.add_argument("--schema", action="store_true", help="print the current report JSON Schema and exit")
    p.set_defaults(func=run_validate)


def run_validate(args) -> int:
    import json
    import sys

    from bmepipe.errors import BmepipeError, ConfigError
    from bmepipe.report import load_schema, read_report_json

    if args.schema:
        json.dump(load_schema(), sys.stdout, indent=2)
        sys.stdout.write("\n")
        return 0
    if not args.reports:
        raise ConfigError("give at least one REPORT file, or --schema")
    failed = 0
    for path in args.reports:
        try:
            report = read_report_json(path)
        except BmepipeError as err:
            print(f"{err}", file=sys.stderr)
            failed += 1
        else:
            print(f"{path}: ok (schema {report['schema_version']})")
    return 2 if failed else 0
