"""The property behind "no spec can break a droplet or the tool": for specs generated from the
course schema itself (hypothesis-jsonschema), whatever validates renders every artifact, and each
artifact passes its real validator: cloud-init's schema (every user data), shellcheck (every script
the user data writes), `packer validate` (the template), GitHub's workflow schema (the workflows).
What does not validate is refused with problems, never an exception.

CLASSIMAGE_PROPERTY_EXAMPLES sets how many specs are generated (default 100); the count of those that
validated is reported at the end of the run."""

from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from hypothesis_jsonschema import from_schema

from conftest import CASES, REPO, written_files
from classimage import resources
from classimage.pipeline import artifacts, packer, plan, spec, userdata, workflows
from classimage.droplet import provision
from classimage.pipeline.problems import SpecError

EXAMPLES = int(os.environ.get("CLASSIMAGE_PROPERTY_EXAMPLES", "100"))
COUNTS = {"generated": 0, "valid": 0, "refused": 0}
HASH = "$2b$12$" + "a" * 53  # an admin's password hash, as the store keeps it


def generating_schema() -> dict:
    """The course schema, less the keys that name files beside the spec (a course repository, CA
    files: generated names find none, so nothing generated with them could validate)."""
    schema = copy.deepcopy(resources.schema())
    del schema["properties"]["environment"]["properties"]["from_repo"]
    del schema["properties"]["network"]["properties"]["ca_certificates"]
    return schema


def shellcheck(scripts: dict[str, str], folder: Path) -> None:
    paths = []
    for number, (name, content) in enumerate(sorted(scripts.items())):
        path = folder / f"{number:03d}.sh"
        path.write_text(content)
        paths.append(str(path))
    result = subprocess.run(["shellcheck", "--severity=style", *paths], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-3000:]


def cloud_init(text: str, folder: Path, name: str) -> None:
    path = folder / name
    path.write_text(text)
    result = subprocess.run(["cloud-init", "schema", "--config-file", str(path)], capture_output=True, text=True)
    assert result.returncode == 0 and result.stderr == "", result.stdout + result.stderr


@pytest.fixture(scope="module")
def tools():
    missing = [tool for tool in ("cloud-init", "shellcheck", "packer", "check-jsonschema") if not shutil.which(tool)]
    assert not missing, f"install {' '.join(missing)} (.ci/run does)"


@settings(max_examples=EXAMPLES, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large,
                                 HealthCheck.function_scoped_fixture])  # record_property only accumulates
@given(data=from_schema(generating_schema()))
@example(data={"course": {"name": "x", "slug": "fi"}, "hub": {"admins": ["o-4rxvnv3u0"]}})  # CI found: --course fi
def test_whatever_validates_renders_and_passes_the_real_validators(tools, data, record_property):
    COUNTS["generated"] += 1
    record_property("property-counts", json.dumps(COUNTS))
    raw = yaml.safe_dump(data, allow_unicode=True).encode()
    try:
        loaded = spec.load_bytes(raw, "spec.yaml")
    except SpecError as error:
        COUNTS["refused"] += 1
        assert error.problems and all(p.format("spec.yaml").startswith("spec.yaml") for p in error.problems)
        return
    hashes = {name: HASH for name in loaded.spec.hub.admins}
    try:
        files = artifacts.render(loaded, hashes)
    except userdata.TooLarge:  # `validate` reports this one as a problem of the spec (test_cli)
        COUNTS["refused"] += 1
        return
    COUNTS["valid"] += 1
    record_property("property-counts", json.dumps(COUNTS))
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        scripts = {}
        course_script = plan.File("post-build", provision.POST_BUILD, "").staged  # the course's own, not ours
        for stage, name in artifacts.USER_DATA.items():
            cloud_init(files[name], folder, f"{stage}.yaml")
            scripts.update({f"{stage}:{path}": entry["content"] for path, entry in written_files(files[name]).items()
                            if isinstance(entry["content"], str)  # not the runner's zip, whose files are entries too
                            and entry["content"].startswith(("#!/bin/bash", "#!/bin/sh")) and path != course_script})
        shellcheck(scripts, folder)
        out = folder / "out"
        for name, text in files.items():  # as render writes them: the template names ../bake/user-data.yaml
            (out / name).parent.mkdir(parents=True, exist_ok=True)
            (out / name).write_text(text)
        result = subprocess.run(["packer", "validate", str(out / artifacts.PACKER / packer.TEMPLATE)], capture_output=True,
                                text=True, env={**os.environ, packer.TOKEN: packer.PLACEHOLDER_TOKEN})
        assert result.returncode == 0, result.stdout + result.stderr
        repository = folder / "course"
        repository.mkdir()
        (repository / "spec.yaml").write_bytes(raw)
        flows = workflows.render(loaded.spec, repository / "spec.yaml", repository)
        for name, text in flows.items():
            (repository / name).parent.mkdir(parents=True, exist_ok=True)
            (repository / name).write_text(text)
        result = subprocess.run(["check-jsonschema", "--builtin-schema", "vendor.github-workflows",
                                 *[str(repository / name) for name in flows]], capture_output=True, text=True)
        assert result.returncode == 0, result.stdout + result.stderr


