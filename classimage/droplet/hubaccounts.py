"""The admins' hub accounts, made on the droplet before the hub first lets anyone sign up or sign
in, so that no one but the instructor can ever hold an admin's name. Shipped into the user data as
it is and run with the hub's own Python (TLJH's hub environment), through the authenticators' own
storage:

    /opt/tljh/hub/bin/python3 hubaccounts.py ACCOUNTS.json

ACCOUNTS.json names the sign-in method (`native`: NativeAuthenticator's table in the hub's database;
`first-use`: FirstUseAuthenticator's passwords.dbm), where those live, a record file, where Unix
users and homes are, and each admin with the bcrypt hash of the password the instructor set with
`classimage admin-password` (only the hash ever leaves the instructor's machine), or null when none
was set: that name is then reserved with a password nobody knows.

Whether an account exists is the hub's database's to say; the record (beside the database, on the
class's volume) says which accounts classimage made, and the fingerprint of the hash last applied.
- An admin without an account gets one, approved, with that hash.
- An admin whose account classimage made keeps it (and any password changed since in the hub), unless
  the instructor set a new password; a name that was only reserved takes the instructor's hash.
- An account, Unix user or home that classimage did not make is never handed to an admin (a student
  who signed up as `ta` before `ta` was listed in hub.admins keeps a student's account): nothing is
  changed and the program fails, naming the account and the fix. The one exception is an account
  that already holds exactly the instructor's hash, which only the instructor's user data carries.
- hub.admins is the whole list of admins: any other name (a TA dropped from it, anyone made an admin
  on the hub) loses the admin flag and role JupyterHub keeps for it (TLJH's spawner gives its admins
  sudo) and leaves the group sudo trusts.
The hub's database is created, if it does not exist yet, as the hub itself creates it.
"""

from __future__ import annotations

import dbm
import hashlib
import json
import os
import secrets
import subprocess
import sys
import tempfile

RESERVED = "reserved"  # the fingerprint of an account whose password nobody knows
NATIVE, FIRST_USE = "native", "first-use"


def fingerprint(hashed: str | None) -> str:
    return RESERVED if hashed is None else hashlib.sha256(hashed.encode()).hexdigest()


WRITE, ADOPT, REFUSE = "write", "adopt", "refuse"


def changes(
    admins: dict[str, str | None], stored: dict[str, str], held: dict[str, str], applied: dict[str, str]
) -> dict[str, tuple[str, str | None]]:
    """What to do for each admin that needs anything: (WRITE, hash to set; None: a reserved,
    unusable password), (ADOPT, None): an account found holding the instructor's hash, or (REFUSE,
    what holds the name). `stored`: the hash each existing account holds (the hub's database says
    which exist); `held`: a Unix user or home of that name, described; `applied`: the record, the
    fingerprint last applied to each account classimage made."""
    decision: dict[str, tuple[str, str | None]] = {}
    for name, hashed in admins.items():
        made = name in applied
        if name in stored:
            if made:
                if hashed is not None and applied[name] != fingerprint(hashed):
                    decision[name] = (WRITE, hashed)  # a new password from the instructor, or a reserved name claimed
            elif hashed is not None and stored[name] == hashed:
                decision[name] = (ADOPT, None)
            else:
                decision[name] = (REFUSE, "the hub account %s" % name)
        elif name in held and not made:
            decision[name] = (REFUSE, held[name])
        else:
            decision[name] = (WRITE, hashed)
    return decision


def refusal(name: str, what: str, plan: dict[str, object]) -> str:
    text = (
        "%s: %s exists, and classimage did not make it for an admin (a student may have signed up as %s): it is "
        "not handed to an admin. Fix: give this admin another name in hub.admins and deploy again; or, once "
        "you know no student uses it, delete the user %s in the hub's admin page" % (name, what, name, name)
    )
    if "homes" not in plan:
        return text + ", then restart the hub."
    unix = "%s%s" % (plan["unix_prefix"], name)
    home = os.path.join(str(plan["homes"]), unix)
    return text + ", remove the Unix user %s (userdel) and move %s away, then run `classimage-provision run`." % (
        unix,
        home,
    )


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

    def stored(self, name: str) -> str | None:
        row = self.model.find(self.session, name)
        return None if row is None else bytes(row.password).decode(errors="replace")

    def set(self, name: str, hashed: str) -> None:
        row = self.model.find(self.session, name)
        if row is None:
            self.session.add(self.model(username=name, password=hashed.encode(), is_authorized=True))
        else:
            row.password, row.is_authorized = hashed.encode(), True

    def approve(self, name: str) -> bool:
        """An admin's account is always approved (NativeAuthenticator's pages could un-approve it)."""
        row = self.model.find(self.session, name)
        if row.is_authorized:
            return False
        row.is_authorized = True
        return True

    def close(self) -> None:
        self.session.commit()
        self.session.close()


