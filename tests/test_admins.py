"""The admins' passwords: set on the instructor's machine (only a bcrypt hash is kept, outside the
repository), carried as a hash in the user data, and made into approved accounts on the droplet by
classimage/hubaccounts.py, here run against the real JupyterHub and NativeAuthenticator models."""

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
from classimage import admins, artifacts, hubaccounts, plan, provision, spec, tljh

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

@pytest.mark.parametrize("admins_, existing, applied, expected", [
    ({"a": "h1"}, {}, {}, {"a": "h1"}),  # a new account
    ({"a": None}, {}, {}, {"a": None}),  # reserved
    ({"a": "h1"}, {"a": True}, {"a": hubaccounts.fingerprint("h1")}, {}),  # in place: the hub's own changes stay
    ({"a": "h2"}, {"a": True}, {"a": hubaccounts.fingerprint("h1")}, {"a": "h2"}),  # a new password
    ({"a": "h1"}, {"a": True}, {"a": hubaccounts.RESERVED}, {"a": "h1"}),  # a reserved name gets its password
    ({"a": None}, {"a": True}, {"a": hubaccounts.fingerprint("h1")}, {}),  # no password given: keep the account
    ({"a": "h1"}, {"a": True}, {}, {"a": "h1"}),  # an account classimage did not make: the instructor's hash wins
])
def test_which_accounts_change(admins_, existing, applied, expected):
    assert hubaccounts.changes(admins_, existing, applied) == expected


def accounts_plan(tmp_path, method: str, names: dict) -> dict:
    return {"method": method, "database": f"sqlite:///{tmp_path}/jupyterhub.sqlite",
            "passwords": str(tmp_path / "passwords.dbm"), "record": str(tmp_path / "record.json"), "admins": names}


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
