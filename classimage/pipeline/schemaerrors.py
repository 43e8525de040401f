"""Schema errors as problems an instructor can act on: jsonschema's findings, each translated into
`what is wrong` and `how to fix it`, worded from the schema's own `x-expected` and `x-fix` (and, for
a rule between keys, stated in the schema as `if`/`then`, its `x-message`)."""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Iterator
from typing import Any, cast

import jsonschema

from classimage import resources
from classimage.pipeline import units
from classimage.pipeline.problems import Problem, clip, describe, short
from classimage.pipeline.yamlsource import Document, format_path


def _pattern(validator, pattern: str, instance, schema) -> Iterator[jsonschema.ValidationError]:
    """JSON Schema's `pattern`, with its regex dialect's (ECMA-262) `$`: the very end of the text.
    Python's `$` also matches before a final newline, which let `slug: "x\n"` through every rule."""
    if not validator.is_type(instance, "string"):
        return
    match = re.search(pattern, instance)
    if match is None or (pattern.endswith("$") and not pattern.endswith("\\$") and match.end() != len(instance)):
        yield jsonschema.ValidationError(f"{instance!r} does not match {pattern!r}")


# Keys that look like a place for a secret: the spec is shared (a repository, a workflow's log),
# so it has none, and says where each secret goes instead.
SECRET_KEY = re.compile(r"pass(word)?|secret|token|hash|credential|private", re.IGNORECASE)
SECRET_FIX = (
    "passwords and tokens are deliberately not spec keys (the spec is shared): set admins' "
    "passwords with `python -m classimage admin-password SPEC`, and give DigitalOcean's token "
    "in the environment as DIGITALOCEAN_TOKEN"
)

MAX_UNKNOWN = 50  # unknown keys reported one by one in a mapping

# The validator for course specs and what a course repository lists.
Validator = jsonschema.validators.extend(jsonschema.Draft202012Validator, {"pattern": _pattern})


def problems(document: Document) -> list[Problem]:
    validator = Validator(resources.schema())
    problems: list[Problem] = []
    for error in validator.iter_errors(document.data):
        problems.extend(_translate(error, document))
    return list(dict.fromkeys(problems))  # one `required` error per missing key, each naming them all


