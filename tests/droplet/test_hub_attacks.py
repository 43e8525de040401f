"""Attacks on the hub (issue 16), each performed against the real JupyterHub 5 with the real
NativeAuthenticator 1.3.0 and FirstUseAuthenticator, on both hubs classimage configures (one source
of guards, classimage/droplet/hubguards.py): a droplet's, configured by TLJH 2.0.0's own config code from
what classimage renders, and a cluster's, configured by Zero to JupyterHub's chart 4.4.0 from the
values `render --target z2jh` writes (tests/hubprocess.py: hubs on loopback; each test named
[droplet] or [z2jh]; tests/booted/test_hub_attacks_droplet.py runs the CSRF and deleted-admin attacks
through a test droplet's traefik).

- csrf / cross_site: a page on another site, opened by the signed-in instructor, makes the browser
  request NativeAuthenticator's approve, un-approve and discard addresses: nothing changes.
- deleted_admin: an admin deleted in the admin panel (or never made, or un-approved): nobody can
  sign up with, or first-use, the name.
- reserved_name_held: a student holds a name that is then listed in hub.admins: hub-accounts refuses
  it and the student never becomes an admin.
- demoted_admin: a TA removed from hub.admins is no admin after the next deploy (JupyterHub keeps
  the flag of a name dropped from admin_users).
- long or unsafe names (name_collision, see test_usernames.py): refused at signup with a message.
- the course's name in the "being prepared" banner: text, never markup (a droplet's only).
- the provisioning status file: root's alone (a droplet's only)."""

from __future__ import annotations

import contextlib
import dbm
import json
import os
import shutil
import sqlite3
import subprocess
import tempfile
from pathlib import Path

import pytest

import hubclient
from hubclient import Browser, text_of
from hubprocess import HUBS, Hub, HubExited, free_port
from classimage.pipeline import admins, model, spec
from classimage.droplet import provision, runner

ADMIN_PASSWORD = "correct-horse-battery-staple"
TA_PASSWORD = "another-long-ta-password"
STUDENT_PASSWORD = "student-password-1"
ATTACKER_PASSWORD = "attacker-password-1"
COURSE = {"course": {"name": "Security 101", "slug": "sec101"}, "hub": {"admins": ["instructor", "ta"]},
          "z2jh": {"image": "registry.example.edu/sec101/environment"}}  # the cluster's; a droplet ignores it


def course(data: dict) -> model.Spec:
    loaded = spec.load_bytes(json.dumps(data).encode(), "spec.yaml")
    return loaded.spec


@pytest.fixture(scope="module")
def hashes() -> dict[str, str]:
    return {"instructor": admins.hash_password(ADMIN_PASSWORD), "ta": admins.hash_password(TA_PASSWORD)}


def start_hub(folder: Path, data: dict, hashes: dict, target: str = "droplet", *, open_class: bool = True) -> Hub:
    hub = HUBS[target](folder, course(data), hashes)
    made = hub.make_accounts()
    assert made.returncode == 0, made.stderr
    if open_class:
        hub.open_class()
    hub.start()
    return hub


@pytest.fixture(params=sorted(HUBS))
def target(request) -> str:
    """Which hub: a droplet's (TLJH) or a cluster's (the Zero to JupyterHub chart)."""
    return request.param


@pytest.fixture
def hub(tmp_path, hashes, target):
    """A class of its own, open, for a test that changes what others rely on."""
    made = start_hub(tmp_path / "hub", COURSE, hashes, target)
    yield made
    made.stop()


@pytest.fixture(scope="module", params=sorted(HUBS))
def shared_hub(request, tmp_path_factory, hashes):
    """An open class the tests below share: each signs up students of its own and leaves the
    admins as they were."""
    made = start_hub(tmp_path_factory.mktemp("shared") / "hub", COURSE, hashes, request.param)
    yield made
    made.stop()


def approvals(hub: Hub) -> dict[str, bool]:
    return hubclient.approvals(hub.database)


def signed_in(hub: Hub, name: str, password: str) -> Browser:
    return hubclient.signed_in(hub.url, name, password)


