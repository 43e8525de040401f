"""A course repository's binder files, read with repo2docker's rules, and merged with the spec.

repo2docker's precedence, as data: the configuration lives in binder/ or .binder/ if there is one
(both is an error), else at the top; environment.yml wins over requirements.txt (then ignored, and
said so); apt.txt, runtime.txt (python-X.Y) and postBuild add to either. Files repo2docker would
use but classimage cannot are reported, never silently dropped.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from classimage import resources
from classimage.pipeline import schemaerrors, yamlsource
from classimage.pipeline.problems import Problem, SpecError, describe, short
from classimage.pipeline.yamlsource import Document, format_path, shown

CONFIG_FOLDERS = ("binder", ".binder")
# repo2docker files classimage does not turn into a server: (name, error?, why and what to do).
UNSUPPORTED = (
    (
        "Dockerfile",
        True,
        "repo2docker would build this Dockerfile instead of everything else; classimage cannot",
        "describe the environment with environment.yml, apt.txt and postBuild",
    ),
    (
        "default.nix",
        True,
        "repo2docker would build the environment with Nix; classimage cannot",
        "describe the environment with environment.yml, apt.txt and postBuild",
    ),
    (
        "install.R",
        False,
        "R packages are not installed: classimage sets up Python environments",
        "install them in postBuild, or drop the file from the class repository",
    ),
    (
        "DESCRIPTION",
        False,
        "R packages are not installed: classimage sets up Python environments",
        "install them in postBuild, or drop the file from the class repository",
    ),
    (
        "Project.toml",
        False,
        "Julia packages are not installed: classimage sets up Python environments",
        "install them in postBuild, or drop the file from the class repository",
    ),
    (
        "start",
        False,
        "repo2docker runs start before each server; classimage does not",
        "do its work once in postBuild, or drop the file from the class repository",
    ),
    ("Pipfile", False, "Pipfile is not read", "list the packages in requirements.txt or environment.yml"),
    (
        "setup.py",
        False,
        "the repository itself is not pip-installed",
        "install it in postBuild (pip install .) if students need it",
    ),
)
_RUNTIME = re.compile(r"^python-(3\.[0-9]{1,2})$")


@dataclass(frozen=True)
class Item:
    value: str
    file: str
    line: int


@dataclass
class RepoEnvironment:
    root: Path | None = None  # the course repository: every file read must be its own
    folder: Path | None = None
    channels: list[Item] = field(default_factory=list)
    conda: list[Item] = field(default_factory=list)
    pip: list[Item] = field(default_factory=list)
    apt: list[Item] = field(default_factory=list)
    python: Item | None = None
    post_build: Item | None = None
    problems: list[Problem] = field(default_factory=list)


def read(repo: Path) -> RepoEnvironment:
    """Everything repo2docker would take from `repo`, and every problem with it."""
    found = RepoEnvironment()
    if not repo.is_dir():
        found.problems.append(
            Problem(0, "", f"{repo} is not a folder", "give the course repository's folder", file=str(repo))
        )
        return found
    found.root = repo
    folders = [repo / name for name in CONFIG_FOLDERS if (repo / name).is_dir()]
    for folder in folders:
        if not _inside(folder, repo):
            found.problems.append(
                Problem(
                    0,
                    "",
                    f"is a symlink that leads outside the course repository (to {shown(os.path.realpath(folder))})",
                    f"make {folder.name}/ a folder of the repository's own",
                    file=str(folder),
                )
            )
            return found
    if len(folders) > 1:
        found.problems.append(
            Problem(
                0, "", "has both binder/ and .binder/ (repo2docker refuses that)", "keep one of them", file=str(repo)
            )
        )
        return found
    found.folder = folders[0] if folders else repo
    for name, reader in READERS:
        path = found.folder / name
        if path.exists() or path.is_symlink():
            reader(path, found)
    for name, error, why, fix in UNSUPPORTED:
        if (found.folder / name).exists():
            found.problems.append(Problem(0, "", why, fix, warning=not error, file=str(found.folder / name)))
    return found


MAX_FILE = 256 * 1024  # no binder file is larger; anything larger is not one


def _inside(path: Path, root: Path) -> bool:
    real_root = os.path.realpath(root)
    return os.path.commonpath([real_root, os.path.realpath(path)]) == real_root


def _text(path: Path, found: RepoEnvironment) -> str | None:
    """A binder file's text, or None (and a problem) when it cannot be one: not a regular file of
    the repository's own (a symlink out of it, a FIFO, a device), too large, not UTF-8. A symlink
    that stays inside is followed, as repo2docker follows it."""
    assert found.root is not None
    try:
        raw = yamlsource.read_inside(path, found.root, MAX_FILE, "the course repository")
        if len(raw) > MAX_FILE:
            found.problems.append(
                Problem(
                    0,
                    "",
                    f"is more than {MAX_FILE // 1024} KiB",
                    "a binder file lists packages: is this the right file?",
                    file=str(path),
                )
            )
            return None
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        found.problems.append(Problem(0, "", "is not UTF-8 text", "save it as UTF-8 text", file=str(path)))
    except yamlsource.Outside as error:
        found.problems.append(
            Problem(
                0,
                "",
                f"cannot read it: {error}",
                "put the file itself in the repository: classimage reads only the repository's own files, "
                "and what it reads goes into the user data and the snapshot",
                file=str(path),
            )
        )
    except yamlsource.NotAFile as error:
        found.problems.append(
            Problem(
                0,
                "",
                f"cannot read it: {error}",
                "make it a regular file in the repository, or remove it",
                file=str(path),
            )
        )
    except OSError as error:
        found.problems.append(Problem(0, "", f"cannot read it: {error.strerror or error}", "", file=str(path)))
    return None


def _lines(path: Path, found: RepoEnvironment):
    """(line number, text) of a line-per-item file, without comments and blank lines."""
    text = _text(path, found)
    if text is None:
        return
    for number, line in enumerate(text.splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if line:
            yield number, line


def _environment_yml(path: Path, found: RepoEnvironment) -> None:
    text = _text(path, found)
    if text is None:
        return
    try:
        document = yamlsource.load(text.encode(), str(path))
    except SpecError as error:
        found.problems.extend(_in_file(p, str(path)) for p in error.problems)
        return
    found.problems.extend(_in_file(p, str(path)) for p in document.problems)
    data = document.data

    def bad(where, message, fix):
        found.problems.append(
            Problem(document.line(where), yamlsource.format_path(where), message, fix, file=str(path))
        )

    def listed(key: str, example: str) -> list:
        value = data.get(key)
        if value is None or isinstance(value, list):
            return value or []
        bad((key,), f"is {describe(value)}, not a list", f"write one item per line, e.g. `{key}:` then `  - {example}`")
        return []

    for i, channel in enumerate(listed("channels", "conda-forge")):
        if isinstance(channel, str):
            found.channels.append(Item(channel, str(path), document.line(("channels", i))))
        else:
            bad(("channels", i), "is not a channel name", "write channel names such as conda-forge")
    for i, dependency in enumerate(listed("dependencies", "numpy")):
        where = ("dependencies", i)
        if isinstance(dependency, dict) and list(dependency) == ["pip"] and isinstance(dependency["pip"], list):
            for j, requirement in enumerate(dependency["pip"]):
                if isinstance(requirement, str):
                    found.pip.append(Item(requirement, str(path), document.line(where + ("pip", j))))
                else:
                    bad(
                        where + ("pip", j),
                        f"is {describe(requirement)}, not a pip requirement",
                        "write a requirement such as jupytext, in quotes if YAML would read it as something else",
                    )
        elif isinstance(dependency, str):
            name = re.split(r"[ =<>!~]", dependency, maxsplit=1)[0]
            if name == "pip":
                continue  # the user environment has pip
            if name == "python":
                version = re.fullmatch(r"^python\s*=?=\s*(3\.[0-9]{1,2})(\.\*)?$", dependency)
                if not version:
                    bad(
                        where,
                        f"{dependency!r}: classimage pins Python as major.minor",
                        "write python=3.11, or leave Python out",
                    )
                else:
                    _set_python(found, Item(version.group(1), str(path), document.line(where)))
                continue
            found.conda.append(Item(dependency, str(path), document.line(where)))
        else:
            bad(
                where,
                f"is {describe(dependency)}: neither a package nor a pip: list",
                "write `- numpy` or `- pip: [jupytext]`",
            )
    unknown = set(data) - {"name", "channels", "dependencies", "prefix", "variables"}
    for key in sorted(unknown):
        bad((key,), "is not read (classimage takes channels and dependencies)", "remove it if it does not matter")


def _requirements_txt(path: Path, found: RepoEnvironment) -> None:
    environment_yml = path.parent / "environment.yml"
    if environment_yml.is_file():
        found.problems.append(
            Problem(
                0,
                "",
                "is ignored because environment.yml is there (as repo2docker does)",
                "move its packages under environment.yml's `- pip:` list",
                warning=True,
                file=str(path),
            )
        )
        return
    for number, line in _lines(path, found):
        found.pip.append(Item(line, str(path), number))


def _apt_txt(path: Path, found: RepoEnvironment) -> None:
    for number, line in _lines(path, found):
        found.apt.append(Item(line, str(path), number))


def _runtime_txt(path: Path, found: RepoEnvironment) -> None:
    for number, line in _lines(path, found):
        match = _RUNTIME.fullmatch(line)
        if match:
            _set_python(found, Item(match.group(1), str(path), number))
        elif line.startswith(("r-", "julia")):
            found.problems.append(
                Problem(
                    number,
                    "",
                    f"{line!r} asks for R or Julia; classimage sets up Python environments",
                    "remove runtime.txt, or write python-3.11",
                    file=str(path),
                )
            )
        else:
            found.problems.append(
                Problem(
                    number,
                    "",
                    f"{line!r} is not a runtime classimage knows",
                    "write python-X.Y, e.g. python-3.11",
                    file=str(path),
                )
            )
        return  # one runtime per file


def _post_build(path: Path, found: RepoEnvironment) -> None:
    text = _text(path, found)
    if text is not None:
        found.post_build = Item(text, str(path), 1)


def _set_python(found: RepoEnvironment, item: Item) -> None:
    if found.python and found.python.value != item.value:
        found.problems.append(
            Problem(
                item.line,
                "",
                f"asks for Python {item.value}, but {found.python.file}:{found.python.line} for {found.python.value}",
                "ask for one version",
                file=item.file,
            )
        )
    else:
        found.python = item


def _in_file(problem: Problem, file: str) -> Problem:
    return Problem(problem.line, problem.path, problem.message, problem.fix, problem.warning, file)


# The order matters: environment.yml is read before requirements.txt, which defers to it.
READERS = (
    ("environment.yml", _environment_yml),
    ("requirements.txt", _requirements_txt),
    ("apt.txt", _apt_txt),
    ("runtime.txt", _runtime_txt),
    ("postBuild", _post_build),
)


# ---------------------------------------------------------------------------------------------
# Merging with what the spec lists itself


def merge(environment: dict, found: RepoEnvironment, lines) -> list[Problem]:
    """Add what the repository says to `environment` (the spec's, defaults filled); the problems of
    a package, Python version or postBuild given differently by both. `lines(path)` finds a line
    of the spec."""
    problems: list[Problem] = []

    def clash(spec_path, item: Item, what: str):
        problems.append(
            Problem(
                item.line,
                "",
                f"{what}, but the spec says otherwise (line {lines(spec_path)})",
                "keep one of them: in the spec or in the repository",
                file=item.file,
            )
        )

    def add(kind_path, key, items: list[Item], existing: list[str]):
        by_name = {key(value): (value, index) for index, value in enumerate(existing)}
        for item in items:
            name = key(item.value)
            if name in by_name:
                if by_name[name][0] != item.value:
                    clash(kind_path + (by_name[name][1],), item, f"{item.value!r} is pinned differently")
                continue
            existing.append(item.value)
            by_name[name] = (item.value, len(existing) - 1)

    conda = environment["conda"]
    add(("environment", "conda", "channels"), str, found.channels, conda["channels"])
    add(("environment", "conda", "packages"), conda_name, found.conda, conda["packages"])
    add(("environment", "pip"), pip_name, found.pip, environment["pip"])
    add(("environment", "apt"), str, found.apt, environment["apt"])
    if found.python:
        if environment.get("python") not in (None, found.python.value):
            clash(("environment", "python"), found.python, f"asks for Python {found.python.value}")
        environment["python"] = found.python.value
    if found.post_build:
        if environment.get("post_build") is not None:
            clash(("environment", "post_build"), found.post_build, "is a postBuild")
        environment["post_build"] = found.post_build.value
    return problems


def pip_name(requirement: str) -> str:
    try:
        return canonicalize_name(Requirement(requirement).name)
    except InvalidRequirement:
        return requirement


def requirement_problem(item: str) -> tuple[str, str] | None:
    """(what, fix) when `item` is not one pip requirement, or None."""
    try:
        Requirement(item)
        return None
    except InvalidRequirement as error:
        reason = str(error).splitlines()[0]
    vcs = re.fullmatch(r"^(git|hg|svn|bzr)\+[a-z]+://\S+?/([A-Za-z0-9._-]+?)(\.git)?(@\S*)?$", item)
    if vcs:
        return (
            f"{short(item)} is a bare URL, not a pip requirement",
            f"name the package: write `{vcs.group(2)} @ {item}`",
        )
    if item.startswith("-"):
        return (
            f"{short(item)} is a pip option, not a requirement",
            "write one requirement per item, such as jupytext>=1.16; options are not allowed here",
        )
    return (
        f"{short(item)} is not a pip requirement: {reason}",
        "write one requirement such as lavavu or jupytext>=1.16",
    )


def conda_name(spec: str) -> str:
    """The package a conda MatchSpec names (`conda-forge::numpy>=1` -> numpy)."""
    return re.split(r"[ =<>!~]", spec.rsplit("::", 1)[-1], maxsplit=1)[0].lower()


def read_repo(document: Document, base: Path) -> tuple[RepoEnvironment | None, list[Problem]]:
    """environment.from_repo's binder files, each item held to the same rules as the spec's own."""
    where = ("environment", "from_repo")
    folder = document.get(where)
    if not isinstance(folder, str):
        return None, []
    if not os.path.isabs(folder) and not _inside(base / folder, base):
        return None, [
            Problem(
                document.line(where),
                format_path(where),
                f"{short(folder)} leads outside the spec's folder (to {shown(os.path.realpath(base / folder))})",
                "name a folder inside the spec's folder (a symlink is not followed out of it), or write the "
                "repository's absolute path",
            )
        ]
    if not (base / folder).is_dir():
        return None, [
            Problem(
                document.line(where),
                format_path(where),
                f"{short(folder)} is not a folder",
                "give the course repository's folder, relative to this spec",
            )
        ]
    found = read(base / folder)
    problems = list(found.problems)
    root = resources.schema()

    def items(*keys: str) -> dict:
        return resources.resolve("#/properties/environment/properties/" + "/properties/".join(keys), root)

    rules = [
        (found.apt, items("apt")["items"]),
        (found.conda, items("conda", "packages")["items"]),
        (found.channels, items("conda", "channels")["items"]),
    ]
    if found.python:
        rules.append(([found.python], items("python")))
    for listed, rule in rules:
        validator = schemaerrors.Validator(rule)
        for item in listed:
            if any(True for _ in validator.iter_errors(item.value)):
                problems.append(
                    Problem(
                        item.line,
                        "",
                        f"{short(item.value)} is not {rule.get('x-expected')}",
                        rule.get("x-fix", ""),
                        file=item.file,
                    )
                )
    for item in found.pip:
        problem = requirement_problem(item.value)
        if problem:
            problems.append(Problem(item.line, "", *problem, file=item.file))
    return found, problems
