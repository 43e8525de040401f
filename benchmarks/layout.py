#!/usr/bin/env python3
"""Figures for the layout (issue 22): modules and lines per world (the package's subfolders), the
largest modules, functions and classes, and the import circles between modules (every import of the
package, also those inside functions). Prints tables; asserts nothing.

    python3 benchmarks/layout.py [--package DIR] [--world NAME=MODULE,MODULE...]

`--world` groups top-level modules as if they sat in a folder NAME (to measure a flat layout
against the one planned for it).
"""

from __future__ import annotations

import argparse
import ast
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def modules(package: Path) -> dict[str, Path]:
    """{dotted name: file} of every module of the package."""
    found = {}
    for path in sorted(package.rglob("*.py")):
        parts = path.relative_to(package.parent).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def imports(name: str, path: Path, known: set[str]) -> set[str]:
    """The package's modules `name` imports, anywhere in it."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name in known)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            for alias in node.names:
                if f"{base}.{alias.name}" in known:
                    found.add(f"{base}.{alias.name}")
                elif base in known:
                    found.add(base)
    found.discard(name)
    return found


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--package", type=Path, default=REPO / "classimage")
    parser.add_argument("--world", action="append", default=[], metavar="NAME=MODULE,...")
    args = parser.parse_args()
    found = modules(args.package.resolve())
    top = args.package.resolve().name
    planned = {}
    for option in args.world:
        world, _, names = option.partition("=")
        planned.update({f"{top}.{module}": world for module in names.split(",")})

    def world(name: str) -> str:
        parts = name.split(".")
        if name in planned:
            return planned[name]
        return parts[1] if len(parts) > 2 or (len(parts) == 2 and found[name].name == "__init__.py") else "(top)"

    lines = {name: len(path.read_text(encoding="utf-8").splitlines()) for name, path in found.items()}
    per_world: dict[str, list[str]] = defaultdict(list)
    for name in found:
        per_world[world(name)].append(name)
    print(f"{'world':<12} {'modules':>7} {'lines':>6}  largest module")
    for name, members in sorted(per_world.items()):
        largest = max(members, key=lines.__getitem__)
        print(f"{name:<12} {len(members):>7} {sum(lines[m] for m in members):>6}  {largest} ({lines[largest]})")
    print(f"{'all':<12} {len(found):>7} {sum(lines.values()):>6}")

    definitions = []
    for name, path in found.items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                kind = "class" if isinstance(node, ast.ClassDef) else "function"
                definitions.append((node.end_lineno - node.lineno + 1, kind, f"{name}.{node.name}"))  # type: ignore[operator]
    print("largest modules:", ", ".join(f"{m} {lines[m]}" for m in sorted(lines, key=lines.get, reverse=True)[:5]))  # type: ignore[arg-type]
    over = sorted(m for m in lines if lines[m] > 500)
    print(f"modules over 500 lines: {len(over)}", " ".join(over))
    for kind in ("function", "class"):
        biggest = sorted((d for d in definitions if d[1] == kind), reverse=True)
        print(f"largest {kind}s:", ", ".join(f"{qual} {size}" for size, _, qual in biggest[:5]))
        if kind == "function":
            long = [f"{qual} {size}" for size, _, qual in biggest if size > 120]
            print(f"functions over 120 lines: {len(long)}", ", ".join(long))

    graph = {name: imports(name, path, set(found)) for name, path in found.items()}
    found_circles = circles(graph)
    print(f"import circles: {len(found_circles)}", "; ".join(" <-> ".join(c) for c in found_circles))
    across = defaultdict(int)
    for name, targets in graph.items():
        for target in targets:
            if world(name) != world(target):
                across[(world(name), world(target))] += 1
    print("imports between worlds:", ", ".join(f"{a} -> {b} {n}" for (a, b), n in sorted(across.items())))


if __name__ == "__main__":
    main()
