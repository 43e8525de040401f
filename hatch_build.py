"""Stamps the commit classimage is built from into the wheel and the sdist (classimage/_commit.txt),
so the workflows it renders for course repositories can pin exactly this source (release.py)."""

from __future__ import annotations

import re
import subprocess
import tempfile
from pathlib import Path

from hatchling.builders.hooks.plugin.interface import BuildHookInterface


class CommitHook(BuildHookInterface):
    PLUGIN_NAME = "custom"

    def initialize(self, version: str, build_data: dict) -> None:
        try:
            commit = subprocess.run(["git", "-C", self.root, "rev-parse", "HEAD"], capture_output=True, text=True,
                                    timeout=10).stdout.strip()
        except (OSError, subprocess.TimeoutExpired):
            return
        if not re.fullmatch(r"[0-9a-f]{40}", commit):
            return  # not a checkout (a wheel built from the sdist keeps the sdist's stamp)
        stamp = Path(tempfile.mkdtemp()) / "_commit.txt"
        stamp.write_text(commit + "\n")
        build_data["force_include"][str(stamp)] = "classimage/_commit.txt"
