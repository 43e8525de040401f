"""Packer: the template that bakes the course into a DigitalOcean snapshot, and running Packer
(init, validate, build) as a subprocess, streaming its progress and reading its artifacts from
`-machine-readable` output. No Packer library: the packer binary is the interface."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from classimage.droplet import provision
from classimage.pipeline import plan, templating
from classimage.pipeline.model import Spec

TEMPLATE = "classimage.pkr.hcl"
PLUGINS = "plugins.pkr.hcl"  # required_plugins, which Packer 1.6 rejects: a file of its own
TOKEN = "DIGITALOCEAN_TOKEN"
PLACEHOLDER_TOKEN = "classimage-dry-run-placeholder"  # lets `validate` check a template offline


class PackerError(Exception):
    pass


def files(spec: Spec) -> dict[str, str]:
    """The packer/ folder: name -> content."""
    slug = spec.course.slug
    template = templating.render(
        f"packer/{TEMPLATE}.j2",
        image=spec.droplet.image,
        region=spec.droplet.region,
        size=spec.droplet.size,
        snapshot_regions=sorted(set(spec.droplet.snapshot_regions) | {spec.droplet.region}),
        slug=slug,
        bake_digest=plan.bake_digest(spec),
        droplet_name=f"{slug}-bake",
        # Not the course's tag (classimage-SLUG, which `up`, `status` and `down` find the class's droplets
        # by): a build running beside them is not the class's. A colon is in no course's tag.
        tags=["classimage", f"classimage-bake:{slug}"],
        finish_bake=f"{provision.RUNNER} finish-bake",
    )
    return {TEMPLATE: template, PLUGINS: templating.static(f"packer/{PLUGINS}")}


# ---------------------------------------------------------------------------------------------
# Running packer


@dataclass(frozen=True)
class Event:
    """One line of `packer -machine-readable`: timestamp,target,type,data..."""

    target: str
    kind: str
    data: tuple[str, ...]


def parse(line: str) -> Event | None:
    """A machine-readable line, with Packer's escapes undone (commas, newlines); None if not one."""
    parts = line.rstrip("\n").split(",")
    if len(parts) < 3 or not parts[0].isdigit():
        return None
    data = tuple(p.replace("%!(PACKER_COMMA)", ",").replace("\\n", "\n").replace("\\r", "\r") for p in parts[3:])
    return Event(target=parts[1], kind=parts[2], data=data)


@dataclass
class BuildResult:
    returncode: int
    artifacts: dict[str, str] = field(default_factory=dict)  # build (target) -> artifact id
    errors: list[str] = field(default_factory=list)


def version(packer: str = "packer") -> tuple[int, ...]:
    result = _run([packer, "version"])
    match = re.search(r"v?(\d+)\.(\d+)\.(\d+)", result.stdout)
    if not match:
        raise PackerError(f"cannot tell the version of {packer} from {result.stdout.strip()!r}")
    return tuple(int(n) for n in match.groups())


def _run(argv: list[str], env: dict | None = None) -> subprocess.CompletedProcess:
    try:
        result = subprocess.run(argv, capture_output=True, text=True, env=env)
    except FileNotFoundError:
        raise PackerError(
            f"{argv[0]} is not installed (https://developer.hashicorp.com/packer/install; "
            "Debian: apt-get install packer)"
        ) from None
    if result.returncode != 0:
        tail = "\n".join((result.stdout + result.stderr).strip().splitlines()[-15:])
        raise PackerError(f"`{' '.join(argv)}` failed:\n{tail}")
    return result


def target(folder: Path, packer_version: tuple[int, ...]) -> Path:
    """What to hand Packer: the folder (with the plugin requirement) for 1.7+, the template alone
    for 1.6, whose built-in builder rejects the requirement."""
    return folder if packer_version >= (1, 7) else folder / TEMPLATE


def validate(folder: Path, *, packer: str = "packer", env: dict | None = None) -> Path:
    """`packer init` (1.7+) and `packer validate`; returns what to build. Raises PackerError."""
    env = dict(os.environ if env is None else env)
    if not env.get(TOKEN):
        env[TOKEN] = PLACEHOLDER_TOKEN  # validate checks the template, never calls the API
    what = target(folder, version(packer))
    if what == folder:
        _run([packer, "init", str(folder)], env)
    _run([packer, "validate", str(what)], env)
    return what


def build(
    what: Path, *, packer: str = "packer", env: dict | None = None, show: Callable[[str], None] = print
) -> BuildResult:
    """`packer build -machine-readable`, passing Packer's messages to `show` as they come."""
    argv = [packer, "build", "-machine-readable", "-color=false", str(what)]
    try:
        process = subprocess.Popen(
            argv,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=None if env is None else dict(env),
            bufsize=1,
        )
    except FileNotFoundError:
        raise PackerError(f"{packer} is not installed") from None
    result = BuildResult(returncode=0)
    assert process.stdout is not None  # stdout=PIPE
    for line in process.stdout:
        event = parse(line)
        if event is None:  # Packer's own failures (a crash, a plugin error) come unformatted
            if line.strip():
                show(line.rstrip())
                result.errors.append(line.strip())
            continue
        if event.kind == "ui" and event.data:
            level, message = event.data[0], ",".join(event.data[1:])
            show(message)
            if level == "error":
                result.errors.append(message)
        elif event.kind == "artifact" and len(event.data) >= 3 and event.data[1] == "id":
            result.artifacts[event.target] = event.data[2]
        elif event.kind == "error" and event.data:
            result.errors.append(event.data[0])
            show(event.data[0])
    result.returncode = process.wait()
    return result


def find() -> str:
    found = shutil.which("packer")
    if not found:
        raise PackerError(
            "packer is not installed (https://developer.hashicorp.com/packer/install; Debian: apt-get install packer)"
        )
    return found
