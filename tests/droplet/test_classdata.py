"""The class-data program (classimage/droplet/classdata/), in-process and without root: its decisions as
tables, the real blkid and mkfs on files, and the real SQLite for the hub database's copy and its
repair. The test droplets prove it end to end (a volume moved between droplets, backup and restore)."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import stat
import subprocess
from pathlib import Path

import pytest

from conftest import REPO
from classimage.pipeline import tljh
from classimage.droplet import provision
from classimage.droplet.classdata import accounts, database, devices, filesystem, move, program, record, shared

NOBODY = {"root": (0, 0), "ubuntu": (1000, 1000)}
NOBODY_UIDS = {0: "root", 1000: "ubuntu"}
GROUPS = {0: "root", 1000: "ubuntu", 999: "jupyterhub-users", 998: "jupyterhub-admins"}
ALICE = {**NOBODY, "jupyter-alice": (1002, 1002)}, {**NOBODY_UIDS, 1002: "jupyter-alice"}


@pytest.mark.parametrize("wanted, by_name, by_uid, groups, recorded, create, repair, problem", [
    # a fresh droplet: every home's owner comes back with the home's own ids
    ([("jupyter-alice", 1002, 1002), ("jupyter-bob", 1001, 1001)], NOBODY, NOBODY_UIDS, GROUPS, {},
     [("jupyter-alice", 1002, 1002), ("jupyter-bob", 1001, 1001)], [], None),
    # a second boot: the accounts are there already, as they should be
    ([("jupyter-alice", 1002, 1002)], *ALICE, {**GROUPS, 1002: "jupyter-alice"}, {}, [], [], None),
    # the group exists already (made by an earlier, interrupted run): the account is still made
    ([("jupyter-alice", 1002, 1002)], NOBODY, NOBODY_UIDS, {**GROUPS, 1002: "jupyter-alice"}, {},
     [("jupyter-alice", 1002, 1002)], [], None),
    # the device recorded alice's own group: she gets it back whatever her home says
    ([("jupyter-alice", 1002, 1007)], NOBODY, NOBODY_UIDS, GROUPS, {"jupyter-alice": 1002},
     [("jupyter-alice", 1002, 1002)], [("jupyter-alice", 1002)], "WARNING: the home of jupyter-alice"),
    # the attack: `chgrp jupyterhub-users ~`, then a new droplet; with her group recorded...
    ([("jupyter-alice", 1002, 999)], NOBODY, NOBODY_UIDS, GROUPS, {"jupyter-alice": 1002},
     [("jupyter-alice", 1002, 1002)], [("jupyter-alice", 1002)],
     "WARNING: the home of jupyter-alice was group-owned by jupyterhub-users"),
    # ... or not yet recorded (she joined after the last record): a group of her own, never the class's
    ([("jupyter-alice", 1002, 999), ("jupyter-bob", 1001, 1001)], NOBODY, NOBODY_UIDS, GROUPS, {},
     [("jupyter-alice", 1002, 1002), ("jupyter-bob", 1001, 1001)], [("jupyter-alice", 1002)],
     ["WARNING: gid 999 of jupyter-alice's own group is group jupyterhub-users's",
      "WARNING: the home of jupyter-alice was group-owned by jupyterhub-users"]),
    # ... or the next boot of the same droplet: her account says which group is hers
    ([("jupyter-alice", 1002, 999)], *ALICE, {**GROUPS, 1002: "jupyter-alice"}, {}, [], [("jupyter-alice", 1002)],
     "WARNING: the home of jupyter-alice was group-owned by jupyterhub-users"),
    # an account with another uid: nothing is changed, it is reported
    ([("jupyter-alice", 1002, 1002)], {**NOBODY, "jupyter-alice": (1003, 1003)}, NOBODY_UIDS, GROUPS, {}, [], [],
     "CONFLICT jupyter-alice exists with uid 1003"),
    # the home's uid belongs to someone else on this droplet
    ([("jupyter-alice", 1000, 1000)], NOBODY, NOBODY_UIDS, GROUPS, {}, [], [], "CONFLICT uid 1000 of jupyter-alice is ubuntu's"),
], ids=["fresh", "second-boot", "group-there", "recorded", "chgrp-recorded", "chgrp-unrecorded", "chgrp-same-droplet",
        "other-uid", "uid-taken"])
def test_plan_accounts(wanted, by_name, by_uid, groups, recorded, create, repair, problem):
    got, repaired, warnings, conflicts = accounts.plan_accounts(wanted, by_name, by_uid, groups, recorded)
    assert (got, repaired) == (create, repair)
    said = [f"CONFLICT {c}" for c in conflicts] + warnings
    expected = [] if problem is None else [problem] if isinstance(problem, str) else problem
    assert len(said) == len(expected) and all(line.startswith(start) for line, start in zip(said, expected)), said


def apply(commands: list[list[str]], groups: dict[str, int]) -> dict[str, int]:
    """What groupadd and groupmod would leave, refusing as they do a GID already in use."""
    groups = dict(groups)
    for verb, option, gid, name in commands:
        assert option == "--gid" and int(gid) not in groups.values(), (verb, gid, name, groups)
        assert (name in groups) is (verb == "groupmod")
        groups[name] = int(gid)
    return groups


ONE_PIECE = {"jupyterhub-users": 1000, "jupyterhub-admins": 1001}  # made by classdata before this change
SNAPSHOT = {"jupyterhub-admins": 1000, "jupyterhub-users": 1001}  # made by TLJH's installer in the bake


@pytest.mark.parametrize("recorded, here, taken, after, problem", [
    # nothing recorded, nothing here: TLJH's order, with GIDs no home uses
    ({}, {"root": 0}, {1000, 1001}, {"root": 0, "jupyterhub-admins": 1002, "jupyterhub-users": 1003}, None),
    # nothing recorded, TLJH made them (a snapshot): kept as they are, to be recorded
    ({}, SNAPSHOT, set(), SNAPSHOT, None),
    ({}, {"jupyterhub-admins": 1000}, {1001}, {"jupyterhub-admins": 1000, "jupyterhub-users": 1002}, None),
    # recorded on a one-piece droplet, swapped on a droplet from a snapshot: given back
    (ONE_PIECE, SNAPSHOT, {1002}, ONE_PIECE, None),
    (SNAPSHOT, ONE_PIECE, set(), SNAPSHOT, None),
    (ONE_PIECE, ONE_PIECE, set(), ONE_PIECE, None),
    (ONE_PIECE, {}, set(), ONE_PIECE, None),
    # a group classimage does not manage holds the GID: nothing is changed for that group
    (ONE_PIECE, {"debian": 1000}, set(), {"debian": 1000, "jupyterhub-admins": 1001}, "gid 1000 of jupyterhub-users"),
], ids=["nothing", "snapshot-unrecorded", "half-made", "snapshot-after-one-piece", "one-piece-after-snapshot",
        "same", "fresh-droplet", "foreign-group"])
def test_the_class_groups_keep_their_gids(recorded, here, taken, after, problem):
    commands, conflicts = accounts.plan_class_groups(recorded, here, taken)
    assert apply(commands, here) == after
    assert len(conflicts) == (problem is not None) and all(c.startswith(problem) for c in conflicts), conflicts


def test_homes_are_read_from_their_owners(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("giving folders other owners needs root")
    for name, uid in (("jupyter-bob", 4001), ("jupyter-alice", 4000), ("lost+found", 0), ("notes", 4002)):
        (tmp_path / name).mkdir()
        os.chown(tmp_path / name, uid, uid + 100)
    (tmp_path / "jupyter-link").symlink_to(tmp_path / "jupyter-bob")
    assert accounts.homes(str(tmp_path)) == [("jupyter-alice", 4000, 4100), ("jupyter-bob", 4001, 4101)]


@pytest.mark.parametrize("found, formats", [(None, True), ("ext4", False), ("xfs", False), ("unknown", False)])
def test_only_a_device_without_any_filesystem_is_formatted(found, formats):
    assert filesystem.decide_format(found) is formats


def device_with(tmp_path: Path, content: str) -> Path:
    """A file standing for a block device: empty (zeros, as a new volume), ext4, or worse."""
    device = tmp_path / "device"
    subprocess.run(["truncate", "--size", "16M", str(device)], check=True)
    if content in ("ext4", "ext4+iso9660"):
        subprocess.run(["mkfs.ext4", "-q", "-F", str(device)], check=True)
    with open(device, "r+b") as handle:
        if content == "ext4+iso9660":  # an ISO 9660 volume descriptor too: two filesystems, one device
            handle.seek(32768)
            handle.write(b"\x01CD001\x01")
        elif content == "luks":
            handle.write(b"LUKS\xba\xbe\x00\x01")
        elif content == "unrecognised":  # data, but no filesystem blkid knows (a damaged superblock)
            handle.seek(4096)
            handle.write(os.urandom(4096))
    return device


def blkid_that(tmp_path: Path, monkeypatch, script: str) -> None:
    """A stand-in blkid for what the real one does only on a failing device or machine."""
    folder = tmp_path / "stand-in"
    folder.mkdir()
    (folder / "blkid").write_text("#!/bin/sh\n" + script + "\n")
    (folder / "blkid").chmod(0o755)
    monkeypatch.setenv("PATH", f"{folder}:{os.environ['PATH']}")


@pytest.mark.parametrize("content, blkid, exit_code, found", [
    ("empty", None, 2, None),  # nothing found: the only case that formats
    ("ext4", None, 0, "ext4"),
    ("luks", None, 0, "crypto_LUKS"),  # not a filesystem classimage mounts, but something: kept
    ("unrecognised", None, 2, "holds data but no filesystem blkid recognises"),
    ("ext4+iso9660", None, 8, "blkid exit 8.*more than one filesystem signature"),
    ("empty", "echo 'blkid: bad usage' >&2; exit 4", 4, "blkid exit 4.*bad usage"),
    ("ext4", "kill -9 $$", -9, "blkid exit -9.*killed by signal 9"),
    ("ext4", "exit 0", 0, "unknown"),  # found something it cannot name
    ("missing", None, None, "cannot tell what .* holds: No such file"),
    ("folder", None, None, "is not a block device"),
], ids=["nothing-2", "ext4-0", "luks-0", "data-2", "ambivalent-8", "usage-4", "killed", "unnamed-0", "missing",
        "folder"])
def test_blkid_every_exit_and_only_nothing_found_formats(tmp_path, monkeypatch, content, blkid, exit_code, found):
    """The real blkid on files where it can answer so (exit 0, 2 and 8), a stand-in where only a
    failing device or machine makes it (4, killed). Every answer but "nothing found" on a device
    that reads as zeros keeps the device as it is."""
    if content == "missing":
        device = tmp_path / "missing"
    elif content == "folder":
        device = tmp_path
    else:
        device = device_with(tmp_path, content)
    if blkid is not None:
        blkid_that(tmp_path, monkeypatch, blkid)
    if exit_code is not None:
        real = subprocess.run(["blkid", "--probe", "--output", "value", "--match-tag", "TYPE", str(device)])
        assert real.returncode == exit_code  # the case is what it says it is
    if found is None or found in ("ext4", "crypto_LUKS", "unknown"):
        kind = filesystem.kind(str(device))
        assert kind == found and filesystem.decide_format(kind) is (found is None)
    else:
        with pytest.raises(shared.DataError, match=found):
            filesystem.kind(str(device))


def test_a_bigger_volume_grows_its_filesystem_before_mounting_and_keeps_its_files(tmp_path, monkeypatch):
    """resize2fs on the real ext4 of a file standing for a volume made bigger: the data stays."""
    monkeypatch.setattr(filesystem, "mounted", lambda path: False)
    device = tmp_path / "device"
    device.write_bytes(b"")
    subprocess.run(["truncate", "--size", "64M", str(device)], check=True)
    subprocess.run(["mkfs.ext4", "-q", "-F", "-d", str(write_tree(tmp_path / "tree")), str(device)], check=True)
    before = filesystem.filesystem_size(str(device))
    assert filesystem.grow_unmounted(str(device), "ext4") is None  # nothing to gain
    subprocess.run(["truncate", "--size", "96M", str(device)], check=True)  # the volume, resized
    said = filesystem.grow_unmounted(str(device), "ext4")
    assert said is not None and said.startswith(f"grew the filesystem on {device} from 0.1 to 0.1 GiB")
    assert filesystem.filesystem_size(str(device)) == 96 << 20 > before
    listing = subprocess.run(["debugfs", "-R", "cat /home/jupyter-ada/work.txt", str(device)], capture_output=True,
                             text=True, check=True).stdout
    assert listing == "still here\n"
    assert filesystem.grow_unmounted(str(device), "xfs") is None  # classimage grows only what it makes


def write_tree(root: Path) -> Path:
    (root / "home" / "jupyter-ada").mkdir(parents=True)
    (root / "home" / "jupyter-ada" / "work.txt").write_text("still here\n")
    return root


def test_a_missing_device_says_what_to_attach(tmp_path, monkeypatch):
    monkeypatch.setattr(devices, "DEVICE_WAIT", 0)
    with pytest.raises(shared.DataError, match="attach the class's volume") as error:
        devices.wait_for(str(tmp_path / "missing"), "restart the droplet")
    assert "then restart the droplet. The hub does not start without it" in str(error.value)


def hub_database(path: Path, users: list[str]) -> None:
    with sqlite3.connect(path) as connection:
        connection.execute("CREATE TABLE IF NOT EXISTS users (name TEXT)")
        connection.executemany("INSERT INTO users VALUES (?)", [(user,) for user in users])
    connection.close()


def users(path: Path) -> list[str]:
    connection = sqlite3.connect(path)
    try:
        return [row[0] for row in connection.execute("SELECT name FROM users ORDER BY name")]
    finally:
        connection.close()


@pytest.fixture
def data(tmp_path, monkeypatch):
    """A device's mount point and a hub state folder, with the record in the temporary folder."""
    monkeypatch.setattr(record, "RECORD", str(tmp_path / "record" / "data.json"))
    (tmp_path / "data" / "tljh-state").mkdir(parents=True)
    (tmp_path / "state").symlink_to(tmp_path / "data" / "tljh-state")  # where the hub sees it
    return tmp_path


