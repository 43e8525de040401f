"""The attack of issue 16, carried out: a course repository whose binder/postBuild is a symlink to
/proc/self/environ, rendered by a process that holds the DigitalOcean token in its environment (the
deploy workflow renders with DIGITALOCEAN_TOKEN set). Before the fix the token landed in
user-data.yaml and bake/user-data.yaml, and so in the snapshot, readable by every student. Now the
spec does not validate, nothing is written, nothing is sent, and the token is nowhere.

Through the real command line, and through the deploy workflow's own commands as rendered (run by
bash as GitHub's runner would, against the DigitalOcean API stand-in)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

import course_repo
import do_standin
from conftest import CASES, REPO, cli
from classimage.pipeline import workflows

CANARY = "dop_v1_" + "c4n4ry" * 10  # what a DigitalOcean token looks like
REFUSED = "repo/binder/postBuild: cannot read it: it is a symlink to /proc/self/environ, which leads outside the " \
          "course repository"


def anywhere(folder: Path) -> list[str]:
    """Every file under `folder` that holds the canary (as text, or in any bytes)."""
    return [str(p) for p in folder.rglob("*") if p.is_file() and not p.is_symlink() and CANARY.encode() in p.read_bytes()]


@pytest.fixture
def attacked(tmp_path) -> Path:
    """A course repository (spec beside its binder files) whose postBuild is the attacker's symlink."""
    repository = tmp_path / "course"
    shutil.copytree(CASES / "tljh" / "from-repo", repository)
    post_build = repository / "repo" / "binder" / "postBuild"
    post_build.unlink()
    post_build.symlink_to("/proc/self/environ")
    return repository


def test_the_cli_refuses_a_postbuild_symlink_to_the_environment(attacked, tmp_path):
    out = tmp_path / "build"
    for verb in (["validate"], ["render", "--out", str(out)], ["render", "--stdout"]):
        result = cli(*verb[:1], str(attacked / "spec.yaml"), *verb[1:], cwd=attacked,
                     env={"DIGITALOCEAN_TOKEN": CANARY})
        stderr = result.stderr.decode()
        assert result.returncode == 1, stderr
        assert f"{attacked}/{REFUSED}" in stderr and "nothing written" in stderr
        assert CANARY not in stderr and CANARY.encode() not in result.stdout
    assert not out.exists()
    assert anywhere(tmp_path) == []


def test_the_deploy_workflow_refuses_it_before_anything_is_sent(attacked, tmp_path, monkeypatch):
    """The deploy job's two commands (bake if missing, then up), as rendered into the course
    repository, with the token in their environment as GitHub gives it: both stop at the spec; the
    stand-in sees no request; the token is in no file of the runner's."""
    if os.geteuid() != 0:
        pytest.skip("the stand-in's volumes are loop devices (root)")
    attacked_target = os.readlink(attacked / "repo" / "binder" / "postBuild")
    (attacked / "repo" / "binder" / "postBuild").unlink()  # the workflows render from a valid spec
    (attacked / "repo" / "binder" / "postBuild").write_text("#!/bin/bash\necho ready\n")
    rendered = cli("render", str(attacked / "spec.yaml"), "--out", str(tmp_path / "instructor-build"),
                   "--workflows", str(attacked))
    assert rendered.returncode == 0, rendered.stderr.decode()
    (attacked / "repo" / "binder" / "postBuild").unlink()  # then the attacker's commit
    (attacked / "repo" / "binder" / "postBuild").symlink_to(attacked_target)
    deploy = yaml.safe_load((attacked / workflows.FOLDER / "classimage-deploy.yml").read_text())
    steps = deploy["jobs"]["deploy"]["steps"][-2:]
    assert [s["name"] for s in steps] == ["Bake a snapshot if the course's software changed",
                                          "Bring the class's server up to date"]
    runner_temp = tmp_path / "runner-temp"
    runner_temp.mkdir()
    secrets = {"${{ secrets.DIGITALOCEAN_TOKEN }}": CANARY,
               "${{ secrets.CLASSIMAGE_ADMIN_HASHES }}": json.dumps({"alice": "$2b$12$" + "a" * 53})}
    monkeypatch.setattr(do_standin, "TOKEN", CANARY)  # the account's real token: were the spec taken, all would go on
    ca = course_repo.TestCA(tmp_path / "ca")
    machines = do_standin.Machines(tmp_path / "cloud", layers=lambda: pytest.fail("no droplet may boot"))
    with do_standin.StandIn(tmp_path / "cloud", machines, ca) as api:
        bundle = do_standin.ca_bundle(ca, tmp_path)
        for step in steps:
            env = {"PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}", "PYTHONPATH": str(REPO),
                   "RUNNER_TEMP": str(runner_temp), "DIGITALOCEAN_API_URL": api.url, "REQUESTS_CA_BUNDLE": str(bundle),
                   "CLASSIMAGE_SECRETS": str(tmp_path / "no-store"),
                   **{name: secrets.get(value, value) for name, value in step["env"].items()}}
            result = subprocess.run(["bash", "-e", "-c", step["run"]], cwd=attacked, env=env, capture_output=True,
                                    text=True, timeout=300)
            assert result.returncode == 1, (step["name"], result.stdout + result.stderr)
            assert f"{REFUSED}" in result.stderr and CANARY not in result.stdout + result.stderr
        assert api.requests == []  # nothing reached DigitalOcean: no snapshot asked for, no droplet made
    assert anywhere(tmp_path) == []
