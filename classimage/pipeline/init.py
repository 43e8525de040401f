"""`classimage init [DIR]`: a new course repository, ready to push. It holds the spec (`course.yaml`,
annotated, naming classimage's schema so that editors check it as it is typed), the workflows
`render --workflows` writes, a README with the launch badges and the instructors' next steps, and a
`.gitignore` that keeps what `render` writes (the admins' password hashes) out of git.

Everything is made in memory and checked first (the spec is loaded as `validate` loads it), then
written; nothing is overwritten but classimage's own workflows, an existing README is kept, and an
existing .gitignore gains the lines it lacks.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from classimage import release, resources
from classimage.pipeline import links, pricing, sizing, spec, templating, workflows
from classimage.pipeline.files import write_atomically
from classimage.pipeline.problems import SpecError

SPEC = "course.yaml"
README = "README.md"
GITIGNORE = ".gitignore"
# What render writes by default (build/SLUG, with the admins' password hashes; render also gives
# the folder a .gitignore of its own) and the README's virtual environment.
IGNORED = ("build/", ".venv/")
# The schema as GitHub serves the file at the commit this classimage was built from: what the
# workflows install, so the editor checks against the rules they validate with.
SCHEMA_URL = (
    release.SOURCE.replace("https://github.com/", "https://raw.githubusercontent.com/", 1)
    + "/{commit}/schemas/"
    + resources.COURSE_SCHEMA
)
# Which answer each spec key comes from, to say a problem in the answer's words.
ANSWERS = {
    "course.name": "name",
    "course.slug": "slug",
    "course.students": "students",
    "hub.admins": "admin",
    "https.hostname": "hostname",
    "https.email": "email",
    "content": "content",
}


class InitError(Exception):
    """The answers do not make a course, or the folder holds one already; the message says which."""

    def __init__(self, message: str, answer: str | None = None):
        super().__init__(message)
        self.answer = answer  # the answer at fault (a question to ask again), when one is


@dataclass(frozen=True)
class Answers:
    name: str
    admins: tuple[str, ...]
    slug: str | None = None  # made from the name when not given
    students: int | None = None
    hostname: str | None = None
    email: str | None = None
    content: tuple[str, ...] = field(default_factory=tuple)
    example: str | None = None  # start from this bundled example (examples/NAME.yaml) instead


def schema_url() -> str:
    commit = release.commit()
    if commit is None:
        raise InitError(
            "cannot tell which commit this classimage was built from, so neither the workflows nor the "
            "schema the spec names could be pinned: install classimage from a git checkout or a release"
        )
    return SCHEMA_URL.format(commit=commit)


def _schema_default(path: str):
    """A key's default, from the schema (its only source)."""
    node = resources.schema()
    for part in path.split("."):
        node = node["properties"][part]
        if "$ref" in node:
            node = resources.resolve(node["$ref"], resources.schema())
    return node["default"]


def _default(path: str) -> templating.Escaped:
    """A key's default, as YAML."""
    return templating.to_yaml(_schema_default(path))


def droplet_size(students: int | None) -> tuple[str, bool]:
    """The droplet size course.yaml starts with, and whether it is bigger than the default: the
    default, unless the class the instructor named does not fit it (validate would warn at once),
    then the cheapest size that holds them all working at once. A class no Basic droplet holds
    keeps the default, and validate says what to do."""
    default, limit = _schema_default("droplet.size"), _schema_default("hub.memory_limit")
    size = pricing.size(default)
    if students is None or size is None or sizing.fit(size, limit).working >= students:
        return default, False
    bigger = sizing.smallest(students, limit)
    return (bigger.size.slug, True) if bigger else (default, False)


def examples() -> list[str]:
    """The bundled examples' names (examples/*.yaml, shipped inside the package)."""
    return sorted(path.stem for path in resources.data_dir("examples").glob("*.yaml"))


# The lines of an example that name its course and its admins (one each in every bundled example):
# the answers take their place, and the rest of the example, comments and all, stays as it is.
_EXAMPLE_LINES = {
    "name": re.compile(r"^(  name: )[^#\n]*?(\s*(#.*)?)$", re.MULTILINE),
    "slug": re.compile(r"^(  slug: )[^#\n]*?(\s*(#.*)?)$", re.MULTILINE),
    "admins": re.compile(r"^(  admins: )[^#\n]*?(\s*(#.*)?)$", re.MULTILINE),
}


def from_example(answers: Answers) -> str:
    """A bundled example, as the course's spec: the schema named first, its course and admins the
    answers'. The other answers are the example's to keep (editing course.yaml changes them)."""
    if answers.example not in examples():
        raise InitError(f"no example {answers.example!r}: the bundled ones are {', '.join(examples())}", "example")
    others = [
        flag
        for flag, given in (
            ("--students", answers.students),
            ("--hostname", answers.hostname),
            ("--email", answers.email),
            ("--content", answers.content),
        )
        if given
    ]
    if others:
        raise InitError(f"--example keeps the example's settings: leave out {', '.join(others)} and edit {SPEC}")
    text = (resources.data_dir("examples") / f"{answers.example}.yaml").read_text(encoding="utf-8")
    values = {"name": answers.name, "slug": answers.slug or spec.slug_for(answers.name), "admins": list(answers.admins)}
    for key, line in _EXAMPLE_LINES.items():
        value = templating.to_yaml(values[key]).replace("\\", "\\\\")  # a replacement template's escapes
        text, replaced = line.subn(rf"\g<1>{value}\g<2>", text, count=1)
        if not replaced:
            raise InitError(f"the example {answers.example!r} has no `{key}:` line for the answer to take")
    return f"# yaml-language-server: $schema={schema_url()}\n{text}"