def test_the_copy_is_written_only_onto_the_mounted_device(data, monkeypatch):
    state, mount = data / "state", data / "data"
    hub_database(state / shared.DATABASE, ["alice", "bob"])
    monkeypatch.setattr(filesystem, "mounted", lambda path: False)
    assert database.copy_database(str(mount)) is None
    assert not (mount / shared.COPY).exists()
    monkeypatch.setattr(filesystem, "mounted", lambda path: path == str(mount))
    when = database.copy_database(str(mount))
    assert users(mount / shared.COPY) == ["alice", "bob"]
    assert (mount / shared.COPY).stat().st_mode & 0o777 == 0o600
    assert json.loads(Path(record.RECORD).read_text())["database_copied"] == when
    assert not list((mount / shared.COPY).parent.glob(".copy-*"))  # no temporary file left behind


def pairs(path: Path) -> tuple[int, str]:
    """(rows, SQLite's integrity check) of a copy whose writer only ever commits rows in pairs."""
    connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        rows = connection.execute("SELECT count(*) FROM users").fetchone()[0]
        return rows, connection.execute("PRAGMA integrity_check").fetchone()[0]
    finally:
        connection.close()


def test_the_database_copy_holds_what_only_the_wal_holds_while_another_connection_writes(data, monkeypatch):
    """The hub's database in WAL mode, its newest transactions still in the -wal file (never
    checkpointed), and a connection committing pairs of rows all through the copy: the copy is
    consistent (whole pairs only) and holds every row committed before it began."""
    import threading

    monkeypatch.setattr(filesystem, "mounted", lambda path: True)
    live = data / "data" / "tljh-state" / shared.DATABASE
    writer = sqlite3.connect(live, check_same_thread=False, isolation_level=None)
    writer.execute("PRAGMA journal_mode=wal")
    writer.execute("PRAGMA wal_autocheckpoint=0")  # every commit stays in the -wal file
    writer.execute("CREATE TABLE users (name TEXT, pad BLOB)")
    for n in range(500):
        writer.execute("BEGIN")
        writer.executemany("INSERT INTO users VALUES (?, randomblob(300))", [(f"a{n}",), (f"b{n}",)])
        writer.execute("COMMIT")
    assert Path(f"{live}-wal").stat().st_size > live.stat().st_size  # the rows are in the WAL, not the file
    stop = threading.Event()

    def write() -> None:
        n = 0
        while not stop.is_set():
            writer.execute("BEGIN")
            writer.executemany("INSERT INTO users VALUES (?, randomblob(300))", [(f"c{n}",), (f"d{n}",)])
            writer.execute("COMMIT")
            n += 1

    thread = threading.Thread(target=write)
    thread.start()
    try:
        copies = [database.copy_database(str(data / "data")) for _ in range(5)]
    finally:
        stop.set()
        thread.join()
    rows, check = pairs(data / "data" / shared.COPY)
    writer.close()
    assert all(copies) and check == "ok"
    assert rows >= 1000 and rows % 2 == 0, rows


