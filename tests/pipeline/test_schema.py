"""The schema is the spec's single source of truth: valid JSON Schema 2020-12, a description for
every key, the typed model in step with it (names, types, enums, nullability), and the generated
reference (docs/spec.md) current."""

from __future__ import annotations

import dataclasses
import types
import typing

import jsonschema
import pytest

from conftest import REPO, cli
from classimage import resources
from classimage.pipeline import model, reference

PYTHON_TYPES = {str: "string", int: "integer", float: "number", bool: "boolean"}


def test_schema_is_valid_2020_12():
    schema = resources.schema()
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    jsonschema.Draft202012Validator.check_schema(schema)


def test_every_key_has_a_description():
    keys = reference.keys()
    assert len(keys) > 30
    for key in keys:
        assert len(key.schema.get("description", "")) > 10, key.path


def test_pattern_keys_say_what_they_expect_and_how_to_fix():
    for key in reference.keys():
        for schema in (key.schema, key.schema.get("items", {})):
            if "pattern" in schema:
                assert schema.get("x-expected") and schema.get("x-fix"), key.path


def _resolved(schema: dict, root: dict) -> dict:
    return resources.resolve(schema["$ref"], root) if "$ref" in schema else schema


def _kinds(schema: dict) -> set[str]:
    kinds = schema.get("type", [])
    return {kinds} if isinstance(kinds, str) else set(kinds)


def mismatches(cls: type, schema: dict, root: dict, where: str) -> list[str]:
    """Every way the dataclass `cls` differs from the object `schema`."""
    schema = _resolved(schema, root)
    properties = schema.get("properties", {})
    fields = {f.name for f in dataclasses.fields(cls)}
    found = []
    if fields != set(properties):
        found.append(f"{where}: model {sorted(fields)} vs schema {sorted(properties)}")
    hints = typing.get_type_hints(cls)
    for name in sorted(fields & set(properties)):
        sub = _resolved(properties[name], root)
        found += _compare(hints[name], sub, root, f"{where}.{name}",
                          optional=name not in schema.get("required", []) and "default" not in sub)
    return found


def _compare(hint, schema: dict, root: dict, where: str, optional: bool = False) -> list[str]:
    found = []
    args = typing.get_args(hint)
    nullable = typing.get_origin(hint) in (typing.Union, types.UnionType) and type(None) in args
    if nullable:
        (hint,) = [a for a in args if a is not type(None)]
    may_be_null = "null" in _kinds(schema) or optional
    if nullable != may_be_null:
        found.append(f"{where}: model {'allows' if nullable else 'refuses'} None, the schema "
                     f"{'allows' if may_be_null else 'refuses'} null or absence")
    kinds = _kinds(schema) - {"null"}
    if typing.get_origin(hint) is typing.Literal:
        if list(typing.get_args(hint)) != schema.get("enum"):
            found.append(f"{where}: model {typing.get_args(hint)} vs schema enum {schema.get('enum')}")
    elif "enum" in schema:
        found.append(f"{where}: the schema has an enum {schema['enum']}, the model a {hint}")
    elif typing.get_origin(hint) is tuple:
        if kinds != {"array"}:
            found.append(f"{where}: model tuple vs schema {sorted(kinds)}")
        found += _compare(typing.get_args(hint)[0], _resolved(schema.get("items", {}), root), root, f"{where}[]")
    elif dataclasses.is_dataclass(hint):
        if kinds != {"object"}:
            found.append(f"{where}: model {hint.__name__} vs schema {sorted(kinds)}")
        found += mismatches(hint, schema, root, where)
    elif {PYTHON_TYPES.get(hint)} != kinds and not (hint is float and kinds == {"number"}):
        found.append(f"{where}: model {getattr(hint, '__name__', hint)} vs schema {sorted(kinds)}")
    return found


def test_model_matches_schema():
    root = resources.schema()
    assert mismatches(model.Spec, root, root, "spec") == []


@pytest.mark.parametrize("change, expected", [
    (lambda s: s["properties"]["hub"]["properties"]["cpu_limit"].update(type="string"), "hub.cpu_limit: model float"),
    (lambda s: s["properties"]["hub"]["properties"]["memory_limit"].update(type="string"), "memory_limit: model allows"),
    (lambda s: s["properties"]["hub"]["properties"]["default_app"]["enum"].append("nbclassic"), "default_app: model"),
    (lambda s: s["properties"]["environment"]["properties"]["python"].update(default="3.11"), "python: model allows"),
    (lambda s: s["properties"]["course"]["properties"].pop("slug"), "course: model"),
    (lambda s: s["properties"]["droplet"]["properties"]["snapshot_regions"].update(type="string"), "snapshot_regions"),
])
def test_the_comparison_catches_each_kind_of_drift(change, expected):
    import copy

    root = copy.deepcopy(resources.schema())
    change(root)
    assert any(expected in problem for problem in mismatches(model.Spec, root, root, "spec")), expected


def test_generated_reference_is_current():
    generated = cli("explain", "--markdown").stdout.decode()
    assert generated == reference.markdown()
    assert (REPO / "docs" / "spec.md").read_text() == generated, \
        "docs/spec.md is stale: python -m classimage explain --markdown > docs/spec.md"
