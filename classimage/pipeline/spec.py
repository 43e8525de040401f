"""Load a course spec, in the order a newcomer reads it: YAML (yamlsource) -> the schema's checks
(schemaerrors) -> the rules a schema cannot state (checks) -> the files it names (network's CA
certificates, environment's course repository) -> the schema's defaults -> the typed model. Every
problem is reported at once; nothing past this module sees raw dicts."""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from classimage import resources
from classimage.pipeline import checks, environment, model, network, schemaerrors, yamlsource
from classimage.pipeline.problems import Problem, SpecError


@dataclass(frozen=True)
class Loaded:
    spec: model.Spec
    warnings: tuple[Problem, ...]
    digest: str  # sha256 of the resolved spec: same course, same digest, whatever the comments
    document: yamlsource.Document | None = field(default=None, compare=False, repr=False)  # for lines

    def line(self, path: tuple, key: bool = False) -> int:
        return self.document.line(path, key=key) if self.document else 0


def load_file(path: str | Path) -> Loaded:
    """Read and check the spec at `path`. Raises SpecError (problems) or OSError (cannot read;
    yamlsource.NotAFile for a folder, device or FIFO)."""
    return load_bytes(yamlsource.read_file(path, yamlsource.MAX_BYTES), str(path))


def load_bytes(raw: bytes, filename: str) -> Loaded:
    document = yamlsource.load(raw, filename)
    problems = document.problems + _beside(
        document.problems, schemaerrors.problems(document) + checks.problems(document)
    )
    certificates, certificate_problems = network.read_certificates(document, Path(filename).parent)
    repo, repo_problems = environment.read_repo(document, Path(filename).parent)
    problems += certificate_problems + repo_problems
    errors = [p for p in problems if not p.warning]
    if errors:
        raise SpecError(filename, errors)  # warnings wait until the errors are fixed
    data = with_defaults(document.data)
    data["network"]["ca_certificates"] = certificates
    if repo is not None:
        problems += environment.merge(data["environment"], repo, document.line)
        errors = [p for p in problems if not p.warning]
        if errors:
            raise SpecError(filename, errors)
    spec = model.build(model.Spec, data)
    warnings = SpecError(filename, problems).problems  # in report order
    return Loaded(spec=spec, warnings=tuple(warnings), digest=digest(spec), document=document)


def _beside(reported: list[Problem], more: list[Problem]) -> list[Problem]:
    """`more`, without what is about a value the YAML problems already report (a key read twice,
    a value that could not be read): one cause, one line in the report."""
    paths = [p.path for p in reported if p.path]
    return [p for p in more if not any(p.path == q or p.path.startswith((q + ".", q + "[")) for q in paths)]


def for_repo(repo: Path, admins: list[str]) -> Loaded:
    """A spec for a course repository that has none: the defaults, named after its folder, with
    the environment its binder files describe."""
    repo = Path(repo).resolve()
    data = {
        "course": {"name": repo.name[:120] or "Course", "slug": slug_for(repo.name)},
        "hub": {"admins": admins},
        "environment": {"from_repo": repo.name},
    }
    return load_bytes(
        yaml.safe_dump(data, allow_unicode=True).encode(), str(repo.parent / f"{repo.name} (no spec: defaults)")
    )


def slug_for(name: str) -> str:
    """A course slug made from a name: lower-case letters, digits and dashes, starting with a letter."""
    slug = re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-")[:32].strip("-")
    if not re.fullmatch(r"[a-z][a-z0-9-]*[a-z0-9]", slug):
        slug = ("course-" + slug).strip("-")[:32].strip("-") if slug else "course"
    return slug


def digest(spec: model.Spec) -> str:
    # The z2jh target's own section and the class's size change nothing on a droplet, so they do
    # not replace one (and a spec that predates course.students keeps its digest).
    resolved = {key: value for key, value in dataclasses.asdict(spec).items() if key != "z2jh"}
    del resolved["course"]["students"]
    canonical = json.dumps(resolved, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


# ---------------------------------------------------------------------------------------------
# Defaults come from the schema, so the schema stays their only source.


def with_defaults(data: dict) -> dict:
    root = resources.schema()
    return _fill(copy.deepcopy(data), root, root)


def _fill(value, schema: dict, root: dict):
    if "$ref" in schema:
        schema = resources.resolve(schema["$ref"], root)
    if isinstance(value, dict):
        for key, sub in schema.get("properties", {}).items():
            sub_resolved = resources.resolve(sub["$ref"], root) if "$ref" in sub else sub
            if key not in value and "default" in sub_resolved:
                value[key] = copy.deepcopy(sub_resolved["default"])
            if key in value:
                value[key] = _fill(value[key], sub_resolved, root)
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        value = [_fill(item, schema["items"], root) for item in value]
    return value
