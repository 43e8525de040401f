"""Which classimage this is, as a source a workflow can install and nobody else can change: its
repository, and the commit it was built from (stamped into the wheel and sdist by hatch_build.py;
asked of git when running from a checkout)."""

from __future__ import annotations

import re
import subprocess
from importlib import resources as package_files
from pathlib import Path

SOURCE = "https://github.com/classimage/classimage"  # also pyproject.toml's project.urls
COMMIT_FILE = "_commit.txt"
COMMIT = re.compile(r"[0-9a-f]{40}")


def commit() -> str | None:
    """The full commit classimage was built from, or None when it cannot be told."""
    try:
        stamped = package_files.files("classimage").joinpath(COMMIT_FILE).read_text().strip()
        if COMMIT.fullmatch(stamped):
            return stamped
    except (FileNotFoundError, OSError):
        pass
    checkout = Path(__file__).resolve().parent.parent
    if not (checkout / ".git").exists():
        return None
    try:
        found = subprocess.run(
            ["git", "-C", str(checkout), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10
        ).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return None
    return found if COMMIT.fullmatch(found) else None


def requirement() -> str | None:
    """This classimage as a pip requirement pinned to its commit, or None."""
    found = commit()
    return f"classimage @ git+{SOURCE}@{found}" if found else None
