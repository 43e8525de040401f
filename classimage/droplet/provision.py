#!/usr/bin/env python3
"""classimage-provision: brings this server to the state its course spec describes, one step at a
time, and says where it stands. Shipped by classimage into the user data, as it is (standard
library only, Python 3.9 or newer: Ubuntu 22.04's python3).

  classimage-provision run           run every step not done yet (also resumes after a fix)
  classimage-provision status        where provisioning stands (--json: the status file itself)
  classimage-provision resume        run only if a run was interrupted, e.g. by a reboot (at boot)
  classimage-provision finish-bake   on Packer's build droplet: wait for the bake, seal it, clean
                                     the system for a snapshot (fails the build unless it is ready)
  classimage-provision seal          after a successful bake: record what the image holds
  classimage-provision check-image --bake-digest D
                                     on a droplet from a snapshot: refuse if it is not one, warn
                                     if it was baked from another spec
  classimage-provision serve-status --port N [--page]
                                     answer HTTP requests with the status (the hub runs it as a
                                     service: /services/classimage-status/); with --page, every
                                     other path gets a "the class is being prepared" page

A step is skipped when it already completed with the same content, or when its check says the work
is in place; steps marked after-changes (the hub reload) run whenever an earlier step ran. All
output goes to one log file; one status file, replaced atomically after every step, records each
step's state, times, and on failure its exit code and the last lines of its output. While a run
goes on and port 80 is free, a page on port 80 says the class is being prepared. Steps get its
process id: TLJH's installer stops it (--progress-page-server-pid) just before its proxy takes the
port, and the hub reload stops it itself.

Everything in classimage that names a path on the droplet takes it from this module, and the
plan's format (Plan, PlanStep) is defined here once, for the writer and the reader alike.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import datetime
import fcntl
import functools
import hashlib
import hmac
import html
import http.server
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from typing import IO, Any, Callable

# -------------------------------------------------------------------------------------------------
# Where things are on a droplet.

LIB = "/usr/local/lib/classimage"
RUNNER = "/usr/local/sbin/classimage-provision"
PLAN = LIB + "/plan.json"
STEPS = LIB + "/steps"
FILES = LIB + "/files"  # what steps install, staged by the user data
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
CLASS_DATA = "/usr/local/sbin/classimage-class-data"  # classimage/droplet/classdata.py
# The class's data device of user data pasted at DigitalOcean, where the volume's name is the
# instructor's: the one volume attached, whatever its name (classdata.py has the same words).
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
    """Replace `path` atomically: readers see the old file or the new one, never half of one."""
    directory = os.path.dirname(path)
    os.makedirs(directory, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=directory, prefix=".status-")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            json.dump(data, out, indent=2)
            out.write("\n")
            out.flush()
            os.fsync(out.fileno())
        os.chmod(temporary, mode)
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise


# -------------------------------------------------------------------------------------------------
# The status document, and the decisions a run makes. Pure functions: tested without a droplet.


def must_run(step: PlanStep, previous: dict[str, Any] | None, changed_before: bool) -> bool:
    """Whether `step` runs (its check may still find the work in place): not done before with the
    same content, or an after-changes step that follows a step that ran."""
    if previous is None or previous.get("state") != "done" or previous.get("digest") != step.digest:
        return True
    return step.when == AFTER_CHANGES and changed_before


def new_status(
    plan: Plan, previous: dict[str, Any] | None, image: dict[str, Any] | None, pid: int, started: str
) -> dict[str, Any]:
    """The status at the start of a run: steps done before with the same content keep their record."""
    previous = previous or {}
    done = {s["name"]: s for s in previous.get("steps", []) if s.get("state") == "done"}
    steps = []
    for step in plan.steps:
        old = done.get(step.name)
        if old and old.get("digest") == step.digest:
            steps.append(old)
        else:
            steps.append({"name": step.name, "title": step.title, "digest": step.digest, "state": "pending"})
    return {
        "format": FORMAT,
        "state": "running",
        "course": asdict(plan.course),
        "classimage": plan.classimage,
        "spec_digest": plan.spec_digest,
        "stage": plan.stage,
        "log": LOG,
        "image": image,
        "run": {
            "number": previous.get("run", {}).get("number", 0) + 1,
            "pid": pid,
            "started": started,
            "finished": None,
        },
        "failed_step": None,
        "steps": steps,
    }


def public_status(status: dict[str, Any]) -> dict[str, Any]:
    """The status for anyone to read: states and times; no log tails, process ids or exit codes."""
    public = {
        key: status.get(key)
        for key in ("format", "state", "stage", "course", "classimage", "spec_digest", "failed_step")
    }
    public["run"] = {key: status.get("run", {}).get(key) for key in ("number", "started", "finished")}
    public["image"] = {key: (status.get("image") or {}).get(key) for key in ("bake_digest", "baked")}
    public["steps"] = [
        {key: step.get(key) for key in ("name", "title", "state", "started", "seconds")}
        for step in status.get("steps", [])
    ]
    public["warnings"] = list(status.get("warnings") or [])
    public["https"] = status.get("https")  # a certificate and a DNS answer: both public anyway
    # the class's data device, as classimage-class-data keeps its record. Times only, whether it
    # failed, and what the droplet waits for before its data is in place (`classimage up` moves the
    # volume once it says so): its notes, warnings and error name students, files and devices, and
    # quote commands' output (the token holder reads them).
    data = status.get("data")
    public["data"] = None
    if data:
        public["data"] = {
            "mounted": data.get("mounted"),
            "database_copied": data.get("database_copied"),
            "error": DATA_CLOSED if data.get("error") else None,
            "waiting": data.get("waiting"),
        }
    return public


def data_warnings(data: dict[str, Any] | None) -> list[str]:
    """The warnings the class's data record keeps for the instructor, each with its time."""
    kept = (data or {}).get("warnings") or []
    return ["%s (%s)" % (str(w.get("message")).replace("WARNING: ", "", 1), w.get("at")) for w in kept]