# -- csrf / cross_site ----------------------------------------------------------------------------

def test_csrf_cross_site_get_changes_no_approval(shared_hub):
    """NativeAuthenticator changes approvals on a plain GET of /hub/authorize/NAME and
    /hub/discard/NAME, and JupyterHub 5 checks no XSRF token on a top-level navigation GET: a link
    or an image on another site, opened by the instructor, would approve a student, un-approve the
    instructor, then discard the instructor (whose name the attacker then signs up)."""
    hub = shared_hub
    instructor = signed_in(hub, "instructor", ADMIN_PASSWORD)
    assert instructor.is_signed_in()
    assert Browser(hub.url).sign_up("mallory1", STUDENT_PASSWORD).code == 200  # waits for approval
    before = approvals(hub)
    assert {name: before[name] for name in ("instructor", "ta", "mallory1")} == \
        {"instructor": True, "ta": True, "mallory1": False}
    for path in ["/hub/authorize/mallory1", "/hub/authorize/instructor", "/hub/authorize/ta",
                 "/hub/discard/instructor", "/hub/discard/mallory1", "/hub/authorize/instructor"]:
        page = instructor.cross_site("GET", path)
        assert approvals(hub) == before, path
        assert page.code == 405, (path, page)
    assert instructor.is_signed_in()  # the instructor's own account still works


def test_csrf_cross_site_post_without_the_token_changes_nothing(shared_hub):
    """The same, as forms another site submits (browsers may send the cookies of a fresh session
    with them): JupyterHub refuses a POST without the hub's _xsrf value."""
    hub = shared_hub
    instructor = signed_in(hub, "instructor", ADMIN_PASSWORD)
    Browser(hub.url).sign_up("mallory2", STUDENT_PASSWORD)
    before = approvals(hub)
    assert before["mallory2"] is False
    for path, form in [("/hub/authorize/mallory2", {"authorized": "yes"}),
                       ("/hub/authorize/mallory2", {"authorized": "yes", "_xsrf": "guessed"}),
                       ("/hub/discard/mallory2", {}),
                       ("/hub/authorize/instructor", {"authorized": "no"})]:
        page = instructor.cross_site("POST", path, form)
        assert approvals(hub) == before, path
        assert page.code == 403 and "xsrf" in page.body.lower(), (path, page)


def test_approving_is_a_form_and_never_touches_an_admin(shared_hub):
    """The instructor's own buttons still work (forms carrying the hub's _xsrf), and none applies to
    an admin: the admins' rows have none, and a forged form for one is refused."""
    hub = shared_hub
    instructor = signed_in(hub, "instructor", ADMIN_PASSWORD)
    for student in ("mallory3", "bob3"):
        Browser(hub.url).sign_up(student, STUDENT_PASSWORD)
    page = instructor.get("/hub/authorize")
    assert page.code == 200 and 'name="_xsrf"' in page.body
    assert 'action="/hub/authorize/bob3"' in page.body and 'action="/hub/authorize/ta"' not in page.body
    assert instructor.set_approval("bob3").code == 200
    assert approvals(hub)["bob3"] is True and signed_in(hub, "bob3", STUDENT_PASSWORD).is_signed_in()
    assert instructor.set_approval("bob3", approved=False).code == 200 and approvals(hub)["bob3"] is False
    assert not signed_in(hub, "bob3", STUDENT_PASSWORD).is_signed_in()  # un-approved: no sign-in
    assert instructor.discard("mallory3").code == 200 and "mallory3" not in approvals(hub)
    for refused in (instructor.set_approval("ta", approved=False), instructor.set_approval("instructor", False),
                    instructor.discard("ta"), instructor.set_approval("TA", approved=False)):
        assert refused.code == 403 and "is an admin of this course" in text_of(refused), refused
    assert {name: approvals(hub)[name] for name in ("instructor", "ta", "bob3")} == \
        {"instructor": True, "ta": True, "bob3": False}
    instructor.set_approval("bob3")
    student = signed_in(hub, "bob3", STUDENT_PASSWORD)
    assert student.is_signed_in()
    assert student.set_approval("mallory1").code == 403  # only admins approve
    assert student.get("/hub/authorize").code == 403


