"""Problems found in a course spec, reported all at once as `FILE:LINE key.path: what (fix)`."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, order=True)
class Problem:
    line: int
    path: str
    message: str
    fix: str = ""
    warning: bool = False
    file: str | None = None  # when the problem is in another file than the spec (a repository's)

    def format(self, filename: str) -> str:
        filename = self.file or filename
        if any(ord(c) < 0x20 or ord(c) == 0x7F for c in filename):  # one problem, one line
            filename = repr(filename)
        where = f"{filename}:{self.line}" if self.line else filename
        path = self.path or ("" if self.file else "(top)")  # a whole file of a repository has no key
        text = f"{where} {path}: {self.message}" if path else f"{where}: {self.message}"
        if self.fix:
            text += f" ({self.fix})"
        return f"warning: {text}" if self.warning else text


class SpecError(Exception):
    """The spec cannot be used; `problems` says every reason at once."""

    def __init__(self, filename: str, problems: list[Problem]):
        self.filename = filename
        # the spec's own problems first, then each other file's, each by line
        self.problems = sorted(problems, key=lambda p: (p.file is not None, p.file or "", p.line, p.path, p.message))
        super().__init__("\n".join(p.format(filename) for p in self.problems))


# How a value is quoted in a problem's message.


def clip(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def describe(value: object) -> str:
    """A value in words: `nothing`, `true`, `the number 2`, `the text 'x'`, `a list`."""
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (int, float)):
        return f"the number {value}"
    if isinstance(value, str):
        return f"the text {short(value)}"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return f"a {type(value).__name__}"


def short(value: object) -> str:
    """Text as a clipped Python literal (control characters visible), anything else in words."""
    return clip(repr(value)) if isinstance(value, str) else describe(value)