def test_no_database_yet_means_no_copy(data, monkeypatch):
    monkeypatch.setattr(filesystem, "mounted", lambda path: True)
    assert database.copy_database(str(data / "data")) is None


def test_a_sound_database_is_left_alone(data):
    live, copy = data / "state" / shared.DATABASE, data / "data" / "copy.sqlite"
    hub_database(live, ["alice", "carol"])
    hub_database(copy, ["alice"])
    assert database.check_database(str(data / "state"), str(copy)) is None
    assert users(live) == ["alice", "carol"]


def damage(path: Path) -> None:
    with open(path, "r+b") as handle:  # the page past the header: a table's b-tree
        handle.seek(4096 + 8)
        handle.write(b"\xff" * 2048)


def test_a_damaged_database_is_set_aside_and_replaced_by_the_copy(data):
    live, copy = data / "state" / shared.DATABASE, data / "data" / "copy.sqlite"
    hub_database(live, ["user%d" % n for n in range(400)])
    hub_database(copy, ["alice"])
    damage(live)
    assert database.database_problem(str(live)) is not None
    said = database.check_database(str(data / "state"), str(copy))
    assert said is not None and said.startswith("WARNING: the hub's database was damaged")
    assert users(live) == ["alice"]
    aside = list((data / "state").glob(shared.DATABASE + ".damaged-*"))
    assert len(aside) == 1  # kept for whoever wants to look