# -- deleted_admin ----------------------------------------------------------------------------------

def assert_name_cannot_be_claimed(hub: Hub, name: str) -> None:
    """Sign up as `name` (any case): refused with a message; nothing in the hub's table; the
    attacker's password signs in to nothing."""
    before = approvals(hub)
    for attempt in (name, name.upper(), name.capitalize()):
        attacker = hub.browser()
        page = attacker.sign_up(attempt, ATTACKER_PASSWORD)
        attacker.sign_in(attempt, ATTACKER_PASSWORD)
        assert not attacker.is_signed_in(), attempt
        assert approvals(hub) == before, attempt
        assert "belongs to this course's instructors" in text_of(page), (attempt, page)


def test_deleted_admin_name_cannot_be_signed_up(hub):
    """NativeAuthenticator approves on its own any signup whose name is in admin_users: an admin
    deleted in the admin panel while still in hub.admins would go to whoever signs up first. In
    every state of the database (the account there, deleted, the hub's user recreated at a restart,
    un-approved by hand), the name cannot be signed up."""
    assert_name_cannot_be_claimed(hub, "ta")  # the account exists
    instructor = signed_in(hub, "instructor", ADMIN_PASSWORD)
    instructor.get("/hub/admin")
    code, _ = instructor.api("DELETE", "/hub/api/users/ta")  # what the admin panel's "Delete User" does
    assert code == 403  # refused now; the database of an older hub, or one edited by hand, may still lack it:
    with contextlib.closing(sqlite3.connect(hub.database)) as db, db:
        db.execute("DELETE FROM users_info WHERE username = 'ta'")  # what NativeAuthenticator's delete_user does
    assert "ta" not in approvals(hub)
    assert_name_cannot_be_claimed(hub, "ta")  # deleted
    hub.restart()  # JupyterHub makes a user for each admin_users name again; NativeAuthenticator's row stays gone
    assert_name_cannot_be_claimed(hub, "ta")
    with contextlib.closing(sqlite3.connect(hub.database)) as db, db:
        db.execute("UPDATE users_info SET is_authorized = 0 WHERE username = 'instructor'")
    assert_name_cannot_be_claimed(hub, "instructor")  # un-approved


def test_deleted_admin_name_cannot_be_signed_up_before_the_class_opens(tmp_path, hashes):
    """Before the class opens the hub takes no signup at all, admins' names included."""
    hub = start_hub(tmp_path / "hub", COURSE, hashes, open_class=False)
    try:
        for name in ("ta", "student1"):
            assert hub.browser().sign_up(name, ATTACKER_PASSWORD).code == 404
        assert approvals(hub) == {"instructor": True, "ta": True}
    finally:
        hub.stop()


FIRST_USE = {**COURSE, "hub": {**COURSE["hub"], "auth": {"method": "first-use"}}}


def test_deleted_admin_name_cannot_be_claimed_under_first_use(tmp_path, hashes, target):
    """FirstUseAuthenticator keeps the first password typed for a name it has none for, and an
    admin deleted in the admin panel loses theirs: the next person to sign in as that admin would
    become the admin."""
    hub = start_hub(tmp_path / "hub", FIRST_USE, hashes, target)
    passwords = hub.passwords
    try:
        instructor = signed_in(hub, "instructor", ADMIN_PASSWORD)
        assert instructor.is_signed_in()
        instructor.get("/hub/admin")
        assert instructor.api("DELETE", "/hub/api/users/ta")[0] == 403  # refused now; an older hub did it:
        with dbm.open(str(passwords), "w") as db:
            del db[b"ta"]  # what FirstUseAuthenticator's delete_user does
        for attempt in ("ta", "TA"):
            attacker = signed_in(hub, attempt, ATTACKER_PASSWORD)
            assert not attacker.is_signed_in(), attempt
        hub.restart()
        assert not signed_in(hub, "ta", ATTACKER_PASSWORD).is_signed_in()
        with dbm.open(str(passwords)) as db:
            # A cluster's hub makes the admins' accounts at every start: the TA's is back, with the
            # password the instructor set for it; a droplet's waits for the next deploy.
            assert db.get(b"ta") == (hashes["ta"].encode() if target == "z2jh" else None)
        student = signed_in(hub, "student1", STUDENT_PASSWORD)  # first use works for everyone else
        assert student.is_signed_in()
    finally:
        hub.stop()


