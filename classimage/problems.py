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

    def format(self, filename: str) -> str:
        where = f"{filename}:{self.line}" if self.line else filename
        text = f"{where} {self.path or '(top)'}: {self.message}"
        if self.fix:
            text += f" ({self.fix})"
        return f"warning: {text}" if self.warning else text


class SpecError(Exception):
    """The spec cannot be used; `problems` says every reason at once."""

    def __init__(self, filename: str, problems: list[Problem]):
        self.filename = filename
        self.problems = sorted(problems)
        super().__init__("\n".join(p.format(filename) for p in self.problems))