# -- no secret of the rendering machine reaches an artifact ----------------------------------------------------
# Generated specs with generated course repositories whose files may be symlinks to /proc/self/environ or to a
# secret outside the repository, FIFOs, symlinked folders, or plain files, rendered by the real command line in a
# process whose environment holds a token-shaped canary (as the deploy workflow's holds DIGITALOCEAN_TOKEN): the
# canary must appear in no artifact, no workflow and no line printed, and nothing may hang.

CANARY = "dop_v1_" + "ca9a7y" * 10
CANARY_COUNTS = {"generated": 0, "rendered": 0, "refused": 0}
BINDER_FILES = ("environment.yml", "requirements.txt", "apt.txt", "runtime.txt", "postBuild", "start")
BENIGN = {"environment.yml": "dependencies:\n  - numpy\n", "requirements.txt": "jupytext\n", "apt.txt": "git\n",
          "runtime.txt": "python-3.11\n", "postBuild": "#!/bin/bash\necho built\n", "start": "#!/bin/bash\nexec \"$@\"\n"}
# How a file may be made: its own text, or ways to reach what is not the repository's.
KINDS = ("absent", "plain", "link-inside", "link-environ", "link-secret", "link-secret-absolute", "link-through-folder",
         "fifo")
RENDER = """\
import contextlib, io, json, sys
from classimage import cli
for line in sys.stdin:
    request = json.loads(line)
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        status = cli.main(["render", request["spec"], "--out", request["out"], "--workflows", request["repository"]])
    print(json.dumps({"status": status, "output": out.getvalue()}), flush=True)
"""


@pytest.fixture(scope="module")
def renderer():
    """`classimage render` in one process started with the canary in its environment (so that its
    /proc/self/environ holds it), taking one course after another."""
    import select

    process = subprocess.Popen([sys.executable, "-c", RENDER], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                               text=True, env={**os.environ, "PYTHONPATH": str(REPO), "DIGITALOCEAN_TOKEN": CANARY,
                                               "CLASSIMAGE_DEBUG": ""})

    def render(spec_path: Path, out: Path, repository: Path) -> dict:
        process.stdin.write(json.dumps({"spec": str(spec_path), "out": str(out), "repository": str(repository)}) + "\n")
        process.stdin.flush()
        ready, _, _ = select.select([process.stdout], [], [], 120)
        assert ready, "render hung (a FIFO opened, or a device read?)"
        return json.loads(process.stdout.readline())

    yield render
    process.stdin.close()
    process.wait(timeout=30)