def acme_certificate(acme: Any, hostname: str) -> str | None:
    """The PEM chain traefik holds for `hostname` in its acme.json (any resolver), or None."""
    try:
        for resolver in acme.values():
            for held in resolver.get("Certificates") or []:
                domain = held["domain"]
                if hostname == domain.get("main") or hostname in (domain.get("sans") or []):
                    return base64.b64decode(held["certificate"]).decode("ascii")
    except (AttributeError, KeyError, TypeError, ValueError):  # not traefik's format: none it can serve
        pass
    return None


def https_state(
    hostname: str | None, acme: Any, expiry: Callable[[str], str | None], resolve: Callable[[str], list[str]]
) -> dict[str, Any] | None:
    """Where HTTPS stands: the certificate's expiry once traefik holds one; until then, what the
    name resolves to from here (the instructor must point it at the class's address)."""
    if not hostname:
        return None
    pem = acme_certificate(acme, hostname)
    if pem:
        return {"hostname": hostname, "certificate": {"expires": expiry(pem)}, "resolves_to": None}
    return {"hostname": hostname, "certificate": None, "resolves_to": resolve(hostname)}


def token_allows(plan: Plan | None, header: str | None) -> bool:
    """Whether an `Authorization: token T` header carries the token the plan names (by its hash)."""
    if plan is None or not plan.status_token_sha256 or not header or not header.startswith("token "):
        return False
    given = hashlib.sha256(header[len("token ") :].strip().encode()).hexdigest()
    return hmac.compare_digest(given, plan.status_token_sha256)


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


# -------------------------------------------------------------------------------------------------
# A run