# -- reserved_name_held -----------------------------------------------------------------------------

def test_reserved_name_held_by_a_student_never_becomes_admin(tmp_path, hashes, target):
    """A student signs up as `ta2` and is approved; the instructor then lists `ta2` in hub.admins
    (reserved, or with a password) and the hub's settings are rewritten: hub-accounts fails naming
    the account and the fix (on a cluster, where it runs as the hub starts, the hub does not
    start), and the student, signing in with their own password, is no admin (the droplet's hub
    restarted with the new settings, as a reboot would)."""
    hub = start_hub(tmp_path / "hub", COURSE, hashes, target)
    refusal = "ta2: the hub account ta2 exists, and classimage did not make it"
    try:
        instructor = signed_in(hub, "instructor", ADMIN_PASSWORD)
        Browser(hub.url).sign_up("ta2", STUDENT_PASSWORD)
        instructor.set_approval("ta2")
        hub.stop()
        wider = {**COURSE, "hub": {"admins": ["instructor", "ta", "ta2"]}}
        hub.write_config(course(wider))
        for ta2 in (None, admins.hash_password(TA_PASSWORD)):
            refused = hub.make_accounts({**hashes, "ta2": ta2})
            if target == "z2jh":
                with pytest.raises(HubExited, match=refusal):
                    hub.start()
                continue
            assert refused.returncode == 1, refused.stdout
            assert refusal in refused.stderr
        assert "ta2" not in hub.record()
        if target == "z2jh":
            return  # no hub: nobody signs in at all
        hub.start()
        student = signed_in(hub, "ta2", STUDENT_PASSWORD)
        code, me = student.api("GET", "/hub/api/user")
        assert code == 200 and me["admin"] is False and me["name"] == "ta2", me
        assert student.get("/hub/admin").code == 403
        assert not signed_in(hub, "ta2", TA_PASSWORD).is_signed_in()  # the instructor's hash went nowhere
    finally:
        hub.stop()


# -- demoted_admin ----------------------------------------------------------------------------------

def is_admin(hub: Hub, name: str, password: str) -> bool:
    """What the hub makes of `name` signed in: its own record of them, and its admin page."""
    user = signed_in(hub, name, password)
    code, me = user.api("GET", "/hub/api/user")
    assert code == 200 and me["name"] == name, (code, me)
    page = user.get("/hub/admin")
    assert page.code in (200, 403), page
    assert me["admin"] == (page.code == 200) == ("admin" in me["roles"]), (me, page)
    return me["admin"]


@pytest.mark.parametrize("method", ["signup", "first-use"])
def test_demoted_admin_is_no_admin_after_the_next_deploy(tmp_path, hashes, target, method):
    """A TA listed in hub.admins signs in (an admin); the instructor removes the TA from hub.admins
    and deploys again (the same hub database: a new droplet on the class's volume, or the hub pod
    restarted with the new values). JupyterHub keeps admin=True (and the admin role) in its
    database for a name dropped from admin_users: the TA must not keep the admin page, nor the
    sudo TLJH gives every admin's server. The TA's account stays theirs."""
    data = {**COURSE, "hub": {**COURSE["hub"], "auth": {"method": method}}}
    hub = start_hub(tmp_path / "hub", data, hashes, target)
    try:
        assert is_admin(hub, "ta", TA_PASSWORD)
        hub.stop()
        hub.write_config(course({**data, "hub": {**data["hub"], "admins": ["instructor"]}}))
        made = hub.make_accounts({"instructor": hashes["instructor"]})
        assert made.returncode == 0, made.stderr
        if target == "droplet":
            assert "ta: no longer an admin (not in hub.admins)" in made.stdout
        hub.start()
        if target == "z2jh":
            assert "classimage: admin ta: no longer an admin (not in hub.admins)" in hub.log.read_text()
        assert not is_admin(hub, "ta", TA_PASSWORD)
        assert is_admin(hub, "instructor", ADMIN_PASSWORD)
        ta = signed_in(hub, "ta", TA_PASSWORD)
        ta.get("/hub/home")
        assert ta.api("GET", "/hub/api/users")[0] == 403
        if method == "signup":
            Browser(hub.url).sign_up("student9", STUDENT_PASSWORD)
            assert ta.set_approval("student9").code == 403 and approvals(hub)["student9"] is False
        hub.restart()  # and it stays so
        assert not is_admin(hub, "ta", TA_PASSWORD)
    finally:
        hub.stop()


