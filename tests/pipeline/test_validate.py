"""Validation: a table of fixture specs (tests/cases/validate/NAME/spec.yaml), each with the exact
report it must produce (expected.txt: exit status, then every line printed)."""

from __future__ import annotations

import re

import pytest

from conftest import CASES, EXAMPLES, check_golden, cli, validate_report
from classimage import cli as classimage_cli

VALIDATE_CASES = sorted(p.name for p in (CASES / "validate").iterdir() if p.is_dir())


@pytest.mark.parametrize("case", VALIDATE_CASES)
def test_validate_case(case, capsys, monkeypatch, update_golden):
    folder = CASES / "validate" / case
    _, report = validate_report(folder, monkeypatch, capsys)
    check_golden(folder / "expected.txt", report, update_golden)


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.name)
def test_examples_are_valid(example):
    result = cli("validate", str(example))
    assert result.returncode == 0, result.stderr.decode()
    # An example may be warned about plain HTTP (no DNS name to put in it) and about its class's data
    # when its user data is pasted without a volume; about nothing else.
    warnings = [line for line in result.stderr.decode().splitlines() if line.startswith("warning:")]
    assert len(warnings) == 2, warnings
    assert "https: no hostname" in warnings[0] and "plain HTTP" in warnings[0]
    assert "storage.type: with the user data pasted" in warnings[1]


def test_every_problem_is_reported_at_once(capsys, monkeypatch):
    """One run names every problem in a spec with many, each with its line and key."""
    monkeypatch.chdir(CASES / "validate" / "wrong-types")
    assert classimage_cli.main(["validate", "spec.yaml"]) == 1
    keys = set(re.findall(r"^spec\.yaml:\d+ (\S+):", capsys.readouterr().err, re.MULTILINE))
    assert keys == {"hub.admins", "hub.cpu_limit", "hub.memory_limit", "hub.auth.ask_email",
                    "hub.auth.min_password_length", "environment.pip", "environment.conda", "content"}
