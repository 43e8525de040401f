"""First boot, when things go wrong (or try to): failures are visible and resumable, and hostile
strings run nothing. Each test boots a fresh test droplet; see test_firstboot.py."""

from __future__ import annotations

import json

import pytest
import yaml

from conftest import CASES, REPO
from firstboot import assert_failed, assert_ready, boot, explain, fetch, records
from classimage import droplet as layout
from classimage import spec
from standin import serve

pytestmark = pytest.mark.droplet


def test_failed_bootstrap_is_visible_and_resumes_after_the_fix(new_droplet):
    droplet = new_droplet()
    serve.fail(droplet.root, True)
    cloud_init, spec_path = boot(droplet, REPO / "examples" / "minimal.yaml")
    status = assert_failed(droplet, "tljh", cloud_init, "failing on request")
    assert fetch(droplet, "/hub/api")[0] != 200
    done_before = {s["name"]: s["finished"] for s in status["steps"] if s["state"] == "done"}

    serve.fail(droplet.root, False)  # the cause is fixed
    resumed = droplet.sh(f"{layout.RUNNER} run", timeout=600)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    # ready, with the failed attempt and the one after the fix as the two bootstrap calls
    status = assert_ready(droplet, spec_path, bootstraps=2, first_boot_clean=False)
    assert status["run"]["number"] == 2
    for step in status["steps"]:
        if step["name"] in done_before:  # finished steps were not redone
            assert step["finished"] == done_before[step["name"]], step


@pytest.mark.parametrize("environment, step, output", [
    ({"apt": ["classimage-no-such-package"]}, "packages", "Unable to locate package classimage-no-such-package"),
    ({"pip": ["classimage-no-such-package-on-pypi"]}, "pip-packages", "No matching distribution found"),
    ({"from_repo": str(CASES / "droplet" / "failing-postbuild")}, "post-build",
     "the course data is not where I expected"),
], ids=["apt-package", "pip-package", "post-build"])
def test_a_failing_step_stops_the_provisioning(new_droplet, environment, step, output):
    droplet = new_droplet()
    source = yaml.safe_load((REPO / "examples" / "minimal.yaml").read_text())
    source["environment"] = environment
    cloud_init, _ = boot(droplet, source)
    assert_failed(droplet, step, cloud_init, output)
    if step == "packages":  # the first step that can fail: TLJH was never bootstrapped
        assert records(droplet, "bootstrap-calls.jsonl") == []


def test_hostile_strings_execute_nothing_in_the_droplet(new_droplet):
    droplet = new_droplet()
    cloud_init, spec_path = boot(droplet, CASES / "droplet" / "hostile.yaml")
    assert cloud_init["status"] == "done", explain(droplet)
    assert_ready(droplet, spec_path)
    assert list(droplet.path("/var/tmp").glob("pwned*")) == []
    assert list(droplet.path("/tmp").glob("pwned*")) == []
    course = spec.load_file(spec_path).spec
    plan_document = json.loads(droplet.path(layout.PLAN).read_text())
    assert plan_document["course"]["name"] == course.course.name
    # pip got the marker intact and judged it (rather than a shell running it)
    assert "Ignoring xvfbwrapper: markers" in droplet.path(layout.LOG).read_text()