def test_student_made_admin_by_a_same_origin_page_is_refused_by_the_hub_api(tmp_path, hashes, target):
    """A page of a student's server, opened by the signed-in instructor, has the hub's origin: it
    reads the hub's _xsrf value and asks the hub's API, with the instructor's session, to make its
    student an admin, to make a new admin, or to rename its student into a deleted admin's name
    (JupyterHub allows each: the page is the instructor, as far as the hub can tell). The hub's API
    refuses every one; an admin flag got some other way (the database edited) goes at the next deploy."""
    hub = start_hub(tmp_path / "hub", COURSE, hashes, target)
    try:
        Browser(hub.url).sign_up("mallory", STUDENT_PASSWORD)
        instructor = signed_in(hub, "instructor", ADMIN_PASSWORD)
        instructor.set_approval("mallory")
        assert signed_in(hub, "mallory", STUDENT_PASSWORD).is_signed_in()
        instructor.get("/hub/home")
        attempts = [("PATCH", "/hub/api/users/mallory", {"admin": True}),
                    ("PATCH", "/hub/api/users/Mallory", {"admin": True}),
                    ("POST", "/hub/api/users/sidekick", {"admin": True}),
                    ("POST", "/hub/api/users", {"usernames": ["sidekick", "ta"], "admin": True})]
        for method, path, data in attempts:
            code, answer = instructor.api(method, path, data)
            assert code == 403 and "only the course's hub.admins are admins" in json.dumps(answer), (path, data, answer)
        for name, data in (("mallory", {"name": "ta"}), ("instructor", {"name": "boss"})):
            code, answer = instructor.api("PATCH", f"/hub/api/users/{name}", data)
            assert code == 403 and "renamed into or out of" in json.dumps(answer), (name, data, answer)
        # What would outlast a password change (a token in an admin's name; the instructor's server, where
        # TLJH gives sudo, shared with the student) or lock the instructor out (deleted, demoted by a TA):
        ta = signed_in(hub, "ta", TA_PASSWORD)
        ta.get("/hub/home")
        code, answer = ta.api("PATCH", "/hub/api/users/instructor", {"roles": []})
        assert code == 403 and "come from the hub's settings" in json.dumps(answer), answer
        attempts = [(instructor, "POST", "/hub/api/users/ta/tokens", {"note": "kept"}),
                    (instructor, "POST", "/hub/api/users/instructor/tokens", {}),
                    (instructor, "POST", "/hub/api/shares/instructor/", {"user": "mallory"}),
                    (instructor, "PATCH", "/hub/api/shares/Instructor/", {"user": "mallory"}),
                    (instructor, "POST", "/hub/api/share-codes/instructor/", {}),
                    (ta, "DELETE", "/hub/api/users/instructor", None),
                    (ta, "PATCH", "/hub/api/users/instructor", {"admin": False})]
        for browser, method, path, data in attempts:
            code, answer = browser.api(method, path, data)
            assert code == 403 and "is an admin of this course" in json.dumps(answer), (path, data, answer)
        assert instructor.api("GET", "/hub/api/users/mallory/shared")[1]["items"] == []
        assert is_admin(hub, "instructor", ADMIN_PASSWORD)
        assert not is_admin(hub, "mallory", STUDENT_PASSWORD)
        assert instructor.api("GET", "/hub/api/users/sidekick")[0] == 404
        assert instructor.api("PATCH", "/hub/api/users/instructor", {"admin": True})[0] == 200  # hub.admins: allowed
        hub.stop()
        with contextlib.closing(sqlite3.connect(hub.database)) as database, database:
            database.execute("UPDATE users SET admin = 1 WHERE name = 'mallory'")
        made = hub.make_accounts()
        assert made.returncode == 0, made.stderr
        hub.start()
        assert not is_admin(hub, "mallory", STUDENT_PASSWORD)
        assert is_admin(hub, "instructor", ADMIN_PASSWORD) and is_admin(hub, "ta", TA_PASSWORD)
    finally:
        hub.stop()