def test_a_damaged_database_without_a_sound_copy_stops_the_hub(data):
    live = data / "state" / shared.DATABASE
    hub_database(live, ["user%d" % n for n in range(400)])
    damage(live)
    with pytest.raises(shared.DataError, match="restore a backup"):
        database.check_database(str(data / "state"), str(data / "data" / "missing.sqlite"))
    assert live.exists()  # nothing moved


def test_the_record_keeps_what_each_verb_said(data):
    record.update_record({"admins": ["ada"], "error": "boom"})
    record.after_mount("/dev/x", ["said"])
    written = json.loads(Path(record.RECORD).read_text())
    assert written == {"admins": ["ada"], "error": None, "notes": ["said"], "device": "/dev/x",
                       "mounted": written["mounted"], "warnings": []}


def test_a_missing_device_fails_the_verb_and_says_so(data, monkeypatch, capsys):
    monkeypatch.setattr(devices, "DEVICE_WAIT", 0)
    assert program.main(["mount", str(data / "missing"), "--course", "geo", "--admin", "ada"]) == 1
    written = json.loads(Path(record.RECORD).read_text())
    assert "is not there" in written["error"] and written["admins"] == ["ada"]
    assert "FAILED" in capsys.readouterr().out


def test_the_paths_are_the_ones_everything_else_uses():
    assert record.RECORD == provision.DATA_RECORD
    assert dict(shared.PLACES)["tljh-state"] == tljh.STATE
    assert shared.DATABASE == Path(tljh.DATABASE).name
    assert (provision.TLJH_PYTHON, provision.TLJH_CONFIG) == (tljh.HUB_PYTHON, tljh.CONFIG_YAML)


