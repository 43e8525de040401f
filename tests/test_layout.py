"""The layout is the architecture (docs/design.md): three worlds as three folders, imports only
downward between them, no import circle, each folder's docstring stating its rule; the library's
entry points and the modules' flat names (from before the folders) still work."""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys

import pytest
from conftest import REPO
from classimage.pipeline import userdata

sys.path.insert(0, str(REPO / "benchmarks"))
import layout  # noqa: E402  (benchmarks/layout.py: the import graph it prints figures of)

PACKAGE = REPO / "classimage"
WORLDS = ("pipeline", "cloud", "droplet")


def graph() -> dict[str, set[str]]:
    found = layout.modules(PACKAGE)
    return {name: layout.imports(name, path, set(found)) for name, path in found.items()}


def world(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in WORLDS else "top"


def test_no_import_circle():
    assert layout.circles(graph()) == []


def test_a_circle_is_found():
    assert layout.circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


# What each world may import of the package: the pipeline writes what the droplet's programs read
# (their paths, the plan's format), the cloud takes the pipeline's artifacts, the droplet nothing.
MAY_IMPORT = {
    "pipeline": {"top", "pipeline", "droplet"},
    "cloud": {"top", "pipeline", "droplet", "cloud"},
    "droplet": set(),
}


@pytest.mark.parametrize("name", WORLDS)
def test_a_world_imports_only_the_worlds_below_it(name):
    crossing = [f"{module} imports {target}" for module, targets in sorted(graph().items())
                for target in sorted(targets)
                if world(module) == name and not module.endswith(f".{name}")  # the folder's own __init__
                and world(target) not in MAY_IMPORT[name] and target != "classimage"]
    droplet_own = [c for c in crossing if name == "droplet" and c.split(" imports ")[1].startswith("classimage.droplet")]
    assert [c for c in crossing if c not in droplet_own] == []
    if name == "droplet":  # each program stands alone on the droplet, but the runner's modules are one zip,
        # and so is a program that is a folder of modules (classdata/)
        runner_zip = {f"classimage.droplet.{module}" for module in userdata.RUNNER_MODULES}
        assert [c for c in droplet_own if not set(c.split(" imports ")) <= runner_zip
                and not one_program(*c.split(" imports "))] == []


def one_program(module: str, target: str) -> bool:
    """Whether both are modules of one program's folder under classimage/droplet/."""
    folder = module.rpartition(".")[0]
    return folder.startswith("classimage.droplet.") and target.rpartition(".")[0] == folder


def test_the_shared_facts_import_no_world():
    for module in ("classimage.resources", "classimage.release"):
        assert {world(target) for target in graph()[module]} <= {"top"}, module


def test_the_command_lines_pipeline_verbs_import_nothing_of_the_cloud():
    """cli/ mirrors the worlds: the pipeline's verbs (and what every verb shares) never reach the cloud,
    at the top of a module or inside a function; the cloud's verbs take the pipeline's."""
    for module in ("classimage.cli.pipeline_verbs", "classimage.cli.shared"):
        assert {world(target) for target in graph()[module]} <= {"top", "pipeline", "droplet"}, module
    assert "classimage.cli.pipeline_verbs" in graph()["classimage.cli.cloud_verbs"]


@pytest.mark.parametrize("name", WORLDS)
def test_each_world_states_its_rule(name):
    init = PACKAGE / name / "__init__.py"
    docstring = ast.get_docstring(ast.parse(init.read_text(encoding="utf-8")))
    assert docstring and len(docstring.splitlines()) <= 5


@pytest.mark.parametrize("old, new", [
    ("classimage.spec", "classimage.pipeline.spec"),
    ("classimage.plan", "classimage.pipeline.plan"),
    ("classimage.provision", "classimage.droplet.provision"),
    ("classimage.upkeep", "classimage.cloud.upkeep"),
])
def test_a_flat_name_is_the_very_module_in_its_folder(old, new):
    """In a fresh process, whichever is imported first: one module, one set of globals to patch."""
    check = (f"from classimage import {old.rpartition('.')[2]} as c; import sys;"
             f" assert a is b is c is sys.modules[{old!r}] and b.__spec__.name == {new!r}, (a, b, c)")
    for first, then in ((old, new), (new, old)):
        program = (f"import importlib; x = importlib.import_module({first!r}); y = importlib.import_module({then!r});"
                   f" a, b = (x, y) if {first!r} == {old!r} else (y, x); {check}")
        result = subprocess.run([sys.executable, "-c", program], cwd=REPO, capture_output=True, text=True)
        assert result.returncode == 0, result.stderr


def test_the_old_cloud_module_names_read_from_the_cloud_folder():
    from classimage import cloud
    from classimage.cloud import actions, deploy, wanted
    assert cloud.choose_snapshot is wanted.choose_snapshot and cloud.Up is deploy.Up
    assert cloud.stop is actions.stop and cloud.SHUTDOWN_WAIT == actions.SHUTDOWN_WAIT
    with pytest.raises(AttributeError):
        cloud.no_such_name  # noqa: B018


def test_the_entry_points():
    import classimage
    from classimage.pipeline import artifacts, problems, spec
    assert classimage.render is artifacts.render and classimage.load_file is spec.load_file
    assert classimage.SpecError is problems.SpecError
    loaded = classimage.load_file(REPO / "examples" / "minimal.yaml")
    assert "user-data.yaml" in classimage.render(loaded)
    with pytest.raises(AttributeError):
        classimage.no_such_name  # noqa: B018
    assert importlib.import_module("classimage").__version__


# The tests of the tool as a whole; every other test module lives in the folder of what it tests.
WHOLE = {"test_cli.py", "test_readme.py", "test_layout.py", "test_fresh_debian.py"}


def test_the_tests_mirror_the_layout():
    tests = REPO / "tests"
    folders = {path.parent.name for path in tests.glob("*/test_*.py")}
    assert folders == {*WORLDS, "booted"}, "a folder of tests per world, and booted/ for the test droplets"
    assert {path.name for path in tests.glob("test_*.py")} <= WHOLE, "a world's tests go in its folder"
    for world_name in WORLDS:
        assert (PACKAGE / world_name).is_dir() and list((tests / world_name).glob("test_*.py"))
