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
  classimage-provision https-nudge    while traefik holds no certificate for the hub's name: make it
                                     order again once the name resolves anew, or every 20 minutes
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

The program ships as one zip (runner.py, statusservice.py, provision.py: the plan and the paths).
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import signal
import socket
import subprocess
import sys
import time
import zipfile
from dataclasses import asdict
from typing import IO, Any, Callable

try:  # in the package (classimage.droplet): the pipeline's and the tests'
    from . import provision, statusservice
except ImportError:  # run as a program: its sibling modules lie beside it (in its zip; in this folder)
    import provision  # type: ignore[no-redef,import-not-found]
    import statusservice  # type: ignore[no-redef,import-not-found]


# -------------------------------------------------------------------------------------------------
# The status document, and the decisions a run makes. Pure functions: tested without a droplet.


def must_run(step: provision.PlanStep, previous: dict[str, Any] | None, changed_before: bool) -> bool:
    """Whether `step` runs (its check may still find the work in place): not done before with the
    same content, or an after-changes step that follows a step that ran."""
    if previous is None or previous.get("state") != "done" or previous.get("digest") != step.digest:
        return True
    return step.when == provision.AFTER_CHANGES and changed_before


def new_status(
    plan: provision.Plan, previous: dict[str, Any] | None, image: dict[str, Any] | None, pid: int, started: str
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
        "format": provision.FORMAT,
        "state": "running",
        "course": asdict(plan.course),
        "classimage": plan.classimage,
        "spec_digest": plan.spec_digest,
        "stage": plan.stage,
        "log": provision.LOG,
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


# -------------------------------------------------------------------------------------------------
# A run


class Provisioning:
    def __init__(
        self, plan: provision.Plan, paths: provision.Paths, log: IO[bytes], page_port: int = provision.HTTP_PORT
    ):
        self.plan, self.paths, self.log, self.page_port = plan, paths, log, page_port
        self.status = new_status(
            plan, provision.read_json(paths.status), provision.read_json(paths.image), os.getpid(), provision.now()
        )
        self.page: subprocess.Popen[bytes] | None = None

    def save(self) -> None:
        # root's alone: a failed step's output may say anything (the status service shows the public
        # part, the token holder the rest).
        provision.write_json(self.paths.status, self.status, 0o600)

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
            entry.update(state="running", started=provision.now(), finished=None, seconds=None)
            entry.pop("exit_code", None)
            entry.pop("log_tail", None)
            self.save()
            started = time.monotonic()
            if step.check and self.script(step, step.check, "check")[0] == 0:
                self.finish(entry, started, "already in place")
                provision.say(label + ": already in place")
                continue
            provision.say(label + " ...")
            code, tail = self.script(step, step.run, "run")
            if code != 0:
                self.finish(entry, started, "failed", state="failed")
                entry.update(exit_code=code, log_tail=tail)
                self.status.update(state="failed", failed_step=step.name)
                self.status["run"]["finished"] = provision.now()
                self.save()
                reason = "timed out after %ss" % step.timeout if code == "timeout" else "exit code %s" % code
                provision.say("%s: FAILED (%s). Last lines of its output:" % (label, reason), sys.stderr)
                for line in tail:
                    print("    " + line, file=sys.stderr)
                provision.say(
                    "fix the cause, then run `sudo classimage-provision run` to resume; log: " + provision.LOG,
                    sys.stderr,
                )
                return 1
            changed = True
            self.finish(entry, started, "ran")
            provision.say("%s: done in %ds" % (label, entry["seconds"]))
        self.status.update(state="ready", failed_step=None)
        self.status["run"]["finished"] = provision.now()
        self.save()
        provision.say("ready: %s (%s)" % (self.plan.course.name, self.plan.course.slug))
        return 0

    def finish(self, entry: dict[str, Any], started: float, how: str, state: str = "done") -> None:
        entry.update(state=state, how=how, finished=provision.now(), seconds=round(time.monotonic() - started, 1))
        self.save()

    def script(self, step: provision.PlanStep, path: str, kind: str) -> tuple[Any, list[str]]:
        """Run one step script with its output in the log; return (exit code, last lines).

        The script writes straight into the log file, not through a pipe: a background process it
        leaves behind (a server it started) cannot hold the runner up."""
        self.log.write(("\n==> %s %s %s: %s\n" % (provision.now(), kind, step.name, path)).encode())
        self.log.flush()
        start = self.log.tell()
        env = dict(os.environ, PATH=provision.PATH, HOME="/root", LANG="C.UTF-8", DEBIAN_FRONTEND="noninteractive")
        env.update(self.plan.environment)
        env.pop(provision.PROGRESS_PAGE_PID, None)
        if self.page is not None and self.page.poll() is None:
            env[provision.PROGRESS_PAGE_PID] = str(self.page.pid)
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
        self.log.write(("==> %s %s %s: exit %s\n" % (provision.now(), kind, step.name, code)).encode())
        self.log.flush()
        with open(self.paths.log, "rb") as log:
            log.seek(max(start, end - 65536))
            lines = log.read(end - log.tell()).decode("utf-8", "replace").splitlines()
        return code, lines[-provision.TAIL_LINES :]


def locked(paths: provision.Paths) -> IO[str] | None:
    """Hold the provisioning lock for this process's life, or return None if another run holds it."""
    os.makedirs(os.path.dirname(paths.lock), exist_ok=True)
    handle = open(paths.lock, "w")  # noqa: SIM115 (held, and so locked, for the process's life)
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        return None
    return handle


def command_run(paths: provision.Paths, only_if_interrupted: bool = False, page_port: int = provision.HTTP_PORT) -> int:
    lock = locked(paths)
    if lock is None:
        provision.say("another classimage-provision is running; see `classimage-provision status`", sys.stderr)
        return provision.EX_TEMPFAIL
    with lock:
        if only_if_interrupted:
            status = provision.read_json(paths.status)
            if not status or status.get("state") != "running":
                return 0
            provision.say("resuming a provisioning that was interrupted")
        try:
            plan = provision.read_plan(paths)
        except provision.PlanError as error:
            provision.say("cannot read the plan %s: %s" % (paths.plan, error), sys.stderr)
            return 1
        if plan is None:
            provision.say("no plan at %s: this server was not set up by classimage user data" % paths.plan, sys.stderr)
            return 1
        unpack(paths)
        os.makedirs(os.path.dirname(paths.log), exist_ok=True)
        with open(paths.log, "ab") as log:
            os.chmod(paths.log, 0o600)
            return Provisioning(plan, paths, log, page_port).run()


def command_seal(paths: provision.Paths) -> int:
    """Record what this baked system holds (image.json) and drop the run's state, refusing unless
    the bake completed: Packer's build fails here, showing why."""
    lock = locked(paths)
    if lock is None:
        provision.say("the bake is still running", sys.stderr)
        return provision.EX_TEMPFAIL
    with lock:
        status = provision.read_json(paths.status)
        refusal = provision.seal_refusal(status)
        if refusal is None:
            try:
                plan = provision.read_plan(paths)
            except provision.PlanError as error:
                plan, refusal = None, "the plan cannot be read: %s" % error
            if plan is None and refusal is None:
                refusal = "no plan at %s" % paths.plan
        if refusal is not None or plan is None or status is None:
            if status is None:
                provision.say(
                    "no bake ran (no %s); the end of %s:" % (provision.STATUS, provision.CLOUD_INIT_OUTPUT), sys.stderr
                )
                for line in tail_of(paths.cloud_init_output, provision.TAIL_LINES):
                    print("    " + line, file=sys.stderr)
            else:
                command_status(paths, stream=sys.stderr)
            provision.say("not sealing: %s" % refusal, sys.stderr)
            return 1
        image = provision.image_record(status, plan, provision.now())
        provision.write_json(paths.image, image, 0o644)
        os.unlink(paths.status)
        provision.say("sealed: %s, bake %s" % (image["course"]["slug"], image["bake_digest"]))
        return 0


def command_finish_bake(paths: provision.Paths) -> int:
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


def command_check_image(paths: provision.Paths, bake_digest: str) -> int:
    code, messages = provision.image_verdict(provision.read_json(paths.image), bake_digest)
    for message in messages:
        provision.say(message, sys.stderr if code or message.startswith("WARNING") else sys.stdout)
    return code


def command_status(paths: provision.Paths, as_json: bool = False, stream: IO[str] | None = None) -> int:
    stream = stream or sys.stdout
    status = provision.read_json(paths.status)
    if status is None:
        print("classimage: provisioning has not started (no %s)" % provision.STATUS, file=stream)
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
    data = provision.read_json(paths.at(provision.DATA_RECORD)) or {}
    if data.get("error"):
        print("the class's data: " + data["error"], file=stream)
    for warning in statusservice.hub_warnings(paths) + statusservice.data_warnings(data):
        print("WARNING: " + warning, file=stream)
    print("log: %s" % status.get("log", provision.LOG), file=stream)
    return {"ready": 0, "running": 3}.get(status["state"], 1)


def start_page(paths: provision.Paths, port: int) -> subprocess.Popen[bytes] | None:
    """Serve the progress page on `port` in a process of its own, if the port is free."""
    listener = statusservice.listen(port)
    if listener is None:
        return None
    with listener:
        argv = [
            sys.executable,
            program(),
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


def archive() -> str | None:
    """The zip this program came in (classimage-provision), or None when run from its source."""
    loader = getattr(__spec__, "loader", None)  # none when run as a file
    return getattr(loader, "archive", None)


def program() -> str:
    return archive() or os.path.abspath(__file__)


def unpack(paths: provision.Paths) -> None:
    """Stage the files the user data put in this program's zip (classimage's programs and the hub's
    config: gzip compresses them together with the runner) where the steps install them from, as
    cloud-init stages the rest: under FILES, root's alone."""
    zipped_at = archive()
    if zipped_at is None:
        return
    with zipfile.ZipFile(zipped_at) as zipped:
        for name in zipped.namelist():
            if not name.startswith(provision.FILES_IN_ZIP):
                continue
            path = paths.at(provision.FILES + "/" + name[len(provision.FILES_IN_ZIP) :])
            os.makedirs(os.path.dirname(path), exist_ok=True)
            handle = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
            os.fchmod(handle, 0o600)
            with os.fdopen(handle, "wb") as out:
                out.write(zipped.read(name))


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


def main(argv: list[str] | None = None, page_port: int = provision.HTTP_PORT) -> int:
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
    verbs.add_parser(
        "https-nudge", help="make traefik order the hub's certificate again if it is time (a timer runs it)"
    )
    serving = verbs.add_parser("serve-status", help="answer HTTP requests with the status (no log tails)")
    where = serving.add_mutually_exclusive_group(required=True)
    where.add_argument("--port", type=int, help="listen on 127.0.0.1:PORT")
    where.add_argument("--fd", type=int, help=argparse.SUPPRESS)  # a socket already listening
    serving.add_argument("--page", action="store_true", help="answer other paths with the progress page")
    args = parser.parse_args(argv)
    paths = provision.Paths(args.root)
    if args.verb == "status":
        return command_status(paths, args.json)
    if args.verb == "serve-status":
        if args.fd is not None:
            listener = socket.socket(fileno=args.fd)
        else:
            listener = socket.create_server(("127.0.0.1", args.port))
        return statusservice.serve(paths, listener, args.page)
    if args.verb == "check-image":
        return command_check_image(paths, args.bake_digest)
    if os.geteuid() != 0:
        provision.say("run it as root (sudo classimage-provision %s)" % args.verb, sys.stderr)
        return 1
    commands: dict[str, Callable[[], int]] = {
        "seal": lambda: command_seal(paths),
        "finish-bake": lambda: command_finish_bake(paths),
        "resume": lambda: command_run(paths, only_if_interrupted=True, page_port=page_port),
        "run": lambda: command_run(paths, page_port=page_port),
        "https-nudge": lambda: statusservice.https_nudge(paths),
    }
    return commands[args.verb]()


if __name__ == "__main__":
    sys.exit(main())