# -- the first move of /home onto the device: every owner kept ------------------------------------

def root_only():
    if os.geteuid() != 0:
        pytest.skip("other owners, loop devices and mounts need root")


@pytest.fixture
def filesystems(tmp_path):
    """Real ext4 filesystems on loop files, mounted here: a droplet's disk and a class's volume."""
    root_only()
    mounted = []

    def make(name: str, megabytes: int = 64, kind: str = "ext4") -> Path:
        image, point = tmp_path / f"{name}.img", tmp_path / name
        point.mkdir()
        if kind == "tmpfs":
            subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={megabytes}m", "tmpfs", str(point)], check=True)
        else:
            subprocess.run(["truncate", "--size", f"{megabytes}M", str(image)], check=True)
            subprocess.run([f"mkfs.{kind}", "-q", "-F", str(image)], check=True)
            subprocess.run(["mount", "-o", "loop", str(image), str(point)], check=True)
        mounted.append(point)
        return point

    yield make
    for point in reversed(mounted):
        subprocess.run(["umount", str(point)], check=True)


STUDENT, TA = 4000, 4001  # a home's owner, and a second account given rights in it
WHEN = 981173106123456789  # 2001-02-03 04:05:06.123456789, in ns


def xattrs(path: Path) -> dict:
    return {name: os.getxattr(path, name, follow_symlinks=False) for name in os.listxattr(path, follow_symlinks=False)}


def acl(path: Path, *entries: str, default: bool = False) -> None:
    subprocess.run(["setfacl", *(["-d"] if default else []), "-m", ",".join(entries), str(path)], check=True)


def getfacl(path: Path) -> str:
    return subprocess.run(["getfacl", "--omit-header", "--numeric", str(path)], capture_output=True, text=True,
                          check=True).stdout