class FirstUseAccounts:
    """FirstUseAuthenticator's accounts: its passwords.dbm (a name in it is no longer a first use)."""

    def __init__(self, path: str):
        self.db = dbm.open(path, "c", 0o600)  # noqa: SIM115 (open for the object's life; closed by close())

    def stored(self, name: str) -> str | None:
        value = self.db.get(name.encode())
        return None if value is None else value.decode(errors="replace")

    def set(self, name: str, hashed: str) -> None:
        self.db[name.encode()] = hashed.encode()

    def approve(self, name: str) -> bool:
        return False  # FirstUseAuthenticator has no approvals

    def close(self) -> None:
        self.db.close()


def unix_holders(plan: dict[str, object], names: list[str]) -> dict[str, str]:
    """The names whose Unix user (in the passwd file) or home exists, described. A plan without
    Unix users (a hub on Kubernetes: one volume per student, no accounts) has none."""
    if "homes" not in plan:
        return {}
    prefix, homes = str(plan["unix_prefix"]), str(plan["homes"])
    with open(str(plan["passwd"]), encoding="utf-8", errors="replace") as handle:
        users = {line.split(":", 1)[0] for line in handle}
    held = {}
    for name in names:
        unix = prefix + name
        if os.path.lexists(os.path.join(homes, unix)):
            held[name] = "the home %s" % os.path.join(homes, unix)
        elif unix in users:
            held[name] = "the Unix user %s" % unix
    return held


class Refused(Exception):
    pass


class Failed(Exception):
    pass


def apply(plan: dict[str, object]) -> dict[str, str]:
    """Make or update the accounts `plan` describes; returns what was done, by name. Raises Refused
    (having changed nothing) when an admin's name is held by an account classimage did not make."""
    admins: dict[str, str | None] = plan["admins"]  # type: ignore[assignment]
    record = str(plan["record"])
    accounts = (
        NativeAccounts(str(plan["database"])) if plan["method"] == NATIVE else FirstUseAccounts(str(plan["passwords"]))
    )
    applied = _read(record)
    done: dict[str, str] = {}
    try:
        stored = {name: hashed for name in admins for hashed in [accounts.stored(name)] if hashed is not None}
        decision = changes(admins, stored, unix_holders(plan, list(admins)), applied)
        refused = {name: what for name, (action, what) in decision.items() if action == REFUSE}
        if refused:
            raise Refused("\n".join(refusal(name, str(what), plan) for name, what in refused.items()))
        for name, (action, hashed) in decision.items():
            if action == WRITE:
                accounts.set(name, hashed or unusable())
                done[name] = ("password set" if name in stored else "made") if hashed else "reserved"
            else:
                done[name] = "account in place, holding the instructor's password"
        for name in stored:
            if decision.get(name, (ADOPT,))[0] == ADOPT and accounts.approve(name):
                done[name] = done.get(name, "account in place") + ", approved again"
    finally:
        accounts.close()
    # Written or adopted, each of these accounts now holds the hash the instructor gave (or a reserved one).
    _write(record, {**applied, **{name: fingerprint(admins[name]) for name in decision}})
    for name in demote(plan, set(admins)):
        done[name] = "no longer an admin (not in hub.admins)"
    return done


def demote(plan: dict[str, object], admins: set[str]) -> list[str]:
    """Every name but `admins` no admin in the hub's database (the role too: JupyterHub makes it the
    flag again at start), nor, on a droplet, in the group sudo trusts: a TA dropped from hub.admins,
    and anyone made an admin on the hub (the admin panel or its API, perhaps by a student's page the
    instructor opened). Returns those that were."""
    from jupyterhub import orm, roles

    changed = set()
    session = orm.new_session_factory(str(plan["database"]))()
    try:
        role = orm.Role.find(session, "admin")
        holders = set(role.users) if role is not None else set()
        for user in session.query(orm.User).all():
            if user.name not in admins and (user.admin or user in holders):
                user.admin = False
                if role is not None and user in holders:
                    roles.strip_role(session, user, role, commit=False)
                changed.add(user.name)
        session.commit()
    finally:
        session.close()
    if "group_file" in plan:
        prefix, group = str(plan["unix_prefix"]), str(plan["admins_group"])
        for member in sorted(_members(str(plan["group_file"]), group)):
            if member.startswith(prefix) and member[len(prefix) :] not in admins:
                _run(["gpasswd", "--delete", member, group])
                changed.add(member[len(prefix) :])
    return sorted(changed)


def _members(path: str, group: str) -> set[str]:
    with open(path, encoding="utf-8", errors="replace") as handle:
        for line in handle:
            fields = line.rstrip("\n").split(":")
            if len(fields) == 4 and fields[0] == group:
                return {member for member in fields[3].split(",") if member}
    return set()


def _run(argv: list[str]) -> None:
    result = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if result.returncode != 0:
        raise Failed("%s failed (%d): %s" % (" ".join(argv), result.returncode, result.stdout.strip()))


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
    try:
        done = apply(plan)
    except (Refused, Failed) as refused:
        print(refused, file=sys.stderr)  # names and paths only, never a hash
        return 1
    for name in sorted(set(plan["admins"]) | set(done)):
        print("%s: %s" % (name, done.get(name, "account in place")))  # names only, never a hash
    return 0


if __name__ == "__main__":
    sys.exit(main())
