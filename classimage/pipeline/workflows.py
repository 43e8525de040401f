"""GitHub Actions workflows for a course repository: validate the spec on pull requests, deploy on
every push to the default branch (bake a snapshot when the software changed, then `classimage up`),
bake a snapshot by hand, check the hub every 30 minutes, and back up the class's data every night."""

from __future__ import annotations

import os
import re
from pathlib import Path

from classimage import __version__, release
from classimage.droplet import provision
from classimage.pipeline import templating
from classimage.pipeline.model import Spec

FOLDER = ".github/workflows"
# Third-party actions, pinned to full commit SHAs: (uses, the release it is).
CHECKOUT = ("actions/checkout@11bd71901bbe5b1630ceea73d27597364c9af683", "v4.2.2")
SETUP_PYTHON = ("actions/setup-python@0b93645e9fea7318ecaed2b359559ac225c90a2b", "v5.3.0")
# The official repo2docker action (a container action: its Dockerfile builds on repo2docker's image).
REPO2DOCKER = ("jupyterhub/repo2docker-action@daa77f929833dcd836a711bc7837af945e9d27cc", "main, 2024-10-20")
IMAGE_NAME = "classimage-image"  # written for the z2jh target, in place of the droplet's workflows
NAMES = ("classimage-validate", "classimage-snapshot", "classimage-deploy", "classimage-health", "classimage-backup")
_PLAIN = re.compile(r"^[A-Za-z0-9._/*+-]+$")
ENVIRONMENT_FILES = ("environment.yml", "requirements.txt", "apt.txt", "runtime.txt", "postBuild")


class WorkflowError(Exception):
    pass


def _inside(path: Path, repository: Path, what: str) -> str:
    """`path` relative to the repository, as plain text: GitHub would evaluate `${{` anywhere."""
    relative = os.path.relpath(path.resolve(), repository.resolve())
    if relative.startswith(".."):
        raise WorkflowError(f"the {what} ({path}) is not inside the course repository {repository}")
    if not _PLAIN.fullmatch(relative):
        raise WorkflowError(
            f"the {what}'s path {relative!r} has characters a workflow cannot hold safely: "
            "use letters, digits, . _ - and /"
        )
    return relative


def requirement(spec: Spec) -> str:
    """What the workflows install classimage from: the spec's pinned source, else this
    classimage's own commit. Never a bare name: whoever registered it would run code next to the
    DigitalOcean token."""
    found = spec.workflows.classimage or release.requirement()
    if found is None:
        raise WorkflowError(
            "cannot tell which commit this classimage was built from (no git checkout, no stamp): "
            "set workflows.classimage in the spec to a pinned source, e.g. "
            f"`classimage @ git+{release.SOURCE}@COMMIT`"
        )
    return found


def with_extra(requirement: str, extra: str) -> str:
    """The same source with an extra: `classimage[cloud] @ git+...`, `./x.whl[cloud]`."""
    if requirement.startswith("classimage @ "):
        return f"classimage[{extra}] @ " + requirement[len("classimage @ ") :]
    return f"{requirement}[{extra}]"


def _watched(spec: Spec, spec_path: Path, repository: Path) -> tuple[str, list[str]]:
    """The spec's path in the repository, and the paths whose change means a new environment."""
    spec_relative = _inside(spec_path, repository, "spec")
    paths = [spec_relative]
    if spec.environment.from_repo:
        folder = _inside(spec_path.parent / spec.environment.from_repo, repository, "environment.from_repo")
        prefix = "" if folder == "." else folder + "/"
        paths += [f"{prefix}binder/**", f"{prefix}.binder/**"] + [prefix + name for name in ENVIRONMENT_FILES]
    return spec_relative, paths


def render(spec: Spec, spec_path: Path, repository: Path) -> dict[str, str]:
    """The workflow files, by path relative to the repository."""
    spec_relative, paths = _watched(spec, spec_path, repository)
    values = {
        "version": __version__,
        "checkout": CHECKOUT,
        "setup_python": SETUP_PYTHON,
        "requirement": requirement(spec),
        "requirement_cloud": with_extra(requirement(spec), "cloud"),
        "spec": spec_relative,
        "paths": paths,
        "hostname": spec.https.hostname,
        "status_path": provision.SERVICE_PATH,
    }
    return {f"{FOLDER}/{name}.yml": templating.render(f"workflows/{name}.yaml.j2", **values) for name in NAMES}


def image(spec: Spec, spec_path: Path, repository: Path) -> dict[str, str]:
    """The z2jh target's workflow: the course's environment as a container image, built by the
    repo2docker action from the files `render --target z2jh` writes, pushed to z2jh.image."""
    from classimage.pipeline import z2jh

    if spec.z2jh.image is None:
        raise WorkflowError("the image workflow needs z2jh.image in the spec: where it pushes the image")
    spec_relative, paths = _watched(spec, spec_path, repository)
    registry, repository_name = spec.z2jh.image.split("/", 1)
    text = templating.render(
        f"workflows/{IMAGE_NAME}.yaml.j2",
        version=__version__,
        checkout=CHECKOUT,
        setup_python=SETUP_PYTHON,
        repo2docker=REPO2DOCKER,
        repo2docker_version=z2jh.REPO2DOCKER,
        requirement=requirement(spec),
        spec=spec_relative,
        paths=paths,
        image=spec.z2jh.image,
        registry=registry,
        repository=repository_name,
    )
    return {f"{FOLDER}/{IMAGE_NAME}.yml": text}
