"""The README stays true: its two opening commands, the commands it shows, and its table of steps."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import replace

from conftest import REPO
from classimage import plan, spec

README = (REPO / "README.md").read_text()


def bash_blocks() -> list[str]:
    return re.findall(r"```bash\n(.*?)```", README, re.DOTALL)


def test_readme_opens_with_the_two_commands():
    """Install-and-render, then the tests (tests/test_fresh_debian.py runs the first on a fresh Debian 12)."""
    first = README.split("```bash\n", 1)[1].split("```", 1)[0]
    install, tests = first.splitlines()
    parts = install.split(" && ")
    assert "python3 -m venv .venv" in parts and ". .venv/bin/activate" in parts and "pip install ." in parts
    assert re.fullmatch(r"python -m classimage render examples/\w+\.yaml --out build/", parts[-1])
    assert tests == "bash .ci/run"  # as root, as the README says
    assert "python -m pytest" in (REPO / ".ci" / "run").read_text()


def test_instructor_commands_work(tmp_path):
    """Run the README's instructor blocks in a copy of the examples (pip install is the one step
    left out: the tests already run classimage from this checkout)."""
    shutil.copytree(REPO / "examples", tmp_path / "examples")
    first, *rest = bash_blocks()
    render = first.splitlines()[0].split(" && ")[-1]
    script = "set -euo pipefail\n" + render + "\n" + "".join(rest)
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO), "HOME": str(tmp_path / "home"),
           "CLASSIMAGE_SECRETS": os.environ["CLASSIMAGE_SECRETS"]}
    script = script.replace("python -m classimage", f"{sys.executable} -m classimage")
    result = subprocess.run(["bash", "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "build" / "user-data.yaml").read_text().startswith("#cloud-config")
    assert not (tmp_path / "home").exists()  # the admin's hash went to the store named for the test


def test_step_table_lists_the_steps_in_order_with_their_stages():
    cell = r" *(x?) *\|"
    rows = re.findall(rf"^\| `([a-z-]+)` \|[^\n]*\|{cell}{cell}{cell}[^\n]*\|$", README, re.MULTILINE)
    underworld = spec.load_file(REPO / "examples" / "underworld.yaml").spec
    course = replace(underworld, network=replace(underworld.network, proxy="http://proxy.example.edu:3128"))
    every: dict[str, set] = {}  # every step any course can have, in order, with its stages
    for step in plan.steps(course, None):
        every.setdefault(step.name, set()).update(step.stages)
    assert [row[0] for row in rows] == list(every)
    for name, full, bake, boot in rows:
        assert {s for s, mark in ((plan.FULL, full), (plan.BAKE, bake), (plan.BOOT, boot)) if mark} == every[name], name
