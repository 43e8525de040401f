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

Accounts: every home on the device is owned by its student's Unix account, so the home itself is
the record: each `jupyter-NAME` is recreated with its home's UID and GID (whatever order students
come back in), in TLJH's group jupyterhub-users, admins in jupyterhub-admins.
"""

from __future__ import annotations

import argparse
import datetime
import grp
import json
import os
import pwd
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time

MOUNT = "/srv/classimage-data"
STATE = "tljh-state"  # the hub's state, on the device
PLACES = (("home", "/home"), (STATE, "/opt/tljh/state"))  # (folder on the device, where it appears)
MARKER = ".classimage-data"  # on the device's filesystem: classimage made it, for which course
DATABASE = "jupyterhub.sqlite"
COPY = "database-copy/jupyterhub.sqlite"
RECORD = "/var/lib/classimage/data.json"  # what the status service tells about the class's data
USERS_GROUP, ADMINS_GROUP = "jupyterhub-users", "jupyterhub-admins"
PREFIX = "jupyter-"
DEVICE_WAIT = 60  # seconds a device may take to appear after boot (DigitalOcean attaches volumes before it)


class DataError(Exception):
    pass


def say(message: str) -> None:
    print("classimage-class-data: " + message, flush=True)


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
    """The filesystem type on `device`, or None when it holds none at all (blkid's probe: exit 2,
    which it also answers for a device it cannot open: that must never read as "empty")."""
    try:
        os.close(os.open(device, os.O_RDONLY))
    except OSError as error:
        raise DataError("cannot tell what %s holds: %s" % (device, error.strerror)) from None
    result = run(["blkid", "--probe", "--output", "value", "--match-tag", "TYPE", device], check=False)
    if result.returncode == 2:
        return None
    if result.returncode != 0:
        raise DataError("cannot tell what %s holds: %s" % (device, result.stdout.strip()))
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
                shutil.copytree(place, target, symlinks=True)
            else:
                os.makedirs(target)
    os.chmod(os.path.join(MOUNT, STATE), 0o700)
    said += mount_all(device, course)
    return said + settle(device)


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


def plan_accounts(
    wanted: list[tuple[str, int, int]],
    by_name: dict[str, tuple[int, int]],
    by_uid: dict[int, str],
    groups_by_gid: dict[int, str],
) -> tuple[list[tuple[str, int, int]], list[str]]:
    """(accounts to create, conflicts): each home's owner, with its UID and GID. An account that
    exists with other ids, or an id another name holds, is a conflict: nothing is changed for it."""
    create, conflicts = [], []
    for name, uid, gid in wanted:
        if name in by_name:
            if by_name[name] != (uid, gid):
                conflicts.append(
                    "%s exists with uid %d, gid %d, but its home is owned by %d:%d"
                    % (name, by_name[name][0], by_name[name][1], uid, gid)
                )
            continue
        if uid in by_uid:
            conflicts.append("uid %d of %s is %s's on this droplet" % (uid, name, by_uid[uid]))
            continue
        if gid in groups_by_gid and groups_by_gid[gid] != name:
            conflicts.append("gid %d of %s is group %s's on this droplet" % (gid, name, groups_by_gid[gid]))
            continue
        create.append((name, uid, gid))
    return create, conflicts


def reconcile(admins: list[str] | None = None) -> list[str]:
    """Recreate each student's account from their home (before the hub starts)."""
    wanted = homes("/home")
    by_name = {p.pw_name: (p.pw_uid, p.pw_gid) for p in pwd.getpwall()}
    by_uid = {p.pw_uid: p.pw_name for p in pwd.getpwall()}
    groups_by_gid = {g.gr_gid: g.gr_name for g in grp.getgrall()}
    create, conflicts = plan_accounts(wanted, by_name, by_uid, groups_by_gid)
    if conflicts:
        raise DataError("the class's accounts cannot be recreated as they were: " + "; ".join(conflicts))
    for group in (USERS_GROUP, ADMINS_GROUP):
        run(["groupadd", "--force", group])
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
    for name in admins if admins is not None else read_admins():
        if PREFIX + name in {n for n, _, _ in wanted}:
            run(["gpasswd", "--add", PREFIX + name, ADMINS_GROUP])
    return ["recreated %d account(s): %s" % (len(create), ", ".join(n for n, _, _ in create))] if create else []


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
    os.makedirs(os.path.dirname(RECORD), exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(dir=os.path.dirname(RECORD), prefix=".data-")
    with os.fdopen(descriptor, "w") as out:
        json.dump(data, out, indent=2)
    os.chmod(temporary, 0o644)
    os.replace(temporary, RECORD)


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
