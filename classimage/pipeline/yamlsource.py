"""Read a YAML spec into plain data plus the line of every key and value, refusing what YAML
allows but a spec must not have (duplicate keys, non-string keys, explicit tags, several documents,
numbers that are not finite, alias bombs, nesting deep enough to exhaust the stack). Problems in the
YAML are reported with the rest: a duplicate key keeps its first value and hides nothing else.
Merge keys (`<<: *defaults`) are honoured here rather than by PyYAML, so their cost is bounded the
same way whatever PyYAML release is installed."""

from __future__ import annotations

import math
import os
import stat
from dataclasses import dataclass, field
from typing import Any, cast

import yaml

from classimage.pipeline.problems import Problem, SpecError

MAX_BYTES = 1 << 20
MAX_NODES = 20_000
MAX_DEPTH = 64
_TOO_DEEP = f"a course spec nests a few levels, never {MAX_DEPTH}"

# What plain YAML resolves to; explicit tags (!!python/object, !!binary, !local) are refused.
_PLAIN_TAGS = {"null", "bool", "int", "float", "str", "seq", "map", "timestamp"}
_MERGE = "tag:yaml.org,2002:merge"

Path = tuple  # of str (mapping keys) and int (list indexes)

_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class NotAFile(OSError):
    """A path that is not a regular file (a directory, a device, a FIFO): never read."""


class Outside(NotAFile):
    """A path that resolves outside the folder it must stay in (a symlink out of a repository)."""


def read_file(path: str | os.PathLike, limit: int, *, follow: bool = True) -> bytes:
    """The bytes of the regular file at `path`, at most `limit` + 1 of them (so a caller can tell
    "too large" without reading a huge file). Devices, FIFOs and folders are refused before anything
    is opened: reading /dev/zero never ends, and opening a FIFO waits for a writer. What is opened
    is checked again (non-blocking, so a FIFO swapped in meanwhile cannot hang it either).
    `follow=False`: a symlink at `path` itself is refused too (read_inside resolves first)."""
    before = os.stat(path) if follow else os.lstat(path)
    if not stat.S_ISREG(before.st_mode):
        raise NotAFile(f"it is {_kind(before.st_mode)}, not a file")
    kernel = os.path.realpath(path).split(os.sep)[1:2]
    if kernel in (["proc"], ["sys"]):  # regular files to stat, but the kernel's: a process's environment
        raise NotAFile(f"it is in /{kernel[0]}, the kernel's view of this machine, not a file")
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | getattr(os, "O_CLOEXEC", 0)
    handle = os.open(path, flags if follow else flags | os.O_NOFOLLOW)
    with os.fdopen(handle, "rb") as opened:
        now = os.fstat(handle)
        if not stat.S_ISREG(now.st_mode) or (now.st_dev, now.st_ino) != (before.st_dev, before.st_ino):
            raise NotAFile("it changed while it was read, to something that is not the file it was")
        return opened.read(limit + 1)


def read_inside(path: str | os.PathLike, root: str | os.PathLike, limit: int, what: str) -> bytes:
    """read_file for a file that must be `root`'s own (a course repository's binder file, a file
    beside the spec): after every symlink is resolved it must still be a regular file inside
    `root`, or NotAFile says where it leads. `what` names `root` in that message."""
    real_root = os.path.realpath(root)
    real = os.path.realpath(path)
    if os.path.commonpath([real_root, real]) != real_root:
        if os.path.islink(path):
            raise Outside(f"it is a symlink to {shown(os.readlink(os.fspath(path)))}, which leads outside {what}")
        raise Outside(f"it leads outside {what}, through a symlink on its way (to {shown(real)})")
    return read_file(real, limit, follow=False)


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def shown(name: str) -> str:
    """A file name as a report can show it on one line: control characters escaped."""
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in name):
        return repr(name)
    return name


def format_path(path: Path) -> str:
    if len(path) > 12:  # deep enough to be a mistake: the start and the end tell where
        return format_path(path[:6]) + "..." + format_path(path[-2:]).lstrip(".")
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


@dataclass
class Document:
    data: Any
    value_lines: dict = field(default_factory=dict)  # Path -> 1-based line of the value
    key_lines: dict = field(default_factory=dict)  # Path -> 1-based line of its key
    problems: list = field(default_factory=list)  # what the YAML itself has wrong

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


def load_file(path: str | os.PathLike, filename: str | None = None) -> Document:
    """Read and parse the YAML file at `path`. Raises SpecError, or OSError (NotAFile included)."""
    return load(read_file(path, MAX_BYTES), filename or str(path))


