"""Configuration files: every parameter in force, unknown keys refused, one-line errors."""

from __future__ import annotations

import pytest

from bmepipe.cli import main
from bmepipe.config import AnalysisConfig, load_config
from bmepipe.errors import ConfigError


def test_defaults_round_trip_through_toml(tmp_path):
    cfg = AnalysisConfig()
    d = cfg.to_dict()
    lines = []
    for table, values in d.items():
        lines.append(f"[{table}]")
        for k, v in values.items():
            if v is None:
                continue
            if isinstance(v, str):
                lines.append(f'{k} = "{v}"')
            elif isinstance(v, list):
                lines.append(f"{k} = [{', '.join(repr(x).replace(chr(39), chr(34)) for x in v)}]")
            elif isinstance(v, bool):
                lines.append(f"{k} = {str(v).lower()}")
            else:
                lines.append(f"{k} = {v!r}")
    path = tmp_path / "all.toml"
    path.write_text("\n".join(lines) + "\n")
    assert load_config(path).to_dict() == d


def test_values_from_file_are_in_force(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('[series]\nfluid = "*tirm*"\n[analysis]\nsides = ["left"]\n'
                    '[quantify]\nbme_edema_fraction = 0.4\n[patterns]\nmin_score = 0.5\n')
    cfg = load_config(path)
    assert cfg.fluid == "*tirm*" and cfg.sides == ("left",)
    assert cfg.quantify.bme_edema_fraction == 0.4 and cfg.patterns.min_score == 0.5
    d = cfg.to_dict()
    assert d["quantify"]["bme_edema_fraction"] == 0.4 and d["analysis"]["sides"] == ["left"]


@pytest.mark.parametrize(
    "text, words",
    [
        ("[quantify]\nbme_edema_fractoin = 0.4\n", "bme_edema_fractoin"),
        ("[segmnet]\nx = 1\n", "segmnet"),
        ("[analysis]\nsides = ['middle']\n", "sides"),
        ("[normalize]\nregister = 'sometimes'\n", "register"),
        ("[quantify]\nbme_edema_fraction = 1.5\n", "bme_edema_fraction"),
        ("not toml = = 1\n", "TOML"),
    ],
)
def test_bad_configuration_is_a_config_error_naming_the_file(tmp_path, text, words):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(path) in str(info.value) and words in str(info.value)


def test_cli_reports_a_bad_config_in_one_line(tmp_path, capsys):
    path = tmp_path / "bad.toml"
    path.write_text("[quantify]\nnope = 1\n")
    code = main(["analyze", str(tmp_path), "-o", str(tmp_path / "out"), "--config", str(path)])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "nope" in err and str(path) in err
    assert not (tmp_path / "out").exists()


def test_missing_config_file(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.toml")
