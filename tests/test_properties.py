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
import tempfile
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis_jsonschema import from_schema

from conftest import written_files
from classimage import artifacts, packer, plan, provision, resources, spec, userdata, workflows
from classimage.problems import SpecError

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
                            if entry["content"].startswith(("#!/bin/bash", "#!/bin/sh")) and path != course_script})
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