# What a home holds, and how to tell it survived: (name, make it in the home `h`, check it in the copy `c`).
HOME = [
    ("owner and group of the home", lambda h: os.chown(h, STUDENT, STUDENT),
     lambda c: (c.stat().st_uid, c.stat().st_gid) == (STUDENT, STUDENT)),
    ("mode of the home (0750)", lambda h: h.chmod(0o750), lambda c: c.stat().st_mode & 0o7777 == 0o750),
    (".ssh (0700) and authorized_keys (0600), the student's",
     lambda h: [(h / ".ssh").mkdir(mode=0o700), (h / ".ssh/authorized_keys").write_text("ssh-ed25519 AAAA key\n"),
                (h / ".ssh/authorized_keys").chmod(0o600), os.chown(h / ".ssh", STUDENT, STUDENT),
                os.chown(h / ".ssh/authorized_keys", STUDENT, STUDENT)],
     lambda c: [(p.stat().st_uid, p.stat().st_mode & 0o777) for p in (c / ".ssh", c / ".ssh/authorized_keys")]
     == [(STUDENT, 0o700), (STUDENT, 0o600)]),
    ("a file of another group (the TA's)", lambda h: [(h / "marks").write_text("a\n"), os.chown(h / "marks", STUDENT, TA)],
     lambda c: (c / "marks").stat().st_gid == TA),
    ("setuid, setgid and sticky bits", lambda h: [(h / "tool").write_text("#!/bin/sh\n"), os.chown(h / "tool", STUDENT, STUDENT),
                                                  (h / "tool").chmod(0o6755), (h / "drop").mkdir(),
                                                  (h / "drop").chmod(0o3777)],
     lambda c: ((c / "tool").stat().st_mode & 0o7777, (c / "drop").stat().st_mode & 0o7777) == (0o6755, 0o3777)),
    ("modification times, to the nanosecond", lambda h: [(h / "old.ipynb").write_text("{}"),
                                                        os.utime(h / "old.ipynb", ns=(WHEN, WHEN))],
     lambda c: (c / "old.ipynb").stat().st_mtime_ns == WHEN),
    ("an ACL (the TA may read)", lambda h: [(h / "shared.txt").write_text("s\n"), acl(h / "shared.txt", f"u:{TA}:r")],
     lambda c: f"user:{TA}:r--" in getfacl(c / "shared.txt")),
    ("a default ACL on a folder", lambda h: [(h / "group-work").mkdir(), acl(h / "group-work", f"u:{TA}:rwx", default=True)],
     lambda c: f"default:user:{TA}:rwx" in getfacl(c / "group-work")),
    ("extended attributes (user. and trusted.)",
     lambda h: [(h / "tagged").write_text("t\n"), os.setxattr(h / "tagged", "user.origin", b"course"),
                os.setxattr(h / "tagged", "trusted.note", b"root's")],
     lambda c: {k: v for k, v in xattrs(c / "tagged").items() if not k.startswith("system.")}
     == {"user.origin": b"course", "trusted.note": b"root's"}),
    ("a file capability (security.capability)",
     lambda h: [(h / "ping").write_text("p\n"), subprocess.run(["setcap", "cap_net_raw+ep", str(h / "ping")], check=True)],
     lambda c: "security.capability" in xattrs(c / "ping")),
    ("a symlink inside, its own owner, not followed",
     lambda h: [(h / "keys").symlink_to(".ssh/authorized_keys"), os.chown(h / "keys", STUDENT, STUDENT, follow_symlinks=False)],
     lambda c: (c / "keys").is_symlink() and os.readlink(c / "keys") == ".ssh/authorized_keys"
     and (c / "keys").lstat().st_uid == STUDENT),
    ("a symlink out of the home, not followed", lambda h: (h / "escape").symlink_to("/etc/shadow"),
     lambda c: (c / "escape").is_symlink() and os.readlink(c / "escape") == "/etc/shadow"),
    ("a dangling symlink", lambda h: (h / "gone").symlink_to("nowhere"), lambda c: os.readlink(c / "gone") == "nowhere"),
    ("hard links (two names, one file)", lambda h: [(h / "data.csv").write_text("1,2\n"), os.link(h / "data.csv", h / "same.csv")],
     lambda c: (c / "data.csv").stat().st_ino == (c / "same.csv").stat().st_ino and (c / "data.csv").stat().st_nlink == 2),
    ("a FIFO", lambda h: os.mkfifo(h / "pipe"), lambda c: stat.S_ISFIFO((c / "pipe").lstat().st_mode)),
    ("a socket", lambda h: bound_socket(h / "kernel.sock"), lambda c: stat.S_ISSOCK((c / "kernel.sock").lstat().st_mode)),
    ("a sparse file", lambda h: os.truncate(h / "sparse.img", 8 << 20) if (h / "sparse.img").touch() is None else None,
     lambda c: (c / "sparse.img").stat().st_size == 8 << 20),
    ("a name that is not UTF-8", lambda h: Path(os.fsdecode(bytes(h) + b"/caf\xe9.txt")).write_text("c\n"),
     lambda c: Path(os.fsdecode(bytes(c) + b"/caf\xe9.txt")).read_text() == "c\n"),
]


def bound_socket(path: Path) -> None:
    import socket

    with socket.socket(socket.AF_UNIX) as listener:
        listener.bind(str(path))


def test_the_first_move_keeps_every_owner_mode_time_acl_attribute_and_link(filesystems):
    """A home holding each kind of thing, on a real ext4, moved onto another (the class's volume)."""
    disk, volume = filesystems("disk"), filesystems("volume")
    home = disk / "home" / "jupyter-ada"
    home.mkdir(parents=True)
    for _, make, _ in HOME:
        make(home)
    said = move.move_onto_device(str(disk / "home"), str(volume / "home"))
    assert said.startswith(f"moved {disk / 'home'} onto the device")
    copy = volume / "home" / "jupyter-ada"
    lost = [name for name, _, kept in HOME if not kept(copy)]
    assert lost == []
    assert not (volume / "home.copying").exists()
    # the student reads their own keys, as themselves (no other group, no capability)
    # (from inside the home: the test's own folders are root's only)
    own = subprocess.run(["setpriv", f"--reuid={STUDENT}", f"--regid={STUDENT}", "--clear-groups", "cat",
                          ".ssh/authorized_keys"], capture_output=True, text=True, cwd=copy)
    assert own.returncode == 0 and own.stdout == "ssh-ed25519 AAAA key\n", own.stderr
    other = subprocess.run(["setpriv", f"--reuid={TA + 1}", f"--regid={TA + 1}", "--clear-groups", "cat",
                            ".ssh/authorized_keys"], capture_output=True, text=True, cwd=copy)
    assert other.returncode != 0 and "Permission denied" in other.stderr


