"""The provisioning's plan and places: every path on the droplet that classimage names (the
pipeline takes them from here), the plan's format (Plan, PlanStep), which the pipeline writes and the
runner (runner.py) reads, the image record a sealed bake leaves, and the files both the runner
and its status service keep. Shipped in the runner's zip (classimage-provision); standard library
only, Python 3.9.
"""

from __future__ import annotations

import datetime
import json
import os
import sys
import tempfile
from dataclasses import asdict, dataclass
from typing import IO, Any

# -------------------------------------------------------------------------------------------------
# Where things are on a droplet.

LIB = "/usr/local/lib/classimage"
RUNNER = "/usr/local/sbin/classimage-provision"
PLAN = LIB + "/plan.json"
STEPS = LIB + "/steps"
FILES = LIB + "/files"  # what steps install, staged by the user data
FILES_IN_ZIP = "files/"  # the runner's zip holds these under FILES (Python: gzip compresses it with the runner)
STATE = "/var/lib/classimage"
STATUS = STATE + "/status.json"
IMAGE = STATE + "/image.json"  # written when a bake is sealed: which spec and bake the image holds
HUB_OPEN = STATE + "/hub-open"  # exists once the class is ready for students (the hub's gate)
LOG = "/var/log/classimage.log"
LOCK = "/run/classimage-provision.lock"
# cloud-init runs the scripts here at every boot: resumes a provisioning a reboot interrupted.
RESUME_HOOK = "/var/lib/cloud/scripts/per-boot/classimage-resume"
METADATA_GUARD = LIB + "/metadata-guard"
METADATA_GUARD_UNIT = "/etc/systemd/system/classimage-metadata-guard.service"
IMAGE_CLEANUP = LIB + "/image-cleanup"
POST_BUILD = LIB + "/post-build"  # the course's postBuild (repo2docker's)
HUB_ACCOUNTS = LIB + "/hub-accounts.py"  # classimage/droplet/hubaccounts.py, run with the hub's Python
HUB_ACCOUNTS_PLAN = LIB + "/hub-accounts.json"  # the admins, with their password hashes (root only)
HUB_GUARDS = LIB + "/hubguards.py"  # classimage/droplet/hubguards.py, which the hub's config imports from LIB
CLASS_DATA = "/usr/local/sbin/classimage-class-data"  # classimage/droplet/classdata/, one zip
# The class's data device of user data pasted at DigitalOcean, where the volume's name is the
# instructor's: the one volume attached, whatever its name (classdata/devices.py has the same words).
ANY_VOLUME = "any-digitalocean-volume"
ANY_VOLUME_OR_OWN_DISK = "any-digitalocean-volume-or-own-disk"
OWN_DISK = "own-disk"  # what classimage-class-data chose when it keeps the data on the droplet's disk
DATA_RECORD = STATE + "/data.json"  # classdata's account of the class's data (device, database copy)
DATA_CLOSED = "the class's data is not on this server: `classimage status` tells the instructor why"
DATA_UNIT = "/etc/systemd/system/classimage-data.service"
DATA_COPY_UNIT = "/etc/systemd/system/classimage-data-copy.service"
DATA_COPY_TIMER = "/etc/systemd/system/classimage-data-copy.timer"
# When the class's data cannot be mounted at boot: port 80 says so (students: the class is closed;
# `classimage status`: why), until the proxy takes the port back.
DATA_MISSING_SOCKET = "/etc/systemd/system/classimage-data-missing.socket"
DATA_MISSING_UNIT = "/etc/systemd/system/classimage-data-missing.service"
CLOUD_INIT_OUTPUT = "/var/log/cloud-init-output.log"
# TLJH's own (classimage/pipeline/tljh.py names the same for the pipeline), and its settings as TLJH reads
# them (config.yaml over its defaults), with the hub's Python: its YAML, its defaults, its merge.
TLJH_PYTHON = "/opt/tljh/hub/bin/python3"
TLJH_CONFIG = "/opt/tljh/config/config.yaml"
ACME = "/opt/tljh/state/acme.json"  # traefik's Let's Encrypt account and certificates (on the class's device)
# traefik orders a certificate only when its configuration changes: `https-nudge` changes this file
# of it (in the folder TLJH has traefik watch), every minute from a timer, when it is time to ask again.
ACME_NUDGE = "/opt/tljh/state/rules/classimage-acme.toml"
NUDGE_AGAIN = 20 * 60  # at most 3 orders an hour from the timer: under Let's Encrypt's 5 failed validations
ACME_NUDGE_STATE = "/run/classimage/https-nudge.json"  # what the last run saw (gone at reboot: traefik asks then)
HTTPS_NUDGE_UNIT = "/etc/systemd/system/classimage-https-nudge.service"
HTTPS_NUDGE_TIMER = "/etc/systemd/system/classimage-https-nudge.timer"
CULL_PROBE = (
    "import json; from tljh.configurer import load_config; print(json.dumps(load_config()['services']['cull']))"
)
CULL_USERS_WARNING = (
    "services.cull.users is set in TLJH's config: the idle culler deletes idle students from the hub, and "
    "with NativeAuthenticator their sign-ups and passwords go with them. Unset it: "
    "sudo tljh-config unset services.cull.users && sudo tljh-config reload hub"
)

