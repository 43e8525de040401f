"""The provisioning runner (templates/provision.py.j2), rendered with paths under a temporary folder and
run by the system's python3 with real bash steps: order, status file, idempotence, failure, resume."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest

from classimage import templating

PYTHON = "/usr/bin/python3"  # the droplet's interpreter, not the test's virtualenv


class Droplet:
    """A runner with its plan, status, log and lock in `root`; steps are bash snippets."""

    def __init__(self, root: Path):
        self.root = root
        self.runner = root / "classimage-provision"
        self.status_path = root / "status.json"
        self.log = root / "classimage.log"
        self.lock = root / "provision.lock"
        self.plan_path = root / "plan.json"
        self.effects = root / "effects"
        self.runner.write_text(templating.render(
            "provision.py.j2", version="test", plan=str(self.plan_path), status=str(self.status_path),
            log=str(self.log), lock=str(self.lock), image=str(root / "image.json")))

    def plan(self, *steps: dict) -> None:
        """Each step: name, run (bash), optional check, when, timeout. Scripts are written as files."""
        entries = []
        for step in steps:
            entry = {"name": step["name"], "title": step.get("title", step["name"].title()),
                     "when": step.get("when", "once"), "timeout": step.get("timeout", 60),
                     "digest": str(hash((step["run"], step.get("check")))), "check": None}
            for kind in ("run", "check"):
                if step.get(kind):
                    path = self.root / f"{step['name']}.{kind}.sh"
                    path.write_text("#!/bin/bash\nset -euo pipefail\n" + step[kind] + "\n")
                    entry[kind] = str(path)
            entries.append(entry)
        self.plan_path.write_text(json.dumps({
            "format": 1, "classimage": "test", "course": {"name": "Test Course", "slug": "test"},
            "spec_digest": "abc", "stage": "full", "steps": entries}))

    def run(self, verb: str = "run", *args: str, timeout: int = 60) -> subprocess.CompletedProcess:
        return subprocess.run([PYTHON, str(self.runner), verb, *args], capture_output=True, text=True,
                              timeout=timeout)

    @property
    def status(self) -> dict:
        return json.loads(self.status_path.read_text())

    def ran(self) -> list[str]:
        return self.effects.read_text().split() if self.effects.exists() else []

    def step(self, name: str) -> dict:
        return next(s for s in self.status["steps"] if s["name"] == name)


@pytest.fixture
def droplet(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("the runner refuses to run as non-root")
    return Droplet(tmp_path)


def effect(name: str) -> str:
    return f'echo {name} >> "$EFFECTS"'


@pytest.fixture(autouse=True)
def _effects_env(tmp_path, monkeypatch):
    monkeypatch.setenv("EFFECTS", str(tmp_path / "effects"))


def three_steps(fail_second: bool = False) -> list[dict]:
    second = effect("two") + ("; echo 'E: Unable to locate package nosuchpackage' >&2; exit 100" if fail_second else "")
    return [{"name": "one", "run": effect("one")},
            {"name": "two", "run": second},
            {"name": "reload", "run": effect("reload"), "when": "after-changes"}]


def test_runs_every_step_in_order_and_reports_ready(droplet):
    droplet.plan(*three_steps())
    result = droplet.run()
    assert result.returncode == 0, result.stderr
    assert droplet.ran() == ["one", "two", "reload"]
    status = droplet.status
    assert status["state"] == "ready" and status["failed_step"] is None
    assert status["course"] == {"name": "Test Course", "slug": "test"}
    for step in status["steps"]:
        assert step["state"] == "done" and step["how"] == "ran"
        assert step["started"] <= step["finished"] and step["seconds"] >= 0
    assert "[3/3] Reload: done" in result.stdout
    assert oct(droplet.status_path.stat().st_mode & 0o777) == "0o644"
    assert oct(droplet.log.stat().st_mode & 0o777) == "0o600"


def test_a_second_run_redoes_nothing(droplet):
    droplet.plan(*three_steps())
    droplet.run()
    before = droplet.status
    result = droplet.run()
    assert result.returncode == 0
    assert droplet.ran() == ["one", "two", "reload"]
    assert [s["finished"] for s in droplet.status["steps"]] == [s["finished"] for s in before["steps"]]
    assert droplet.status["run"]["number"] == 2


def test_failure_names_the_step_and_shows_its_output(droplet):
    droplet.plan(*three_steps(fail_second=True))
    result = droplet.run()
    assert result.returncode == 1
    status = droplet.status
    assert status["state"] == "failed" and status["failed_step"] == "two"
    two = droplet.step("two")
    assert two["state"] == "failed" and two["exit_code"] == 100
    assert two["log_tail"][-1] == "E: Unable to locate package nosuchpackage"
    assert droplet.step("reload")["state"] == "pending"
    assert "FAILED (exit code 100)" in result.stderr and "nosuchpackage" in result.stderr
    assert "nosuchpackage" in droplet.log.read_text()
    assert droplet.run("status").returncode == 1


def test_resume_after_a_fix_does_not_redo_finished_steps(droplet):
    droplet.plan(*three_steps(fail_second=True))
    droplet.run()
    droplet.plan(*three_steps())  # the cause is fixed: step two now succeeds
    result = droplet.run()
    assert result.returncode == 0, result.stderr
    assert droplet.ran() == ["one", "two", "two", "reload"]
    assert droplet.status["state"] == "ready"


def test_check_skips_work_already_in_place(droplet):
    droplet.plan({"name": "one", "run": effect("one"), "check": "true"},
                 {"name": "two", "run": effect("two"), "check": "false"})
    assert droplet.run().returncode == 0
    assert droplet.ran() == ["two"]
    assert droplet.step("one")["how"] == "already in place"


def test_after_changes_steps_follow_a_changed_step(droplet):
    droplet.plan(*three_steps())
    droplet.run()
    changed = three_steps()
    changed[1]["run"] = effect("two-changed")
    droplet.plan(*changed)
    droplet.run()
    assert droplet.ran() == ["one", "two", "reload", "two-changed", "reload"]


def test_a_step_past_its_timeout_is_stopped(droplet):
    droplet.plan({"name": "slow", "run": "echo starting; sleep 30", "timeout": 1})
    started = time.monotonic()
    result = droplet.run()
    assert time.monotonic() - started < 20
    assert result.returncode == 1
    assert droplet.step("slow")["exit_code"] == "timeout"
    assert "timed out after 1s" in result.stderr


def test_a_background_process_left_by_a_step_does_not_hold_the_runner(droplet):
    droplet.plan({"name": "spawn", "run": "sleep 30 & echo spawned"})
    started = time.monotonic()
    assert droplet.run().returncode == 0
    assert time.monotonic() - started < 10


def test_only_one_run_at_a_time(droplet):
    droplet.plan({"name": "slow", "run": "sleep 5"})
    first = subprocess.Popen([PYTHON, str(droplet.runner), "run"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    for _ in range(100):  # until the first run holds the lock (it writes the status once it does)
        if droplet.status_path.exists() and droplet.status["state"] == "running":
            break
        time.sleep(0.05)
    second = droplet.run()
    first.wait(timeout=30)
    assert second.returncode == 75 and "another classimage-provision is running" in second.stderr
    assert first.returncode == 0


def test_resume_at_boot_continues_only_an_interrupted_run(droplet):
    droplet.plan(*three_steps())
    assert droplet.run("resume").returncode == 0
    assert not droplet.status_path.exists()  # first boot: nothing started yet, runcmd will start it
    # A run killed mid-way (the droplet rebooted) leaves state "running" and no lock holder.
    droplet.plan({"name": "one", "run": effect("one")}, {"name": "hang", "run": "sleep 60"})
    interrupted = subprocess.Popen([PYTHON, str(droplet.runner), "run"], stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, start_new_session=True)
    for _ in range(100):
        if droplet.status_path.exists() and droplet.step("hang")["state"] == "running":
            break
        time.sleep(0.1)
    os.killpg(interrupted.pid, 9)
    interrupted.wait()
    assert droplet.status["state"] == "running"
    droplet.plan({"name": "one", "run": effect("one")}, {"name": "hang", "run": effect("after-reboot")})
    result = droplet.run("resume")
    assert result.returncode == 0 and "resuming" in result.stdout
    assert droplet.status["state"] == "ready"
    assert droplet.ran()[-1] == "after-reboot"
    # Once ready, resume at a later boot does nothing.
    assert droplet.run("resume").returncode == 0
    assert droplet.ran()[-1] == "after-reboot"


def test_status_command(droplet):
    assert droplet.run("status").returncode == 1  # not started
    droplet.plan(*three_steps())
    droplet.run()
    result = droplet.run("status")
    assert result.returncode == 0
    assert result.stdout.splitlines()[0] == "Test Course (test), full stage: ready"
    assert json.loads(droplet.run("status", "--json").stdout) == droplet.status


def test_status_over_http_leaves_out_log_tails(droplet):
    import socket
    import urllib.error
    import urllib.request

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen([PYTHON, str(droplet.runner), "serve-status", "--port", str(port)])
    try:
        url = f"http://127.0.0.1:{port}/services/classimage-status/"
        for _ in range(50):
            try:
                urllib.request.urlopen(url, timeout=2)
            except urllib.error.HTTPError as error:
                assert error.code == 503  # provisioning has not started
                break
            except OSError:
                time.sleep(0.1)
        droplet.plan(*three_steps(fail_second=True))
        droplet.run()
        with urllib.request.urlopen(url, timeout=5) as response:
            public = json.loads(response.read())
        assert public["state"] == "failed" and public["failed_step"] == "two"
        assert [s["name"] for s in public["steps"]] == ["one", "two", "reload"]
        assert "log_tail" not in json.dumps(public) and "nosuchpackage" not in json.dumps(public)
        assert "pid" not in public["run"]
    finally:
        server.terminate()
        server.wait()
