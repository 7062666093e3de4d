"""report.json: schema contract, validation messages, canonical atomic writing."""

from __future__ import annotations

import json

import jsonschema
import numpy as np
import pytest
from report_synth import make_report

from bmepipe.errors import InputError, OutputError
from bmepipe.report import (
    SCHEMA_VERSION,
    load_schema,
    read_report_json,
    report_to_frame,
    validate_report,
    write_report_json,
)

# The contract of issue 8, written out independently of the schema file.
CONTRACT_SIDE_PATHS = [
    "status", "reason", "femoral_head.center_lps_mm", "femoral_head.radius_mm",
    *[f"regions.{r}.volume_ml" for r in
      ("femoral_head", "femoral_neck", "intertrochanteric", "proximal_shaft", "acetabulum")],
    "bme.volume_ml", "bme.fraction.femoral_head", "bme.fraction.femoral_neck", "bme.fraction.intertrochanteric",
    "bme.mean_intensity", "bme.peak_intensity", "bme.distribution",
    "avn.necrotic_extent_pct", "avn.collapse_mm", "avn.jic_type", "avn.kerboul_angle_deg", "avn.present",
    "avn.double_line", "avn.arco_extent_group", "avn.arco_stage_hint",
    "sif.line_length_mm", "sif.line_thickness_mm", "sif.present", "sif.line_exceeds_vande_berg",
    "effusion_ml", "pattern.label", "pattern.score", "pattern.confidence", "pattern.evidence",
]
CONTRACT_TOP = ["schema_version", "software", "created", "disclaimer", "inputs", "qc", "parameters",
                "registration", "sides", "bilateral", "timings_s"]


def _resolve(schema, node):
    while "$ref" in node:
        node = schema["$defs"][node["$ref"].split("/")[-1]]
    return node


def test_schema_is_valid_draft_2020_12_and_versioned():
    schema = load_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert SCHEMA_VERSION in schema["$id"]
    assert schema["properties"]["schema_version"] == {"const": SCHEMA_VERSION}
    assert load_schema(SCHEMA_VERSION) == schema


def test_schema_1_1_0_adds_only_the_side_warnings_and_1_0_0_reports_stay_valid():
    old, new = load_schema("1.0.0"), load_schema("1.1.0")
    added = set(new["$defs"]["side"]["properties"]) - set(old["$defs"]["side"]["properties"])
    assert added == {"warnings"} and "warnings" not in new["$defs"]["side"]["required"]
    report = make_report()
    report["schema_version"] = "1.0.0"
    validate_report(report)  # an existing 1.0.0 report.json is still valid against its own version
    report["sides"]["right"]["warnings"] = ["no T1 series"]
    with pytest.raises(OutputError, match="warnings"):
        validate_report(report)  # 1.0.0 has no such field
    report["schema_version"] = "1.1.0"
    validate_report(report)
    report["sides"]["right"]["warnings"] = [3]
    with pytest.raises(OutputError, match="warnings"):
        validate_report(report)


def test_every_contract_field_is_required():
    schema = load_schema()
    assert set(CONTRACT_TOP) <= set(schema["required"])
    side = schema["$defs"]["side"]
    for path in CONTRACT_SIDE_PATHS:
        node = side
        for key in path.split("."):
            node = _resolve(schema, node)
            assert key in node.get("required", []), path
            node = node["properties"][key]
    evidence = schema["$defs"]["evidence"]
    assert set(evidence["required"]) == {"feature", "value", "unit", "threshold", "direction", "favours", "source"}
    assert set(schema["$defs"]["label"]["enum"]) == {"toh_like", "avn_like", "sif_like", "normal", "indeterminate"}


def test_synthetic_report_validates_with_plain_jsonschema():
    report = make_report()
    jsonschema.validate(report, load_schema(), cls=jsonschema.Draft202012Validator)  # independent of our wrapper
    validate_report(report)


