"""The droplet's programs (classimage/droplet/) as the user data ships them: their source, read
rather than imported (the command line need not load what only a droplet runs), without comments
and docstrings, line for line; a program of several modules as one zip Python runs."""

from __future__ import annotations

import ast
import importlib.util
import io
import tokenize
import zipfile
from collections.abc import Iterable
from pathlib import Path

EPOCH = (1980, 1, 1, 0, 0, 0)  # the earliest time a zip holds: the same modules make the same bytes


def shipped(module: str) -> str:
    """The source of one of classimage's modules that run on the droplet, read, not imported (the
    command line need not load what only a droplet runs), made lean for the user data."""
    origin = importlib.util.find_spec(f"classimage.droplet.{module}").origin  # type: ignore[union-attr]
    return lean(Path(origin).read_text(encoding="utf-8"))  # type: ignore[arg-type]


def packaged(package: str) -> bytes:
    """A program of the droplet's made of several modules (the package classimage/droplet/PACKAGE/,
    its main in PACKAGE/program.py), each lean, as one file Python runs: in the zip as in the
    package, the modules' relative imports find each other."""
    folder = Path(importlib.util.find_spec(f"classimage.droplet.{package}").origin).parent  # type: ignore[union-attr,arg-type]
    main = f"import sys\n\nfrom {package}.program import main\n\nsys.exit(main())\n"
    modules = [(f"{package}/{p.name}", lean(p.read_text(encoding="utf-8"))) for p in sorted(folder.glob("*.py"))]
    return zipapp([("__main__.py", main), *modules])


def zipapp(members: Iterable[tuple[str, str | bytes]]) -> bytes:
    """`members` (name, content; `__main__.py` first) as one file Python runs: a #! line and a zip
    of them (a zipapp). The members are stored, not deflated: the user data's gzip compresses them
    together, which saves more than each alone; their times are fixed, so that the same sources
    make the same bytes."""
    archive = io.BytesIO()
    archive.write(b"#!/usr/bin/env python3\n")
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_STORED) as zipped:
        for name, content in members:
            member = zipfile.ZipInfo(name, date_time=EPOCH)
            member.external_attr = 0o644 << 16
            zipped.writestr(member, content)
    return archive.getvalue()


def lean(source: str) -> str:
    """`source` without its comments and docstrings, line for line: a traceback on the droplet names
    the lines of the file in this commit. The user data holds 64 KiB and these programs were over half
    of it (about 9 KiB less, compressed). A docstring the program reads itself (its --help) stays."""
    lines = source.splitlines(keepends=True)
    comments = {
        token.start[0]: token.start[1]
        for token in tokenize.generate_tokens(io.StringIO(source).readline)
        if token.type == tokenize.COMMENT and token.start != (1, 0)  # the #! line stays
    }
    docstrings = {}
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        if isinstance(node, ast.Module) and "__doc__" in source:
            continue  # the program reads its own docstring (its --help)
        first = node.body[0]
        text = first.value.value if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) else None
        if isinstance(text, str) and not lines[first.lineno - 1][: first.col_offset].strip():  # on its own line
            docstrings[first.lineno] = (first.end_lineno or first.lineno, first.col_offset)
    out, blank_through = [], 0
    for number, line in enumerate(lines, 1):
        if number <= blank_through:
            out.append("\n")
        elif number in docstrings:
            blank_through, column = docstrings[number]
            out.append(" " * column + '""\n')  # a body that was only its docstring stays a body
        elif number in comments:
            code = line[: comments[number]].rstrip()
            out.append(code + "\n" if code else "\n")
        else:
            out.append(line)
    return "".join(out)
