"""Where classimage's templates and schemas are, installed or in a source checkout."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


def data_dir(name: str) -> Path:
    """The directory `name` (templates, schemas): inside the installed package, where the wheel
    puts it, or at the top of the source checkout, where it lives in the repository."""
    for candidate in (_PACKAGE / name, _PACKAGE.parent / name):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"classimage is incomplete: its {name}/ directory is missing (reinstall it)")


COURSE_SCHEMA = "course.schema.json"  # the course spec's single source of truth


@cache
def schema(filename: str = COURSE_SCHEMA) -> dict:
    return json.loads((data_dir("schemas") / filename).read_text(encoding="utf-8"))


def resolve(ref: str, root: dict) -> dict:
    """The subschema a local `$ref` (`#/$defs/name`) points at."""
    node = root
    for part in ref.removeprefix("#/").split("/"):
        node = node[part]
    return node
