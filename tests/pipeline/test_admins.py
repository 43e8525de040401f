"""The admins' passwords: set on the instructor's machine (only a bcrypt hash is kept, outside the
repository), carried as a hash in the user data, and made into approved accounts on the droplet by
classimage/droplet/hubaccounts.py, here run against the real JupyterHub and NativeAuthenticator models."""

from __future__ import annotations

import dbm
import json
import os
import stat
import subprocess

import bcrypt
import pytest
import yaml

from conftest import EXAMPLES, cli, written_files
from classimage.pipeline import admins, artifacts, plan, spec, tljh
from classimage.droplet import hubaccounts, provision

MINIMAL = EXAMPLES[0]
PASSWORD = "correct-horse-battery-staple"


@pytest.fixture
def store(tmp_path, monkeypatch):
    monkeypatch.setenv(admins.FOLDER, str(tmp_path / "secrets"))
    monkeypatch.delenv(admins.ENVIRONMENT, raising=False)
    return tmp_path / "secrets"


# -- on the instructor's machine ------------------------------------------------------------------

@pytest.mark.parametrize("password, problem", [
    ("short", "needs at least 12"),
    ("aaaaaaaaaaaaaaaa", "too easy"),
    ("instructor-rules-2026", "too easy"),  # holds the admin's name
    (" leading-space-pw", "space"),
    ("six-words-nobody-would-guess", None),
])
def test_weak_passwords_are_refused(password, problem):
    found = admins.weakness(password, "instructor", 8)
    assert (found is None) if problem is None else (problem in found), found


def test_the_course_minimum_applies_when_higher():
    assert "needs at least 20" in admins.weakness("a-long-enough-pass", "instructor", 20)


def test_generated_passwords_are_strong_and_different():
    made = {admins.generate() for _ in range(20)}
    assert len(made) == 20
    assert all(admins.weakness(p, "instructor", 8) is None for p in made)


def test_admin_password_generates_prints_once_and_keeps_only_the_hash(store):
    result = cli("admin-password", str(MINIMAL), "--generate", env={admins.FOLDER: str(store)})
    assert result.returncode == 0, result.stderr.decode()
    name, password = result.stdout.decode().strip().split(": ")
    assert name == "instructor"
    kept = store / "data101" / "admins.yaml"
    assert stat.S_IMODE(kept.stat().st_mode) == 0o600 and stat.S_IMODE(kept.parent.stat().st_mode) == 0o700
    text = kept.read_text()
    assert password not in text
    hashed = yaml.safe_load(text)["instructor"]
    assert bcrypt.checkpw(password.encode(), hashed.encode())


def test_admin_password_from_stdin_and_its_refusals(store):
    environment = {admins.FOLDER: str(store)}
    ok = cli("admin-password", str(MINIMAL), "--stdin", stdin=f"{PASSWORD}\n".encode(), env=environment)
    assert ok.returncode == 0, ok.stderr.decode()
    assert ok.stdout == b""  # a password the instructor chose is never printed
    weak = cli("admin-password", str(MINIMAL), "--stdin", stdin=b"short\n", env=environment)
    assert weak.returncode == 2 and b"at least 12" in weak.stderr
    stranger = cli("admin-password", str(MINIMAL), "--admin", "mallory", "--generate", env=environment)
    assert stranger.returncode == 2 and b"not in hub.admins" in stranger.stderr
    no_terminal = cli("admin-password", str(MINIMAL), stdin=b"", env=environment)
    assert no_terminal.returncode == 2 and b"--generate" in no_terminal.stderr
    hashed = admins.load("data101")[0]["instructor"]
    assert bcrypt.checkpw(PASSWORD.encode(), hashed.encode())  # the refusals changed nothing