def load(raw: bytes, filename: str) -> Document:
    """Parse `raw` (the file's bytes). Raises SpecError when nothing can be read at all; problems
    within a readable document are in `Document.problems`, for the caller to report with its own."""

    def fail(line: int, message: str, fix: str = "") -> SpecError:
        return SpecError(filename, [Problem(line, "", message, fix)])

    if len(raw) > MAX_BYTES:
        raise fail(
            0,
            f"the file is more than {MAX_BYTES // (1 << 20)} MiB; a course spec is a few kilobytes",
            "pass the course spec (YAML), not another file",
        )
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise fail(
            raw.count(b"\n", 0, error.start) + 1,
            f"not UTF-8 text (byte {raw[error.start]:#04x} at offset {error.start})",
            "save the spec as UTF-8 text",
        ) from None
    try:
        root = yaml.compose(text, Loader=_Loader)
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        if "maximum nesting depth" in (error.problem or ""):  # PyYAML 6.0.3+ refuses deep nesting itself
            raise fail(mark.line + 1 if mark else 0, "nested too deeply to read", _TOO_DEEP) from None
        line = mark.line + 1 if mark else 0
        source = text.splitlines()[line - 1] if 0 < line <= len(text.splitlines()) else ""
        raise fail(line, f"YAML syntax: {_yaml_reason(error)}", _yaml_fix(error, source)) from None
    except yaml.reader.ReaderError as error:  # a character YAML refuses: a NUL, a control character
        line = text.count("\n", 0, error.position) + 1
        code = error.character if isinstance(error.character, int) else ord(error.character)
        raise fail(
            line,
            f"a control character ({code:#04x}) that YAML does not allow in a file",
            "remove it; a spec is plain text",
        ) from None
    except RecursionError:
        raise fail(0, "nested too deeply to read", _TOO_DEEP) from None
    except yaml.YAMLError as error:
        raise fail(0, f"YAML syntax: {error}", "check the file is YAML text") from None
    if root is None:
        raise fail(1, "the file is empty", "start from examples/minimal.yaml")
    document = Document(data=None)
    builder = _Builder(document)
    document.data = builder.build(root, ())
    document.problems = builder.problems
    if not isinstance(document.data, dict):
        kind = "a list" if isinstance(document.data, list) else "a single value"
        raise SpecError(
            filename,
            builder.problems
            + [
                Problem(
                    root.start_mark.line + 1,
                    "",
                    f"the spec is {kind}; it must be a mapping of sections",
                    "start with `course:` and `hub:` at the left margin, as in examples/minimal.yaml",
                )
            ],
        )
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

    def __init__(self, document: Document):
        self.document = document
        self.constructor = yaml.constructor.SafeConstructor()
        self.problems: list[Problem] = []
        self.nodes = 0
        self.within: list[int] = []  # ids of the nodes being built, outermost first

    def problem(self, node: yaml.Node, path: Path, message: str, fix: str) -> None:
        self.problems.append(Problem(node.start_mark.line + 1, format_path(path), message, fix))

    def build(self, node: yaml.Node, path: Path) -> Any:
        self.nodes += 1
        if self.nodes > MAX_NODES:
            if self.nodes == MAX_NODES + 1:
                self.problem(
                    node,
                    path,
                    f"the spec has more than {MAX_NODES:,} values",
                    "a course spec is small: remove repeated aliases (*name)",
                )
            return None
        if id(node) in self.within:
            self.problem(
                node,
                path,
                "an alias (*name) refers to a value that contains it",
                "an alias may only repeat a value defined apart from it",
            )
            return None
        if len(self.within) >= MAX_DEPTH:
            self.problem(node, path, f"nested more than {MAX_DEPTH} levels deep", "a course spec nests a few levels")
            return None
        self.document.value_lines.setdefault(path, node.start_mark.line + 1)
        kind = node.tag.removeprefix("tag:yaml.org,2002:")
        if kind not in _PLAIN_TAGS:
            self.problem(
                node,
                path,
                f"YAML tag {node.tag!r} is not allowed in a spec",
                "remove the tag, the part starting with !",
            )
            return None
        self.within.append(id(node))
        try:
            if isinstance(node, yaml.MappingNode):
                return self._mapping(node, path)
            if isinstance(node, yaml.SequenceNode):
                return [self.build(item, (*path, i)) for i, item in enumerate(node.value)]
            return self._scalar(cast(yaml.ScalarNode, node), path)
        finally:
            self.within.pop()

    def _scalar(self, node: yaml.ScalarNode, path: Path) -> Any:
        try:
            value = self.constructor.construct_object(node)
        except yaml.YAMLError as error:
            self.problem(node, path, f"cannot read this value: {getattr(error, 'problem', error)}", "quote it")
            return None
        if isinstance(value, float) and not math.isfinite(value):
            self.problem(
                node, path, f"{node.value!r} is not a number a spec can use", "write a number such as 1 or 2.5"
            )
            return None
        return value

    def _mapping(self, node: yaml.MappingNode, path: Path) -> dict:
        result: dict = {}
        merged: list[yaml.MappingNode] = []
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE:
                merged += self._merge_sources(value_node, path)
                continue
            key = self._key(key_node, path)
            if key is None:
                continue
            child = (*path, key)
            if key in result:
                self.problem(
                    key_node,
                    child,
                    f"appears twice (first on line {self.document.key_lines[child]})",
                    "keep one of them",
                )
                continue
            self.document.key_lines[child] = key_node.start_mark.line + 1
            result[key] = self.build(value_node, child)
        # `<<: *defaults`: keys the mapping does not set come from the merged mappings, the first
        # one listed winning (YAML's merge key); they count against the same limits as the rest.
        for source in merged:
            for key_node, value_node in source.value:
                key = self._key(key_node, path)
                if key is None or key in result:
                    continue
                child = (*path, key)
                self.document.key_lines[child] = key_node.start_mark.line + 1
                result[key] = self.build(value_node, child)
        return result

    def _merge_sources(self, node: yaml.Node, path: Path) -> list[yaml.MappingNode]:
        sources = node.value if isinstance(node, yaml.SequenceNode) else [node]
        if all(isinstance(source, yaml.MappingNode) for source in sources):
            return list(sources)
        self.problem(node, path, "`<<` merges mappings only", "write `<<: *name`, where &name is a mapping")
        return []

    def _key(self, key_node: yaml.Node, path: Path) -> str | None:
        key = None
        if isinstance(key_node, yaml.ScalarNode):
            try:
                key = self.constructor.construct_object(key_node)
            except yaml.YAMLError:
                key = None
        if not isinstance(key, str):
            self.problem(
                key_node, path, f"key {_show(key_node)} is not a name", "keys are words such as `course` or `admins`"
            )
            return None
        return key


def _show(node: yaml.Node) -> str:
    if isinstance(node, yaml.ScalarNode):
        return repr(node.value)
    return "(a list or mapping)"
