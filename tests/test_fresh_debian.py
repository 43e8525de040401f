"""The README's two commands, as written, on a fresh Debian 12 machine (tests/freshmachine.py): the
first installs what stock Debian lacks, makes the virtual environment, installs classimage from the
checkout and renders the bundled example, byte for byte what this checkout renders here; the second
installs what the tests need and runs them."""

from __future__ import annotations

import re

import pytest

from conftest import EXAMPLES, cli
from freshmachine import CHECKOUT, machine, readme_commands, run_timed

pytestmark = pytest.mark.droplet


def test_the_readmes_first_command_works_on_a_fresh_debian_12(image, tmp_path, record_property):
    first = readme_commands()[0]
    with machine(tmp_path / "fresh", image) as droplet:
        stock = droplet.sh("dpkg-query --show --showformat='${db:Status-Abbrev}' python3-venv python3-pip")
        assert "ii" not in stock.stdout, "the image is not stock Debian: it has python3-venv or pip already"
        assert droplet.sh("python3 -m venv /tmp/probe").returncode != 0  # what a newcomer meets without it
        result, times = run_timed(droplet, first)
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        written = droplet.path(f"{CHECKOUT}/build/user-data.yaml").read_text()
    example = next(path for path in EXAMPLES if path.name in first)
    assert written == cli("render", str(example), "--stdout").stdout.decode()
    record_property("figure", "README's first command on a fresh Debian 12: " + ", ".join(
        f"{' '.join(part.split()[:2])} {seconds:.1f} s" for part, seconds in times))


def test_the_readmes_test_command_works_on_a_fresh_debian_12(image, tmp_path, record_property):
    """`bash .ci/run` as root installs everything the tests need on stock Debian 12 (apt, the locked
    Python packages, npm's GitHub expression evaluator: stock Debian has no npm) and runs them: here
    the ruff, format and mypy checks, and the tests of the README and the workflows (the evaluator's)."""
    command = (readme_commands()[1] + " tests/test_readme.py tests/pipeline/test_workflows.py -q -p no:cacheprovider"
               " -m 'not droplet'")
    with machine(tmp_path / "fresh", image) as droplet:
        assert droplet.sh("command -v npm").returncode != 0  # stock: the test command must bring it
        result, times = run_timed(droplet, command, timeout=3600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert re.search(r"^\d+ passed", result.stdout, re.MULTILINE) and "failed" not in result.stdout
    record_property("figure", f"README's test command on a fresh Debian 12 (installs, checks, two test files): "
                              f"{times[0][1]:.0f} s")
