"""``bmepipe validate-report``: check report.json files against their schema; print the schema."""

from __future__ import annotations


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "validate-report",
        help="check report.json / compare.json files against their bmepipe schema",
        description="Validate each REPORT (a report.json written by `bmepipe analyze`, or a compare.json written "
        "by `bmepipe compare`; the kind is read from the file's content) against the JSON Schema version it "
        "names. Prints one line per file ('ok' or the JSON path of the first problem); exit code 0 if all are "
        "valid, 2 otherwise. With --schema, print the current schema instead.",
    )
    p.add_argument("reports", metavar="REPORT", nargs="*", help="report.json or compare.json file(s)")
    p.add_argument("--schema", nargs="?", const="report", choices=("report", "compare"), default=None,
                   help="print the current JSON Schema of report.json (default) or compare.json and exit")
    p.set_defaults(func=run_validate)


def run_validate(args) -> int:
    import json
    import sys
    from pathlib import Path

    from bmepipe.errors import BmepipeError, ConfigError, InputError, OutputError
    from bmepipe.report import load_schema
    from bmepipe.report.schema import validate_document

    if args.schema:
        if args.schema == "compare":
            from bmepipe.compare import load_compare_schema

            schema = load_compare_schema()
        else:
            schema = load_schema()
        json.dump(schema, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return 0
    if not args.reports:
        raise ConfigError("give at least one REPORT file, or --schema")
    failed = 0
    for path in args.reports:
        try:
            try:
                doc = json.loads(Path(path).read_text(encoding="utf-8"))
            except OSError as exc:
                raise InputError(f"cannot read the report ({exc.strerror or type(exc).__name__})", path) from exc
            except ValueError as exc:
                raise InputError(f"not valid JSON ({' '.join(str(exc).split())})", path) from exc
            try:
                kind = validate_document(doc, path)
            except OutputError as exc:
                raise InputError(exc.message, path) from None
        except BmepipeError as err:
            print(f"{err}", file=sys.stderr)
            failed += 1
        else:
            print(f"{path}: ok ({'compare ' if kind == 'compare' else ''}schema {doc['schema_version']})")
    return 2 if failed else 0
