"""The TLJH stand-in checks what it is given the way TLJH's interface defines it, and fails loudly:
its pure parts, tested on the host (the first-boot tests run the whole of it in droplets)."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "standin"))

import bootstrap  # noqa: E402  (tests/standin/bootstrap.py)
from tljh_standin import conda, paths  # noqa: E402
from tljh_standin import config as tljh_config  # noqa: E402


@pytest.fixture(autouse=True)
def stand_in_paths(tmp_path, monkeypatch):
    monkeypatch.setattr(paths, "SCHEMA", str(HERE.parent / "schemas" / "tljh-config.schema.json"))
    monkeypatch.setattr(paths, "RECORDS", str(tmp_path / "records"))
    monkeypatch.setattr(paths, "CONFIG_YAML", str(tmp_path / "config.yaml"))


@pytest.mark.parametrize("text, value", [("null", None), ("true", True), ("False", False), ("42", 42),
                                         ("-3", -3), ("0.5", 0.5), ("2G", "2G"), ("1e5", "1e5"),
                                         ("nan", "nan"), ("alice", "alice"), ("", "")])
def test_tljh_config_parses_values_as_tljh_does(text, value):
    assert tljh_config.parse_value(text) == value


def test_tljh_config_validation():
    assert tljh_config.problems({"limits": {"memory": "2G"}, "auth": {"NativeAuthenticator": {}}}) == []
    assert any("unknown key" in p for p in tljh_config.problems({"limit": {"memory": "2G"}}))
    assert any("limits.cpu" in p for p in tljh_config.problems({"limits": {"cpu": "lots"}}))
    assert any("lower-case" in p for p in tljh_config.problems({"auth": {"nativeauthenticator": {}}}))
    assert any("users" in p for p in tljh_config.problems({"users": {"admins": ["a"]}}))


@pytest.mark.skipif(os.geteuid() != 0, reason="tljh-config is root only")
def test_tljh_config_commands(capsys):
    config = paths.CONFIG_YAML
    assert tljh_config.main(["--config-path", config, "set", "limits.memory", "2G"]) == 0
    assert tljh_config.main(["--config-path", config, "add-item", "users.admin", "alice"]) == 0
    assert tljh_config.main(["--config-path", config, "set", "limits.cpu", "2"]) == 0
    assert tljh_config.load(config) == {"limits": {"memory": "2G", "cpu": 2}, "users": {"admin": ["alice"]}}
    # An unknown key or a wrong value fails loudly and changes nothing.
    assert tljh_config.main(["--config-path", config, "set", "limit.memory", "2G"]) == 1
    assert tljh_config.main(["--config-path", config, "set", "limits.cpu", "lots"]) == 1
    assert "nothing written" in capsys.readouterr().err
    assert tljh_config.main(["--config-path", config, "remove-item", "users.admin", "alice"]) == 0
    # --no-validate writes what TLJH would reject; every validated change then refuses the whole file.
    assert tljh_config.main(["--config-path", config, "--no-validate", "set", "limit.memory", "2G"]) == 0
    assert tljh_config.main(["--config-path", config, "set", "limits.cpu", "1"]) == 1
    assert tljh_config.main(["--config-path", config, "--no-validate", "unset", "limit"]) == 0
    assert tljh_config.load(config) == {"limits": {"memory": "2G", "cpu": 2}, "users": {"admin": []}}


@pytest.mark.parametrize("argv, refusal", [
    (["install", "--channel", "conda-forge", "numpy"], "without --yes"),
    (["install", "--yes", "numpy; rm -rf /"], "malformed package spec"),
    (["install", "--yes", "--channel", "$(reboot)", "numpy"], "malformed channel"),
    (["install", "--yes", "--bogus", "numpy"], "unrecognized arguments"),
    (["remove", "--yes", "numpy"], "invalid choice"),
])
def test_conda_stand_in_refuses_malformed_calls(argv, refusal, capsys):
    assert conda.main(argv) == 2
    assert refusal in capsys.readouterr().err
    assert not Path(paths.RECORDS, "conda-calls.jsonl").exists()


def test_conda_stand_in_records_what_it_accepts():
    assert conda.main(["install", "--yes", "-c", "conda-forge", "-c", "underworldcode", "stripy", "numpy>=1.26"]) == 0
    (call,) = [json.loads(line) for line in Path(paths.RECORDS, "conda-calls.jsonl").read_text().splitlines()]
    assert call["channels"] == ["conda-forge", "underworldcode"] and call["packages"] == ["stripy", "numpy>=1.26"]


def test_bootstrap_takes_tljhs_flags_only():
    parsed = bootstrap.installer_parser().parse_args(["--admin", "a", "--admin", "b:secret", "--plugin", "x", "y"])
    assert parsed.admin == ["a", "b:secret"] and parsed.plugin == ["x", "y"]
    with pytest.raises(SystemExit) as refused:
        bootstrap.installer_parser().parse_args(["--admin", "a", "--admins", "b"])
    assert refused.value.code == 2


@pytest.mark.parametrize("asked, installed", [("latest", "2.0.0"), ("2", "2.0.0"), ("2.0", "2.0.0"),
                                               ("1.0.0", "1.0.0"), ("a" * 40, "2.0.0+gaaaaaaa")])
def test_bootstrap_resolves_versions_as_tljh_does(asked, installed):
    assert bootstrap.resolve(asked) == installed


def test_bootstrap_refuses_an_unknown_version_and_a_host_without_systemd(monkeypatch, capsys):
    with pytest.raises(SystemExit):
        bootstrap.resolve("9.9.9")
    monkeypatch.setattr(os.path, "exists", lambda path: path != "/.dockerenv")  # this host has one
    monkeypatch.setattr(os.path, "isdir", lambda path: path != "/run/systemd/system")
    with pytest.raises(SystemExit):
        bootstrap.check_host()
    assert "Systemd is required" in capsys.readouterr().err
