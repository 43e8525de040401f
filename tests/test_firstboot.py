"""First boot, for real: rendered user data run by the real cloud-init in a booted test droplet
(tests/testdroplet.py), with the TLJH stand-in (tests/standin/) served at the spec's bootstrap URL.

The specs are the examples plus what this network needs, set through the spec as on any campus
network: network.proxy (the harness's tinyproxy), network.ca_certificates (the CA that inspects
TLS here, and a test CA), and tljh.bootstrap_url. The tests that only look at a ready minimal
droplet share one boot; the reboot test runs last on it.
"""

from __future__ import annotations

import http.cookiejar
import re
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

import testdroplet
from conftest import CASES, REPO
from firstboot import (BOOT_DEADLINE, ProgressWatcher, assert_ready, boot, droplets, explain, fetch, records,
                       render_for)
from classimage import droplet as layout

pytestmark = pytest.mark.droplet


@dataclass
class Booted:
    droplet: testdroplet.TestDroplet
    spec_path: Path
    cloud_init: dict
    progress: list


@pytest.fixture(scope="module")
def minimal(image, tmp_path_factory):
    with droplets(image, tmp_path_factory.mktemp("minimal")) as make:
        droplet = make()
        user_data, spec_path = render_for(droplet, REPO / "examples" / "minimal.yaml")
        droplet.seed(user_data, "i-minimal")
        droplet.boot()
        watcher = ProgressWatcher(droplet)
        watcher.start()
        try:
            cloud_init = droplet.wait_for_cloud_init(BOOT_DEADLINE)
        finally:
            watcher.stopped.set()
            watcher.join()
        yield Booted(droplet, spec_path, cloud_init, watcher.seen)


def test_minimal_example_boots_to_ready(minimal):
    assert minimal.cloud_init["status"] == "done", explain(minimal.droplet)
    status = assert_ready(minimal.droplet, minimal.spec_path)
    assert status["run"]["number"] == 1
    # While TLJH installed, its progress page answered on port 80.
    assert any("TLJH stand-in: installing" in body for body in minimal.progress), minimal.progress[-3:]


def test_students_sign_up_and_the_admin_approves_them(minimal):
    """The auth settings work in the real JupyterHub with the real NativeAuthenticator: the admin is
    approved at signup, sees the Authorize Users link (template_paths), approves a student, who can
    then sign in (allow_all: JupyterHub 5 refuses everyone without it)."""
    droplet = minimal.droplet

    def browser():
        return urllib.request.build_opener(urllib.request.ProxyHandler({}),
                                           urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))

    def form(opener, path, fields):
        code, page, _ = fetch(droplet, path, opener)
        assert code == 200, page
        token = re.search(r'name="_xsrf" value="([^"]+)"', page)
        return fetch(droplet, path, opener, {**fields, **({"_xsrf": token.group(1)} if token else {})})

    def sign_up(name, password):
        code, page, _ = form(browser(), "/hub/signup", {"username": name, "signup_password": password,
                                                        "signup_password_confirmation": password})
        assert code == 200, page

    def sign_in(name, password):
        opener = browser()
        code, page, _ = form(opener, "/hub/login", {"username": name, "password": password})
        return opener, page

    sign_up("instructor", "correct-horse-battery")
    admin, page = sign_in("instructor", "correct-horse-battery")
    code, home, _ = fetch(droplet, "/hub/home", admin)
    assert code == 200 and "Authorize Users" in home, home[:2000]

    sign_up("student1", "student-password-1")
    _, page = sign_in("student1", "student-password-1")
    assert "not been authorized" in page or "authorized by an admin" in page
    assert fetch(droplet, "/hub/authorize/student1", admin)[0] == 200
    student, page = sign_in("student1", "student-password-1")
    code, home, _ = fetch(droplet, "/hub/home", student)
    assert code == 200 and "student1" in home and "Authorize Users" not in home
    # Too short a password is refused (minimum_password_length from the spec).
    code, page, _ = form(browser(), "/hub/signup", {"username": "student2", "signup_password": "short",
                                                    "signup_password_confirmation": "short"})
    assert "at least 8" in page or "too short" in page.lower()


def test_metadata_service_is_closed_to_everyone_but_root(minimal):
    droplet = minimal.droplet
    # A stand-in for the metadata service on its address inside the droplet (port 8080: the hub's
    # proxy holds port 80 on every local address; the guard's rule covers every port).
    droplet.sh("ip addr add 169.254.169.254/32 dev lo && mkdir -p /var/tmp/metadata && "
               "echo user-data > /var/tmp/metadata/user-data && (setsid python3 -m http.server 8080 "
               "--bind 169.254.169.254 --directory /var/tmp/metadata >/dev/null 2>&1 &)", check=True)
    # From the droplet's own address, as on a droplet (the metadata address is not local there).
    fetch = f"curl --silent --show-error --max-time 5 --interface {droplet.ip} http://169.254.169.254:8080/user-data"
    for _ in range(20):
        as_root = droplet.sh(fetch)
        if as_root.returncode == 0:
            break
        time.sleep(0.5)
    assert as_root.stdout == "user-data\n", as_root.stderr
    as_student = droplet.sh(fetch, user=65534)
    assert as_student.returncode == 7, as_student.stderr  # curl: could not connect (refused at once)
    assert as_student.stdout == ""


def test_a_reboot_reruns_nothing(minimal):
    """Last on the shared droplet: the same disk and instance-id boot again."""
    droplet = minimal.droplet
    before = droplet.path(layout.STATUS).read_bytes()
    droplet.reboot()
    assert droplet.wait_for_cloud_init(120)["status"] == "done"
    assert droplet.path(layout.STATUS).read_bytes() == before  # nothing re-ran, not even the status
    assert len(records(droplet, "bootstrap-calls.jsonl")) == 1
    deadline = time.monotonic() + 60  # the hub's units come back by themselves
    while fetch(droplet, "/hub/health")[0] != 200 and time.monotonic() < deadline:
        time.sleep(1)
    assert fetch(droplet, "/hub/health")[0] == 200


def test_underworld_example_boots_to_ready(new_droplet):
    droplet = new_droplet()
    cloud_init, spec_path = boot(droplet, REPO / "examples" / "underworld.yaml")
    assert cloud_init["status"] == "done", explain(droplet)
    assert_ready(droplet, spec_path)




def test_environment_from_a_course_repository(new_droplet):
    """binder/environment.yml (Python pin, conda and pip packages), apt.txt and postBuild, plus the
    spec's own pip package, on a real first boot."""
    droplet = new_droplet()
    cloud_init, spec_path = boot(droplet, CASES / "tljh" / "from-repo" / "spec.yaml")
    assert cloud_init["status"] == "done", explain(droplet)
    status = assert_ready(droplet, spec_path)
    assert [s["name"] for s in status["steps"]][-3:] == ["post-build", "hub-reload", "hub-ready"]
    assert "jupyter" in droplet.path(layout.LOG).read_text().split("run post-build", 1)[1]  # its output
