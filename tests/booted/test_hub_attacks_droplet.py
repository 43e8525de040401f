"""The hub attacks of issue 16 over HTTP, against the hub of a test droplet: the rendered user data
booted by the real cloud-init, TLJH 2.0.0's own installer and units, its JupyterHub 5 with
NativeAuthenticator 1.3.0 behind the real traefik on port 80 (tests/droplet/test_hub_attacks.py runs the
same attacks, and more, against a hub on loopback in seconds).

- csrf / cross_site: pages on another site, opened by the signed-in instructor, make the browser
  request NativeAuthenticator's approve, un-approve and discard addresses: nothing changes.
- deleted_admin: an admin deleted in the admin panel while still in hub.admins: nobody can sign up
  with the name, before or after the hub restarts."""

from __future__ import annotations

import contextlib
import sqlite3

import pytest

from firstboot import ADMIN_PASSWORD, assert_ready, boot, browser, droplets, explain
import hubclient
from hubclient import Browser, text_of, wait_for
from classimage.pipeline import tljh

pytestmark = pytest.mark.droplet
COURSE = {"course": {"name": "Security 101", "slug": "sec101"}, "hub": {"admins": ["instructor", "ta"]}}
STUDENT_PASSWORD = "student-password-1"
ATTACKER_PASSWORD = "attacker-password-1"


@pytest.fixture(scope="module")
def attacked(image, tmp_path_factory):
    """One class, booted from nothing with the rendered user data, ready for students."""
    folder = tmp_path_factory.mktemp("hub-attacks")
    with droplets(image, folder) as make:
        droplet = make()
        cloud_init, spec_path = boot(droplet, COURSE, instance_id="i-hub-attacks")
        assert cloud_init["status"] == "done", explain(droplet)
        assert_ready(droplet, spec_path)
        yield droplet


def approvals(droplet) -> dict[str, bool]:
    return hubclient.approvals(droplet.path(tljh.DATABASE.removeprefix("sqlite:///")))


def signed_in(droplet, name: str, password: str) -> Browser:
    return hubclient.signed_in(f"http://{droplet.ip}", name, password)


def test_csrf_cross_site_requests_through_the_proxy_change_nothing(attacked):
    instructor = signed_in(attacked, "instructor", ADMIN_PASSWORD)
    assert instructor.is_signed_in()
    assert browser(attacked).sign_up("mallory", STUDENT_PASSWORD).code == 200
    before = approvals(attacked)
    assert before == {"instructor": True, "ta": True, "mallory": False}
    for path in ["/hub/authorize/mallory", "/hub/authorize/instructor", "/hub/discard/instructor",
                 "/hub/authorize/ta", "/hub/discard/ta"]:
        page = instructor.cross_site("GET", path)
        assert approvals(attacked) == before, path
        assert page.code == 405, (path, page)
    for path, form in [("/hub/authorize/mallory", {"authorized": "yes"}), ("/hub/discard/mallory", {}),
                       ("/hub/authorize/instructor", {"authorized": "no"})]:
        page = instructor.cross_site("POST", path, form)
        assert approvals(attacked) == before, path
        assert page.code == 403, (path, page)
    assert instructor.is_signed_in()
    # The instructor's own buttons: a form with the hub's _xsrf; never for an admin.
    assert instructor.set_approval("mallory").code == 200 and approvals(attacked)["mallory"] is True
    assert instructor.set_approval("ta", approved=False).code == 403 and approvals(attacked)["ta"] is True


def test_deleted_admin_name_cannot_be_signed_up_through_the_proxy(attacked):
    instructor = signed_in(attacked, "instructor", ADMIN_PASSWORD)
    instructor.get("/hub/admin")
    code, body = instructor.api("DELETE", "/hub/api/users/ta")  # the admin panel's "Delete User"
    assert code == 403, body  # refused now; the database of an older hub, or one edited by hand, may lack it:
    with contextlib.closing(sqlite3.connect(attacked.path(tljh.DATABASE.removeprefix("sqlite:///")))) as db, db:
        db.execute("DELETE FROM users_info WHERE username = 'ta'")  # NativeAuthenticator's delete_user
    assert "ta" not in approvals(attacked)

    def refused() -> None:
        for attempt in ("ta", "TA"):
            attacker = browser(attacked)
            page = attacker.sign_up(attempt, ATTACKER_PASSWORD)
            attacker.sign_in(attempt, ATTACKER_PASSWORD)
            assert not attacker.is_signed_in(), attempt
            assert "ta" not in approvals(attacked), attempt
            assert "belongs to this course's instructors" in text_of(page), (attempt, page)

    refused()
    attacked.sh("systemctl restart jupyterhub.service", check=True)  # the hub makes a user for ta again
    hub = browser(attacked)
    wait_for(lambda: hub.get("/hub/api").code == 200, 120, "the hub answers after its restart")
    refused()
    # A student's name still signs up, and waits for approval.
    assert "has been sent to the admin" in text_of(browser(attacked).sign_up("student2", STUDENT_PASSWORD))