class Provisioning:
    def __init__(self, plan: Plan, paths: Paths, log: IO[bytes], page_port: int = HTTP_PORT):
        self.plan, self.paths, self.log, self.page_port = plan, paths, log, page_port
        self.status = new_status(plan, read_json(paths.status), read_json(paths.image), os.getpid(), now())
        self.page: subprocess.Popen[bytes] | None = None

    def save(self) -> None:
        # root's alone: a failed step's output may say anything (the status service shows the public
        # part, the token holder the rest).
        write_json(self.paths.status, self.status, 0o600)

    def run(self) -> int:
        self.save()
        self.page = start_page(self.paths, self.page_port)
        try:
            return self._steps()
        finally:
            stop(self.page)

    def _steps(self) -> int:
        total = len(self.plan.steps)
        changed = False
        for number, (step, entry) in enumerate(zip(self.plan.steps, self.status["steps"]), 1):
            label = "[%d/%d] %s" % (number, total, step.title)
            if not must_run(step, entry, changed):
                continue
            entry.update(state="running", started=now(), finished=None, seconds=None)
            entry.pop("exit_code", None)
            entry.pop("log_tail", None)
            self.save()
            started = time.monotonic()
            if step.check and self.script(step, step.check, "check")[0] == 0:
                self.finish(entry, started, "already in place")
                say(label + ": already in place")
                continue
            say(label + " ...")
            code, tail = self.script(step, step.run, "run")
            if code != 0:
                self.finish(entry, started, "failed", state="failed")
                entry.update(exit_code=code, log_tail=tail)
                self.status.update(state="failed", failed_step=step.name)
                self.status["run"]["finished"] = now()
                self.save()
                reason = "timed out after %ss" % step.timeout if code == "timeout" else "exit code %s" % code
                say("%s: FAILED (%s). Last lines of its output:" % (label, reason), sys.stderr)
                for line in tail:
                    print("    " + line, file=sys.stderr)
                say("fix the cause, then run `sudo classimage-provision run` to resume; log: " + LOG, sys.stderr)
                return 1
            changed = True
            self.finish(entry, started, "ran")
            say("%s: done in %ds" % (label, entry["seconds"]))
        self.status.update(state="ready", failed_step=None)
        self.status["run"]["finished"] = now()
        self.save()
        say("ready: %s (%s)" % (self.plan.course.name, self.plan.course.slug))
        return 0

    def finish(self, entry: dict[str, Any], started: float, how: str, state: str = "done") -> None:
        entry.update(state=state, how=how, finished=now(), seconds=round(time.monotonic() - started, 1))
        self.save()

    def script(self, step: PlanStep, path: str, kind: str) -> tuple[Any, list[str]]:
        """Run one step script with its output in the log; return (exit code, last lines).

        The script writes straight into the log file, not through a pipe: a background process it
        leaves behind (a server it started) cannot hold the runner up."""
        self.log.write(("\n==> %s %s %s: %s\n" % (now(), kind, step.name, path)).encode())
        self.log.flush()
        start = self.log.tell()
        env = dict(os.environ, PATH=PATH, HOME="/root", LANG="C.UTF-8", DEBIAN_FRONTEND="noninteractive")
        env.update(self.plan.environment)
        env.pop(PROGRESS_PAGE_PID, None)
        if self.page is not None and self.page.poll() is None:
            env[PROGRESS_PAGE_PID] = str(self.page.pid)
        process = subprocess.Popen(
            ["/bin/bash", path],
            stdin=subprocess.DEVNULL,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
        code: Any
        try:
            code = process.wait(timeout=step.timeout)
        except subprocess.TimeoutExpired:
            code = "timeout"
            for sig in (signal.SIGTERM, signal.SIGKILL):
                try:
                    os.killpg(process.pid, sig)
                    process.wait(timeout=10)
                    break
                except (ProcessLookupError, subprocess.TimeoutExpired):
                    continue
        self.log.seek(0, os.SEEK_END)
        end = self.log.tell()
        self.log.write(("==> %s %s %s: exit %s\n" % (now(), kind, step.name, code)).encode())
        self.log.flush()
        with open(self.paths.log, "rb") as log:
            log.seek(max(start, end - 65536))
            lines = log.read(end - log.tell()).decode("utf-8", "replace").splitlines()
        return code, lines[-TAIL_LINES:]


def locked(paths: Paths) -> IO[str] | None:
    """Hold the provisioning lock for this process's life, or return None if another run holds it."""
    os.makedirs(os.path.dirname(paths.lock), exist_ok=True)
    handle = open(paths.lock, "w")  # noqa: SIM115 (held, and so locked, for the process's life)
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        return None
    return handle


def command_run(paths: Paths, only_if_interrupted: bool = False, page_port: int = HTTP_PORT) -> int:
    lock = locked(paths)
    if lock is None:
        say("another classimage-provision is running; see `classimage-provision status`", sys.stderr)
        return EX_TEMPFAIL
    with lock:
        if only_if_interrupted:
            status = read_json(paths.status)
            if not status or status.get("state") != "running":
                return 0
            say("resuming a provisioning that was interrupted")
        try:
            plan = read_plan(paths)
        except PlanError as error:
            say("cannot read the plan %s: %s" % (paths.plan, error), sys.stderr)
            return 1
        if plan is None:
            say("no plan at %s: this server was not set up by classimage user data" % paths.plan, sys.stderr)
            return 1
        os.makedirs(os.path.dirname(paths.log), exist_ok=True)
        with open(paths.log, "ab") as log:
            os.chmod(paths.log, 0o600)
            return Provisioning(plan, paths, log, page_port).run()


def command_seal(paths: Paths) -> int:
    """Record what this baked system holds (image.json) and drop the run's state, refusing unless
    the bake completed: Packer's build fails here, showing why."""
    lock = locked(paths)
    if lock is None:
        say("the bake is still running", sys.stderr)
        return EX_TEMPFAIL
    with lock:
        status = read_json(paths.status)
        refusal = seal_refusal(status)
        if refusal is None:
            try:
                plan = read_plan(paths)
            except PlanError as error:
                plan, refusal = None, "the plan cannot be read: %s" % error
            if plan is None and refusal is None:
                refusal = "no plan at %s" % paths.plan
        if refusal is not None or plan is None or status is None:
            if status is None:
                say("no bake ran (no %s); the end of %s:" % (STATUS, CLOUD_INIT_OUTPUT), sys.stderr)
                for line in tail_of(paths.cloud_init_output, TAIL_LINES):
                    print("    " + line, file=sys.stderr)
            else:
                command_status(paths, stream=sys.stderr)
            say("not sealing: %s" % refusal, sys.stderr)
            return 1
        image = image_record(status, plan, now())
        write_json(paths.image, image, 0o644)
        os.unlink(paths.status)
        say("sealed: %s, bake %s" % (image["course"]["slug"], image["bake_digest"]))
        return 0


def command_finish_bake(paths: Paths) -> int:
    """What Packer runs on the build droplet once it answers SSH."""
    # A failure shows in the seal's report; waiting is all this call is for.
    subprocess.run(["cloud-init", "status", "--wait"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    code = command_seal(paths)
    if code != 0:
        return code
    sys.stdout.flush()
    os.execv(paths.image_cleanup, [paths.image_cleanup])
    return 1  # not reached


def tail_of(path: str, lines: int) -> list[str]:
    try:
        with open(path, errors="replace") as handle:
            return handle.read().splitlines()[-lines:]
    except FileNotFoundError:
        return []


def command_check_image(paths: Paths, bake_digest: str) -> int:
    code, messages = image_verdict(read_json(paths.image), bake_digest)
    for message in messages:
        say(message, sys.stderr if code or message.startswith("WARNING") else sys.stdout)
    return code


def command_status(paths: Paths, as_json: bool = False, stream: IO[str] | None = None) -> int:
    stream = stream or sys.stdout
    status = read_json(paths.status)
    if status is None:
        print("classimage: provisioning has not started (no %s)" % STATUS, file=stream)
        return 1
    if as_json:
        print(json.dumps(status, indent=2), file=stream)
        return 0
    course = status.get("course", {})
    print(
        "%s (%s), %s stage: %s" % (course.get("name"), course.get("slug"), status.get("stage"), status["state"]),
        file=stream,
    )
    for step in status["steps"]:
        seconds = "" if step.get("seconds") is None else "%6.0fs" % step["seconds"]
        print(
            "  %-8s %-16s %-48s %s %s"
            % (step["state"], step["name"], step["title"][:48], seconds, step.get("how", "")),
            file=stream,
        )
        if step["state"] == "failed":
            print("      exit code %s; last lines of its output:" % step.get("exit_code"), file=stream)
            for line in step.get("log_tail", []):
                print("      | " + line, file=stream)
    data = read_json(paths.at(DATA_RECORD)) or {}
    if data.get("error"):
        print("the class's data: " + data["error"], file=stream)
    for warning in hub_warnings(paths) + data_warnings(data):
        print("WARNING: " + warning, file=stream)
    print("log: %s" % status.get("log", LOG), file=stream)
    return {"ready": 0, "running": 3}.get(status["state"], 1)


_cull_settings: dict[str, Any] = {}  # config.yaml's (mtime, size) when last read, and what it said


def hub_warnings(paths: Paths) -> list[str]:
    """What the instructor must hear about the hub's settings: `services.cull.users` set (the docs
    say never). Read again only when config.yaml changes: the hub's Python takes a moment."""
    try:
        info = os.stat(paths.at(TLJH_CONFIG))
    except OSError:
        return []
    key = (info.st_mtime_ns, info.st_size)
    if _cull_settings.get("key") != key:
        _cull_settings.update(key=key, users=cull_users(paths))
    return [CULL_USERS_WARNING] if _cull_settings["users"] else []


def cull_users(paths: Paths) -> bool:
    """Whether TLJH, reading its config as it does, would run the culler with --cull-users."""
    try:
        result = subprocess.run(
            [paths.at(TLJH_PYTHON), "-c", CULL_PROBE], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, timeout=60
        )
        return result.returncode == 0 and bool(json.loads(result.stdout).get("users"))
    except (OSError, ValueError, subprocess.TimeoutExpired):
        return False


@functools.lru_cache(maxsize=8)  # once a certificate: the status is public, and openssl a process
def certificate_expiry(pem: str) -> str | None:
    """When the chain's first certificate expires (UTC). openssl reads it (every droplet has it: the
    standard library parses no certificate but the peer's of a connection) and ssl reads openssl's
    date format."""
    try:
        result = subprocess.run(
            ["openssl", "x509", "-noout", "-enddate"], input=pem.encode(), stdout=subprocess.PIPE, timeout=10
        )
        seconds = ssl.cert_time_to_seconds(result.stdout.decode().strip().partition("=")[2])
    except (OSError, ValueError, subprocess.TimeoutExpired):
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


def addresses(hostname: str) -> list[str]:
    try:
        return sorted({str(info[4][0]) for info in socket.getaddrinfo(hostname, 443, type=socket.SOCK_STREAM)})
    except (OSError, UnicodeError):
        return []


_lookups: dict[str, dict[str, Any]] = {}


def addresses_soon(hostname: str, fresh: float = 10, wait: float = 2) -> list[str]:
    """`addresses`, as last known: looked up again at most every `fresh` seconds, one lookup at a
    time, waited for at most `wait`: a slow nameserver delays no answer of the public status, and a
    stranger's requests make no lookup each."""
    known = _lookups.get(hostname)
    if known is not None and (not known["done"] or time.monotonic() < known["at"] + fresh):
        return known["value"]
    entry = {"at": time.monotonic(), "done": False, "value": known["value"] if known else []}
    _lookups[hostname] = entry

    def look() -> None:
        entry["value"], entry["done"] = addresses(hostname), True

    lookup = threading.Thread(target=look, daemon=True)
    lookup.start()
    lookup.join(wait)
    return entry["value"]


def read_acme(paths: Paths) -> Any:
    try:
        return read_json(paths.at(ACME))
    except (OSError, ValueError):  # traefik's empty file before its first certificate
        return None


# -------------------------------------------------------------------------------------------------
# The status over HTTP, and the page students see while the class is being prepared


def progress_page(public: dict[str, Any]) -> str:
    course = public.get("course") or {}
    name = html.escape(course.get("name") or "This class")
    rows = "".join(
        "<tr><td>%s</td><td>%s</td></tr>"
        % (html.escape(s.get("title") or s["name"]), html.escape(s.get("state") or ""))
        for s in public.get("steps", [])
    )
    if (public.get("data") or {}).get("error"):
        headline = "The class is closed: its files are not on this server right now. Your instructor can see why."
    elif public.get("state") == "failed":
        headline = "Setting up the class server stopped at a problem. Your instructor has been told."
    else:
        headline = "The class is being prepared. Please come back in a few minutes."
    return (
        '<!DOCTYPE html>\n<html><head><meta charset="utf-8"><meta http-equiv="refresh" content="15">'
        '<meta name="viewport" content="width=device-width"><title>%s: being prepared</title></head>'
        '<body style="font-family:sans-serif;max-width:40em;margin:3em auto"><h1>%s</h1><p>%s</p>'
        "<table>%s</table><p><small>This page refreshes itself.</small></p></body></html>\n"
        % (name, name, headline, rows)
    )


def status_handler(paths: Paths, page: bool) -> type:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            status = read_json(paths.status)
            if status is not None:
                status["data"] = read_json(paths.at(DATA_RECORD))  # the class's data, as classdata keeps it
            if page and not self.path.split("?", 1)[0].startswith(SERVICE_PATH):
                body = progress_page(public_status(status or {})).encode()
                self.reply(503, "text/html; charset=utf-8", body, {"Retry-After": "30"})
                return
            try:
                plan = read_plan(paths)
            except PlanError:
                plan = None
            if status is not None:
                hostname = plan.https_hostname if plan else None
                status["https"] = https_state(hostname, read_acme(paths), certificate_expiry, addresses_soon)
            if status is None:
                document: dict[str, Any] = {"state": "not started"}
            elif token_allows(plan, self.headers.get("Authorization")):
                # The token holder (whoever ran `classimage up`) sees log tails and the class's data.
                status["warnings"] = hub_warnings(paths) + data_warnings(status["data"])
                document = status
            else:
                status["warnings"] = hub_warnings(paths)
                document = public_status(status)
            self.reply(200 if status else 503, "application/json", json.dumps(document, indent=2).encode())

        def reply(self, code: int, kind: str, body: bytes, headers: dict[str, str] | None = None) -> None:
            self.send_response(code)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    return Handler


def serve(paths: Paths, listener: socket.socket, page: bool) -> int:
    # TLJH's installer stops the page with SIGINT; whatever started us may have ignored it.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    server = http.server.ThreadingHTTPServer(
        listener.getsockname()[:2], status_handler(paths, page), bind_and_activate=False
    )
    server.socket.close()
    server.socket = listener
    server.daemon_threads = True
    with contextlib.suppress(KeyboardInterrupt):
        server.serve_forever()
    return 0


def listen(port: int) -> socket.socket | None:
    """A socket listening on every address at `port` (IPv6 and IPv4 where the system has IPv6),
    or None if something else holds the port."""
    try:
        listener = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
        listener.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        address: tuple[str, int] = ("::", port)
    except OSError:  # no IPv6 on this system
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        address = ("0.0.0.0", port)
    # Connections the page answered linger in TIME_WAIT after it stops; the proxy that takes the port
    # next can bind over them only if this socket allowed it too (as http.server's own servers do).
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind(address)
        listener.listen(64)
    except OSError:
        listener.close()
        return None
    return listener


def start_page(paths: Paths, port: int) -> subprocess.Popen[bytes] | None:
    """Serve the progress page on `port` in a process of its own, if the port is free."""
    listener = listen(port)
    if listener is None:
        return None
    with listener:
        argv = [
            sys.executable,
            os.path.abspath(__file__),
            "--root",
            paths.root,
            "serve-status",
            "--page",
            "--fd",
            str(listener.fileno()),
        ]
        return subprocess.Popen(
            argv,
            pass_fds=[listener.fileno()],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )


def stop(process: subprocess.Popen[bytes] | None) -> None:
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


# -------------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None, page_port: int = HTTP_PORT) -> int:
    parser = argparse.ArgumentParser(
        prog="classimage-provision", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--root", default="/", help="act on the system mounted at ROOT (default /)")
    verbs = parser.add_subparsers(dest="verb", required=True)
    verbs.add_parser("run", help="run every step not done yet")
    status = verbs.add_parser("status", help="where provisioning stands")
    status.add_argument("--json", action="store_true", help="print the status file")
    verbs.add_parser("resume", help="run only if an earlier run was interrupted")
    verbs.add_parser("seal", help="after a successful bake: record what the image holds")
    verbs.add_parser("finish-bake", help="on Packer's build droplet: wait, seal and clean for a snapshot")
    check = verbs.add_parser("check-image", help="refuse unless this droplet was made from a classimage snapshot")
    check.add_argument("--bake-digest", required=True)
    serving = verbs.add_parser("serve-status", help="answer HTTP requests with the status (no log tails)")
    where = serving.add_mutually_exclusive_group(required=True)
    where.add_argument("--port", type=int, help="listen on 127.0.0.1:PORT")
    where.add_argument("--fd", type=int, help=argparse.SUPPRESS)  # a socket already listening
    serving.add_argument("--page", action="store_true", help="answer other paths with the progress page")
    args = parser.parse_args(argv)
    paths = Paths(args.root)
    if args.verb == "status":
        return command_status(paths, args.json)
    if args.verb == "serve-status":
        if args.fd is not None:
            listener = socket.socket(fileno=args.fd)
        else:
            listener = socket.create_server(("127.0.0.1", args.port))
        return serve(paths, listener, args.page)
    if args.verb == "check-image":
        return command_check_image(paths, args.bake_digest)
    if os.geteuid() != 0:
        say("run it as root (sudo classimage-provision %s)" % args.verb, sys.stderr)
        return 1
    commands: dict[str, Callable[[], int]] = {
        "seal": lambda: command_seal(paths),
        "finish-bake": lambda: command_finish_bake(paths),
        "resume": lambda: command_run(paths, only_if_interrupted=True, page_port=page_port),
        "run": lambda: command_run(paths, page_port=page_port),
    }
    return commands[args.verb]()


if __name__ == "__main__":
    sys.exit(main())
