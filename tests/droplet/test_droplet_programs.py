"""The droplet's world (classimage/droplet/): every module there is shipped into the user data as it
is and runs on the droplet, where the package is not installed. So none imports the package, and
none imports beyond the standard library of the droplet's Python 3.9, but for the hub's programs,
which run with the hub's own Python and may use the hub's packages, for the runner's modules,
which are shipped together (one zip) and may import each other, and only each other, and for a
program that is a folder of modules (classdata/: one zip too), whose modules may import each
other, relatively (in the zip and in the package alike), and only each other."""

from __future__ import annotations

import ast
import shutil
import sys
from pathlib import Path

import pytest
from conftest import REPO
from classimage.pipeline.userdata import RUNNER_MODULES

DROPLET = REPO / "classimage" / "droplet"
PROGRAMS = sorted(path for path in DROPLET.rglob("*.py") if path != DROPLET / "__init__.py")
# Python 3.10 and 3.12 added no module; 3.11 added tomllib. The running Python's list, less those.
STDLIB_39 = frozenset(sys.stdlib_module_names) - {"tomllib"}
# Run by the hub's Python (TLJH's hub environment; a z2jh hub image): JupyterHub and the
# authenticators TLJH's requirements-hub-env.txt installs, and what those depend on.
HUB_PROGRAMS = {"hubaccounts", "hubguards"}
HUB_PACKAGES = frozenset({"jupyterhub", "nativeauthenticator", "firstuseauthenticator", "tornado", "traitlets", "bcrypt"})


def imported(source: str) -> list[tuple[int, str]]:
    """(line, top-level name) of every import anywhere in `source`; a relative import is named by
    its dots and what it names (`.provision`, `..`), a dynamic one (__import__,
    importlib.import_module) by the call."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name.partition(".")[0]) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level and node.module:
                found.append((node.lineno, "." * node.level + node.module))
            elif node.level:
                found += [(node.lineno, "." * node.level + alias.name) for alias in node.names]
            else:
                found.append((node.lineno, (node.module or "").partition(".")[0]))
        elif isinstance(node, ast.Call):
            called = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", None)
            if called in ("__import__", "import_module"):
                found.append((node.lineno, f"{called}()"))
    return found


def refused(path: Path) -> list[str]:
    allowed = STDLIB_39 | (HUB_PACKAGES if path.stem in HUB_PROGRAMS else frozenset())
    if path.stem in RUNNER_MODULES:  # as a program, from its zip (top level); in the package, relative
        allowed |= {name for sibling in RUNNER_MODULES for name in (sibling, "." + sibling)} - {path.stem}
    if path.parent != DROPLET and (path.parent / "__init__.py").exists():  # a program's own folder
        allowed |= {"." + sibling.stem for sibling in path.parent.glob("*.py")} - {"." + path.stem, ".__init__"}
    return [f"{path.name}:{line} imports {name}" for line, name in imported(path.read_text(encoding="utf-8"))
            if name not in allowed or name == "classimage"]


def name(path: Path) -> str:
    return str(path.relative_to(DROPLET).with_suffix(""))


def test_the_droplet_folder_holds_the_programs():
    assert {name(path) for path in PROGRAMS} >= {*RUNNER_MODULES, "classdata/program", "hubaccounts", "hubguards"}


@pytest.mark.parametrize("path", PROGRAMS, ids=name)
def test_a_droplet_program_imports_only_the_standard_library(path):
    assert refused(path) == []


@pytest.mark.parametrize("line", [
    "from classimage import plan",
    "import classimage.droplet.provision",
    "from classimage.droplet import provision",
    "from . import classdata",  # no sibling of the runner's zip: not on the droplet beside it
    "from .classdata import main",
    "import hubguards",
    "from .. import plan",
    "from ..pipeline import plan",
    "from . import statusservice, hubaccounts",
    "import yaml",
    "import tomllib",
    "from jupyterhub import orm",  # the runner is no hub program
    "def later():\n    import jsonschema",
    "importlib.import_module('yaml')",
    "__import__('requests')",
])
def test_an_import_beyond_it_is_refused(tmp_path, line):
    program = tmp_path / "runner.py"
    program.write_text((DROPLET / "runner.py").read_text(encoding="utf-8") + "\n" + line + "\n")
    assert len(refused(program)) == 1


@pytest.mark.parametrize("line", ["from . import provision", "from .provision import PLAN", "import provision",
                                  "from statusservice import serve"])
def test_the_runners_modules_may_import_each_other(tmp_path, line):
    program = tmp_path / "runner.py"
    program.write_text((DROPLET / "runner.py").read_text(encoding="utf-8") + "\n" + line + "\n")
    assert refused(program) == []


def test_no_other_program_may_import_the_runners_modules(tmp_path):
    program = tmp_path / "classdata.py"
    program.write_text("from . import provision\nimport statusservice\n")
    assert refused(program) == ["classdata.py:1 imports .provision", "classdata.py:2 imports statusservice"]


def test_the_hub_programs_may_use_the_hubs_packages_but_not_others(tmp_path):
    program = tmp_path / "hubguards.py"
    program.write_text("import bcrypt\nfrom jupyterhub import orm\nimport kubernetes\nfrom classimage import plan\n")
    assert refused(program) == ["hubguards.py:3 imports kubernetes", "hubguards.py:4 imports classimage"]


@pytest.mark.parametrize("line, allowed", [
    ("from . import record", True),
    ("from .shared import DataError, run", True),
    ("from . import accounts, record", True),
    ("import record", False),  # at the top of the zip there is only the package, classdata
    ("from classdata import record", False),  # in the package it is classimage.droplet.classdata
    ("from . import runner", False),  # the runner's module, not this program's
    ("from .. import provision", False),
    ("from ..provision import PLAN", False),
    ("from . import nothing_here", False),
    ("import yaml", False),
])
def test_a_program_of_several_modules_imports_only_its_own(tmp_path, line, allowed):
    folder = shutil.copytree(DROPLET / "classdata", tmp_path / "classdata")
    module = folder / "devices.py"
    module.write_text(module.read_text(encoding="utf-8") + "\n" + line + "\n")
    assert len(refused(module)) == (0 if allowed else 1)
