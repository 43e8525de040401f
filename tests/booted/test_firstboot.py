"""First boot, for real: rendered user data run by the real cloud-init in a booted test droplet
(tests/testdroplet.py) running TLJH 2.0.0's own bootstrap and installer, with stand-ins only for
what TLJH downloads from GitHub and anaconda hosts (tests/tljh_downloads.py).

The specs are the examples and test cases plus what this network needs, set through the spec as on
any campus network (network.proxy, network.ca_certificates, tljh.bootstrap_url). The journey tests
share one droplet that boots from nothing; the reboot test runs last on it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import pytest

import course_repo
import testdroplet
from conftest import CASES, REPO
from firstboot import (BOOT_DEADLINE, ProgressWatcher, assert_ready, boot, browser, droplets, explain, render_for,
                       student_journey)
from hubclient import wait_for
from classimage.droplet import provision

pytestmark = pytest.mark.droplet
JOURNEY = CASES / "droplet" / "journey.yaml"


@dataclass
class Booted:
    droplet: testdroplet.TestDroplet
    spec_path: Path
    cloud_init: dict
    seen: list[str]
    seconds: float


@pytest.fixture(scope="module")
def first_class(image, tmp_path_factory):
    """One droplet from nothing with the journey's spec, watched from outside while it provisions."""
    folder = tmp_path_factory.mktemp("first-class")
    ca = course_repo.TestCA(folder / "ca")
    with droplets(image, folder) as make:
        droplet = make(ca=ca)
        user_data, spec_path = render_for(droplet, JOURNEY, ca=ca)
        droplet.seed(user_data, "i-first-class")
        started = time.monotonic()
        droplet.boot()
        watcher = ProgressWatcher(droplet)
        watcher.start()
        try:
            cloud_init = droplet.wait_for_cloud_init(BOOT_DEADLINE)
        finally:
            watcher.stopped.set()
            watcher.join()
        yield Booted(droplet, spec_path, cloud_init, watcher.seen, time.monotonic() - started)


def test_a_class_boots_from_nothing_to_ready(first_class):
    assert first_class.cloud_init["status"] == "done", explain(first_class.droplet)
    status = assert_ready(first_class.droplet, first_class.spec_path)
    assert status["run"]["number"] == 1
    print(f"first class: boot to ready in {first_class.seconds:.0f} s")


def test_while_it_is_prepared_students_see_so(first_class):
    """Before TLJH: classimage's page on port 80. Once TLJH's hub runs but the course's software is
    still installing: the hub says the class is being prepared and takes no signups."""
    seen = [kind for kind in first_class.seen if kind not in ("nothing", "proxy, no hub yet")]  # handovers
    # classimage's page, the hub saying so (and taking no signups), then the open class; nothing else
    assert seen == ["classimage's page", "hub, being prepared (signup 404)", "hub, open"], first_class.seen


def test_a_students_first_class(first_class):
    student_journey(first_class.droplet, first_class.spec_path)


def test_metadata_service_is_closed_to_everyone_but_root(first_class):
    droplet = first_class.droplet
    # A stand-in for the metadata service on its address inside the droplet (port 8080: the hub's
    # proxy holds port 80 on every local address; the guard's rule covers every port).
    droplet.sh("ip addr add 169.254.169.254/32 dev lo && mkdir -p /var/tmp/metadata && "
               "echo user-data > /var/tmp/metadata/user-data && (setsid python3 -m http.server 8080 "
               "--bind 169.254.169.254 --directory /var/tmp/metadata >/dev/null 2>&1 &)", check=True)
    # From the droplet's own address, as on a droplet (the metadata address is not local there).
    fetch = f"curl --silent --show-error --max-time 5 --interface {droplet.ip} http://169.254.169.254:8080/user-data"
    as_root = wait_for(lambda: (lambda r: r if r.returncode == 0 else None)(droplet.sh(fetch)), 10, "the stand-in answers")
    assert as_root.stdout == "user-data\n", as_root.stderr
    as_student = droplet.sh(fetch, user=65534)
    assert as_student.returncode == 7, as_student.stderr  # curl: could not connect (refused at once)
    assert as_student.stdout == ""


def test_a_reboot_reruns_nothing(first_class):
    """Last on the shared droplet: the same disk and instance-id boot again."""
    droplet = first_class.droplet
    before = droplet.path(provision.STATUS).read_bytes()
    droplet.reboot()
    assert droplet.wait_for_cloud_init(120)["status"] == "done"
    assert droplet.path(provision.STATUS).read_bytes() == before  # nothing re-ran, not even the status
    hub = browser(droplet)
    wait_for(lambda: hub.get("/hub/api").code == 200, 90, "the hub's units come back by themselves")
    assert "being prepared" not in hub.get("/hub/login").body


@pytest.mark.parametrize("example", ["minimal", "underworld"])
def test_example_boots_to_ready(new_droplet, example):
    droplet = new_droplet()
    cloud_init, spec_path = boot(droplet, REPO / "examples" / f"{example}.yaml")
    assert cloud_init["status"] == "done", explain(droplet)
    assert_ready(droplet, spec_path)


def test_environment_from_a_course_repository(new_droplet):
    """binder/environment.yml (Python pin, conda and pip packages), apt.txt and postBuild, plus the
    spec's own pip package, on a real first boot."""
    droplet = new_droplet()
    cloud_init, spec_path = boot(droplet, CASES / "tljh" / "from-repo" / "spec.yaml")
    assert cloud_init["status"] == "done", explain(droplet)
    status = assert_ready(droplet, spec_path)
    assert [s["name"] for s in status["steps"]][-5:] == ["post-build", "class-data", "hub-accounts", "hub-reload",
                                                         "hub-ready"]
    assert "jupyter" in droplet.path(provision.LOG).read_text().split("run post-build", 1)[1]  # its output