@pytest.mark.parametrize(
    "mutate, where",
    [
        (lambda r: r["sides"]["right"]["bme"].pop("volume_ml"), "$.sides.right.bme"),
        (lambda r: r["sides"]["right"]["bme"]["fraction"].update(femoral_head=1.2),
         "$.sides.right.bme.fraction.femoral_head"),
        (lambda r: r["sides"]["right"]["pattern"].update(label="avn"), "$.sides.right.pattern.label"),
        (lambda r: r["sides"]["right"]["avn"].update(jic_type="D"), "$.sides.right.avn.jic_type"),
        (lambda r: r["sides"]["left"].update(reason=None), "$.sides.left.reason"),
        (lambda r: r["sides"]["right"]["regions"]["femoral_neck"].update(volume_ml=-1.0),
         "$.sides.right.regions.femoral_neck.volume_ml"),
        (lambda r: r["sides"]["right"].update(extra_field=1), "$.sides.right"),
        (lambda r: r.update(schema_version="0.9"), "$.schema_version"),
        (lambda r: r["inputs"]["study"].update(pseudonym="DOE^JOHN"), "$.inputs.study.pseudonym"),
        (lambda r: r["sides"]["right"]["femoral_head"].update(center_lps_mm=[1.0, 2.0]),
         "$.sides.right.femoral_head.center_lps_mm"),
        (lambda r: r["sides"]["right"].update(effusion_ml=float("nan")), "$.sides.right.effusion_ml"),
    ],
)
def test_invalid_reports_name_the_json_path_in_one_line(mutate, where):
    report = make_report()
    mutate(report)
    with pytest.raises(OutputError) as info:
        validate_report(report, "out/report.json")
    message = str(info.value)
    assert "\n" not in message and message.startswith("out/report.json: ")
    assert where in message


def test_write_is_canonical_byte_identical_and_atomic(tmp_path):
    report = make_report()
    # numpy scalars/arrays as computed by the stages are accepted and written as plain JSON
    report["sides"]["right"]["femoral_head"]["center_lps_mm"] = np.array([-90.5, 12.25, -3.0])
    report["sides"]["right"]["bme"]["volume_ml"] = np.float32(12.5)
    a, b = tmp_path / "a" / "report.json", tmp_path / "b" / "report.json"
    write_report_json(report, a)
    reordered = dict(reversed(list(make_report().items())))
    write_report_json(reordered, b)
    assert a.read_bytes() == b.read_bytes()
    text = a.read_text("utf-8")
    data = json.loads(text)
    assert list(data) == sorted(data)
    assert data["sides"]["right"]["bme"]["volume_ml"] == 12.5
    assert sorted(p.name for p in a.parent.iterdir()) == ["report.json"]  # no temporary left behind
    assert read_report_json(a) == data


def test_invalid_report_is_not_written(tmp_path):
    report = make_report()
    report["sides"]["right"]["bme"]["volume_ml"] = float("inf")
    with pytest.raises(OutputError, match=r"\$\.sides\.right\.bme\.volume_ml"):
        write_report_json(report, tmp_path / "report.json")
    assert list(tmp_path.iterdir()) == []


def test_read_rejects_a_broken_file(tmp_path):
    path = tmp_path / "report.json"
    path.write_text('{"schema_version": "1.0.0"}')
    with pytest.raises(InputError, match="report.json: \\$"):
        read_report_json(path)


def test_frame_has_one_row_per_side_with_contract_values():
    frame = report_to_frame(make_report())
    assert list(frame["side"]) == ["right", "left"]
    right = frame.set_index("side").loc["right"]
    assert right["bme_volume_ml"] == 12.5
    assert right["bme_fraction_femoral_neck"] == 0.22
    assert right["pattern_label"] == "toh_like"
    assert right["study"] == "S3f2a9c01bd"
    assert frame.set_index("side").loc["left", "status"] == "failed"