def make(path: Path, kind: str, content: str, secret: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if kind == "plain":
        path.write_text(content)
    elif kind == "link-inside":
        (path.parent / f".{path.name}.real").write_text(content)
        path.symlink_to(f".{path.name}.real")
    elif kind == "link-environ":
        path.symlink_to("/proc/self/environ")
    elif kind == "link-secret":
        path.symlink_to(os.path.relpath(secret, path.parent))
    elif kind == "link-secret-absolute":
        path.symlink_to(secret)
    elif kind == "link-through-folder":
        (path.parent / "up").symlink_to("..", target_is_directory=True) if not (path.parent / "up").exists() else None
        path.symlink_to(os.path.join("up", os.path.relpath(secret, path.parent.parent)))
    elif kind == "fifo":
        os.mkfifo(path)


@settings(max_examples=EXAMPLES, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large,
                                 HealthCheck.function_scoped_fixture])
@given(data=from_schema(generating_schema()),
       # half the repositories are all the course's own (so that many render, canary and all), half anything
       files=st.one_of(st.fixed_dictionaries({name: st.sampled_from(KINDS[:3]) for name in BINDER_FILES}),
                       st.fixed_dictionaries({name: st.sampled_from(KINDS) for name in BINDER_FILES})),
       folder=st.sampled_from(["", "binder/", ".binder/", "binder-linked-out/"]),
       ca=st.sampled_from(("absent", "plain", "absent", "plain", "link-environ", "link-secret", "link-through-folder",
                           "fifo")))
def test_no_secret_of_the_rendering_machine_reaches_an_artifact(renderer, request, data, files, folder, ca):
    CANARY_COUNTS["generated"] += 1
    with tempfile.TemporaryDirectory() as scratch:
        secret = Path(scratch) / "secret"
        secret.write_text(CANARY + "\n")  # a file of the instructor's (or the runner's), beside the repository
        course = Path(scratch) / "course"
        repo = course / "repo"
        repo.mkdir(parents=True)
        if folder == "binder-linked-out/":  # binder/ itself a link to a folder outside, full of secrets
            outside = Path(scratch) / "outside"
            outside.mkdir()
            for name in BINDER_FILES:
                (outside / name).write_text(CANARY + "\n")
            (repo / "binder").symlink_to(outside, target_is_directory=True)
        for name, kind in files.items():
            if kind != "absent" and folder != "binder-linked-out/":
                make(repo / folder / name, kind, BENIGN[name], secret)
        environment = data.setdefault("environment", {})
        environment["from_repo"] = "repo"
        environment.pop("post_build", None)  # the repository's postBuild is the one under test
        if ca != "absent":
            data.setdefault("network", {})["ca_certificates"] = ["ca.pem"]
            make(course / "ca.pem", ca, (CASES / "droplet" / "test-ca.pem").read_text(), secret)
        spec_path = course / "spec.yaml"
        spec_path.write_text(yaml.safe_dump(data, allow_unicode=True))
        result = renderer(spec_path, Path(scratch) / "out", course)
        assert result["status"] in (0, 1), result["output"]  # rendered, or refused with problems
        CANARY_COUNTS["rendered" if result["status"] == 0 else "refused"] += 1
        assert CANARY not in result["output"]
        leaked = [str(p) for p in Path(scratch).rglob("*") if p.is_file() and not p.is_symlink() and p != secret
                  and p.parent.name != "outside" and CANARY.encode() in p.read_bytes()]
        for user_data in (Path(scratch) / "out").rglob("user-data.yaml"):  # what is shipped compressed, too
            leaked += [f"{user_data}:{path}" for path, entry in written_files(user_data.read_text()).items()
                       if CANARY.encode() in (entry["content"] if isinstance(entry["content"], bytes)
                                              else entry["content"].encode())]
        assert leaked == [], (files, folder, ca)
    text = (f"canary property test: {CANARY_COUNTS['generated']} cases generated (spec and repository), "
            f"{CANARY_COUNTS['rendered']} rendered, {CANARY_COUNTS['refused']} refused; the canary in none")
    request.node.user_properties[:] = [p for p in request.node.user_properties if p[0] != "figure"] + [("figure", text)]
