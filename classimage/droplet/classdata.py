#!/usr/bin/env python3
"""classimage-class-data: keeps the class's data (students' homes and the hub's state: accounts,
approvals, password hashes, Let's Encrypt's account and certificates) on its own block device, a
DigitalOcean volume or any other, so that it outlives every droplet. Shipped by classimage into the
user data as it is (standard library only, Python 3.9 or newer).

  classimage-class-data wait DEVICE      at provisioning: until the device is there (a DigitalOcean
                                         volume: for as long as it takes, saying so in the record
                                         the status service shows); --now: exit 3 if it is not yet
  classimage-class-data prepare DEVICE   at provisioning: format the device only if it holds no
                                         filesystem at all, mount it, move the droplet's own homes
                                         and hub state onto it the first time, reconcile accounts
  classimage-class-data mount DEVICE     at every boot, before the hub: mount and reconcile (the
                                         hub and proxy require this; they never start without it)
  classimage-class-data copy-database    a consistent copy of the hub's database, on the device
                                         (when the droplet shuts down)
  classimage-class-data tend DEVICE      every few minutes: the copy, and the filesystem grown to a
                                         volume made bigger

DEVICE is a path, or one of two words for user data pasted by hand at DigitalOcean, where the
volume's name is the instructor's choice: `any-digitalocean-volume` (the one DigitalOcean volume
attached to the droplet, whatever its name; wait for one) and `any-digitalocean-volume-or-own-disk`
(the same, but with none attached the class's data stays on the droplet's own disk). Two or more
volumes attached is a refusal naming them. The choice made at provisioning is recorded and kept at
every boot.

A hub database that SQLite finds damaged when the device is mounted (a backup taken while the hub
wrote, restored) is set aside and replaced by the last consistent copy.

Accounts: each `jupyter-NAME` is recreated with its home's owner as UID (whatever order students
come back in), in jupyterhub-users, admins in jupyterhub-admins. Those two groups and each student's
own group get the GIDs the device recorded (a student can `chgrp` their home): a home in another
group is given back to its own, with a warning.
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
RECORD = "/var/lib/classimage/data.json"  # what the status service tells the instructor about the class's data
KEPT = 20  # warnings the record keeps, the newest
USERS_GROUP, ADMINS_GROUP = "jupyterhub-users", "jupyterhub-admins"
CLASS_GROUPS = (ADMINS_GROUP, USERS_GROUP)  # the order TLJH's installer makes them in (ensure_usergroups)
# What the first move onto the device keeps (GNU cp: ACLs come with `mode`), and fails when it cannot.
KEEP = "mode,ownership,timestamps,links,xattr"
ZEROS = 1 << 20  # bytes at the start of a device that must read as zeros before it is formatted
PREFIX = "jupyter-"
DEVICE_WAIT = 60  # seconds a device may take to appear after boot (DigitalOcean attaches volumes before it)
# How DigitalOcean volumes appear on a droplet, by name (classimage/pipeline/plan.py VOLUME_DEVICE).
VOLUMES = "/dev/disk/by-id"
VOLUME_PREFIX = "scsi-0DO_Volume_"
# The devices of pasted user data (classimage/droplet/provision.py has the same words), and the recorded choice
# of the droplet's own disk.
ANY_VOLUME = "any-digitalocean-volume"
ANY_VOLUME_OR_OWN_DISK = "any-digitalocean-volume-or-own-disk"
OWN_DISK = "own-disk"


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


def attached_volumes(folder: str | None = None) -> list[str]:
    """The DigitalOcean volumes attached to this droplet, by their stable paths (in VOLUMES)."""
    folder = folder or VOLUMES
    try:
        names = sorted(os.listdir(folder))
    except FileNotFoundError:
        return []
    return [os.path.join(folder, name) for name in names if name.startswith(VOLUME_PREFIX)]


def is_volume(device: str) -> bool:
    """Whether `device` names a DigitalOcean volume (which `classimage up` may still be moving here)."""
    return device in (ANY_VOLUME, ANY_VOLUME_OR_OWN_DISK) or os.path.basename(device).startswith(VOLUME_PREFIX)


def choose(device: str, volumes: list[str]) -> str | None:
    """The class's data device for the argument DEVICE, given the DigitalOcean volumes attached: a
    path, OWN_DISK, or None when there is none yet to choose."""
    if device not in (ANY_VOLUME, ANY_VOLUME_OR_OWN_DISK):
        return device
    if len(volumes) > 1:
        raise DataError(
            "%d DigitalOcean volumes are attached to this droplet (%s): the class's data goes on exactly one. "
            "Detach the others (control panel > Volumes > More > Detach), then run `classimage-provision run` "
            "as root" % (len(volumes), ", ".join(os.path.basename(v)[len(VOLUME_PREFIX) :] for v in volumes))
        )
    if volumes:
        return volumes[0]
    return OWN_DISK if device == ANY_VOLUME_OR_OWN_DISK else None


def awaited(device: str) -> str:
    """What the droplet waits for, in words (the record's `waiting`, which `classimage up` reads)."""
    if device == ANY_VOLUME:
        return "a DigitalOcean volume to be attached to this droplet (control panel > Volumes > Attach)"
    if is_volume(device):
        return "the class's volume %s to be attached to this droplet" % os.path.basename(device)[len(VOLUME_PREFIX) :]
    return "the device %s" % device


def wait_for(device: str, then: str, patient: bool = False) -> str:
    """Until the class's data device is there; its path (or OWN_DISK). `patient`: for as long as it
    takes, the record saying what the droplet waits for (a new droplet `classimage up` made while
    the old one still has the class's volume); otherwise DEVICE_WAIT seconds, then an error saying
    what to attach and `then` what to do."""
    deadline = time.monotonic() + DEVICE_WAIT
    said = False
    while True:
        chosen = choose(device, attached_volumes())
        if chosen is not None and (chosen == OWN_DISK or os.path.exists(chosen)):
            if said:
                update_record({"waiting": None})
            return chosen
        if not patient and time.monotonic() > deadline:
            missing = (
                "no DigitalOcean volume is attached"
                if chosen is None
                else "the class's data device %s is not there" % chosen
            )
            raise DataError(
                "%s: attach the class's volume to this droplet (control panel > Volumes), then %s. The hub does "
                "not start without it." % (missing, then)
            )
        if patient and not said:
            update_record({"waiting": awaited(device), "error": None})
            say("waiting for %s" % awaited(device))
            said = True
        time.sleep(1)


def recalled(device: str) -> str:
    """At boot: the device chosen at provisioning for a pasted droplet's DEVICE (a path as it is)."""
    if device not in (ANY_VOLUME, ANY_VOLUME_OR_OWN_DISK):
        return device
    try:
        with open(RECORD) as handle:
            chosen = json.load(handle).get("chosen")
    except (FileNotFoundError, ValueError):
        chosen = None
    return chosen or choose(device, attached_volumes()) or device


def filesystem(device: str) -> str | None:
    """The filesystem type on `device`, or None when it holds nothing: blkid's "nothing found" (2,
    which it also answers when it cannot read) on a device whose first MiB reads as zeros, as a new
    volume's. Anything else (4, 8, killed, unknown data) is an error: a format would lose it all."""
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
    """The first time: `place` onto the device as `target`, every owner, group, mode, time, ACL,
    xattr, symlink, hard link, FIFO and socket kept (GNU cp, told to fail on whatever it cannot
    keep), renamed in only when whole; anything it cannot keep is refused with the reason."""
    outside = linked_outside(place)
    problem = "hard links to files outside %s, which another filesystem cannot keep: %s" % (place, ", ".join(outside))
    if not outside:
        partial = target + ".copying"
        if os.path.lexists(partial):  # an earlier attempt, interrupted
            shutil.rmtree(partial)
        argv = ["cp", "--no-dereference", "--recursive", "--preserve=" + KEEP, "--no-target-directory", place, partial]
        copied = run(argv, check=False)
        if copied.returncode == 0:
            os.rename(partial, target)
            return "moved %s onto the device, every owner, mode, time, ACL, attribute and link kept" % place
        shutil.rmtree(partial, ignore_errors=True)
        problem = copied.stdout.strip()[-1500:]
    raise DataError(
        "cannot move %s onto the class's data device without losing something, so nothing was moved: %s. "
        "Fix that in %s (or remove what does not need keeping) and run again" % (place, problem, place)
    )


def linked_outside(place: str) -> list[str]:
    """Names under `place` of files that have more names (hard links) than `place` holds."""
    seen: dict[tuple[int, int], list] = {}
    for folder, _, files in os.walk(place):
        for name in files:
            info = os.lstat(os.path.join(folder, name))
            if info.st_nlink > 1:
                seen.setdefault((info.st_dev, info.st_ino), [info.st_nlink]).append(os.path.join(folder, name))
    return sorted(names[1] for names in seen.values() if len(names) - 1 < names[0])


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
    for name in admins if admins is not None else read_admins():
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


def read_admins() -> list[str]:
    return read_record().get("admins", [])


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
    """What this mount said; its warnings also join those kept from earlier ones (the mount at the
    next boot, or the one right after `prepare`, says nothing of a home given back before)."""
    kept = read_record().get("warnings") or []
    for line in said:
        if line.startswith("WARNING") and line not in [w["message"] for w in kept]:
            kept.append({"at": now(), "message": line})
    update_record({"device": device, "mounted": now(), "notes": said, "error": None, "warnings": kept[-KEPT:]})


def read_record() -> dict:
    try:
        with open(RECORD) as handle:
            return json.load(handle)
    except (FileNotFoundError, ValueError):
        return {}


def update_record(changes: dict[str, object]) -> None:
    data = read_record()
    data.update(changes)
    write_json(RECORD, data)


def write_json(path: str, data: object) -> None:
    """`data` at `path`, root's alone (names, paths and commands' output), replaced atomically."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".data-")
    with os.fdopen(descriptor, "w") as out:
        json.dump(data, out, indent=2)
    os.chmod(temporary, 0o600)
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
    waiting = verbs.add_parser("wait")
    waiting.add_argument("device")
    waiting.add_argument("--now", action="store_true", help="do not wait: exit 3 if the device is not there yet")
    args = parser.parse_args(argv)
    try:
        if args.verb == "wait":
            return wait(args.device, args.now)
        if args.verb in ("copy-database", "tend"):
            device = recalled(args.device) if args.verb == "tend" else OWN_DISK  # copy-database: no device
            if device != OWN_DISK:
                grow_mounted(device, filesystem(device))
            when = copy_database()
            say("copied the hub's database at %s" % when if when else "no hub database yet")
            if mounted(MOUNT):  # students who joined since the boot: their groups' GIDs
                record_ids(os.path.join(MOUNT, IDS), os.path.join(MOUNT, "home"))
            return 0
        update_record({"admins": args.admin})
        if args.verb == "prepare":
            device = wait_for(args.device, "run `classimage-provision run` (as root)", patient=is_volume(args.device))
            update_record({"chosen": device})
            said = own_disk() if device == OWN_DISK else prepare(device, args.course)
        else:
            device = recalled(args.device)
            if device == OWN_DISK:
                said = []
            else:
                wait_for(device, "restart the droplet")
                said = mount_all(device, args.course) + settle(device)
        for line in said:
            say(line)
        return 0
    except DataError as error:
        update_record({"error": str(error)})
        say("FAILED: %s" % error)
        return 1


def wait(device: str, now: bool) -> int:
    """The `wait` verb: 0 once the device is there (its path printed), 3 with --now if it is not yet."""
    if now:
        chosen = choose(device, attached_volumes())
        if chosen is None or (chosen != OWN_DISK and not os.path.exists(chosen)):
            return 3
    else:
        chosen = wait_for(device, "run `classimage-provision run` (as root)", patient=is_volume(device))
    print(chosen, flush=True)
    return 0


def own_disk() -> list[str]:
    said = [
        "no DigitalOcean volume is attached: the class's data stays on this droplet's own disk and goes with "
        "the droplet (attach a volume when creating the droplet to keep it)"
    ]
    update_record({"notes": said, "error": None})
    return said


if __name__ == "__main__":
    sys.exit(main())
