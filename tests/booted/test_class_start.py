"""The first minute of a lecture (issue 20), on a test droplet with the real TLJH 2.0.0: STUDENTS
students sign up, the instructor approves them on the Authorize Users page, then every student
opens the course's launch link within WINDOW seconds, each a browser of its own
(tests/classstart.py): login form, the hub's redirects and spawn progress, nbgitpuller's stream,
the notebook's kernel running an import of the course's package. Every student must get the
result; none may see an error page, press a button or wait past the deadline.

CLASSIMAGE_STORM_STUDENTS sets the class's size (default 30; develop with 3 to 5).
benchmarks/storm.py measures the same rush for 30 and 60 students."""

from __future__ import annotations

import asyncio
import json
import os
import re

import pytest

import classstart
import course_repo
from conftest import cli
from firstboot import ADMIN_PASSWORD, boot, droplets, explain
from hubclient import approvals
from classimage.pipeline import spec, tljh
from classimage.droplet import provision

pytestmark = [pytest.mark.droplet, pytest.mark.storm]  # alone: pytest -m storm (tests/conftest.py)
STUDENTS = int(os.environ.get("CLASSIMAGE_STORM_STUDENTS", "30"))
WINDOW = 10  # seconds over which the whole class clicks the link
DEADLINE = 300  # seconds after the click by which a student has given up
PASSWORD = "student-password-1"
COURSE = {
    "course": {"name": "Class Start", "slug": "classstart"},
    "hub": {"admins": ["instructor"], "memory_limit": "1G", "cpu_limit": 1},
    "environment": {"pip": ["tabulate"]},
    "content": [{"url": course_repo.URL, "open": course_repo.NOTEBOOK}],
}
# The lecture's first cell: the course's package, in the student's own server.
CELL = "import os, tabulate\nprint(os.environ['JUPYTERHUB_USER'], tabulate.tabulate([[6, 7]], tablefmt='plain'))"


def names(count: int) -> list[str]:
    return [f"student{number:02d}" for number in range(1, count + 1)]


@pytest.fixture(scope="module")
def lecture_hall(image, tmp_path_factory):
    """A class booted from nothing, its students signed up and approved by the instructor."""
    folder = tmp_path_factory.mktemp("class-start")
    ca = course_repo.TestCA(folder / "ca")
    with droplets(image, folder) as make:
        droplet = make(ca=ca)
        cloud_init, spec_path = boot(droplet, COURSE, instance_id="i-class-start", ca=ca)
        status = droplet.read_json(provision.STATUS) or {}
        assert cloud_init["status"] == "done" and status.get("state") == "ready", explain(droplet)
        base = f"http://{droplet.ip}"
        asyncio.run(classstart.sign_up_all(base, names(STUDENTS), PASSWORD))
        asyncio.run(approve(base, names(STUDENTS)))
        database = droplet.path(tljh.DATABASE.removeprefix("sqlite:///"))
        assert approvals(database) == {"instructor": True, **dict.fromkeys(names(STUDENTS), True)}
        yield droplet, spec_path


async def approve(base: str, students: list[str]) -> None:
    instructor = classstart.Instructor(base, "instructor", ADMIN_PASSWORD)
    try:
        await instructor.sign_in()
        await instructor.approve(students)
    finally:
        await instructor.close()


def test_class_start_storm_every_student_gets_a_kernel(lecture_hall, record_property):
    droplet, spec_path = lecture_hall
    base = f"http://{droplet.ip}"
    link = json.loads(cli("links", str(spec_path), "--hub", base, "--json").stdout)["content"][0]["link"]
    usage = classstart.Usage(droplet.leader)
    usage.start()
    try:
        outcomes = asyncio.run(classstart.class_start(base, link, names(STUDENTS), PASSWORD, CELL, WINDOW, DEADLINE))
    finally:
        usage.stop()
    clicks = [outcome.clicked for outcome in outcomes]
    assert max(clicks) - min(clicks) <= WINDOW + 1
    failed = {o.name: o.error for o in outcomes if o.error}
    assert failed == {}, failed
    for outcome in outcomes:
        assert outcome.printed.split() == [outcome.name, "6", "7"], (outcome.name, outcome.printed)
        assert outcome.error_pages == [], (outcome.name, outcome.error_pages)
        assert outcome.clicks == 1, f"{outcome.name} had to press a button: {outcome.seen}"
    # Each result came from the student's own server, which pulled the course into their home.
    folder = spec.load_file(spec_path).spec.content[0].folder
    for name in names(STUDENTS):
        unit = droplet.sh(f"systemctl show jupyter-{name} -p ActiveState", check=True).stdout
        assert "ActiveState=active" in unit, (name, unit)
        assert droplet.path(f"/home/jupyter-{name}/{folder}/{course_repo.NOTEBOOK}").is_file(), name
    seconds = sorted(o.seconds for o in outcomes)
    used = usage.summary()
    record_property("figure", f"class start, {STUDENTS} students clicking within {WINDOW} s: first result "
                    f"{seconds[0]:.1f} s, last {seconds[-1]:.1f} s, p50 {classstart.percentile(seconds, 0.5):.1f} s, "
                    f"p95 {classstart.percentile(seconds, 0.95):.1f} s; droplet {used['droplet_cores'][0]:.2f} cores "
                    f"on average, hub {used['hub_cores'][0]:.2f}")


def test_class_start_storm_traefik_api_still_guarded(lecture_hall):
    """The hub config hashes traefik's API password at bcrypt cost 4 for the rush (docs/design.md):
    the hash in force is that one, and a student's process on the droplet still cannot use the API,
    without the password or with a wrong one, nor read the hash or TLJH's secret."""
    droplet, _ = lecture_hall
    rules = droplet.read_text("/opt/tljh/state/rules/rules.toml") or ""
    hashes = re.findall(r'"api_admin:(\$2[aby]\$\d\d\$)', rules)
    assert hashes == ["$2b$04$"], rules
    api = "curl -s -o /dev/null -w '%{http_code}' --max-time 10 http://localhost:8099/api/overview"
    secret = droplet.read_text("/opt/tljh/state/traefik-api.secret").strip()
    assert droplet.sh(f"{api} -u api_admin:{secret}").stdout == "200"  # the check below can pass
    student = int(droplet.sh(f"id -u jupyter-{names(1)[0]}", check=True).stdout)
    for credentials in ("", " -u api_admin:", " -u api_admin:not-the-secret", f" -u api_admin:{secret[:-1]}"):
        assert droplet.sh(api + credentials, user=student).stdout == "401", credentials
    for private in ("/opt/tljh/state/rules/rules.toml", "/opt/tljh/state/traefik-api.secret"):
        read = droplet.sh(f"cat {private}", user=student)
        assert read.returncode != 0 and "Permission denied" in read.stderr, (private, read)
