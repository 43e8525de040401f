"""Course repositories read with repo2docker's rules: a table of fixture repositories
(tests/cases/repos/NAME/: spec.yaml naming repo/ as environment.from_repo), each with the report it
must produce and, when valid, the environment it resolves to (expected.txt)."""

from __future__ import annotations

import dataclasses

import pytest
import yaml

from conftest import CASES, check_golden, cli, validate_report
from classimage import spec

REPO_CASES = sorted(p.name for p in (CASES / "repos").iterdir() if p.is_dir())


@pytest.mark.parametrize("case", REPO_CASES)
def test_repository_case(case, capsys, monkeypatch, update_golden):
    folder = CASES / "repos" / case
    status, report = validate_report(folder, monkeypatch, capsys)
    if status == 0:
        environment = dataclasses.asdict(spec.load_file("spec.yaml").spec.environment)
        report += "environment:\n" + yaml.safe_dump(environment, sort_keys=False)
    check_golden(folder / "expected.txt", report, update_golden)


def test_render_a_repository_without_a_spec(tmp_path):
    repo = CASES / "repos" / "environment-beats-requirements" / "repo"
    result = cli("render", "--repo", str(repo), "--admin", "teacher", "--out", str(tmp_path / "out"))
    assert result.returncode == 0, result.stderr.decode()
    stderr = result.stderr.decode()
    assert "no spec: course 'repo' (repo), admins teacher" in stderr
    assert "requirements.txt: is ignored because environment.yml is there" in stderr
    assert "install --yes --prefix /opt/tljh/user --channel conda-forge --channel underworldcode 'numpy>=1.26' python=3.11" in \
        (tmp_path / "out" / "user-data.yaml").read_text()


def test_render_takes_a_spec_or_a_repository(tmp_path):
    assert cli("render").returncode == 2
    both = cli("render", str(CASES / "repos" / "root-files" / "spec.yaml"), "--repo", str(tmp_path))
    assert both.returncode == 2 and b"not both" in both.stderr
    missing = cli("render", "--repo", str(tmp_path / "nope"), "--admin", "teacher", "--out", str(tmp_path / "out"))
    assert missing.returncode == 1 and b"is not a folder" in missing.stderr  # the defaults' from_repo
