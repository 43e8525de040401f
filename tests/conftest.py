"""Shared test helpers. Tests run against the source tree (the repository's root goes first on
sys.path); test_cli.py also checks an installed wheel from another directory."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
CASES = Path(__file__).resolve().parent / "cases"
EXAMPLES = sorted((REPO / "examples").glob("*.yaml"))
sys.path.insert(0, str(REPO))


@pytest.fixture(autouse=True)
def _own_secret_store(tmp_path_factory, monkeypatch):
    """No test reads or writes the user's own admin password store (~/.config/classimage)."""
    monkeypatch.setenv("CLASSIMAGE_SECRETS", str(tmp_path_factory.mktemp("secrets")))
    monkeypatch.delenv("CLASSIMAGE_ADMIN_HASHES", raising=False)


def pytest_addoption(parser):
    parser.addoption("--update-golden", action="store_true",
                     help="rewrite expected files under tests/cases from the current output (review the diff!)")


def pytest_collection_modifyitems(config, items):
    """The class-start storm (30 students' servers starting at once) keeps both cores busy for
    minutes: beside it every other droplet test slows past its deadlines, and beside them the storm
    measures a busier machine than a droplet. It runs alone, when a -k or -m expression names it."""
    if "storm" in f"{config.getoption('keyword')} {config.getoption('markexpr')}":
        return
    alone = pytest.mark.skip(reason="the class-start storm runs alone: pytest -m storm")
    for item in items:
        if item.get_closest_marker("storm"):
            item.add_marker(alone)


@pytest.fixture
def update_golden(request) -> bool:
    return request.config.getoption("--update-golden")


def check_golden(path: Path, actual: str, update: bool) -> None:
    """Compare `actual` with the expected file; with --update-golden, rewrite it instead."""
    if update:
        path.write_text(actual, encoding="utf-8")
        return
    assert path.exists(), f"{path} is missing: run pytest --update-golden and review it"
    assert actual == path.read_text(encoding="utf-8"), f"output differs from {path} (pytest --update-golden)"


def validate_report(folder: Path, monkeypatch, capsys) -> tuple[int, str]:
    """`classimage validate spec.yaml` run in `folder`: its exit status and everything it printed."""
    from classimage import cli as classimage_cli

    monkeypatch.chdir(folder)
    status = classimage_cli.main(["validate", "spec.yaml"])
    captured = capsys.readouterr()
    report = f"exit: {status}\n" + captured.err + captured.out
    assert "Traceback" not in report
    return status, report


def cli(*args: str, cwd: Path | str = REPO, env: dict | None = None, python: str = sys.executable,
        stdin: bytes | None = None) -> subprocess.CompletedProcess:
    """`python -m classimage ARGS` in a fresh process, as a user runs it."""
    environment = dict(os.environ, PYTHONPATH=str(REPO), **(env or {}))
    return subprocess.run([python, "-m", "classimage", *args], cwd=cwd, env=environment, input=stdin,
                          capture_output=True, timeout=120)


def in_a_network_of_its_own(folder: Path, names: list[str], argv: list[str], env: dict[str, str] | None = None,
                            timeout: float = 120):
    """What a Python program run in a network namespace of its own (bubblewrap) prints, as JSON:
    `folder` is its /tmp/sandbox (read-only), its loopback the only network, and its /etc/hosts (the
    DNS the C library resolves by, for real) names 127.0.0.1 localhost and each of `names`."""
    hosts = folder / f"hosts-{'-'.join(names)}"
    hosts.write_text("127.0.0.1 localhost\n" + "".join(f"127.0.0.1 {name}\n" for name in names))
    settings = [word for key, value in (env or {}).items() for word in ("--setenv", key, value)]
    result = subprocess.run(
        ["bwrap", "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "--tmpfs", "/tmp",
         "--ro-bind", str(folder), "/tmp/sandbox", "--ro-bind", str(hosts), "/etc/hosts", "--unshare-all",
         "--die-with-parent", *settings, sys.executable, *argv],
        capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def written_files(user_data: str, unzipped: bool = True) -> dict[str, dict]:
    """The write_files entries of rendered user data, by path, contents decoded as cloud-init does
    (text, but for a binary file: the runner's zip); `unzipped`: with the files the runner stages
    from its zip, as it stages them (their entries say `zipped: true`; bytes: the class-data program's zip)."""
    import base64
    import contextlib
    import gzip
    import io
    import zipfile

    from classimage.droplet import provision

    document = yaml.safe_load(user_data)
    files = {}
    for entry in document["write_files"]:
        if entry.get("encoding") == "gz+b64":
            content = gzip.decompress(base64.b64decode(entry["content"]))
            with contextlib.suppress(UnicodeDecodeError):
                content = content.decode()
            entry = dict(entry, content=content)
        files[entry["path"]] = entry
        if unzipped and entry["path"] == provision.RUNNER:
            with zipfile.ZipFile(io.BytesIO(entry["content"])) as zipped:
                for name in zipped.namelist():
                    if name.startswith(provision.FILES_IN_ZIP):
                        path = f"{provision.FILES}/{name.removeprefix(provision.FILES_IN_ZIP)}"
                        staged = zipped.read(name)  # text, but for a program that is a zip itself
                        files[path] = {"path": path, "permissions": "0600", "zipped": True,
                                       "content": staged if zipfile.is_zipfile(io.BytesIO(staged)) else staged.decode()}
    return files


@pytest.fixture(scope="session")
def image():
    """The test droplets' root filesystem (built once, cached across runs)."""
    if os.geteuid() != 0:
        pytest.skip("test droplets need root (debootstrap, systemd-nspawn, network namespaces)")
    import shutil

    import testdroplet

    missing = [tool for tool in ("debootstrap", "systemd-nspawn", "tinyproxy", "nsenter") if not shutil.which(tool)]
    assert not missing, f"install {' '.join(missing)} (.ci/run does)"
    return testdroplet.image()


@pytest.fixture
def new_droplet(image, tmp_path):
    """Make fresh test droplets for one test (see tests/firstboot.py)."""
    from firstboot import droplets

    with droplets(image, tmp_path) as make:
        yield make


def pytest_terminal_summary(terminalreporter):
    """The figures some tests record (how many generated specs the property test ran, how long a
    droplet replacement, a backup and a restore took)."""
    import json

    for report in terminalreporter.stats.get("passed", []) + terminalreporter.stats.get("failed", []):
        recorded = [json.loads(value) for name, value in getattr(report, "user_properties", [])
                    if name == "property-counts"]
        for name, value in getattr(report, "user_properties", []):
            if name == "figure":
                terminalreporter.write_line(f"figure: {value}")
        if recorded:
            counts = max(recorded, key=lambda c: (c["generated"], c["valid"] + c["refused"]))
            terminalreporter.write_line(f"property test: {counts['generated']} specs generated from the schema, "
                                            f"{counts['valid']} valid (rendered and checked by the real validators), "
                                            f"{counts['refused']} refused with problems")