def test_hashes_from_the_environment_win_and_bad_ones_are_refused(store, monkeypatch):
    hashed = admins.hash_password(PASSWORD)
    monkeypatch.setenv(admins.ENVIRONMENT, json.dumps({"instructor": hashed}))
    assert admins.for_admins(("instructor", "ta"), "data101") == {"instructor": hashed, "ta": None}
    with pytest.raises(admins.AdminError, match="is set"):
        admins.save("data101", {"instructor": hashed})
    monkeypatch.setenv(admins.ENVIRONMENT, "instructor: hunter2")
    with pytest.raises(admins.AdminError, match="bcrypt hash"):
        admins.load("data101")


def test_render_warns_about_an_admin_without_a_password_and_reserves_the_name(store, tmp_path):
    result = cli("render", str(MINIMAL), "--out", str(tmp_path / "out"), env={admins.FOLDER: str(store)})
    assert result.returncode == 0
    assert "hub.admins[0]: 'instructor' has no password yet: the account is reserved" in result.stderr.decode()
    files = written_files((tmp_path / "out" / "user-data.yaml").read_text())
    accounts = json.loads(files[plan.File("hub-accounts", provision.HUB_ACCOUNTS_PLAN, "").staged]["content"])
    assert accounts["admins"] == {"instructor": None}


def test_the_hash_travels_in_the_user_data_and_render_stays_deterministic(store):
    loaded = spec.load_file(MINIMAL)
    hashed = admins.hash_password(PASSWORD)
    first, second = artifacts.render(loaded, {"instructor": hashed}), artifacts.render(loaded, {"instructor": hashed})
    assert first == second
    for stage, name in artifacts.USER_DATA.items():
        text = first[name]
        assert PASSWORD not in text
        assert (hashed in text) == (stage != plan.BAKE)  # never in what is baked into a snapshot
        files = written_files(text)
        staged = plan.File("hub-accounts", provision.HUB_ACCOUNTS_PLAN, "").staged
        if stage != plan.BAKE:
            assert files[staged]["permissions"] == "0600"  # root's only, like the plan


def test_no_admin_name_is_a_bootstrap_flag_any_more():
    assert tljh.bootstrap_args(spec.load_file(MINIMAL).spec) == ["--version", "2.0.0"]


def test_render_from_a_repository_needs_the_admins_name(tmp_path):
    result = cli("render", "--repo", str(tmp_path), "--out", str(tmp_path / "out"))
    assert result.returncode == 2 and b"--repo needs --admin NAME" in result.stderr


# -- on the droplet: hubaccounts.py ---------------------------------------------------------------

H1, H2 = "$2b$12$" + "1" * 53, "$2b$12$" + "2" * 53
WRITE, ADOPT, REFUSE = hubaccounts.WRITE, hubaccounts.ADOPT, hubaccounts.REFUSE
MADE_H1 = {"a": hubaccounts.fingerprint(H1)}


@pytest.mark.parametrize("admins_, stored, held, applied, expected", [
    ({"a": H1}, {}, {}, {}, {"a": (WRITE, H1)}),  # a new account
    ({"a": None}, {}, {}, {}, {"a": (WRITE, None)}),  # reserved
    ({"a": H1}, {"a": H1}, {}, MADE_H1, {}),  # in place
    ({"a": H1}, {"a": H2}, {}, MADE_H1, {}),  # the admin changed the password in the hub: it stays
    ({"a": H2}, {"a": H1}, {}, MADE_H1, {"a": (WRITE, H2)}),  # a new password from the instructor
    ({"a": H1}, {"a": H1}, {}, {"a": hubaccounts.RESERVED}, {"a": (WRITE, H1)}),  # a reserved name gets its password
    ({"a": None}, {"a": H1}, {}, MADE_H1, {}),  # no password given: keep the account
    # Accounts classimage did not make (a student signed up with the name first): never handed over.
    ({"a": H1}, {"a": H2}, {}, {}, {"a": (REFUSE, "the hub account a")}),
    ({"a": None}, {"a": H2}, {}, {}, {"a": (REFUSE, "the hub account a")}),
    ({"a": H1}, {}, {"a": "the home /home/jupyter-a"}, {}, {"a": (REFUSE, "the home /home/jupyter-a")}),
    ({"a": H1}, {}, {"a": "the home /home/jupyter-a"}, MADE_H1, {"a": (WRITE, H1)}),  # the admin's own home
    # ... unless it holds exactly the instructor's hash, which only the instructor's user data carries.
    ({"a": H1}, {"a": H1}, {}, {}, {"a": (ADOPT, None)}),
])
def test_which_accounts_change(admins_, stored, held, applied, expected):
    assert hubaccounts.changes(admins_, stored, held, applied) == expected


