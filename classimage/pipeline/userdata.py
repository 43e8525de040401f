"""The plan as cloud-init user data: one #cloud-config document that writes the runner (the
classimage.droplet modules runner, statusservice and provision, as they are, in one zip that Python
runs), its plan and the step scripts, and runs it from runcmd."""

from __future__ import annotations

import base64
import gzip
from collections.abc import Mapping
from dataclasses import dataclass, replace

from classimage import __version__
from classimage.droplet import provision
from classimage.pipeline import network, plan, shipping, templating, tljh
from classimage.pipeline.model import Spec

LIMIT = 64 * 1024  # the ceiling cloud providers put on user data


class TooLarge(Exception):
    pass


@dataclass(frozen=True)
class WrittenFile:
    path: str
    mode: str
    content: str | bytes  # bytes only compressed: cloud-init writes what it decodes as it is
    compressed: bool = False  # shipped as gzip+base64 (cloud-init's `encoding: gz+b64`)

    @property
    def encoded(self) -> str:
        """The content as the user data carries it."""
        if isinstance(self.content, str) and not self.compressed:
            return self.content
        data = self.content.encode() if isinstance(self.content, str) else self.content
        return base64.b64encode(gzip.compress(data, mtime=0)).decode()


def script_path(number: int, step: plan.Step, suffix: str) -> str:
    return f"{provision.STEPS}/{number:02d}-{step.name}.{suffix}"


def plan_document(
    spec: Spec, spec_digest: str, steps: list[plan.Step], stage: str, status_token_sha256: str | None = None
) -> provision.Plan:
    """What the runner reads: the steps in order, by script path, with what identifies the course."""
    return provision.Plan(
        classimage=__version__,
        course=provision.Course(name=spec.course.name, slug=spec.course.slug),
        spec_digest=spec_digest,
        stage=stage,
        bake_digest=plan.bake_digest(spec),
        environment=network.environment(spec),
        steps=tuple(
            provision.PlanStep(
                name=step.name,
                title=step.title,
                run=script_path(number, step, "sh"),
                check=script_path(number, step, "check.sh") if step.check else None,
                when=step.when,
                timeout=step.timeout,
                digest=step.digest,
            )
            for number, step in enumerate(steps, 1)
        ),
        status_token_sha256=status_token_sha256,
        https_hostname=spec.https.hostname,
    )


# The runner's modules, in the zip's order; the first is the program (its main).
RUNNER_MODULES = ("runner", "statusservice", "provision")
RUNNER_MAIN = "import sys\n\nfrom runner import main\n\nsys.exit(main())\n"


def runner(staged: Mapping[str, str | bytes] | None = None) -> bytes:
    """The provisioning program, its modules lean (as TLJH ships its bootstrap, but for comments),
    as one file Python runs (shipping.zipapp), with the files `staged` (by their staged paths) that
    the runner stages before a run."""
    members: list[tuple[str, str | bytes]] = [("__main__.py", RUNNER_MAIN)]
    members += [(f"{m}.py", shipping.shipped(m)) for m in RUNNER_MODULES]
    members += [
        (provision.FILES_IN_ZIP + path.removeprefix(provision.FILES + "/"), content)
        for path, content in (staged or {}).items()
    ]
    return shipping.zipapp(members)


def files(
    spec: Spec,
    spec_digest: str,
    stage: str,
    admin_hashes: Mapping[str, str | None] | None = None,
    status_token_sha256: str | None = None,
    volume: str | None = None,
) -> list[WrittenFile]:
    """Everything the user data of `stage` writes, in order."""
    steps = plan.steps(spec, stage, admin_hashes, volume)
    document = plan_document(spec, spec_digest, steps, stage, status_token_sha256)
    written = [
        WrittenFile(
            provision.RESUME_HOOK, "0755", templating.render("classimage-resume.sh.j2", runner=provision.RUNNER)
        ),
        WrittenFile(provision.PLAN, "0600", document.to_json()),
    ]
    if stage == plan.BAKE:  # what `classimage-provision finish-bake` runs once the bake is sealed
        written.append(
            WrittenFile(
                provision.IMAGE_CLEANUP,
                "0700",
                templating.render(
                    "image-cleanup.sh.j2",
                    state=tljh.STATE,
                    proxy_secret=tljh.PROXY_SECRET,
                    rules=tljh.PROXY_RULES,
                    user_bin=tljh.USER_BIN,
                    installer_log=tljh.INSTALLER_LOG,
                    lib=provision.LIB,
                    plan=provision.PLAN,
                    post_build=provision.POST_BUILD,
                    hub_open=provision.HUB_OPEN,
                ),
            )
        )
    staged: dict[str, str | bytes] = {}
    zipped: dict[str, str | bytes] = {}  # classimage's programs and the hub's config, in the runner's zip
    for number, step in enumerate(steps, 1):
        written.append(WrittenFile(script_path(number, step, "sh"), "0700", step.run))
        if step.check:
            written.append(WrittenFile(script_path(number, step, "check.sh"), "0700", step.check))
        for file in step.files:
            # A file a step installs in several places (the metadata guard's drop-in) is staged once.
            if file.staged in staged:
                if staged[file.staged] != file.content:
                    raise ValueError(f"two different files staged at {file.staged}")
                continue
            staged[file.staged] = file.content
            if file.compressed:
                zipped[file.staged] = file.content
            else:
                written.append(WrittenFile(file.staged, "0600", file.content))
    # The runner and what it stages, over half the user data as text: compressed, together.
    return [WrittenFile(provision.RUNNER, "0755", runner(zipped), compressed=True), *written]


def document(written: list[WrittenFile], stage: str) -> str:
    return templating.render(
        "user-data.yaml.j2",
        version=__version__,
        stage=stage,
        files=written,
        runcmd=[provision.RUNNER, "run"],
        status=provision.STATUS,
        log=provision.LOG,
    )


def render(
    spec: Spec,
    spec_digest: str,
    stage: str = plan.FULL,
    admin_hashes: Mapping[str, str | None] | None = None,
    status_token_sha256: str | None = None,
    volume: str | None = None,
) -> str:
    """The user data for `stage`: full (one-piece), bake (Packer's build droplet) or boot (droplets
    made from the snapshot). `admin_hashes`: each admin's password hash (none: reserved); `volume`:
    the DigitalOcean volume of the class's data, when the cloud verbs attach one. Only classimage's
    programs are compressed, the rest stays readable, as much of it as the limit allows."""
    written = files(spec, spec_digest, stage, admin_hashes, status_token_sha256, volume)
    text = document(written, stage)
    # A big class: the files gzip saves most on are shipped so, one at a time, until the user data
    # fits; the rest stays readable.
    savings = sorted(
        ((len(f.encoded) - len(replace(f, compressed=True).encoded), i) for i, f in enumerate(written)), reverse=True
    )
    for saved, index in savings:
        if len(text.encode()) <= LIMIT or saved <= 0:
            break
        written[index] = replace(written[index], compressed=True)
        text = document(written, stage)
    size = len(text.encode())
    if size > LIMIT:
        raise TooLarge(f"the user data would be {size:,} bytes, over the {LIMIT:,}-byte limit droplets accept")
    return text