def course_yaml(answers: Answers) -> str:
    if answers.example:
        return from_example(answers)
    return templating.render(
        "init/course.yaml.j2",
        schema_url=schema_url(),
        course_name=answers.name,
        slug=answers.slug or spec.slug_for(answers.name),
        students=answers.students,
        size=droplet_size(answers.students),
        admins=list(answers.admins),
        content=list(answers.content),
        hostname=answers.hostname,
        email=answers.email,
        default=_default,
    )


def _problem(error: SpecError) -> InitError:
    """The first problem of the spec the answers make, said in the answers' words."""
    problem = next(p for p in error.problems if not p.warning)
    key = problem.path.split("[", 1)[0]
    answer = ANSWERS.get(key)
    said = f"--{answer}: " if answer else f"{problem.path}: "
    return InitError(said + problem.message + (f" ({problem.fix})" if problem.fix else ""), answer)


def files(answers: Answers, folder: Path) -> dict[str, str]:
    """Every file of the new repository, by path inside `folder`: checked, not written."""
    text = course_yaml(answers)
    try:
        loaded = spec.load_bytes(text.encode(), str(folder / SPEC))
    except SpecError as error:
        raise _problem(error) from None
    course = loaded.spec
    hub = f"https://{course.https.hostname}" if course.https.hostname else None
    found = links.everything(course, hub) if hub else {"content": []}
    readme = templating.render(
        "init/README.md.j2",
        course_name=course.course.name,
        slug=course.course.slug,
        admins=list(course.hub.admins),
        made_by=templating.Escaped(f"[classimage]({release.SOURCE})"),  # our own address: nothing to escape
        hub=hub,
        hostname=course.https.hostname,
        badges=[templating.Escaped(item["markdown"]) for item in found["content"]],
        install=templating.sh(["pip", "install", workflows.requirement(course)]),
    )
    return {SPEC: text, README: readme, **workflows.render(course, folder / SPEC, folder)}


def gitignore(existing: str | None) -> str | None:
    """The .gitignore with the lines classimage needs, or None when it has them all."""
    have = set((existing or "").splitlines())
    missing = [line for line in IGNORED if line not in have and line.rstrip("/") not in have]
    if not missing:
        return None
    start = existing if existing is not None else ""
    if start and not start.endswith("\n"):
        start += "\n"
    return (
        start
        + "# classimage: what render writes (the admins' password hashes), and the tools' environment\n"
        + ("\n".join(missing) + "\n")
    )


def refuse_existing(folder: Path) -> None:
    """A folder that holds a spec is a course repository already: init does not touch it."""
    if (folder / SPEC).exists() or (folder / SPEC).is_symlink():
        raise InitError(
            f"{folder / SPEC} exists: this is a course repository already (edit {SPEC}; `classimage render "
            f"{SPEC} --workflows .` rewrites the workflows)"
        )
    if folder.exists() and not folder.is_dir():
        raise InitError(f"{folder} is not a folder: give the course repository's folder (or a new one)")


def write(folder: Path, made: dict[str, str]) -> tuple[list[str], list[str]]:
    """Write the files into `folder`: (written, kept as they were). Refuses a folder with a spec."""
    refuse_existing(folder)
    written, kept = [], []
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in made.items():
        target = folder / name
        if name == README and (target.exists() or target.is_symlink()):
            kept.append(name)
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(target, text, 0o644)
        written.append(name)
    ignore = folder / GITIGNORE
    if ignore.is_symlink():
        raise InitError(f"{ignore} is a symbolic link: classimage adds its lines only to the repository's own file")
    updated = gitignore(ignore.read_text(encoding="utf-8") if ignore.exists() else None)
    if updated is not None:
        write_atomically(ignore, updated, 0o644)
        written.append(GITIGNORE)
    return written, kept


def in_git(folder: Path) -> bool:
    return any((parent / ".git").exists() for parent in (folder.resolve(), *folder.resolve().parents))


def next_steps(folder: Path, program: str = "classimage") -> list[str]:
    """What the instructor does next, as commands to run in the new repository (`program`: how
    classimage is run)."""
    steps = [] if folder.resolve() == Path.cwd().resolve() else [f"cd {templating.sh(str(folder))}"]
    steps += [
        f"{program} admin-password {SPEC}   # your admin password (only its hash is kept, outside the repository)",
        f"{program} validate {SPEC}         # how many students the droplet holds, where the class's data lives",
        f"{program} render {SPEC}           # the user data to paste, and what the class costs a month",
    ]
    if in_git(folder):
        steps.append("git add . && git commit -m 'The class, made by classimage init' && git push")
    else:
        steps += [
            "git init -b main && git add . && git commit -m 'The class, made by classimage init'",
            "git remote add origin URL && git push -u origin main   # URL: a new, empty repository on GitHub",
        ]
    return steps