def _translate(error: jsonschema.ValidationError, document: Document) -> list[Problem]:
    path = tuple(error.absolute_path)
    here = format_path(path)
    line = document.line(path)
    # Our own schema's errors: its subschemas are mappings, its keywords and their values are set.
    schema: dict[str, Any] = cast(dict, error.schema)
    value: Any = error.instance
    keyword, expected = str(error.validator), cast(Any, error.validator_value)

    if "x-message" in schema:  # a rule between keys, worded where the schema states it
        return [Problem(line, here, schema["x-message"], schema.get("x-fix", ""))]
    if keyword == "additionalProperties":
        allowed = list(schema.get("properties", {}))
        result = []
        unknown = sorted(k for k in value if k not in allowed)
        if len(unknown) > MAX_UNKNOWN:  # a report of thousands of lines helps nobody: the first, and a count
            result.append(
                Problem(
                    line,
                    here,
                    f"{len(unknown) - MAX_UNKNOWN:,} more unknown keys",
                    "is this a course spec? keys allowed here: " + ", ".join(allowed),
                )
            )
        for key in unknown[:MAX_UNKNOWN]:
            close = difflib.get_close_matches(str(key), allowed, n=1, cutoff=0.6)
            fix = f"did you mean `{close[0]}`?" if close else "keys allowed here: " + ", ".join(allowed)
            if SECRET_KEY.search(str(key)):
                fix = SECRET_FIX
            result.append(
                Problem(document.line(path + (key,), key=True), format_path(path + (key,)), "unknown key", fix)
            )
        return result
    if keyword == "required":
        if not path:
            parent = "at the top"
        elif isinstance(path[-1], int):
            parent = f"to item {path[-1] + 1} of `{format_path(path[:-1])}`"
        else:
            parent = f"under `{path[-1]}:`"
        result = []
        for key in expected:
            if key not in value:
                wanted = schema.get("properties", {}).get(key, {})
                example = wanted.get("examples", [None])[0]
                shown = f"`{key}: {json.dumps(example)}`" if example is not None else f"`{key}:`"
                what, fix = "is missing", f"add {shown} {parent}"
                if "x-message" in wanted:  # required by a rule between keys: its own words
                    what, fix = wanted["x-message"], wanted.get("x-fix", fix)
                result.append(Problem(document.line(path, key=True), format_path(path + (key,)), what, fix))
        return result
    if keyword == "dependentRequired":
        result = []
        for key, needed in expected.items():
            for other in needed:
                if key in value and other not in value:
                    result.append(
                        Problem(
                            document.line(path + (key,), key=True),
                            format_path(path + (other,)),
                            f"is missing: `{key}` needs it",
                            f"add `{other}:` under `{path[-1]}:`" if path else f"add `{other}:`",
                        )
                    )
        return result
    if keyword == "type":
        fix = schema.get("x-fix") or _type_fix(expected, value)
        if path[:1] == ("content",) and len(path) == 2 and isinstance(value, str):
            fix = f"each repository is a mapping: write `- url: {clip(value)}`"
        return [Problem(line, here, f"expected {_type_words(expected)}, got {describe(value)}", fix)]
    if keyword == "pattern":
        fix = schema.get("x-fix", "")
        suggestion = units.suggest_memory(value) if "K, M, G, T" in fix else None
        if suggestion:
            fix = f"write {suggestion}"
        return [Problem(line, here, f"{short(value)} is not {schema.get('x-expected', 'valid here')}", fix)]
    if keyword == "enum":
        options = [str(o) for o in expected]
        close = difflib.get_close_matches(str(value), options, n=1, cutoff=0.5)
        fix = f"did you mean `{close[0]}`?" if close else "choose one of: " + ", ".join(options)
        return [Problem(line, here, f"{short(value)} is not a choice here", fix)]
    if keyword == "minItems":
        return [Problem(line, here, f"needs at least {expected} item(s)", "add one, as `- name` on the next line")]
    if keyword in ("minimum", "maximum", "exclusiveMinimum"):
        bound = {"minimum": "at least", "maximum": "at most", "exclusiveMinimum": "more than"}[keyword]
        return [Problem(line, here, f"{short(value)} is out of range", f"use a number {bound} {expected}")]
    if keyword == "minLength":
        return [Problem(line, here, "is empty", "write a value or remove the key")]
    if keyword == "maxLength":
        return [Problem(line, here, f"is {len(value)} characters long", f"shorten it to at most {expected}")]
    return [Problem(line, here, error.message[:200])]


_TYPE_WORDS = {
    "string": "text",
    "array": "a list",
    "object": "a mapping of keys",
    "integer": "a whole number",
    "number": "a number",
    "boolean": "true or false",
    "null": "nothing (null)",
}


def _type_words(expected) -> str:
    kinds = [expected] if isinstance(expected, str) else list(expected)
    return " or ".join(_TYPE_WORDS.get(k, k) for k in kinds)


def _type_fix(expected, value) -> str:
    kinds = [expected] if isinstance(expected, str) else list(expected)
    if "string" in kinds and isinstance(value, (list, dict)):
        return "write it as text on one line, in quotes if it holds : [ ] { } or #"
    if "string" in kinds and value is not None:
        shown = value.isoformat() if hasattr(value, "isoformat") else str(value)
        if isinstance(value, bool):
            shown = "yes/no/on/off (YAML reads them as true/false)"
            return f"put the value in quotes; unquoted, {shown}"
        return f'put it in quotes: "{clip(shown)}"'
    if "array" in kinds:
        return "write a list: `[a, b]`, or one `- item` per line"
    if "object" in kinds and isinstance(value, list):
        return "it takes keys, not a list: write `key: value` lines indented below it, without `- `"
    if "object" in kinds:
        return "write its keys indented on the lines below it"
    if "boolean" in kinds:
        return "write true or false"
    if "integer" in kinds:
        return "write a whole number without quotes or units"
    if "number" in kinds:
        return "write a number without quotes or units"
    return ""