# The status over HTTP: the hub runs `serve-status` as a service, public at this path.
SERVICE = "classimage-status"
SERVICE_PATH = "/services/" + SERVICE + "/"
SERVICE_PORT = 15003
HTTP_PORT = 80
PROGRESS_PAGE_PID = "CLASSIMAGE_PROGRESS_PAGE_PID"  # told to steps: the page's process, if any

FORMAT = 2
ONCE, AFTER_CHANGES = "once", "after-changes"
TAIL_LINES = 40
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
EX_TEMPFAIL = 75


@dataclass(frozen=True)
class Paths:
    """The droplet's paths, or the same layout under another root (a mounted disk, a test)."""

    root: str = "/"

    def at(self, path: str) -> str:
        return path if self.root == "/" else os.path.join(self.root, path.lstrip("/"))

    @property
    def plan(self) -> str:
        return self.at(PLAN)

    @property
    def status(self) -> str:
        return self.at(STATUS)

    @property
    def image(self) -> str:
        return self.at(IMAGE)

    @property
    def hub_open(self) -> str:
        return self.at(HUB_OPEN)

    @property
    def log(self) -> str:
        return self.at(LOG)

    @property
    def lock(self) -> str:
        return self.at(LOCK)

    @property
    def cloud_init_output(self) -> str:
        return self.at(CLOUD_INIT_OUTPUT)

    @property
    def image_cleanup(self) -> str:
        return self.at(IMAGE_CLEANUP)


# -------------------------------------------------------------------------------------------------
# The plan: what the user data tells this program to do. classimage writes it with Plan.to_json;
# this program reads it with Plan.from_json. Unknown or missing keys are an error, never a guess.


class PlanError(Exception):
    pass


@dataclass(frozen=True)
class PlanStep:
    name: str
    title: str
    run: str  # path of the step's bash script
    check: str | None  # path of a bash script exiting 0 when the work is already in place
    when: str  # ONCE, or AFTER_CHANGES: again whenever an earlier step ran
    timeout: int  # seconds
    digest: str  # changes whenever what the step does changes


@dataclass(frozen=True)
class Course:
    name: str
    slug: str


@dataclass(frozen=True)
class Plan:
    classimage: str  # the version that wrote it
    course: Course
    spec_digest: str
    stage: str  # full, bake or boot
    bake_digest: str  # what a snapshot baked from this spec holds
    environment: dict[str, str]  # for every step (the course's proxy and CAs)
    steps: tuple[PlanStep, ...]
    # sha256 of a token whose holder may read log tails over HTTP (`classimage up` makes one)
    status_token_sha256: str | None = None
    https_hostname: str | None = None  # the spec's https.hostname: the status says where its certificate stands
    format: int = FORMAT

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str) -> Plan:
        try:
            data = json.loads(text)
        except ValueError as error:
            raise PlanError("the plan is not JSON: %s" % error) from None
        data = _fields(cls, data, "plan")
        if data["format"] != FORMAT:
            raise PlanError(
                "the plan has format %r; this classimage-provision reads format %d" % (data["format"], FORMAT)
            )
        data["course"] = Course(**_fields(Course, data["course"], "plan.course"))
        steps = data["steps"]
        if not isinstance(steps, list):
            raise PlanError("plan.steps is not a list")
        data["steps"] = tuple(PlanStep(**_fields(PlanStep, s, "plan.steps[%d]" % i)) for i, s in enumerate(steps))
        environment = data["environment"]
        if not isinstance(environment, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in environment.items()
        ):
            raise PlanError("plan.environment is not a mapping of names to text")
        return cls(**data)


