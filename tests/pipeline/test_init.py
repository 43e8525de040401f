"""`classimage init`: a course repository ready to push, from an installed wheel as an instructor
gets it, checked with the real classimage, the real git and the real schema."""

from __future__ import annotations

import builtins
import re
import subprocess
import sys
import venv

import pytest
import yaml

from conftest import REPO, cli
from classimage import cli as classimage_cli
from classimage import release, resources
from classimage.pipeline import init, links, spec, workflows


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """classimage installed from its wheel into a fresh virtual environment: its `classimage` command."""
    folder = tmp_path_factory.mktemp("installed")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(folder / "wheels"),
                    str(REPO)], check=True, capture_output=True)
    (wheel,) = (folder / "wheels").glob("classimage-*.whl")
    venv.create(folder / "venv", system_site_packages=True, with_pip=True)
    subprocess.run([str(folder / "venv/bin/python"), "-m", "pip", "install", "--no-deps", "--ignore-installed",
                    "--quiet", str(wheel)], check=True, capture_output=True)
    return folder / "venv/bin/classimage"


def run(command, *args, cwd, stdin=None):
    return subprocess.run([str(command), *args], cwd=cwd, capture_output=True, text=True, input=stdin, timeout=120)


def git(folder, *args):
    return subprocess.run(["git", "-c", "user.name=Instructor", "-c", "user.email=i@example.edu",
                           "-c", "init.defaultBranch=main", "-C", str(folder), *args],
                          capture_output=True, text=True, check=True).stdout


NAME = 'Geology 101: "Rocks" & <Minerals> *#1* [x](javascript:alert(1))'


def test_init_from_the_wheel_makes_a_repository_ready_to_push(installed, tmp_path):
    made = run(installed, "init", "geo", "--name", NAME, "--admin", "alice", "--students", "12",
               "--content", "https://github.com/geo/rocks", "--hostname", "hub.geo.example.edu",
               "--email", "alice@geo.example.edu", cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    folder = tmp_path / "geo"
    # what an instructor does next, as they run classimage
    assert made.stdout.splitlines()[:2] == ["cd geo", "classimage admin-password course.yaml   # your admin "
                                            "password (only its hash is kept, outside the repository)"]
    names = sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())
    assert names == sorted([init.SPEC, init.README, init.GITIGNORE,
                            *(f"{workflows.FOLDER}/{name}.yml" for name in workflows.NAMES)])
    text = (folder / init.SPEC).read_text()
    # the schema the editor checks against: this classimage's own, at the commit the wheel was built from
    first = text.splitlines()[0]
    commit = release.commit()
    assert first == ("# yaml-language-server: $schema=https://raw.githubusercontent.com/classimage/classimage/"
                     f"{commit}/schemas/course.schema.json")
    assert (REPO / "schemas" / resources.COURSE_SCHEMA).is_file()
    loaded = spec.load_file(folder / init.SPEC).spec
    assert (loaded.course.name, loaded.hub.admins, loaded.course.students) == (NAME, ("alice",), 12)
    assert loaded.content[0].url == "https://github.com/geo/rocks" and loaded.https.hostname == "hub.geo.example.edu"
    # the installed classimage takes the spec it wrote, and writes the same workflows
    assert run(installed, "validate", init.SPEC, cwd=folder).returncode == 0
    rendered = run(installed, "render", init.SPEC, "--workflows", ".", cwd=folder)
    assert rendered.returncode == 0, rendered.stderr
    (folder / "build" / "notes.txt").write_text("anything under build/ stays out\n")
    git(folder, "init", "--quiet")
    git(folder, "add", ".")
    staged = sorted(git(folder, "diff", "--cached", "--name-only").split())
    assert staged == names  # the render's build/ (the admins' hashes) stays out, and nothing else changed
    assert (folder / "build" / loaded.course.slug / "user-data.yaml").exists()
    # the README: launch badges, the next steps, and the course's name as text, never markup
    readme = (folder / init.README).read_text()
    link = links.everything(loaded, "https://hub.geo.example.edu")["content"][0]["markdown"]
    assert link in readme
    assert "classimage admin-password course.yaml" in readme and "CLASSIMAGE_ADMIN_HASHES" in readme
    # (a badge's alt text is an image's description, which a Markdown renderer shows as text)
    prose = [line for line in readme.splitlines() if line != link]
    assert prose[0] == r'# Geology 101\: \"Rocks\" \& \<Minerals\> \*\#1\* \[x\]\(javascript\:alert\(1\)\)'
    assert not any("<Minerals>" in line or "](javascript" in line for line in prose)


def test_the_annotated_spec_is_true_to_the_schema(tmp_path):
    """Every key init's course.yaml shows commented out exists where it stands, and shows its
    default when it has one (a list of repositories is an example): uncommented, the file is a
    valid spec with the schema's defaults."""
    text = init.course_yaml(init.Answers(name="Geo", admins=("alice",)))
    commented = re.compile(r"^(\s*)# (\s*)([a-z_]+:(?: |$)|- )")
    shown = [line for line in text.splitlines() if commented.match(line)]
    assert len(shown) > 10
    uncommented = "\n".join(commented.sub(r"\1\2\3", line, count=1) for line in text.splitlines())
    data = yaml.safe_load(uncommented)
    loaded = spec.load_bytes(uncommented.encode(), str(tmp_path / "course.yaml"))
    defaults = spec.with_defaults({"course": {"name": "Geo", "slug": "geo"}, "hub": {"admins": ["alice"]}})

    def walk(node, path):
        for key, value in node.items():
            schema = resources.schema()
            for part in (*path, key):
                schema = schema["properties"][part]
            if isinstance(value, dict):
                walk(value, (*path, key))
            elif "default" in schema and not (isinstance(value, list) and value and isinstance(value[0], dict)):
                expected = defaults
                for part in (*path, key):
                    expected = expected[part]
                assert value == expected, (path, key)

    walk(data, ())
    assert loaded.spec.course.students == 30  # the one shown that has no default: an example