def accounts_plan(tmp_path, method: str, names: dict) -> dict:
    passwd = tmp_path / "passwd"
    if not passwd.exists():
        passwd.write_text("root:x:0:0:root:/root:/bin/bash\n")
    (tmp_path / "home").mkdir(exist_ok=True)
    return {"method": method, "database": f"sqlite:///{tmp_path}/jupyterhub.sqlite",
            "passwords": str(tmp_path / "passwords.dbm"), "record": str(tmp_path / "record.json"),
            "passwd": str(passwd), "homes": str(tmp_path / "home"), "unix_prefix": tljh.UNIX_PREFIX, "admins": names}


def test_the_accounts_plan_names_tljhs_places():
    made = json.loads(tljh.accounts_plan(spec.load_file(MINIMAL).spec, {}))
    assert (made["passwd"], made["homes"], made["unix_prefix"]) == ("/etc/passwd", "/home", "jupyter-")


def test_native_accounts_with_the_real_models(tmp_path):
    from jupyterhub import orm
    from nativeauthenticator.orm import UserInfo

    hashed = admins.hash_password(PASSWORD)
    assert hubaccounts.apply(accounts_plan(tmp_path, "native", {"instructor": hashed, "ta": None})) == \
        {"instructor": "made", "ta": "reserved"}
    session = orm.new_session_factory(f"sqlite:///{tmp_path}/jupyterhub.sqlite")()  # as the hub opens it
    instructor, ta = UserInfo.find(session, "instructor"), UserInfo.find(session, "ta")
    assert instructor.is_authorized and instructor.is_valid_password(PASSWORD)
    assert ta.is_authorized and not ta.is_valid_password("") and not ta.is_valid_password(PASSWORD)
    # The admin changes their password in the hub; a later run with the same hash leaves it alone.
    instructor.password = bcrypt.hashpw(b"changed-in-the-hub", bcrypt.gensalt(4))
    session.commit()
    session.close()
    assert hubaccounts.apply(accounts_plan(tmp_path, "native", {"instructor": hashed, "ta": None})) == {}
    session = orm.new_session_factory(f"sqlite:///{tmp_path}/jupyterhub.sqlite")()
    assert UserInfo.find(session, "instructor").is_valid_password("changed-in-the-hub")
    assert stat.S_IMODE(os.stat(tmp_path / "record.json").st_mode) == 0o600
    assert hashed not in (tmp_path / "record.json").read_text()


def test_first_use_accounts_go_where_firstuseauthenticator_reads_them(tmp_path):
    hashed = admins.hash_password(PASSWORD)
    assert hubaccounts.apply(accounts_plan(tmp_path, "first-use", {"instructor": hashed}))["instructor"] == "made"
    with dbm.open(str(tmp_path / "passwords.dbm")) as db:  # what FirstUseAuthenticator opens
        assert bcrypt.hashpw(PASSWORD.encode(), db[b"instructor"]) == db[b"instructor"]


