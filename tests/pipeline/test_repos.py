"""Course repositories read with repo2docker's rules: a table of fixture repositories
(tests/cases/repos/NAME/: spec.yaml naming repo/ as environment.from_repo), each with the report it
must produce and, when valid, the environment it resolves to (expected.txt)."""

from __future__ import annotations

import dataclasses
import os
import socket
import stat
import time

import pytest
import yaml

from conftest import CASES, check_golden, cli, validate_report, written_files
from classimage.pipeline import spec

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
    # (a file of user data over 64 KiB as text ships compressed: read as cloud-init does)
    scripts = written_files((tmp_path / "out" / "user-data.yaml").read_text()).values()
    assert any("install --yes --prefix /opt/tljh/user --channel conda-forge --channel underworldcode 'numpy>=1.26' "
               "python=3.11" in entry["content"] for entry in scripts if isinstance(entry["content"], str))


def test_render_takes_a_spec_or_a_repository(tmp_path):
    assert cli("render").returncode == 2
    both = cli("render", str(CASES / "repos" / "root-files" / "spec.yaml"), "--repo", str(tmp_path))
    assert both.returncode == 2 and b"not both" in both.stderr
    missing = cli("render", "--repo", str(tmp_path / "nope"), "--admin", "teacher", "--out", str(tmp_path / "out"))
    assert missing.returncode == 1 and b"is not a folder" in missing.stderr  # the defaults' from_repo


# -- special files: a course repository's files go into the user data and the snapshot, so each must be
# the repository's own regular file. Made here, not kept as fixtures: git keeps no FIFO, device or socket.

SECRET = "dop_v1_canary_secret_beside_the_repository"


def _fifo(path):
    os.mkfifo(path)


def _device(path):
    os.mknod(path, 0o600 | stat.S_IFCHR, os.makedev(1, 5))  # what /dev/zero is: reading it never ends


def _socket(path):
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(path))
    listener.close()


def _link(target):
    return lambda path: path.symlink_to(target)


@pytest.mark.parametrize("name, make, expected", [
    ("postBuild", _link("/proc/self/environ"), "cannot read it: it is a symlink to /proc/self/environ, which leads "
                                               "outside the course repository (put the file itself in the repository"),
    ("postBuild", _link("../secret"), "cannot read it: it is a symlink to ../secret, which leads outside the course repository"),
    ("binder/requirements.txt", _link("../../secret"), "cannot read it: it is a symlink to ../../secret, which leads outside"),
    ("apt.txt", _link("inner/secret"), "cannot read it: it is a symlink to inner/secret, which leads outside"),  # inner -> ..
    ("runtime.txt", _link("/dev/zero"), "cannot read it: it is a symlink to /dev/zero, which leads outside"),
    ("environment.yml", _link("missing"), "cannot read it: No such file or directory"),
    ("requirements.txt", _fifo, "cannot read it: it is a FIFO, not a file (make it a regular file in the repository, "
                                "or remove it)"),
    ("binder/postBuild", _device, "cannot read it: it is a device, not a file"),
    ("apt.txt", _socket, "cannot read it: it is a socket, not a file"),
    ("binder", _link(".."), "is a symlink that leads outside the course repository"),
    (".binder", _link("/proc/self"), "is a symlink that leads outside the course repository"),
], ids=["postbuild-symlink-to-environ", "symlink-out", "binder-symlink-out", "symlink-through-a-linked-folder",
        "symlink-to-a-device", "dangling-symlink", "fifo", "device", "socket", "binder-folder-out", "binder-is-proc"])
def test_special_files_in_a_repository_are_refused(tmp_path, name, make, expected):
    """Each: a validate error naming the file, at once (a FIFO is never opened, a device never read),
    and nothing of what lies outside the repository reaches the report."""
    (tmp_path / "secret").write_text(SECRET + "\n")
    repo = tmp_path / "repo"
    (repo / "binder").mkdir(parents=True) if name.startswith("binder/") else repo.mkdir()
    (repo / "inner").symlink_to("..")
    make(repo / name)
    spec_path = tmp_path / "spec.yaml"
    spec_path.write_text("course: {name: X, slug: xx}\nhub: {admins: [teacher]}\nenvironment: {from_repo: repo}\n")
    started = time.monotonic()
    result = cli("validate", str(spec_path), env={"CANARY_TOKEN": SECRET})
    assert time.monotonic() - started < 20
    stderr = result.stderr.decode()
    assert result.returncode == 1, stderr
    assert f"{repo / name}: {expected}" in stderr
    assert SECRET not in stderr and "Traceback" not in stderr


