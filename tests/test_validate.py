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
    # The only thing an example may be warned about is plain HTTP (no DNS name to put in it).
    warnings = [line for line in result.stderr.decode().splitlines() if line.startswith("warning:")]
    assert all("https:" in w and "plain HTTP" in w for w in warnings), warnings


def test_every_problem_is_reported_at_once(capsys, monkeypatch):
    """One run names every problem in a spec with many, each with its line and key."""
    monkeypatch.chdir(CASES / "validate" / "wrong-types")
    assert classimage_cli.main(["validate", "spec.yaml"]) == 1
    keys = set(re.findall(r"^spec\.yaml:\d+ (\S+):", capsys.readouterr().err, re.MULTILINE))
    assert keys == {"hub.admins", "hub.cpu_limit", "hub.memory_limit", "hub.auth.ask_email",
                    "hub.auth.min_password_length", "environment.pip", "environment.conda", "content"}