def device_cookie(browser: Browser) -> str:
    return next(c.value for c in browser.jar if c.name == "classimage-signed-in-here")


def test_lockout_by_a_strangers_guesses_keeps_the_instructor_in_and_the_guesses_few(hub):
    """NativeAuthenticator locks a name after wrong passwords from anyone: an anonymous client kept the
    instructor out for as long as it kept sending them. Keyed by client address instead, a student's
    server (which reaches the hub directly) chose a new X-Forwarded-For for each guess and guessed
    without limit. Now: the name is locked everywhere but in the browsers it has signed in from, each
    counting its own (guesses from a classroom computer the instructor once used lock that one only),
    whatever copies of the cookie a page on the hub's origin adds; the stranger's guesses stop at the
    limit whatever address they claim."""
    laptop, classroom = (Browser(hub.url, headers={"X-Forwarded-For": "203.0.113.5"}) for _ in range(2))
    mallory = Browser(hub.url)
    mallory.sign_up("mallory4", STUDENT_PASSWORD)
    signed_in(hub, "instructor", ADMIN_PASSWORD).set_approval("mallory4")
    mallory.sign_in("mallory4", STUDENT_PASSWORD)
    for browser in (laptop, classroom):
        browser.sign_in("instructor", ADMIN_PASSWORD)
        assert browser.is_signed_in()
        browser.get("/hub/logout")
        assert not browser.is_signed_in()
    for guess in range(6):  # a new address and a new browser for each guess
        guesser = Browser(hub.url, headers={"X-Forwarded-For": f"198.51.100.{guess + 1}", "X-Real-Ip": "203.0.113.5"})
        guesser.sign_in("INSTRUCTOR", "a-wrong-guess-1")
        assert not guesser.is_signed_in()
    for stranger in (Browser(hub.url), Browser(hub.url, headers={"X-Forwarded-For": "203.0.113.5"})):
        stranger.sign_in("instructor", ADMIN_PASSWORD)  # even the right password: the name is locked there
        assert not stranger.is_signed_in()
    for guess in range(6):  # a student at the classroom computer
        classroom.sign_in("instructor", "a-wrong-guess-2")
    classroom.sign_in("instructor", ADMIN_PASSWORD)
    assert not classroom.is_signed_in()
    # A page of a student's server adds copies of the cookie (its own and garbage), after the real one or before
    theirs, ours = device_cookie(mallory), device_cookie(laptop)
    for order in ((ours, "garbage", theirs), (theirs, "garbage", ours)):
        tossed = Browser(hub.url, headers={"Cookie": "; ".join(f"classimage-signed-in-here={v}" for v in order)})
        page = tossed.sign_in("instructor", ADMIN_PASSWORD)
        assert "Invalid username or password" not in text_of(page), order
        assert any(c.name == "jupyterhub-hub-login" for c in tossed.jar), order  # the hub signed it in
    laptop.sign_in("instructor", ADMIN_PASSWORD)
    assert laptop.is_signed_in()


