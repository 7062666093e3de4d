"""``bmepipe validate-report``."""

from __future__ import annotations

import json

from report_synth import make_report

from bmepipe.cli import main
from bmepipe.report import SCHEMA_VERSION, write_report_json


def test_validate_reports(tmp_path, capsys):
    good = write_report_json(make_report(), tmp_path / "good" / "report.json")
    bad = tmp_path / "bad.json"
    broken = make_report()
    broken["sides"]["right"]["bme"]["volume_ml"] = "large"
    bad.write_text(json.dumps(broken))
    assert main(["validate-report", str(good)]) == 0
    assert capsys.readouterr().out.strip() == f"{good}: ok (schema {SCHEMA_VERSION})"
    assert main(["validate-report", str(good), str(bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"{bad}: $.sides.right.bme.volume_ml: ") and "\n" not in err
    assert main(["validate-report"]) == 2  # nothing to check: one-line usage error


def test_print_schema(capsys):
    assert main(["validate-report", "--schema"]) == 0
    assert json.loads(capsys.readouterr().out)["$id"].endswith(SCHEMA_VERSION)
