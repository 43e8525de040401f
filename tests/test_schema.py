"""The schema is the spec's single source of truth: valid JSON Schema 2020-12, a description for
every key, the typed model in step with it, and the generated reference (docs/spec.md) current."""

from __future__ import annotations

import dataclasses
import typing

import jsonschema

from conftest import REPO, cli
from classimage import model, reference, resources
from classimage.spec import SCHEMA


def test_schema_is_valid_2020_12():
    schema = resources.schema(SCHEMA)
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


def _schema_properties(schema: dict, root: dict) -> dict:
    if "$ref" in schema:
        schema = resources.resolve(schema["$ref"], root)
    return schema.get("properties", {})


def _compare(cls: type, schema: dict, root: dict, where: str) -> None:
    properties = _schema_properties(schema, root)
    fields = {f.name for f in dataclasses.fields(cls)}
    assert fields == set(properties), f"{where}: model {sorted(fields)} vs schema {sorted(properties)}"
    hints = typing.get_type_hints(cls)
    for name, sub in properties.items():
        hint = hints[name]
        if typing.get_origin(hint) is tuple:
            hint = typing.get_args(hint)[0]
            sub = sub.get("items", {})
        if dataclasses.is_dataclass(hint):
            _compare(hint, sub, root, f"{where}.{name}")


def test_model_matches_schema():
    root = resources.schema(SCHEMA)
    _compare(model.Spec, root, root, "spec")


def test_generated_reference_is_current():
    generated = cli("explain", "--markdown").stdout.decode()
    assert generated == reference.markdown()
    assert (REPO / "docs" / "spec.md").read_text() == generated, \
        "docs/spec.md is stale: python -m classimage explain --markdown > docs/spec.md"
