"""The spec's reference, generated from its schema: `classimage explain` and docs/spec.md."""

from __future__ import annotations

import difflib
import json
import re
from dataclasses import dataclass

from classimage import resources


@dataclass(frozen=True)
class Key:
    path: str  # e.g. hub.auth.method; list items as content[].url
    schema: dict

    @property
    def kind(self) -> str:
        if "enum" in self.schema:
            return "one of " + ", ".join(json.dumps(v) for v in self.schema["enum"])
        kinds = self.schema.get("type", "any")
        kinds = [kinds] if isinstance(kinds, str) else kinds
        if "array" in kinds and "items" in self.schema:
            items = self.schema["items"]
            if "$ref" in items:  # hub.admins' items are the schema's definition of a user name
                items = resources.resolve(items["$ref"], resources.schema())
            kinds = ["list of " + Key("", items).kind if k == "array" else k for k in kinds]
        return " or ".join(kinds)

    @property
    def default(self) -> str | None:
        if "default" not in self.schema or isinstance(self.schema["default"], dict):
            return None
        return json.dumps(self.schema["default"])


def keys() -> list[Key]:
    root = resources.schema()
    found: list[Key] = []

    def walk(schema: dict, prefix: str):
        if "$ref" in schema:
            schema = resources.resolve(schema["$ref"], root)
        for name, sub in schema.get("properties", {}).items():
            if "$ref" in sub:
                sub = {**resources.resolve(sub["$ref"], root), **{k: v for k, v in sub.items() if k != "$ref"}}
            path = f"{prefix}{name}"
            found.append(Key(path, sub))
            walk(sub, path + ".")
            items = sub.get("items")
            if isinstance(items, dict) and ("properties" in items or "$ref" in items):
                walk(items, path + "[].")

    walk(root, "")
    return found


def explain(path: str | None) -> tuple[str, bool]:
    """Text describing `path` (and the keys under it), or every key; False when there is no such key."""
    every = keys()
    if not path:
        width = max(len(k.path) for k in every)
        lines = [f"{k.path:<{width}}  {_first_sentence(k.schema['description'])}" for k in every]
        return "\n".join(lines) + "\n\nMore on one key: python -m classimage explain KEY\n", True
    path = path.replace("[0]", "[]")
    chosen = [k for k in every if k.path == path or k.path.startswith(path + ".") or k.path.startswith(path + "[]")]
    if not chosen:
        close = difflib.get_close_matches(path, [k.path for k in every], n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        return f"no key {path!r} in the course spec{hint}\n", False
    return "\n".join(_entry(k) for k in chosen), True


def _entry(key: Key) -> str:
    lines = [key.path, f"  type: {key.kind}"]
    if key.default is not None:
        lines.append(f"  default: {key.default}")
    lines.append(f"  {key.schema['description']}")
    return "\n".join(lines) + "\n"


def _first_sentence(text: str) -> str:
    match = re.search(r"(?<!e\.g)(?<!i\.e)\.\s", text)
    return text if not match else text[: match.start() + 1]


def markdown() -> str:
    """docs/spec.md: every key, generated (a test keeps the file in step with the schema)."""
    root = resources.schema()
    out = [
        "# Course spec reference",
        "",
        "<!-- Generated from schemas/course.schema.json by `python -m classimage explain --markdown`. -->",
        "",
        root["description"],
        "",
        "| key | type | default | what it does |",
        "|---|---|---|---|",
    ]
    for key in keys():
        default = f"`{key.default}`" if key.default is not None else ""
        text = key.schema["description"].replace("|", "\\|")
        out.append(f"| `{key.path}` | {key.kind.replace('|', '/')} | {default} | {text} |")
    return "\n".join(out) + "\n"