def test_a_move_that_cannot_keep_everything_is_refused_with_the_reason(filesystems):
    """An extended attribute bigger than ext4 holds (tmpfs, xfs and others hold such): nothing moves."""
    disk, volume = filesystems("disk", kind="tmpfs"), filesystems("volume")
    home = disk / "home" / "jupyter-ada"
    home.mkdir(parents=True)
    (home / "work.ipynb").write_text("{}")
    os.setxattr(home / "work.ipynb", "user.big", b"x" * 10000)
    with pytest.raises(shared.DataError, match="cannot move .* without losing something, so nothing was moved: "
                                                  ".*user.big.*No space left on device"):
        move.move_onto_device(str(disk / "home"), str(volume / "home"))
    assert sorted(p.name for p in volume.iterdir()) == ["lost+found"]  # no half copy
    assert (home / "work.ipynb").read_text() == "{}"  # the droplet's own files as they were


def test_a_refusal_naming_a_file_that_is_not_utf8_is_said_plainly(capsys):
    shared.say("cannot move " + os.fsdecode(b"caf\xe9.txt"))
    assert capsys.readouterr().out == "classimage-class-data: cannot move caf\\udce9.txt\n"


def test_a_hard_link_out_of_the_home_cannot_be_kept_so_nothing_moves(filesystems):
    disk, volume = filesystems("disk"), filesystems("volume")
    (disk / "home" / "jupyter-ada").mkdir(parents=True)
    (disk / "elsewhere.txt").write_text("e\n")
    os.link(disk / "elsewhere.txt", disk / "home" / "jupyter-ada" / "linked.txt")
    with pytest.raises(shared.DataError, match="hard links to files outside .*: .*jupyter-ada/linked.txt"):
        move.move_onto_device(str(disk / "home"), str(volume / "home"))
    assert sorted(p.name for p in volume.iterdir()) == ["lost+found"]


def test_an_interrupted_move_is_done_again_from_the_start(filesystems):
    disk, volume = filesystems("disk"), filesystems("volume")
    (disk / "home" / "jupyter-ada").mkdir(parents=True)
    (disk / "home" / "jupyter-ada" / "work.txt").write_text("w\n")
    (volume / "home.copying" / "jupyter-ada").mkdir(parents=True)  # what an interrupted copy left
    (volume / "home.copying" / "jupyter-ada" / "half").write_text("")
    move.move_onto_device(str(disk / "home"), str(volume / "home"))
    assert sorted(p.name for p in (volume / "home" / "jupyter-ada").iterdir()) == ["work.txt"]
    assert not (volume / "home.copying").exists()


# -- a student's chgrp, and the class's groups between droplets: real accounts in a sandbox -------

@pytest.fixture
def droplet_accounts(tmp_path):
    """`run(droplet, command)`: a shell command in a sandbox (bubblewrap) whose /etc is droplet
    `droplet`'s own copy of this machine's and whose /home is the class's (one for every droplet,
    as on a volume): the real groupadd, useradd, chgrp and classdata, on no account of the host's."""
    root_only()
    if not shutil.which("bwrap"):
        pytest.fail("bubblewrap (bwrap) is needed: apt-get install bubblewrap (.ci/run does)")
    (tmp_path / "home").mkdir()
    (tmp_path / "device").mkdir()

    def run(droplet: str, command: str, check: bool = True) -> subprocess.CompletedProcess:
        etc = tmp_path / f"etc-{droplet}"
        if not etc.exists():
            subprocess.run(["cp", "-a", "/etc", str(etc)], check=True)
        result = subprocess.run(
            ["bwrap", "--ro-bind", "/", "/", "--bind", str(tmp_path), str(tmp_path), "--bind", str(etc), "/etc",
             "--bind", str(tmp_path / "home"), "/home", "--tmpfs", "/var/log", "--proc", "/proc", "--dev", "/dev",
             "--unshare-pid", "--unshare-ipc", "--unshare-net", "--unshare-uts", "--die-with-parent", "--setenv", "PYTHONPATH", str(REPO / "classimage" / "droplet"),
             "/bin/bash", "-c", command], capture_output=True, text=True, timeout=120)
        assert not check or result.returncode == 0, result.stdout + result.stderr
        return result

    return run


def reconcile_in(tmp_path: Path, admins: list[str]) -> str:
    """classdata's reconcile as the data service runs it at boot: what it says, one line each."""
    return (f"python3 -c 'from classdata import accounts, record; record.RECORD = \"{tmp_path}/data.json\"; "
            f"print(*accounts.reconcile({json.dumps(admins)}, \"{tmp_path}/device/ids.json\"), sep=chr(10))'")