_TYPES = {
    "str": str,
    "int": int,
    "str | None": (str, type(None)),
    "Course": dict,
    "dict[str, str]": dict,
    "tuple[PlanStep, ...]": list,
}


def _fields(cls: type, data: Any, where: str) -> dict[str, Any]:
    """`data`'s keys checked against `cls`'s fields: names and kinds, all present, none extra."""
    if not isinstance(data, dict):
        raise PlanError("%s is not a mapping" % where)
    known = cls.__dataclass_fields__  # type: ignore[attr-defined]
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise PlanError("%s has unknown keys %s" % (where, ", ".join(unknown)))
    result = {}
    for name, spec in known.items():
        if name not in data:
            raise PlanError("%s lacks the key %r" % (where, name))
        value = data[name]
        expected: Any = _TYPES[str(spec.type)]
        if isinstance(value, bool) or not isinstance(value, expected):
            raise PlanError("%s.%s has the wrong type (%s)" % (where, name, type(value).__name__))
        result[name] = value
    return result


def read_plan(paths: Paths) -> Plan | None:
    try:
        with open(paths.plan, encoding="utf-8") as handle:
            return Plan.from_json(handle.read())
    except FileNotFoundError:
        return None


# -------------------------------------------------------------------------------------------------
# Files


def now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def say(message: str, stream: IO[str] | None = None) -> None:
    print("classimage: " + message, file=stream or sys.stdout, flush=True)


def read_json(path: str) -> Any | None:
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except FileNotFoundError:
        return None


def write_json(path: str, data: Any, mode: int) -> None:
    write_text(path, json.dumps(data, indent=2) + "\n", mode)


def write_text(path: str, text: str, mode: int) -> None:
    """Replace `path` atomically: readers see the old file or the new one, never half of one. The
    file being written has no extension (traefik reads .toml files only)."""
    directory = os.path.dirname(path)
    os.makedirs(directory, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=directory, prefix=".status-")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(temporary, mode)
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise


# -------------------------------------------------------------------------------------------------
# The image record (image.json): what a sealed bake holds, and what a droplet from it checks.


def seal_refusal(status: dict[str, Any] | None) -> str | None:
    """Why a bake cannot be sealed into an image, or None when it can."""
    if status is None:
        return "no bake ran"
    if status.get("stage") != "bake":
        return "this is a %s stage, not a bake" % status.get("stage")
    if status.get("state") != "ready" or status.get("failed_step"):
        return "the bake is %s, not ready" % status.get("state")
    unfinished = [s["name"] for s in status.get("steps", []) if s.get("state") != "done"]
    if unfinished:
        return "steps not done: " + ", ".join(unfinished)
    return None


def image_record(status: dict[str, Any], plan: Plan, sealed: str) -> dict[str, Any]:
    return {
        "format": FORMAT,
        "classimage": status["classimage"],
        "course": status["course"],
        "spec_digest": status["spec_digest"],
        "bake_digest": plan.bake_digest,
        "baked": status["run"]["finished"],
        "sealed": sealed,
    }


def image_verdict(image: dict[str, Any] | None, bake_digest: str) -> tuple[int, list[str]]:
    """check-image: (exit code, messages) for this droplet's image record and the user data's bake."""
    if image is None:
        return 1, [
            "this user data is for droplets made from the course's classimage snapshot (packer "
            "build); this droplet was not made from one (no %s). Create the droplet from the "
            "snapshot, or use the one-piece user-data.yaml instead." % IMAGE
        ]
    messages = [
        "made from the snapshot of %s (%s) baked %s by classimage %s"
        % (image["course"]["name"], image["course"]["slug"], image["baked"], image["classimage"])
    ]
    if image.get("bake_digest") != bake_digest:
        messages.append(
            "WARNING: the snapshot was baked from a different spec than this user data was "
            "rendered from (snapshot %s, user data %s): the software is the snapshot's. Rebuild "
            "the snapshot to change it." % (image.get("bake_digest"), bake_digest)
        )
    return 0, messages
