"""Read a YAML spec into plain data plus the line of every key and value, refusing what YAML
allows but a spec must not have (duplicate keys, non-string keys, several documents, alias bombs)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml

from classimage.problems import Problem, SpecError

MAX_BYTES = 1 << 20
MAX_NODES = 20_000

# What plain YAML resolves to; explicit tags (!!python/object, !!binary, !local) are refused.
_PLAIN_TAGS = {"null", "bool", "int", "float", "str", "seq", "map", "timestamp"}

Path = tuple  # of str (mapping keys) and int (list indexes)

_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def format_path(path: Path) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


@dataclass
class Document:
    data: Any
    value_lines: dict = field(default_factory=dict)  # Path -> 1-based line of the value
    key_lines: dict = field(default_factory=dict)  # Path -> 1-based line of its key

    def line(self, path: Path, *, key: bool = False) -> int:
        """The line of `path`, or of its nearest ancestor that exists (a missing key is reported
        where its parent is)."""
        path = tuple(path)
        while True:
            lines = self.key_lines if key else self.value_lines
            if path in lines:
                return lines[path]
            if path in self.value_lines:
                return self.value_lines[path]
            if not path:
                return 1
            path = path[:-1]

    def get(self, path: Path) -> Any:
        """The value at `path`, or None where the data (possibly still invalid) has none."""
        data = self.data
        for key in path:
            if not isinstance(data, dict) or key not in data:
                return None
            data = data[key]
        return data

    def strings(self, path: Path) -> list[tuple[Path, str]]:
        """(path, text) of every text item of the list at `path`."""
        value = self.get(path)
        if not isinstance(value, list):
            return []
        return [((*path, i), v) for i, v in enumerate(value) if isinstance(v, str)]


def load(raw: bytes, filename: str) -> Document:
    """Parse `raw` (the file's bytes) or raise SpecError naming every reason it cannot be read."""

    def fail(line: int, message: str, fix: str = "") -> SpecError:
        return SpecError(filename, [Problem(line, "", message, fix)])

    if len(raw) > MAX_BYTES:
        raise fail(0, f"the file is {len(raw):,} bytes; a course spec is a few kilobytes",
                   "pass the course spec (YAML), not another file")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise fail(raw.count(b"\n", 0, error.start) + 1,
                   f"not UTF-8 text (byte {raw[error.start]:#04x} at offset {error.start})",
                   "save the spec as UTF-8 text") from None
    try:
        root = yaml.compose(text, Loader=_Loader)
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        line = mark.line + 1 if mark else 0
        source = text.splitlines()[line - 1] if 0 < line <= len(text.splitlines()) else ""
        raise fail(line, f"YAML syntax: {_yaml_reason(error)}", _yaml_fix(error, source)) from None
    except yaml.YAMLError as error:
        raise fail(0, f"YAML syntax: {error}", "check the file is YAML text") from None
    if root is None:
        raise fail(1, "the file is empty", "start from examples/minimal.yaml")
    document = Document(data=None)
    builder = _Builder(document, filename)
    document.data = builder.build(root, ())
    if builder.problems:
        raise SpecError(filename, builder.problems)
    if not isinstance(document.data, dict):
        kind = "a list" if isinstance(document.data, list) else "a single value"
        raise fail(root.start_mark.line + 1, f"the spec is {kind}; it must be a mapping of sections",
                   "start with `course:` and `hub:` at the left margin, as in examples/minimal.yaml")
    return document


def _yaml_reason(error: yaml.MarkedYAMLError) -> str:
    parts = [p for p in (error.context, error.problem) if p]
    return "; ".join(parts) or "cannot parse"


def _yaml_fix(error: yaml.MarkedYAMLError, source: str) -> str:
    problem = f"{error.context or ''} {error.problem or ''}"
    if "\t" in source[: len(source) - len(source.lstrip())] or "'\\t'" in problem:
        return "indent with spaces, not tabs"
    if "expected a single document" in problem:
        return "a spec is one YAML document: remove the extra `---`"
    if "found undefined alias" in problem:
        return "define the &anchor before using it"
    return "check the indentation and quoting on this line and the one before"


class _Builder:
    """Turns YAML nodes into plain data, recording the line of every value and key."""

    def __init__(self, document: Document, filename: str):
        self.document = document
        self.constructor = yaml.constructor.SafeConstructor()
        self.problems: list[Problem] = []
        self.nodes = 0

    def build(self, node: yaml.Node, path: Path) -> Any:
        self.nodes += 1
        if self.nodes > MAX_NODES:
            if self.nodes == MAX_NODES + 1:
                self.problems.append(Problem(node.start_mark.line + 1, format_path(path),
                                             f"the spec has more than {MAX_NODES:,} values",
                                             "a course spec is small: remove repeated aliases (*name)"))
            return None
        self.document.value_lines.setdefault(path, node.start_mark.line + 1)
        kind = node.tag.removeprefix("tag:yaml.org,2002:")
        if kind not in _PLAIN_TAGS:
            self.problems.append(Problem(node.start_mark.line + 1, format_path(path),
                                         f"YAML tag {node.tag!r} is not allowed in a spec",
                                         "remove the tag, the part starting with !"))
            return None
        if isinstance(node, yaml.MappingNode):
            return self._mapping(node, path)
        if isinstance(node, yaml.SequenceNode):
            return [self.build(item, path + (i,)) for i, item in enumerate(node.value)]
        try:
            return self.constructor.construct_object(node)
        except yaml.YAMLError as error:
            self.problems.append(Problem(node.start_mark.line + 1, format_path(path),
                                         f"cannot read this value: {getattr(error, 'problem', error)}",
                                         "quote it"))
            return None

    def _mapping(self, node: yaml.MappingNode, path: Path) -> dict:
        try:
            self.constructor.flatten_mapping(node)
        except yaml.YAMLError as error:
            self.problems.append(Problem(node.start_mark.line + 1, format_path(path),
                                         f"cannot merge: {getattr(error, 'problem', error)}",
                                         "write the keys out instead of using <<"))
        result: dict = {}
        for key_node, value_node in node.value:
            line = key_node.start_mark.line + 1
            key = None
            if isinstance(key_node, yaml.ScalarNode):
                try:
                    key = self.constructor.construct_object(key_node)
                except yaml.YAMLError:
                    key = None
            if not isinstance(key, str):
                self.problems.append(Problem(line, format_path(path),
                                             f"key {_show(key_node)} is not a name",
                                             "keys are words such as `course` or `admins`"))
                continue
            child = path + (key,)
            if key in result:
                self.problems.append(Problem(line, format_path(child),
                                             f"appears twice (first on line {self.document.key_lines[child]})",
                                             "keep one of them"))
                continue
            self.document.key_lines[child] = line
            result[key] = self.build(value_node, child)
        return result


def _show(node: yaml.Node) -> str:
    if isinstance(node, yaml.ScalarNode):
        return repr(node.value)
    return "(a list or mapping)"
