"""Where render writes: the user data carries the admins' password hashes, so what render writes in a
course repository must never be taken by `git add .` (render gives its folder a .gitignore of its own
and refuses the top of a repository), and is readable by its owner only."""

from __future__ import annotations

import subprocess

import yaml

from conftest import EXAMPLES, cli
from classimage.pipeline import admins, spec

HASH = "$2b$12$" + "b" * 53


def git(repository, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repository), *args], check=True, capture_output=True, text=True).stdout


def test_git_add_in_a_course_repository_never_takes_the_admins_hashes(tmp_path):
    repository = tmp_path / "course"
    repository.mkdir()
    git(repository, "init", "-q")
    (repository / "spec.yaml").write_text(EXAMPLES[0].read_text())
    course = spec.load_file(repository / "spec.yaml").spec
    hashes = {admins.ENVIRONMENT: yaml.safe_dump({name: HASH for name in course.hub.admins})}
    for _ in range(2):  # and again into the same folder
        result = cli("render", "spec.yaml", cwd=repository, env=hashes)
        assert result.returncode == 0, result.stderr.decode()
    build = repository / "build" / course.course.slug
    assert HASH in (build / "user-data.yaml").read_text()  # the render holds them, as the droplet needs
    assert {oct(p.stat().st_mode & 0o777) for p in build.rglob("*") if p.is_file() and p.name != ".gitignore"} \
        == {"0o600"}
    git(repository, "add", ".")
    git(repository, "add", "--all")
    assert git(repository, "ls-files").split() == ["spec.yaml"]
    assert HASH not in git(repository, "diff", "--cached")
    assert "!! build/" in git(repository, "status", "--porcelain", "--ignored").splitlines()


def test_render_refuses_a_place_git_would_take(tmp_path):
    repository = tmp_path / "course"
    repository.mkdir()
    git(repository, "init", "-q")
    (repository / "spec.yaml").write_text(EXAMPLES[0].read_text())
    top = cli("render", "spec.yaml", "--out", ".", cwd=repository)
    assert top.returncode == 2 and "is the top of a git repository" in top.stderr.decode()
    theirs = repository / "deploy"
    theirs.mkdir()
    (theirs / ".gitignore").write_text("!*.yaml\n")
    foreign = cli("render", "spec.yaml", "--out", "deploy", cwd=repository)
    assert foreign.returncode == 2 and "deploy/.gitignore is not classimage's" in foreign.stderr.decode()
    assert sorted(p.name for p in repository.iterdir()) == [".git", "deploy", "spec.yaml"]
    assert [p.name for p in theirs.iterdir()] == [".gitignore"]


def test_the_z2jh_targets_values_stay_out_of_git_too(tmp_path):
    """Its values carry the same hashes (hub.extraFiles)."""
    repository = tmp_path / "course"
    repository.mkdir()
    git(repository, "init", "-q")
    (repository / "spec.yaml").write_text(EXAMPLES[0].read_text() + "\nz2jh: {image: registry.digitalocean.com/x/y}\n")
    course = spec.load_file(repository / "spec.yaml").spec
    hashes = {admins.ENVIRONMENT: yaml.safe_dump({name: HASH for name in course.hub.admins})}
    result = cli("render", "spec.yaml", "--target", "z2jh", cwd=repository, env=hashes)
    assert result.returncode == 0, result.stderr.decode()
    assert any(HASH in p.read_text() for p in (repository / "build").rglob("*.yaml"))
    git(repository, "add", ".")
    assert git(repository, "ls-files").split() == ["spec.yaml"]
