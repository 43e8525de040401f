"""The class-data program (classimage/classdata.py), in-process and without root: its decisions as
tables, the real blkid and mkfs on files, and the real SQLite for the hub database's copy and its
repair. The test droplets prove it end to end (a volume moved between droplets, backup and restore)."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
from pathlib import Path

import pytest

from classimage import classdata, provision, tljh

NOBODY = {"root": (0, 0), "ubuntu": (1000, 1000)}
NOBODY_UIDS = {0: "root", 1000: "ubuntu"}
GROUPS = {0: "root", 1000: "ubuntu", 999: "jupyterhub-users"}


@pytest.mark.parametrize("wanted, by_name, by_uid, groups, create, conflict", [
    # a fresh droplet: every home's owner comes back with the home's own ids
    ([("jupyter-alice", 1002, 1002), ("jupyter-bob", 1001, 1001)], NOBODY, NOBODY_UIDS, GROUPS,
     [("jupyter-alice", 1002, 1002), ("jupyter-bob", 1001, 1001)], None),
    # a second boot: the accounts are there already, as they should be
    ([("jupyter-alice", 1002, 1002)], {**NOBODY, "jupyter-alice": (1002, 1002)}, {**NOBODY_UIDS, 1002: "jupyter-alice"},
     {**GROUPS, 1002: "jupyter-alice"}, [], None),
    # the group exists already (made by an earlier, interrupted run): the account is still made
    ([("jupyter-alice", 1002, 1002)], NOBODY, NOBODY_UIDS, {**GROUPS, 1002: "jupyter-alice"},
     [("jupyter-alice", 1002, 1002)], None),
    # an account with other ids: nothing is changed, it is reported
    ([("jupyter-alice", 1002, 1002)], {**NOBODY, "jupyter-alice": (1003, 1003)}, NOBODY_UIDS, GROUPS, [],
     "jupyter-alice exists with uid 1003"),
    # the home's uid belongs to someone else on this droplet
    ([("jupyter-alice", 1000, 1000)], NOBODY, NOBODY_UIDS, GROUPS, [], "uid 1000 of jupyter-alice is ubuntu's"),
    ([("jupyter-alice", 1005, 999)], NOBODY, NOBODY_UIDS, GROUPS, [], "gid 999 of jupyter-alice is group jupyterhub"),
])
def test_plan_accounts(wanted, by_name, by_uid, groups, create, conflict):
    got, conflicts = classdata.plan_accounts(wanted, by_name, by_uid, groups)
    assert got == create
    if conflict is None:
        assert conflicts == []
    else:
        assert len(conflicts) == 1 and conflicts[0].startswith(conflict)


def test_homes_are_read_from_their_owners(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("giving folders other owners needs root")
    for name, uid in (("jupyter-bob", 4001), ("jupyter-alice", 4000), ("lost+found", 0), ("notes", 4002)):
        (tmp_path / name).mkdir()
        os.chown(tmp_path / name, uid, uid + 100)
    (tmp_path / "jupyter-link").symlink_to(tmp_path / "jupyter-bob")
    assert classdata.homes(str(tmp_path)) == [("jupyter-alice", 4000, 4100), ("jupyter-bob", 4001, 4101)]


@pytest.mark.parametrize("found, formats", [(None, True), ("ext4", False), ("xfs", False), ("unknown", False)])
def test_only_a_device_without_any_filesystem_is_formatted(found, formats):
    assert classdata.decide_format(found) is formats


def test_the_real_blkid_tells_an_empty_device_from_one_with_a_filesystem(tmp_path):
    device = tmp_path / "device"
    device.write_bytes(b"\0" * (8 << 20))
    assert classdata.filesystem(str(device)) is None
    subprocess.run(["mkfs.ext4", "-q", "-F", str(device)], check=True)
    assert classdata.filesystem(str(device)) == "ext4"
    with pytest.raises(classdata.DataError, match="cannot tell what"):
        classdata.filesystem(str(tmp_path / "missing"))


def test_a_bigger_volume_grows_its_filesystem_before_mounting_and_keeps_its_files(tmp_path, monkeypatch):
    """resize2fs on the real ext4 of a file standing for a volume made bigger: the data stays."""
    monkeypatch.setattr(classdata, "mounted", lambda path: False)
    device = tmp_path / "device"
    device.write_bytes(b"")
    subprocess.run(["truncate", "--size", "64M", str(device)], check=True)
    subprocess.run(["mkfs.ext4", "-q", "-F", "-d", str(write_tree(tmp_path / "tree")), str(device)], check=True)
    before = classdata.filesystem_size(str(device))
    assert classdata.grow_unmounted(str(device), "ext4") is None  # nothing to gain
    subprocess.run(["truncate", "--size", "96M", str(device)], check=True)  # the volume, resized
    said = classdata.grow_unmounted(str(device), "ext4")
    assert said is not None and said.startswith(f"grew the filesystem on {device} from 0.1 to 0.1 GiB")
    assert classdata.filesystem_size(str(device)) == 96 << 20 > before
    listing = subprocess.run(["debugfs", "-R", "cat /home/jupyter-ada/work.txt", str(device)], capture_output=True,
                             text=True, check=True).stdout
    assert listing == "still here\n"
    assert classdata.grow_unmounted(str(device), "xfs") is None  # classimage grows only what it makes


def write_tree(root: Path) -> Path:
    (root / "home" / "jupyter-ada").mkdir(parents=True)
    (root / "home" / "jupyter-ada" / "work.txt").write_text("still here\n")
    return root


def test_a_missing_device_says_what_to_attach(tmp_path, monkeypatch):
    monkeypatch.setattr(classdata, "DEVICE_WAIT", 0)
    with pytest.raises(classdata.DataError, match="attach the class's volume") as error:
        classdata.wait_for(str(tmp_path / "missing"), "restart the droplet")
    assert "then restart the droplet. The hub does not start without it" in str(error.value)


def database(path: Path, users: list[str]) -> None:
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
    monkeypatch.setattr(classdata, "RECORD", str(tmp_path / "record" / "data.json"))
    (tmp_path / "data" / "tljh-state").mkdir(parents=True)
    (tmp_path / "state").symlink_to(tmp_path / "data" / "tljh-state")  # where the hub sees it
    return tmp_path


def test_the_copy_is_written_only_onto_the_mounted_device(data, monkeypatch):
    state, mount = data / "state", data / "data"
    database(state / classdata.DATABASE, ["alice", "bob"])
    monkeypatch.setattr(classdata, "mounted", lambda path: False)
    assert classdata.copy_database(str(mount)) is None
    assert not (mount / classdata.COPY).exists()
    monkeypatch.setattr(classdata, "mounted", lambda path: path == str(mount))
    when = classdata.copy_database(str(mount))
    assert users(mount / classdata.COPY) == ["alice", "bob"]
    assert (mount / classdata.COPY).stat().st_mode & 0o777 == 0o600
    assert json.loads(Path(classdata.RECORD).read_text())["database_copied"] == when
    assert not list((mount / classdata.COPY).parent.glob(".copy-*"))  # no temporary file left behind


def test_no_database_yet_means_no_copy(data, monkeypatch):
    monkeypatch.setattr(classdata, "mounted", lambda path: True)
    assert classdata.copy_database(str(data / "data")) is None


def test_a_sound_database_is_left_alone(data):
    live, copy = data / "state" / classdata.DATABASE, data / "data" / "copy.sqlite"
    database(live, ["alice", "carol"])
    database(copy, ["alice"])
    assert classdata.check_database(str(data / "state"), str(copy)) is None
    assert users(live) == ["alice", "carol"]


def damage(path: Path) -> None:
    with open(path, "r+b") as handle:  # the page past the header: a table's b-tree
        handle.seek(4096 + 8)
        handle.write(b"\xff" * 2048)


def test_a_damaged_database_is_set_aside_and_replaced_by_the_copy(data):
    live, copy = data / "state" / classdata.DATABASE, data / "data" / "copy.sqlite"
    database(live, ["user%d" % n for n in range(400)])
    database(copy, ["alice"])
    damage(live)
    assert classdata.database_problem(str(live)) is not None
    said = classdata.check_database(str(data / "state"), str(copy))
    assert said is not None and said.startswith("WARNING: the hub's database was damaged")
    assert users(live) == ["alice"]
    aside = list((data / "state").glob(classdata.DATABASE + ".damaged-*"))
    assert len(aside) == 1  # kept for whoever wants to look


def test_a_damaged_database_without_a_sound_copy_stops_the_hub(data):
    live = data / "state" / classdata.DATABASE
    database(live, ["user%d" % n for n in range(400)])
    damage(live)
    with pytest.raises(classdata.DataError, match="restore a backup"):
        classdata.check_database(str(data / "state"), str(data / "data" / "missing.sqlite"))
    assert live.exists()  # nothing moved


def test_the_record_keeps_what_each_verb_said(data):
    classdata.update_record({"admins": ["ada"], "error": "boom"})
    classdata.record("/dev/x", ["said"])
    record = json.loads(Path(classdata.RECORD).read_text())
    assert record == {"admins": ["ada"], "error": None, "notes": ["said"], "device": "/dev/x",
                      "mounted": record["mounted"]}


def test_a_missing_device_fails_the_verb_and_says_so(data, monkeypatch, capsys):
    monkeypatch.setattr(classdata, "DEVICE_WAIT", 0)
    assert classdata.main(["mount", str(data / "missing"), "--course", "geo", "--admin", "ada"]) == 1
    record = json.loads(Path(classdata.RECORD).read_text())
    assert "is not there" in record["error"] and record["admins"] == ["ada"]
    assert "FAILED" in capsys.readouterr().out


def test_the_paths_are_the_ones_everything_else_uses():
    assert classdata.RECORD == provision.DATA_RECORD
    assert dict(classdata.PLACES)["tljh-state"] == tljh.STATE
    assert classdata.DATABASE == Path(tljh.DATABASE).name
