"""The class's accounts, recreated from the device before the hub starts: each `jupyter-NAME` with
its home's owner as UID, in jupyterhub-users, admins in jupyterhub-admins; those two groups and each
student's own group with the GIDs the device recorded (a snapshot's TLJH made the groups in its own
order; a student can `chgrp` their home), and the record of them kept up to date."""

from __future__ import annotations

import contextlib
import grp
import json
import os
import pwd

from . import record
from .shared import IDS, MOUNT, DataError, run, write_json

PREFIX = "jupyter-"
USERS_GROUP, ADMINS_GROUP = "jupyterhub-users", "jupyterhub-admins"
CLASS_GROUPS = (ADMINS_GROUP, USERS_GROUP)  # the order TLJH's installer makes them in (ensure_usergroups)


def homes(root: str) -> list[tuple[str, int, int]]:
    """(name, uid, gid) of each student's home under `root`, by its owner."""
    found = []
    for entry in sorted(os.listdir(root)):
        path = os.path.join(root, entry)
        if entry.startswith(PREFIX) and os.path.isdir(path) and not os.path.islink(path):
            info = os.stat(path)
            found.append((entry, info.st_uid, info.st_gid))
    return found


def free_gid(taken: set[int]) -> int:
    """The lowest GID from 1000 (useradd's) not in `taken`; taken from then on."""
    gid = 1000
    while gid in taken:
        gid += 1
    taken.add(gid)
    return gid


def plan_class_groups(
    recorded: dict[str, int], groups: dict[str, int], taken: set[int]
) -> tuple[list[list[str]], list[str]]:
    """(commands, conflicts) that give the class's groups the GIDs the device recorded (a snapshot's
    TLJH made them with its own), or make them in TLJH's order with GIDs no home or record uses.
    `groups`: name -> GID here."""
    commands, conflicts = [], []
    current = dict(groups)
    taken = taken | set(current.values()) | set(recorded.values())
    for group in CLASS_GROUPS:
        want, have = recorded.get(group), current.get(group)
        if want is None:
            if have is not None:
                continue
            want = free_gid(taken)
        if have == want:
            continue
        holder = next((name for name, gid in current.items() if gid == want), None)
        if holder is not None:
            if holder not in CLASS_GROUPS:
                conflicts.append("gid %d of %s is group %s's on this droplet" % (want, group, holder))
                continue
            spare = free_gid(taken)  # the other class group holds this one's GID here: out of the way
            commands.append(["groupmod", "--gid", str(spare), holder])
            current[holder] = spare
        verb = ["groupadd"] if have is None else ["groupmod"]
        commands.append(verb + ["--gid", str(want), group])
        current[group] = want
    return commands, conflicts


def plan_accounts(
    wanted: list[tuple[str, int, int]],
    by_name: dict[str, tuple[int, int]],
    by_uid: dict[int, str],
    groups_by_gid: dict[int, str],
    recorded: dict[str, int] | None = None,
) -> tuple[list[tuple[str, int, int]], list[tuple[str, int]], list[str], list[str]]:
    """(accounts to create (name, uid, gid), homes to give back to their own group (name, gid),
    warnings, conflicts). The GID: the account's, else the recorded one, else the home's, else a new
    one. A UID another account holds is a conflict: nothing is changed for it."""
    recorded = recorded or {}
    groups_by_gid = dict(groups_by_gid)
    groups_by_name = {name: gid for gid, name in groups_by_gid.items()}
    taken = set(groups_by_gid) | {gid for _, _, gid in wanted} | set(recorded.values())
    create, repair, warnings, conflicts = [], [], [], []
    for name, uid, gid in wanted:
        if name in by_name:
            if by_name[name][0] != uid:
                conflicts.append(
                    "%s exists with uid %d, but its home is owned by uid %d" % (name, by_name[name][0], uid)
                )
                continue
            own = by_name[name][1]
        elif uid in by_uid:
            conflicts.append("uid %d of %s is %s's on this droplet" % (uid, name, by_uid[uid]))
            continue
        else:
            own = groups_by_name.get(name, recorded.get(name, gid))
            if groups_by_gid.get(own, name) != name:
                warnings.append(
                    "WARNING: gid %d of %s's own group is group %s's on this droplet: %s gets a new group"
                    % (own, name, groups_by_gid[own], name)
                )
                own = free_gid(taken)
            groups_by_gid[own], groups_by_name[name] = name, own
            create.append((name, uid, own))
        if gid != own:
            repair.append((name, own))
            warnings.append(
                "WARNING: the home of %s was group-owned by %s, not by its own group: given back to it (gid %d)"
                % (name, groups_by_gid.get(gid, "gid %d" % gid), own)
            )
    return create, repair, warnings, conflicts


