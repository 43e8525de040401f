"""The hub's database (accounts, approvals, password hashes): a consistent copy of it on the device,
written at shutdown and by the timer, and a database SQLite finds damaged when the device is
mounted (a backup taken while the hub wrote) set aside for that copy."""

from __future__ import annotations

import datetime
import os
import shutil
import sqlite3
import tempfile

from . import filesystem, record
from .shared import COPY, DATABASE, MOUNT, STATE, DataError, now


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


def copy_database(data: str = MOUNT) -> str | None:
    """A consistent copy of the hub's SQLite database on the device (SQLite's own backup: whole
    transactions only), replaced atomically. Its time, or None when there is no database yet.
    Read on the device itself, not through /opt/tljh/state: at shutdown, systemd may take the bind
    mounts down first, and the droplet's own disk under them holds no current database."""
    source = os.path.join(data, STATE, DATABASE)
    if not filesystem.mounted(data) or not os.path.exists(source):  # never a copy on the droplet's own disk
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
    record.update_record({"database_copied": when})
    return when