def test_pending_signup_password_cannot_be_guessed_past_the_lockout(shared_hub):
    """NativeAuthenticator's sign-in page told "not authorized yet" for the right password of a signup
    awaiting approval, checked outside the lockout: guessed without limit, then used once approved.
    Said now only while the name's guesses are not used up."""
    hub = shared_hub
    Browser(hub.url).sign_up("pending5", STUDENT_PASSWORD)
    assert "has not been authorized" in text_of(Browser(hub.url).sign_in("pending5", STUDENT_PASSWORD))
    for _ in range(6):
        assert "Invalid username or password" in text_of(Browser(hub.url).sign_in("pending5", "a-wrong-guess-3"))
    assert "has not been authorized" not in text_of(Browser(hub.url).sign_in("pending5", STUDENT_PASSWORD))


def test_first_use_change_password_by_a_same_origin_page_needs_the_current_one(tmp_path, hashes, target):
    """FirstUseAuthenticator's /hub/auth/change-password set the signed-in user's password with no old
    one: a page of a student's server, opened by the signed-in instructor, took the instructor's account
    (and any classmate's who opened it). It now asks for the current password."""
    hub = start_hub(tmp_path / "hub", FIRST_USE, hashes, target)
    try:
        instructor = signed_in(hub, "instructor", ADMIN_PASSWORD)
        assert instructor.is_signed_in()
        chosen = "mallorys-chosen-password"
        for form in ({"password": chosen}, {"password": chosen, "current_password": "a-guess-at-it-1"}):
            instructor.get("/hub/auth/change-password")  # the page's _xsrf value, as a same-origin script reads it
            page = instructor.post("/hub/auth/change-password", form)
            assert page.code == 200 and "nothing was changed" in text_of(page), page
        assert not signed_in(hub, "instructor", chosen).is_signed_in()
        assert signed_in(hub, "instructor", ADMIN_PASSWORD).is_signed_in()
        page = instructor.post("/hub/auth/change-password", {"password": chosen, "current_password": ADMIN_PASSWORD})
        assert "changed successfully" in text_of(page), page  # the instructor's own change still works
        assert signed_in(hub, "instructor", chosen).is_signed_in()
    finally:
        hub.stop()


# -- long and unsafe names (the Unix-name collision: test_usernames.py) -----------------------------

@pytest.mark.parametrize("name", ["course-instructor-01", "a" * 18, "bob.smith", "élodie", "-bob", "bob\n",
                                  "bob$", "bob%2e"])
def test_name_collision_signup_of_a_long_or_unsafe_name_is_refused_with_a_message(shared_hub, name):
    """TLJH shortens names of 18 or more characters (with a hash) into one Unix user for two hub
    names; other characters make no Unix name at all. The signup says what names may be."""
    before = approvals(shared_hub)
    page = shared_hub.browser().sign_up(name, STUDENT_PASSWORD)
    assert "at most 17 lower-case letters, digits, - and _" in text_of(page), page
    assert approvals(shared_hub) == before


def test_name_collision_longest_name_signs_up(shared_hub):
    assert "has been sent to the admin" in text_of(shared_hub.browser().sign_up("a" * 17, STUDENT_PASSWORD))
    assert approvals(shared_hub)["a" * 17] is False


def test_name_collision_first_use_of_a_long_name_is_refused(tmp_path, hashes, target):
    hub = start_hub(tmp_path / "hub", FIRST_USE, hashes, target)
    try:
        page = hub.browser().sign_in("course-instructor-01", STUDENT_PASSWORD)
        assert "at most 17 lower-case letters" in text_of(page), page
        with dbm.open(str(hub.passwords)) as db:
            assert b"course-instructor-01" not in db  # no password kept for it
    finally:
        hub.stop()


# -- lesser: the banner and the status file -------------------------------------------------------

HOSTILE = '<script>alert("pwned")</script><img src=x onerror=alert(1)> & "Co"'


