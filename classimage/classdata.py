#!/usr/bin/env python3
"""classimage-class-data: keeps the class's data (students' homes and the hub's state: accounts,
approvals, password hashes, Let's Encrypt's account and certificates) on its own block device, a
DigitalOcean volume or any other, so that it outlives every droplet. Shipped by classimage into the
user data as it is (standard library only, Python 3.9 or newer).

  classimage-class-data prepare DEVICE   at provisioning: format the device only if it holds no
                                         filesystem at all, mount it, move the droplet's own homes
                                         and hub state onto it the first time, reconcile accounts
  classimage-class-data mount DEVICE     at every boot, before the hub: mount and reconcile (the
                                         hub and proxy require this; they never start without it)
  classimage-class-data copy-database    a consistent copy of the hub's database, on the device
                                         (when the droplet shuts down)
  classimage-class-data tend DEVICE      every few minutes: the copy, and the filesystem grown to a
                                         volume made bigger

A hub database that SQLite finds damaged when the device is mounted (a backup taken while the hub
wrote, restored) is set aside and replaced by the last consistent copy.

Accounts: every home on the device is owned by its student's Unix account, so the home's owner is
the record of its UID: each `jupyter-NAME` is recreated with it (whatever order students come back
in), in TLJH's group jupyterhub-users, admins in jupyterhub-admins. The device also records the
GIDs of those two groups and of each student's own group (a home's group is the student's to
change: `chgrp jupyterhub-users ~` must not close the class nor hand their files to another group),
so every droplet on the device gives each group the GID it had: a home whose group is wrong is given
back to its own group, with a warning.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import grp
import json
import os
import pwd
import shutil
import sqlite3
import stat
import subprocess
import sys
import tempfile
import time

MOUNT = "/srv/classimage-data"
STATE = "tljh-state"  # the hub's state, on the device
PLACES = (("home", "/home"), (STATE, "/opt/tljh/state"))  # (folder on the device, where it appears)
MARKER = ".classimage-data"  # on the device's filesystem: classimage made it, for which course
IDS = ".classimage-ids.json"  # on the device: the GIDs of the class's groups and students' own groups
DATABASE = "jupyterhub.sqlite"
COPY = "database-copy/jupyterhub.sqlite"
RECORD = "/var/lib/classimage/data.json"  # what the status service tells about the class's data
USERS_GROUP, ADMINS_GROUP = "jupyterhub-users", "jupyterhub-admins"
CLASS_GROUPS = (ADMINS_GROUP, USERS_GROUP)  # the order TLJH's installer makes them in (ensure_usergroups)
# What the first move onto the device keeps (GNU cp: ACLs come with `mode`); checked after, too.
KEEP = "mode,ownership,timestamps,links,xattr"
ZEROS = 1 << 20  # bytes at the start of a device that must read as zeros before it is formatted
PREFIX = "jupyter-"
DEVICE_WAIT = 60  # seconds a device may take to appear after boot (DigitalOcean attaches volumes before it)


class DataError(Exception):
    pass


def say(message: str) -> None:
    # A file name that is not UTF-8 (kept as surrogates) is shown escaped, not a traceback.
    print(("classimage-class-data: " + message).encode("utf-8", "backslashreplace").decode(), flush=True)


def now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def run(argv: list[str], check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if check and result.returncode != 0:
        raise DataError("%s failed (%d): %s" % (" ".join(argv), result.returncode, result.stdout.strip()[-500:]))
    return result


# -- the device -------------------------------------------------------------------------------------


def wait_for(device: str, then: str) -> None:
    """Until `device` is there; `then`: what to do once it is attached, in the error."""
    deadline = time.monotonic() + DEVICE_WAIT
    while not os.path.exists(device):
        if time.monotonic() > deadline:
            raise DataError(
                "the class's data device %s is not there: attach the class's volume to this droplet "
                "(control panel > Volumes), then %s. The hub does not start without it." % (device, then)
            )
        time.sleep(1)


def filesystem(device: str) -> str | None:
    """The filesystem type on `device`, or None when it holds nothing at all. Only blkid's "nothing
    found" (exit 2) can mean None, and blkid also answers 2 when it cannot read the device: so the
    device must be a block device (or a file) that opens, and its first MiB must read as zeros, as a
    new volume's does. Anything else (exit 4: an error; 8: more than one filesystem; killed; data
    blkid does not recognise) is an error: formatting it could lose every student's work."""
    try:
        info = os.stat(device)
        if not (stat.S_ISBLK(info.st_mode) or stat.S_ISREG(info.st_mode)):
            raise DataError("%s is not a block device: the class's data needs one" % device)
        with open(device, "rb") as handle:
            start = handle.read(ZEROS)
    except OSError as error:
        raise DataError("cannot tell what %s holds: %s" % (device, error.strerror)) from None
    result = run(["blkid", "--probe", "--output", "value", "--match-tag", "TYPE", device], check=False)
    if result.returncode == 2:
        if start.count(0) != len(start):
            raise DataError(
                "%s holds data but no filesystem blkid recognises: classimage formats only an empty "
                "device. If nothing on it is needed, empty its start (`wipefs --all %s` or "
                "`dd if=/dev/zero of=%s bs=1M count=1`) and run again" % (device, device, device)
            )
        return None
    if result.returncode != 0:
        said = result.stdout.strip() or "no message"
        if result.returncode == 8:
            said = "more than one filesystem signature (`wipefs %s` lists them): %s" % (device, said)
        elif result.returncode < 0:
            said = "blkid was killed by signal %d" % -result.returncode
        raise DataError("cannot tell what %s holds (blkid exit %d): %s" % (device, result.returncode, said))
    return result.stdout.strip() or "unknown"