def test_init_asks_what_it_must_and_again_when_it_will_not_do(tmp_path, monkeypatch, capsys):
    answers = iter(["Rocks", "Alice Smith", "alice"])
    monkeypatch.setattr(sys.stdin, "isatty", lambda: True)
    monkeypatch.setattr(builtins, "input", lambda prompt: next(answers))
    monkeypatch.chdir(tmp_path)
    assert classimage_cli.main(["init", "course"]) == 0
    err = capsys.readouterr().err
    assert "classimage: --admin: " in err and "once more" in err  # the bad name, said and asked again
    assert spec.load_file(tmp_path / "course" / init.SPEC).spec.hub.admins == ("alice",)


def test_init_stops_cleanly_when_the_terminal_gives_no_answer(tmp_path, monkeypatch, capsys):
    def end_of_input(prompt):
        raise EOFError

    monkeypatch.setattr(sys.stdin, "isatty", lambda: True)
    monkeypatch.setattr(builtins, "input", end_of_input)
    monkeypatch.chdir(tmp_path)
    assert classimage_cli.main(["init", "course"]) == 2
    assert capsys.readouterr().err == "classimage: no answer for --name; nothing was written\n"
    assert list(tmp_path.iterdir()) == []


def test_init_without_a_terminal_needs_the_answers_as_flags(tmp_path):
    result = cli("init", "course", "--name", "Rocks", cwd=tmp_path, stdin=b"")
    assert result.returncode == 2
    assert result.stderr.decode() == "classimage: give --name and --admin: there is no terminal to ask them at\n"
    assert list(tmp_path.iterdir()) == []


def test_a_bad_answer_is_named_by_its_flag_and_writes_nothing(tmp_path):
    result = cli("init", "course", "--name", "Rocks", "--admin", "Alice Smith", cwd=tmp_path, stdin=b"")
    assert result.returncode == 2
    assert result.stderr.decode().startswith("classimage: --admin: ")
    assert list(tmp_path.iterdir()) == []


def test_init_keeps_what_is_there_and_refuses_a_course(tmp_path):
    folder = tmp_path / "clone"
    folder.mkdir()
    (folder / init.README).write_text("# Our course\n")
    (folder / init.GITIGNORE).write_text("*.pyc\nbuild")
    git(folder, "init", "--quiet")
    result = cli("init", str(folder), "--name", "Rocks", "--admin", "alice", cwd=tmp_path, stdin=b"")
    assert result.returncode == 0, result.stderr
    assert (folder / init.README).read_text() == "# Our course\n"
    assert "kept README.md as it was" in result.stderr.decode()
    ignored = (folder / init.GITIGNORE).read_text()
    assert ignored.startswith("*.pyc\nbuild\n") and ignored.endswith(".venv/\n") and "build/" not in ignored
    assert "git add . && git commit" in result.stdout.decode()  # a clone: commit and push, no git init
    before = {p: p.read_bytes() for p in folder.rglob("*") if p.is_file() and ".git/" not in str(p)}
    again = cli("init", str(folder), "--name", "Rocks", "--admin", "alice", cwd=tmp_path, stdin=b"")
    assert again.returncode == 2 and "is a course repository already" in again.stderr.decode()
    assert {p: p.read_bytes() for p in folder.rglob("*") if p.is_file() and ".git/" not in str(p)} == before


@pytest.mark.parametrize("example", init.examples())
def test_init_starts_from_a_bundled_example_from_the_wheel(installed, tmp_path, example):
    """The examples ship in the package: an installed classimage starts a course from one, which
    keeps every line of the example but the schema's, the course's and the admins'."""
    made = run(installed, "init", "course", "--example", example, "--name", "Rocks: 2", "--admin", "bob",
               cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    text = (tmp_path / "course" / init.SPEC).read_text()
    original = (REPO / "examples" / f"{example}.yaml").read_text()
    changed = [(a, b) for a, b in zip(original.splitlines(), text.splitlines()[1:]) if a != b]
    assert [b.split("#")[0].strip() for a, b in changed] == ["name: 'Rocks: 2'", "slug: rocks-2", "admins: [bob]"]
    assert text.startswith("# yaml-language-server: $schema=https://") and len(text.splitlines()) == len(
        original.splitlines()) + 1
    assert run(installed, "validate", init.SPEC, cwd=tmp_path / "course").returncode == 0
    refused = run(installed, "init", "other", "--example", example, "--name", "X", "--admin", "bob",
                  "--hostname", "hub.example.edu", cwd=tmp_path)
    assert refused.returncode == 2 and "--example keeps the example's settings" in refused.stderr
    assert not (tmp_path / "other").exists()


@pytest.mark.parametrize("students, size, warned", [
    (None, "s-2vcpu-4gb", False),  # the schema's default
    (12, "s-2vcpu-4gb", False),  # what the default holds working at once: no bigger
    (20, "s-4vcpu-8gb", False),  # the cheapest that holds 20 (sizing.py: 25), not validate's warning at once
    (500, "s-2vcpu-4gb", True),  # no Basic droplet holds them: the default, and validate says so
])
def test_init_starts_with_a_droplet_that_holds_the_class_it_is_told_of(tmp_path, students, size, warned):
    text = init.course_yaml(init.Answers(name="Geo", admins=("alice",), students=students))
    loaded = spec.load_bytes(text.encode(), str(tmp_path / init.SPEC))
    assert loaded.spec.droplet.size == size
    assert any(warning.path == "droplet.size" for warning in loaded.warnings) == warned
