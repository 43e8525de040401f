"""The admins' hub accounts, made on the droplet before the hub first lets anyone sign up or sign
in, so that no one but the instructor can ever hold an admin's name. Shipped into the user data as
it is and run with the hub's own Python (TLJH's hub environment), through the authenticators' own
storage:

    /opt/tljh/hub/bin/python3 hubaccounts.py ACCOUNTS.json

ACCOUNTS.json names the sign-in method (`native`: NativeAuthenticator's table in the hub's database;
`first-use`: FirstUseAuthenticator's passwords.dbm), where those live, a record file, and each admin
with the bcrypt hash of the password the instructor set with `classimage admin-password` (only the
hash ever leaves the instructor's machine), or null when none was set: that name is then reserved
with a password nobody knows.

- An admin without an account gets one, approved, with that hash.
- An admin whose account exists keeps it (and any password changed since in the hub), unless the
  instructor set a new password: the record keeps a fingerprint of the hash last applied.
- A name that was only reserved takes the instructor's hash once there is one.
The hub's database is created, if it does not exist yet, as the hub itself creates it.
"""

from __future__ import annotations

import dbm
import hashlib
import json
import os
import secrets
import sys
import tempfile

RESERVED = "reserved"  # the fingerprint of an account whose password nobody knows
NATIVE, FIRST_USE = "native", "first-use"


def fingerprint(hashed: str | None) -> str:
    return RESERVED if hashed is None else hashlib.sha256(hashed.encode()).hexdigest()


def changes(admins: dict[str, str | None], existing: dict[str, bool], applied: dict[str, str]) -> dict[str, str | None]:
    """What to write: {name: hash to set (None: a reserved, unusable password)} for the admins
    whose account must be made, or whose password the instructor changed. `existing` says which
    admins have an account, `applied` the fingerprint last applied to each."""
    result: dict[str, str | None] = {}
    for name, hashed in admins.items():
        if not existing.get(name):
            result[name] = hashed
        elif hashed is not None and applied.get(name) != fingerprint(hashed):
            result[name] = hashed  # a new password from the instructor, or a reserved name claimed
    return result


def unusable() -> str:
    import bcrypt

    return bcrypt.hashpw(secrets.token_bytes(32), bcrypt.gensalt()).decode()


class NativeAccounts:
    """NativeAuthenticator's accounts: rows of its table in the hub's database."""

    def __init__(self, database: str):
        from jupyterhub import orm
        from nativeauthenticator.orm import UserInfo  # registers its table with JupyterHub's models

        self.model = UserInfo
        self.session = orm.new_session_factory(database)()

    def exists(self, name: str) -> bool:
        return self.model.find(self.session, name) is not None

    def set(self, name: str, hashed: str) -> None:
        row = self.model.find(self.session, name)
        if row is None:
            self.session.add(self.model(username=name, password=hashed.encode(), is_authorized=True))
        else:
            row.password, row.is_authorized = hashed.encode(), True

    def close(self) -> None:
        self.session.commit()
        self.session.close()


class FirstUseAccounts:
    """FirstUseAuthenticator's accounts: its passwords.dbm (a name in it is no longer a first use)."""

    def __init__(self, path: str):
        self.db = dbm.open(path, "c", 0o600)  # noqa: SIM115 (open for the object's life; closed by close())

    def exists(self, name: str) -> bool:
        return name.encode() in self.db

    def set(self, name: str, hashed: str) -> None:
        self.db[name.encode()] = hashed.encode()

    def close(self) -> None:
        self.db.close()


def apply(plan: dict[str, object]) -> dict[str, str]:
    """Make or update the accounts `plan` describes; returns what was done, by name."""
    admins: dict[str, str | None] = plan["admins"]  # type: ignore[assignment]
    record = str(plan["record"])
    accounts = (
        NativeAccounts(str(plan["database"])) if plan["method"] == NATIVE else FirstUseAccounts(str(plan["passwords"]))
    )
    applied = _read(record)
    try:
        todo = changes(admins, {name: accounts.exists(name) for name in admins}, applied)
        done = {}
        for name, hashed in todo.items():
            existed = accounts.exists(name)
            accounts.set(name, hashed or unusable())
            done[name] = ("password set" if existed else "made") if hashed else "reserved"
    finally:
        accounts.close()
    _write(record, {**applied, **{name: fingerprint(hashed) for name, hashed in todo.items()}})
    return done


def _read(path: str) -> dict[str, str]:
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except FileNotFoundError:
        return {}


def _write(path: str, data: dict[str, str]) -> None:
    handle, temporary = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".admins-")
    with os.fdopen(handle, "w", encoding="utf-8") as out:
        json.dump(data, out, indent=2, sort_keys=True)
    os.chmod(temporary, 0o600)
    os.replace(temporary, path)


def main(argv: list[str] | None = None) -> int:
    (plan_file,) = argv if argv is not None else sys.argv[1:]
    with open(plan_file, encoding="utf-8") as handle:
        plan = json.load(handle)
    done = apply(plan)
    for name in plan["admins"]:
        print("%s: %s" % (name, done.get(name, "account in place")))  # names only, never a hash
    return 0


if __name__ == "__main__":
    sys.exit(main())