def reconcile(admins: list[str] | None = None, ids: str | None = None) -> list[str]:
    """Before the hub starts: groups with their recorded GIDs, accounts from homes, homes in their
    own groups; then the record brought up to date."""
    ids = ids or os.path.join(MOUNT, IDS)
    recorded = read_ids(ids)
    wanted = homes("/home")
    taken = {gid for _, _, gid in wanted} | set(recorded["students"].values())
    groups = {g.gr_name: g.gr_gid for g in grp.getgrall()}
    commands, conflicts = plan_class_groups(recorded["groups"], groups, taken)
    if conflicts:
        raise DataError("the class's groups cannot have the GIDs they had: " + "; ".join(conflicts))
    for argv in commands:
        run(argv)
    by_name = {p.pw_name: (p.pw_uid, p.pw_gid) for p in pwd.getpwall()}
    by_uid = {p.pw_uid: p.pw_name for p in pwd.getpwall()}
    groups_by_gid = {g.gr_gid: g.gr_name for g in grp.getgrall()}
    create, repair, warnings, conflicts = plan_accounts(wanted, by_name, by_uid, groups_by_gid, recorded["students"])
    if conflicts:
        raise DataError("the class's accounts cannot be recreated as they were: " + "; ".join(conflicts))
    for name, uid, gid in create:
        if gid not in groups_by_gid:
            run(["groupadd", "--gid", str(gid), name])
        run(
            [
                "useradd",
                "--uid",
                str(uid),
                "--gid",
                str(gid),
                "--no-create-home",
                "--home-dir",
                "/home/" + name,
                "--groups",
                USERS_GROUP,
                name,
            ]
        )
    for name, gid in repair:
        os.chown(os.path.join("/home", name), -1, gid, follow_symlinks=False)
    for name in admins if admins is not None else record.read_admins():
        if PREFIX + name in {n for n, _, _ in wanted}:
            run(["gpasswd", "--add", PREFIX + name, ADMINS_GROUP])
    record_ids(ids)
    made = ["recreated %d account(s): %s" % (len(create), ", ".join(n for n, _, _ in create))] if create else []
    return made + warnings


def read_ids(path: str) -> dict:
    """{"groups": {class group: GID}, "students": {account: GID}} as the device recorded them."""
    try:
        with open(path) as handle:
            found = json.load(handle)
    except (FileNotFoundError, ValueError):
        found = {}
    groups = found.get("groups") or {}
    return {
        "groups": {name: int(groups[name]) for name in CLASS_GROUPS if name in groups},
        "students": {name: int(gid) for name, gid in (found.get("students") or {}).items()},
    }


def record_ids(path: str, root: str = "/home") -> None:
    """The GIDs of the class's groups and students' own groups onto the device: from the accounts,
    never from the homes (whose group a student can change)."""
    recorded = read_ids(path)
    for name in CLASS_GROUPS:
        with contextlib.suppress(KeyError):
            recorded["groups"][name] = grp.getgrnam(name).gr_gid
    for name, uid, _ in homes(root):
        with contextlib.suppress(KeyError):
            account = pwd.getpwnam(name)
            if account.pw_uid == uid:
                recorded["students"][name] = account.pw_gid
    write_json(path, recorded)