def test_hostile_course_name_is_text_in_the_being_prepared_banner(tmp_path, hashes):
    """The course's name goes into the announcement JupyterHub shows on every page while the class
    is being prepared, and JupyterHub inserts announcements as HTML."""
    data = {**COURSE, "course": {"name": HOSTILE, "slug": "sec101"}}
    hub = start_hub(tmp_path / "hub", data, hashes, open_class=False)
    try:
        for path in ("/hub/login", "/hub/signup"):  # a page, and an error page (no signup yet)
            page = hub.browser().get(path)
            assert "is being prepared" in page.body, page
            assert "<script>alert" not in page.body and "<img src=x" not in page.body
            assert '&lt;script&gt;alert(&#34;pwned&#34;)&lt;/script&gt;' in page.body or \
                "&lt;script&gt;alert(&quot;pwned&quot;)&lt;/script&gt;" in page.body, page.body
    finally:
        hub.stop()


@pytest.fixture
def searchable_folder():
    """A folder everyone may search, as / and /var/lib are on a droplet: the file's mode decides."""
    folder = Path(tempfile.mkdtemp(prefix="classimage-status-", dir="/var/tmp"))
    os.chmod(folder, 0o755)
    yield folder
    shutil.rmtree(folder)


def test_status_file_is_unreadable_by_students(searchable_folder):
    """A failed step's last lines of output (which the status service hides from the public) are in
    the status file: only root reads it."""
    if os.geteuid() != 0:
        pytest.skip("reading as another user (setpriv) needs root")
    paths = provision.Paths(str(searchable_folder))
    step = searchable_folder / "leak.sh"
    step.write_text("#!/bin/bash\necho 'token=s3cret-from-a-failed-step'; exit 3\n")
    document = provision.Plan("test", provision.Course("Sec", "sec"), "abc", "full", "bd", {},
                              (provision.PlanStep("leak", "Leak", str(step), None, provision.ONCE, 60, "d1"),))
    Path(paths.plan).parent.mkdir(parents=True)
    Path(paths.plan).write_text(document.to_json())
    assert runner.command_run(paths, False, page_port=free_port()) != 0
    status = Path(paths.status)
    assert "s3cret-from-a-failed-step" in status.read_text()
    assert (status.parent.stat().st_mode & 0o005) == 0o005  # the folder: searchable by everyone
    assert oct(status.stat().st_mode & 0o777) == "0o600" and status.stat().st_uid == 0
    student = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "cat", str(status)],
                             capture_output=True, text=True)
    assert student.returncode == 1 and "Permission denied" in student.stderr and student.stdout == ""


# -- set_password ----------------------------------------------------------------------------------

def test_set_password_of_an_admin_by_another_admin_or_a_same_origin_page_is_refused(shared_hub):
    """NativeAuthenticator lets any admin set any user's password (/hub/change-password/NAME, no old
    password). A TA, or a page of a student's server that the instructor opens (the same origin as
    the hub: it can read the hub's _xsrf value and post with the instructor's cookie), would take
    the instructor's account. Refused for every admin's name; a student's password is still set."""
    hub = shared_hub
    ta = signed_in(hub, "ta", TA_PASSWORD)
    instructor = signed_in(hub, "instructor", ADMIN_PASSWORD)
    taken = "taken-over-password-1"
    for browser, victim in ((ta, "instructor"), (instructor, "ta"), (instructor, "Instructor")):
        assert browser.get(f"/hub/change-password/{victim}").code == 403
        browser.get("/hub/home")  # the page's _xsrf value, as a same-origin script reads it
        page = browser.post(f"/hub/change-password/{victim}",
                            {"new_password": taken, "new_password_confirmation": taken})
        assert page.code == 403 and "is an admin of this course" in text_of(page), (victim, page)
    assert signed_in(hub, "instructor", ADMIN_PASSWORD).is_signed_in()
    assert signed_in(hub, "ta", TA_PASSWORD).is_signed_in()
    assert not signed_in(hub, "instructor", taken).is_signed_in()
    Browser(hub.url).sign_up("forgetful", STUDENT_PASSWORD)
    instructor.set_approval("forgetful")
    new = "a-new-student-password-1"
    instructor.get("/hub/change-password/forgetful")
    assert instructor.post("/hub/change-password/forgetful",
                           {"new_password": new, "new_password_confirmation": new}).code == 200
    assert signed_in(hub, "forgetful", new).is_signed_in()