def test_a_symlink_that_stays_inside_the_repository_is_followed(tmp_path):
    """As repo2docker follows it: binder/requirements.txt naming the top one is the repository's own."""
    repo = tmp_path / "repo"
    (repo / "binder").mkdir(parents=True)
    (repo / "requirements.txt").write_text("jupytext\n")
    (repo / "binder" / "requirements.txt").symlink_to("../requirements.txt")
    (repo / "binder" / "postBuild").symlink_to("../scripts/setup.sh")
    (repo / "scripts").mkdir()
    (repo / "scripts" / "setup.sh").write_text("echo set up\n")
    spec_path = tmp_path / "spec.yaml"
    spec_path.write_text("course: {name: X, slug: xx}\nhub: {admins: [teacher]}\nenvironment: {from_repo: repo}\n")
    environment = spec.load_file(spec_path).spec.environment
    assert environment.pip == ("jupytext",) and environment.post_build == "echo set up\n"


@pytest.mark.parametrize("from_repo, expected", [
    ("linked", "environment.from_repo: 'linked' leads outside the spec's folder"),  # linked -> ../outside
    ("../outside", "environment.from_repo: '../outside' leads outside the spec's folder"),
])
def test_a_repository_named_by_the_spec_stays_in_the_specs_folder(tmp_path, from_repo, expected):
    """What the spec names relative to itself is inside its folder; an absolute path is taken as
    written (the instructor's own machine, in plain sight in the spec)."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "postBuild").write_text(f"echo {SECRET}\n")
    course = tmp_path / "course"
    course.mkdir()
    (course / "linked").symlink_to(outside)
    spec_path = course / "spec.yaml"
    spec_path.write_text(f"course: {{name: X, slug: xx}}\nhub: {{admins: [teacher]}}\nenvironment: {{from_repo: '{from_repo}'}}\n")
    result = cli("validate", str(spec_path))
    assert result.returncode == 1 and f"{spec_path}:3 {expected}" in result.stderr.decode(), result.stderr.decode()
    spec_path.write_text(f"course: {{name: X, slug: xx}}\nhub: {{admins: [teacher]}}\nenvironment: {{from_repo: '{outside}'}}\n")
    assert spec.load_file(spec_path).spec.environment.post_build == f"echo {SECRET}\n"


@pytest.mark.parametrize("make, expected", [
    (_link("/proc/self/environ"), "cannot read 'ca.pem': it is a symlink to /proc/self/environ, which leads outside "
                                  "the spec's folder (copy the CA's PEM file into the spec's folder"),
    (_link("../secret"), "cannot read 'ca.pem': it is a symlink to ../secret, which leads outside the spec's folder"),
    (_fifo, "cannot read 'ca.pem': it is a FIFO, not a file"),
    (_device, "cannot read 'ca.pem': it is a device, not a file"),
], ids=["symlink-to-environ", "symlink-out", "fifo", "device"])
def test_special_ca_files_are_refused(tmp_path, make, expected):
    (tmp_path / "secret").write_text(SECRET + "\n")
    course = tmp_path / "course"
    course.mkdir()
    make(course / "ca.pem")
    spec_path = course / "spec.yaml"
    spec_path.write_text("course: {name: X, slug: xx}\nhub: {admins: [teacher]}\nnetwork: {ca_certificates: [ca.pem]}\n")
    result = cli("validate", str(spec_path), env={"CANARY_TOKEN": SECRET})
    stderr = result.stderr.decode()
    assert result.returncode == 1 and f"{spec_path}:3 network.ca_certificates[0]: {expected}" in stderr, stderr
    assert SECRET not in stderr


def test_the_kernels_files_are_no_ca_files(tmp_path):
    spec_path = tmp_path / "spec.yaml"
    spec_path.write_text("course: {name: X, slug: xx}\nhub: {admins: [teacher]}\n"
                         "network: {ca_certificates: [/proc/self/environ]}\n")
    result = cli("validate", str(spec_path))
    assert result.returncode == 1
    assert "cannot read '/proc/self/environ': it is in /proc, the kernel's view of this machine" in result.stderr.decode()