def test_the_program_prints_names_never_hashes(tmp_path):
    hashed = admins.hash_password(PASSWORD)
    plan_file = tmp_path / "accounts.json"
    plan_file.write_text(json.dumps(accounts_plan(tmp_path, "native", {"instructor": hashed})))
    result = subprocess.run(["python3", hubaccounts.__file__, str(plan_file)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "instructor: made\n" and hashed not in result.stderr


# -- attacks on an admin's name held by someone else (issue 16, item 2) and the record (issue 24) ----

STUDENT_PASSWORD = "the-students-own-password"


def native_rows(tmp_path) -> dict:
    """{name: (is_authorized, password hash)} in the hub's database, opened as the hub opens it."""
    from jupyterhub import orm
    from nativeauthenticator.orm import UserInfo

    session = orm.new_session_factory(f"sqlite:///{tmp_path}/jupyterhub.sqlite")()
    try:
        return {row.username: (row.is_authorized, bytes(row.password)) for row in session.query(UserInfo).all()}
    finally:
        session.close()


def student_signs_up(tmp_path, name: str) -> None:
    """What the hub holds after a student signed up as `name` and was approved: NativeAuthenticator's
    own create_user, on the hub's database."""
    from jupyterhub import orm
    from nativeauthenticator import NativeAuthenticator

    session = orm.new_session_factory(f"sqlite:///{tmp_path}/jupyterhub.sqlite")()
    authenticator = NativeAuthenticator(db=session, open_signup=True)
    assert authenticator.create_user(name, STUDENT_PASSWORD) is not None
    session.close()


def run_program(tmp_path, plan_: dict) -> subprocess.CompletedProcess:
    plan_file = tmp_path / "accounts.json"
    plan_file.write_text(json.dumps(plan_))
    return subprocess.run(["python3", hubaccounts.__file__, str(plan_file)], capture_output=True, text=True)


@pytest.mark.parametrize("instructor_hash", [None, "set"], ids=["reserved", "with-password"])
def test_reserved_name_held_by_a_student_is_never_handed_to_an_admin(tmp_path, instructor_hash):
    """A student signs up as `ta`; the instructor then lists `ta` in hub.admins (reserved, or with
    a password): the step fails naming the account and the fix, and changes nothing."""
    student_signs_up(tmp_path, "ta")
    before = native_rows(tmp_path)
    hashed = admins.hash_password(PASSWORD) if instructor_hash else None
    result = run_program(tmp_path, accounts_plan(tmp_path, "native", {"instructor": admins.hash_password(PASSWORD),
                                                                      "ta": hashed}))
    assert result.returncode == 1 and result.stdout == ""
    assert "ta: the hub account ta exists, and classimage did not make it" in result.stderr
    assert "give this admin another name in hub.admins" in result.stderr and "/home/jupyter-ta" in result.stderr
    assert native_rows(tmp_path) == before  # nothing made, not even the other admin's account
    assert bcrypt.checkpw(STUDENT_PASSWORD.encode(), before["ta"][1])
    assert not (tmp_path / "record.json").exists()


@pytest.mark.parametrize("where", ["home", "passwd"])
def test_reserved_name_held_by_a_students_home_is_never_handed_to_an_admin(tmp_path, where):
    """The student's account was deleted in the admin panel, but TLJH keeps the Unix user and its
    home (with whatever the student planted in ~/.ipython/profile_default/startup): an admin's
    account of that name would run as that user, in that home."""
    plan_ = accounts_plan(tmp_path, "native", {"ta": admins.hash_password(PASSWORD)})
    if where == "home":
        (tmp_path / "home" / "jupyter-ta" / ".ipython").mkdir(parents=True)
    else:
        (tmp_path / "passwd").write_text("jupyter-ta:x:1001:1001::/home/jupyter-ta:/bin/bash\n")
    result = run_program(tmp_path, plan_)
    assert result.returncode == 1
    expected = f"the home {tmp_path}/home/jupyter-ta" if where == "home" else "the Unix user jupyter-ta"
    assert f"ta: {expected} exists, and classimage did not make it" in result.stderr
    assert native_rows(tmp_path) == {}


def test_reserved_name_held_on_a_hub_without_unix_users_is_refused_too(tmp_path):
    """The z2jh target's plan names no Unix users (a volume per student): the hub's accounts decide."""
    student_signs_up(tmp_path, "ta")
    plan_ = {key: value for key, value in accounts_plan(tmp_path, "native", {"ta": admins.hash_password(PASSWORD)})
             .items() if key not in ("passwd", "homes", "unix_prefix")}
    with pytest.raises(hubaccounts.Refused, match=r"ta: the hub account ta exists.*then restart the hub\.$"):
        hubaccounts.apply(plan_)
    plan_["admins"] = {"instructor": None}
    assert hubaccounts.apply(plan_) == {"instructor": "reserved"}


def test_reserved_name_held_under_first_use_is_never_handed_to_an_admin(tmp_path):
    with dbm.open(str(tmp_path / "passwords.dbm"), "c") as db:  # the student's first sign-in as ta
        db[b"ta"] = bcrypt.hashpw(STUDENT_PASSWORD.encode(), bcrypt.gensalt(4))
        before = db[b"ta"]
    result = run_program(tmp_path, accounts_plan(tmp_path, "first-use", {"ta": admins.hash_password(PASSWORD)}))
    assert result.returncode == 1 and "ta: the hub account ta exists" in result.stderr
    with dbm.open(str(tmp_path / "passwords.dbm")) as db:
        assert db[b"ta"] == before


def test_admin_existence_is_the_databases_to_say_when_the_record_says_made(tmp_path):
    """The record says classimage made the account; the database (restored from an older copy, or
    the admin deleted in the admin panel) has none: the account is made again."""
    hashed = admins.hash_password(PASSWORD)
    (tmp_path / "record.json").write_text(json.dumps({"instructor": hubaccounts.fingerprint(hashed)}))
    assert hubaccounts.apply(accounts_plan(tmp_path, "native", {"instructor": hashed})) == {"instructor": "made"}
    authorized, stored = native_rows(tmp_path)["instructor"]
    assert authorized and bcrypt.checkpw(PASSWORD.encode(), stored)


@pytest.mark.parametrize("stored_is_the_instructors", [True, False])
def test_admin_existence_is_the_databases_to_say_when_the_record_says_nothing(tmp_path, stored_is_the_instructors):
    """The database has the admin's account; the record (lost, or written by hand) says nothing of
    it: the account exists and is not made again over whatever it holds. Holding the instructor's
    own hash, it is the instructor's; holding another, it may be a student's: refused."""
    hashed = admins.hash_password(PASSWORD)
    student_signs_up(tmp_path, "instructor")
    if stored_is_the_instructors:
        hubaccounts.NativeAccounts(f"sqlite:///{tmp_path}/jupyterhub.sqlite")  # the schema, as the hub has it
        from jupyterhub import orm
        from nativeauthenticator.orm import UserInfo
        session = orm.new_session_factory(f"sqlite:///{tmp_path}/jupyterhub.sqlite")()
        UserInfo.find(session, "instructor").password = hashed.encode()
        session.commit()
        session.close()
    before = native_rows(tmp_path)
    plan_ = accounts_plan(tmp_path, "native", {"instructor": hashed})
    if stored_is_the_instructors:
        assert hubaccounts.apply(plan_) == {"instructor": "account in place, holding the instructor's password"}
        assert json.loads((tmp_path / "record.json").read_text()) == {"instructor": hubaccounts.fingerprint(hashed)}
    else:
        with pytest.raises(hubaccounts.Refused, match="the hub account instructor exists"):
            hubaccounts.apply(plan_)
    assert native_rows(tmp_path) == before


def test_an_admin_unapproved_by_hand_is_approved_again(tmp_path):
    """An admin's row un-approved (NativeAuthenticator's old GET link, or by hand) is approved again
    on the next run, its password kept."""
    from jupyterhub import orm
    from nativeauthenticator.orm import UserInfo

    hashed = admins.hash_password(PASSWORD)
    hubaccounts.apply(accounts_plan(tmp_path, "native", {"instructor": hashed}))
    session = orm.new_session_factory(f"sqlite:///{tmp_path}/jupyterhub.sqlite")()
    UserInfo.find(session, "instructor").is_authorized = False
    session.commit()
    session.close()
    assert hubaccounts.apply(accounts_plan(tmp_path, "native", {"instructor": hashed})) == \
        {"instructor": "account in place, approved again"}
    assert native_rows(tmp_path)["instructor"] == (True, hashed.encode())