def gids(run, droplet: str) -> dict[str, int]:
    lines = run(droplet, "getent group jupyterhub-admins jupyterhub-users jupyter-alice", check=False).stdout.splitlines()
    return {line.split(":")[0]: int(line.split(":")[2]) for line in lines}


def test_a_students_chgrp_of_their_home_never_closes_the_class_and_groups_keep_their_gids(droplet_accounts, tmp_path):
    """The attack of issue 16: a student gives their home to jupyterhub-users (a group they are in,
    so the kernel lets them), which made classdata refuse every later boot. And the class's groups,
    made in one order on one droplet and the other order on the next, swapped their GIDs: a folder
    of jupyterhub-admins became readable by every student."""
    run = droplet_accounts
    run("one-piece", reconcile_in(tmp_path, ["ada"]))  # class-data first, then TLJH and its first student
    run("one-piece", "groupadd --force jupyterhub-admins && groupadd --force jupyterhub-users && "
                     "useradd --create-home jupyter-alice && chmod o-rwx /home/jupyter-alice && "
                     "gpasswd --add jupyter-alice jupyterhub-users && "
                     "install -d -g jupyterhub-admins -m 0750 /home/staff && echo A > /home/staff/marks.csv && "
                     "chgrp jupyterhub-admins /home/staff/marks.csv && chmod 0640 /home/staff/marks.csv")
    before = gids(run, "one-piece")
    attack = "setpriv --reuid=jupyter-alice --regid=jupyter-alice --init-groups chgrp jupyterhub-users /home/jupyter-alice"
    run("one-piece", attack)  # the student, as themselves: allowed
    assert (tmp_path / "home/jupyter-alice").stat().st_gid == before["jupyterhub-users"]
    # The next boot of the same droplet: the home is given back, the class opens.
    said = run("one-piece", reconcile_in(tmp_path, ["ada"])).stdout
    assert "WARNING: the home of jupyter-alice was group-owned by jupyterhub-users" in said, said
    assert (tmp_path / "home/jupyter-alice").stat().st_gid == before["jupyter-alice"]
    run("one-piece", attack)  # again: a backup of the volume carries it to the next droplet
    # A droplet from a snapshot: TLJH's installer made the two groups in the other order.
    run("snapshot", "groupadd jupyterhub-users && groupadd jupyterhub-admins")
    swapped = gids(run, "snapshot")
    assert (swapped["jupyterhub-users"], swapped["jupyterhub-admins"]) == (before["jupyterhub-admins"],
                                                                          before["jupyterhub-users"])
    said = run("snapshot", reconcile_in(tmp_path, ["ada"])).stdout
    assert "recreated 1 account(s): jupyter-alice" in said and "WARNING: the home of jupyter-alice" in said, said
    assert gids(run, "snapshot") == before  # every group with the GID it had on the volume's first droplet
    assert (tmp_path / "home/jupyter-alice").stat().st_gid == before["jupyter-alice"]
    read = run("snapshot", "setpriv --reuid=jupyter-alice --regid=jupyter-alice --init-groups cat /home/staff/marks.csv",
               check=False)
    assert read.returncode != 0 and "Permission denied" in read.stderr, read  # still the admins' only
    assert "jupyterhub-users" in run("snapshot", "id -nG jupyter-alice").stdout.split()


def test_the_records_warnings_outlive_the_mount_after_them(data):
    """`prepare` gives a home back with a warning, and the service's `mount` right after it (and at
    every boot) says nothing of it: the record keeps the warning, once, with when it was first said."""
    given_back = "WARNING: the home of jupyter-alice was group-owned by jupyterhub-users, not by its own group"
    record.after_mount("/dev/x", ["formatted /dev/x", given_back])
    record.after_mount("/dev/x", [])
    record.after_mount("/dev/x", [given_back])
    written = json.loads(Path(record.RECORD).read_text())
    assert written["notes"] == [given_back]
    assert [w["message"] for w in written["warnings"]] == [given_back]
    for number in range(record.KEPT + 5):
        record.after_mount("/dev/x", [f"WARNING: number {number}"])
    kept = json.loads(Path(record.RECORD).read_text())["warnings"]
    assert len(kept) == record.KEPT and kept[-1]["message"] == f"WARNING: number {record.KEPT + 4}"


def test_the_record_is_roots_alone(data):
    """Its notes and errors name students, their files and devices, and quote commands' output."""
    root_only()
    record.update_record({"error": "cp: cannot preserve /home/jupyter-bob/private-file-name"})
    os.chmod(Path(record.RECORD).parent, 0o755)
    os.chmod(data, 0o755)
    assert oct(Path(record.RECORD).stat().st_mode & 0o777) == "0o600"
    student = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "cat", record.RECORD],
                             capture_output=True, text=True)
    assert student.returncode == 1 and "Permission denied" in student.stderr and student.stdout == ""