def decide_format(found: str | None) -> bool:
    """Whether to format: only a device that holds no filesystem at all. Never one that does."""
    return found is None


def mounted(path: str) -> bool:
    with open("/proc/self/mountinfo") as handle:
        return any(line.split()[4] == path for line in handle)


def mount_device(device: str, kind: str | None) -> str | None:
    """The device at MOUNT, its filesystem grown first to a volume made bigger. What was done."""
    os.makedirs(MOUNT, exist_ok=True)
    if mounted(MOUNT):
        return None
    grown = grow_unmounted(device, kind)
    run(["mount", "-o", "noatime,discard", device, MOUNT])
    return grown


def mount_all(device: str, course: str) -> list[str]:
    """Mount the device (grown first, if its volume was) and bind its folders into place; what to
    say about the filesystem."""
    grown = mount_device(device, filesystem(device))
    said = [grown] if grown else []
    note = ""
    marker = os.path.join(MOUNT, MARKER)
    if not os.path.exists(marker):
        note = (
            "WARNING: %s holds a filesystem classimage did not make; it is used as it is, nothing was formatted"
            % device
        )
    else:
        with open(marker) as handle:
            made_for = json.load(handle).get("course")
        if made_for != course:
            note = "WARNING: %s holds the data of course %r, not %r; it is used as it is" % (device, made_for, course)
    for folder, place in PLACES:
        os.makedirs(os.path.join(MOUNT, folder), exist_ok=True)
        os.makedirs(place, exist_ok=True)
        if not mounted(place):
            run(["mount", "--bind", os.path.join(MOUNT, folder), place])
    return said + ([note] if note else [])


def size_of(device: str) -> int:
    """Bytes on `device` (a block device, or a file standing for one)."""
    with open(device, "rb") as handle:
        return handle.seek(0, os.SEEK_END)


def filesystem_size(device: str) -> int:
    """Bytes the ext4 filesystem on `device` spans."""
    fields = {}
    for line in run(["dumpe2fs", "-h", device]).stdout.splitlines():
        key, _, value = line.partition(":")
        fields[key.strip()] = value.strip()
    return int(fields["Block count"]) * int(fields["Block size"])


def grow_unmounted(device: str, kind: str | None) -> str | None:
    """Before mounting: a volume made bigger (the spec's size) gets its filesystem grown to it.
    Checked first, as resize2fs wants; never shrinks, never formats. What was done, or None."""
    if kind != "ext4" or mounted(MOUNT):
        return None
    before, available = filesystem_size(device), size_of(device)
    if available - before < 1 << 20:  # less than a MiB to gain: nothing to do
        return None
    checked = run(["e2fsck", "-f", "-p", device], check=False)
    if checked.returncode not in (0, 1):  # 1: e2fsck corrected something, and says what
        raise DataError(
            "the filesystem on %s needs a repair e2fsck -p does not make (%d): %s"
            % (device, checked.returncode, checked.stdout.strip()[-500:])
        )
    run(["resize2fs", device])
    return "grew the filesystem on %s from %.1f to %.1f GiB" % (device, before / 2**30, filesystem_size(device) / 2**30)


def grow_mounted(device: str, kind: str | None) -> None:
    """A volume made bigger while attached: the filesystem grows with it, mounted (a kernel that
    refuses online resizing leaves it to the next boot, which grows it before mounting)."""
    if kind == "ext4":
        result = run(["resize2fs", device], check=False)
        if result.returncode != 0:
            say("the filesystem grows at the next boot: " + result.stdout.strip()[-200:])


