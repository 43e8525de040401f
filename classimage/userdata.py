"""The plan as cloud-init user data: one #cloud-config document that writes the runner, the plan and
the step scripts, and runs the runner once from runcmd."""

from __future__ import annotations

import json
from dataclasses import dataclass

from classimage import __version__, droplet, network, plan, templating, tljh
from classimage.spec import Loaded

LIMIT = 64 * 1024  # the ceiling cloud providers put on user data


class TooLarge(Exception):
    pass


@dataclass(frozen=True)
class WrittenFile:
    path: str
    mode: str
    content: str


def plan_document(loaded: Loaded, steps: list[plan.Step], stage: str) -> dict:
    """What the runner reads: the steps in order, by script path, with what identifies the course."""
    spec = loaded.spec
    return {
        "format": 1,
        "classimage": __version__,
        "course": {"name": spec.course.name, "slug": spec.course.slug},
        "spec_digest": loaded.digest,
        "stage": stage,
        "bake_digest": plan.bake_digest(spec),
        "environment": network.environment(spec),
        "steps": [
            {
                "name": step.name,
                "title": step.title,
                "run": _script_path(number, step, "sh"),
                "check": _script_path(number, step, "check.sh") if step.check else None,
                "when": step.when,
                "timeout": step.timeout,
                "digest": step.digest,
            }
            for number, step in enumerate(steps, 1)
        ],
    }


def _script_path(number: int, step: plan.Step, suffix: str) -> str:
    return f"{droplet.LIB}/steps/{number:02d}-{step.name}.{suffix}"


def runner() -> str:
    return templating.render("provision.py.j2", version=__version__, plan=droplet.PLAN,
                             status=droplet.STATUS, log=droplet.LOG, lock=droplet.LOCK, image=droplet.IMAGE)


def files(loaded: Loaded, steps: list[plan.Step], stage: str) -> list[WrittenFile]:
    """Everything the user data writes, in order."""
    document = plan_document(loaded, steps, stage)
    written = [
        WrittenFile(droplet.RUNNER, "0755", runner()),
        WrittenFile(droplet.RESUME_HOOK, "0755", templating.static("classimage-resume.sh")),
        WrittenFile(droplet.PLAN, "0600", json.dumps(document, indent=2) + "\n"),
    ]
    if stage == plan.BAKE:  # what Packer runs on the build droplet once it is up
        written += [WrittenFile(droplet.FINISH_BAKE, "0700", templating.static("finish-bake.sh")),
                    WrittenFile(droplet.IMAGE_CLEANUP, "0700", templating.render(
                        "image-cleanup.sh.j2", state=tljh.STATE, proxy_secret=tljh.PROXY_SECRET,
                        user_bin=tljh.USER_BIN, lib=droplet.LIB, plan=droplet.PLAN))]
    for number, step in enumerate(steps, 1):
        written.append(WrittenFile(_script_path(number, step, "sh"), "0700", step.run))
        if step.check:
            written.append(WrittenFile(_script_path(number, step, "check.sh"), "0700", step.check))
        written += [WrittenFile(f.staged, "0600", f.content) for f in step.files]
    return written


def render(loaded: Loaded, stage: str = plan.FULL) -> str:
    """The user data for `stage`: full (one-piece), bake (Packer's build droplet) or boot (droplets
    made from the snapshot)."""
    steps = plan.steps(loaded.spec, stage)
    text = templating.render(
        "user-data.yaml.j2",
        version=__version__,
        stage=stage,
        files=files(loaded, steps, stage),
        runcmd=[droplet.RUNNER, "run"],
        status=droplet.STATUS,
        log=droplet.LOG,
    )
    size = len(text.encode())
    if size > LIMIT:
        raise TooLarge(f"the user data would be {size:,} bytes, over the {LIMIT:,}-byte limit droplets accept")
    return text