def check_database(state: str, copy: str) -> str | None:
    """Before the hub starts: a database SQLite finds damaged is set aside and the last consistent
    copy takes its place. What was done, or None when the database is sound (or there is none)."""
    database = os.path.join(state, DATABASE)
    if not os.path.exists(database):
        return None
    problem = database_problem(database)
    if problem is None:
        return None
    if not os.path.exists(copy) or database_problem(copy) is not None:
        raise DataError(
            "the hub's database %s is damaged (%s) and there is no sound copy of it on the device: "
            "restore a backup (`classimage restore`)" % (database, problem)
        )
    aside = "%s.damaged-%s" % (database, now())
    os.replace(database, aside)
    shutil.copy2(copy, database)
    return "WARNING: the hub's database was damaged (%s): set aside as %s, replaced by the copy of %s" % (
        problem,
        aside,
        datetime.datetime.fromtimestamp(os.stat(copy).st_mtime, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
    )


def database_problem(path: str) -> str | None:
    """What SQLite's own check finds wrong with the database at `path`, or None. Opened for writing,
    so a transaction a crash left half done is rolled back first, as SQLite does on any open."""
    try:
        connection = sqlite3.connect(path, timeout=30)
    except sqlite3.Error as error:
        return str(error)
    try:
        found = [row[0] for row in connection.execute("PRAGMA integrity_check")]
    except sqlite3.DatabaseError as error:
        return str(error)
    finally:
        connection.close()
    return None if found == ["ok"] else "; ".join(found[:3])


def prepare(device: str, course: str) -> list[str]:
    """At provisioning. Returns what to tell the instructor."""
    said = []
    wait_for(device, "run `classimage-provision run` (as root)")
    kind = filesystem(device)
    if decide_format(kind):
        run(["mkfs.ext4", "-q", "-L", "classdata", device])
        said.append("formatted %s (it held no filesystem)" % device)
        fresh = True
    else:
        said.append("%s holds a %s filesystem: kept as it is" % (device, kind))
        fresh = False
    grown = mount_device(device, kind or "ext4")
    if grown:
        said.append(grown)
    if fresh:
        with open(os.path.join(MOUNT, MARKER), "w") as handle:
            json.dump({"course": course, "made": now()}, handle)
    for folder, place in PLACES:  # the first time: what the droplet has already goes onto the device
        target = os.path.join(MOUNT, folder)
        if not os.path.exists(target):
            if os.path.isdir(place) and not mounted(place):
                said.append(move_onto_device(place, target))
            else:
                os.makedirs(target)
    os.chmod(os.path.join(MOUNT, STATE), 0o700)
    said += mount_all(device, course)
    return said + settle(device)


def move_onto_device(place: str, target: str) -> str:
    """The first time: what the droplet holds at `place` goes onto the device as `target`, keeping
    every owner, group, mode, time, ACL, extended attribute, symlink (not followed), hard link,
    FIFO and socket: GNU cp does the copy (it fails when it cannot keep one of them), then the copy
    is compared with the original. It is made beside `target` and renamed into place only when
    whole, so a copy that fails or is interrupted leaves nothing that could pass for the real one.
    Refuses, with the reason, anything it cannot keep; the droplet's own files are left as they are."""
    partial = target + ".copying"
    if os.path.lexists(partial):  # an earlier attempt, interrupted
        shutil.rmtree(partial)
    copied = run(
        ["cp", "--no-dereference", "--recursive", "--preserve=" + KEEP, "--no-target-directory", place, partial],
        check=False,
    )
    # cp's own message may not name the file (it names the attribute twice): the check does
    problems = ([copied.stdout.strip()[-1500:]] if copied.returncode != 0 else []) + differences(place, partial)
    if problems:
        shutil.rmtree(partial, ignore_errors=True)
        raise DataError(
            "cannot move %s onto the class's data device without losing something, so nothing was "
            "moved: %s. Fix that in %s (or remove what does not need keeping) and run again"
            % (place, "; ".join(problems[:5]) + ("; ..." if len(problems) > 5 else ""), place)
        )
    os.rename(partial, target)
    return "moved %s onto the device, every owner, mode, time, ACL, attribute and link kept" % place


def differences(source: str, copy: str) -> list[str]:
    """What `copy` does not keep of `source` (both trees, walked without following symlinks): each
    entry's type, mode, owner, group, modification time, contents or link target, device number,
    extended attributes (ACLs among them), and which names are hard links of one file. A hard link
    to a file outside `source` cannot be kept on another filesystem: it is a difference too."""
    found = entry_differences(source, copy, ".")
    unreadable: list[OSError] = []
    linked: dict[tuple[int, int, int], list[str]] = {}  # a file with several names (device, inode, links): them
    for folder, folders, files in os.walk(source, onerror=unreadable.append):
        for name in sorted(folders + files):
            path = os.path.join(folder, name)
            relative = os.path.relpath(path, source)
            found += entry_differences(path, os.path.join(copy, relative), relative)
            info = os.lstat(path)
            if not stat.S_ISDIR(info.st_mode) and info.st_nlink > 1:
                linked.setdefault((info.st_dev, info.st_ino, info.st_nlink), []).append(relative)
    for (_, _, links), names in linked.items():
        if len(names) < links:
            found.append(
                "%s is a hard link to a file outside %s, which another filesystem cannot keep" % (names[0], source)
            )
        copies = [os.path.join(copy, name) for name in names if os.path.lexists(os.path.join(copy, name))]
        if len({os.lstat(path).st_ino for path in copies}) > 1:
            found.append("%s are one file (hard links), but not in the copy" % " and ".join(names))
    for folder, folders, files in os.walk(copy):
        for name in folders + files:
            relative = os.path.relpath(os.path.join(folder, name), copy)
            if not os.path.lexists(os.path.join(source, relative)):
                found.append("%s is in the copy only" % relative)
    return found + ["cannot read %s: %s" % (error.filename, error.strerror) for error in unreadable]


def entry_differences(original: str, copied: str, name: str) -> list[str]:
    try:
        a, b = os.lstat(original), os.lstat(copied)
    except FileNotFoundError:
        return ["%s was not copied" % name]
    found = []
    if stat.S_IFMT(a.st_mode) != stat.S_IFMT(b.st_mode):
        return ["%s is another kind of file in the copy" % name]
    for what, left, right in (
        ("mode", oct(stat.S_IMODE(a.st_mode)), oct(stat.S_IMODE(b.st_mode))),
        ("owner", a.st_uid, b.st_uid),
        ("group", a.st_gid, b.st_gid),
        ("modification time", a.st_mtime_ns, b.st_mtime_ns),
        ("device number", a.st_rdev, b.st_rdev),
        ("extended attributes (ACLs among them)", attributes(original), attributes(copied)),
    ):
        if left != right:
            found.append(
                "%s: the copy does not keep its %s (%s, copied as %s)" % (name, what, short(left), short(right))
            )
    if stat.S_ISLNK(a.st_mode) and os.readlink(original) != os.readlink(copied):
        found.append("%s: the symlink points elsewhere in the copy" % name)
    if stat.S_ISREG(a.st_mode) and (a.st_size != b.st_size or not same_contents(original, copied)):
        found.append("%s: its contents differ in the copy" % name)
    return found


def attributes(path: str) -> dict[str, bytes]:
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError:  # a filesystem without extended attributes holds none
        return {}
    return {name: os.getxattr(path, name, follow_symlinks=False) for name in sorted(names)}


def short(value: object) -> str:
    return value if isinstance(value, str) else repr(value)[:120]


def same_contents(left: str, right: str) -> bool:
    with open(left, "rb") as one, open(right, "rb") as other:
        while True:
            a, b = one.read(1 << 20), other.read(1 << 20)
            if a != b:
                return False
            if not a:
                return True


def settle(device: str) -> list[str]:
    """Once mounted, before the hub starts: its database sound, every student's account back."""
    said = []
    repaired = check_database(os.path.join(MOUNT, STATE), os.path.join(MOUNT, COPY))
    if repaired:
        said.append(repaired)
    said += reconcile()
    record(device, said)
    return said


# -- accounts ---------------------------------------------------------------------------------------


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
    """The lowest GID for a person's group (1000 and up, as useradd's) that nothing in `taken`
    holds; it is taken from then on."""
    gid = 1000
    while gid in taken:
        gid += 1
    taken.add(gid)
    return gid


def plan_class_groups(
    recorded: dict[str, int], groups: dict[str, int], taken: set[int]
) -> tuple[list[list[str]], list[str]]:
    """(commands, conflicts): the commands that give jupyterhub-admins and jupyterhub-users the GIDs
    the device recorded (a droplet from a snapshot has them from TLJH's installer, with whatever
    GIDs that droplet gave them), or that make them, in TLJH's order, with GIDs no home on the device
    uses. `groups`: name -> GID on this droplet; `taken`: GIDs the device's homes and record use."""
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
    """(accounts to create as (name, uid, gid), homes to give back to their own group as (name, gid),
    warnings, conflicts). Each home's owner comes back with the home's UID, and with its own group's
    GID: the one the device recorded for it, else the home's. A home whose group is not its own
    (a student may `chgrp jupyterhub-users ~`) is given back to it: never a closed class. An account
    or UID that another name holds here is a conflict: nothing is changed for it."""
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
    """Before the hub starts: the class's groups with the GIDs the device recorded, each student's
    account recreated from their home, each home in its own group; then the record brought up to date."""
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
    for name in admins if admins is not None else read_admins():
        if PREFIX + name in {n for n, _, _ in wanted}:
            run(["gpasswd", "--add", PREFIX + name, ADMINS_GROUP])
    record_ids(ids)
    made = ["recreated %d account(s): %s" % (len(create), ", ".join(n for n, _, _ in create))] if create else []
    return made + warnings


def read_ids(path: str) -> dict:
    """The GIDs the device recorded: {"groups": {class group: GID}, "students": {account: GID}}."""
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
    """Record on the device the GIDs of the class's groups and of each student's own group: from the
    accounts, never from the homes (whose group a student can change)."""
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


def read_admins() -> list[str]:
    try:
        with open(RECORD) as handle:
            return json.load(handle).get("admins", [])
    except (FileNotFoundError, ValueError):
        return []


# -- the hub's database -----------------------------------------------------------------------------


def copy_database(data: str = MOUNT) -> str | None:
    """A consistent copy of the hub's SQLite database on the device (SQLite's own backup: whole
    transactions only), replaced atomically. Its time, or None when there is no database yet.
    Read on the device itself, not through /opt/tljh/state: at shutdown, systemd may take the bind
    mounts down first, and the droplet's own disk under them holds no current database."""
    source = os.path.join(data, STATE, DATABASE)
    if not mounted(data) or not os.path.exists(source):  # never a copy on the droplet's own disk
        return None
    target = os.path.join(data, COPY)
    os.makedirs(os.path.dirname(target), mode=0o700, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=os.path.dirname(target), prefix=".copy-")
    os.close(handle)
    try:
        with (
            sqlite3.connect("file:%s?mode=ro" % source, uri=True, timeout=30) as reader,
            sqlite3.connect(temporary) as writer,
        ):
            reader.backup(writer)
        os.chmod(temporary, 0o600)
        os.replace(temporary, target)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise
    when = now()
    update_record({"database_copied": when})
    return when


def record(device: str, said: list[str]) -> None:
    update_record({"device": device, "mounted": now(), "notes": said, "error": None})


def update_record(changes: dict[str, object]) -> None:
    try:
        with open(RECORD) as handle:
            data = json.load(handle)
    except (FileNotFoundError, ValueError):
        data = {}
    data.update(changes)
    write_json(RECORD, data)


def write_json(path: str, data: object) -> None:
    """`data` at `path`, readable by all, replaced atomically."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".data-")
    with os.fdopen(descriptor, "w") as out:
        json.dump(data, out, indent=2)
    os.chmod(temporary, 0o644)
    os.replace(temporary, path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="classimage-class-data", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    verbs = parser.add_subparsers(dest="verb", required=True)
    for verb in ("prepare", "mount"):
        sub = verbs.add_parser(verb)
        sub.add_argument("device")
        sub.add_argument("--course", required=True)
        sub.add_argument("--admin", action="append", default=[])
    verbs.add_parser("copy-database")
    verbs.add_parser("tend").add_argument("device")
    args = parser.parse_args(argv)
    try:
        if args.verb in ("copy-database", "tend"):
            if args.verb == "tend":
                grow_mounted(args.device, filesystem(args.device))
            when = copy_database()
            say("copied the hub's database at %s" % when if when else "no hub database yet")
            if mounted(MOUNT):  # students who joined since the boot: their groups' GIDs
                record_ids(os.path.join(MOUNT, IDS), os.path.join(MOUNT, "home"))
            return 0
        update_record({"admins": args.admin})
        if args.verb == "prepare":
            said = prepare(args.device, args.course)
        else:
            wait_for(args.device, "restart the droplet")
            said = mount_all(args.device, args.course) + settle(args.device)
        for line in said:
            say(line)
        return 0
    except DataError as error:
        update_record({"error": str(error)})
        say("FAILED: %s" % error)
        return 1


if __name__ == "__main__":
    sys.exit(main())
