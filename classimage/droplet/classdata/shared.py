"""What every part of classimage-class-data uses: where things lie on the class's device, the one
error that stops a verb, and how the program speaks, runs commands and writes its JSON files."""

from __future__ import annotations

import datetime
import json
import os
import subprocess
import tempfile

MOUNT = "/srv/classimage-data"
STATE = "tljh-state"  # the hub's state, on the device
PLACES = (("home", "/home"), (STATE, "/opt/tljh/state"))  # (folder on the device, where it appears)
MARKER = ".classimage-data"  # on the device's filesystem: classimage made it, for which course
IDS = ".classimage-ids.json"  # on the device: the GIDs of the class's groups and students' own groups
DATABASE = "jupyterhub.sqlite"
COPY = "database-copy/jupyterhub.sqlite"


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


def write_json(path: str, data: object) -> None:
    """`data` at `path`, root's alone (names, paths and commands' output), replaced atomically."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".data-")
    with os.fdopen(descriptor, "w") as out:
        json.dump(data, out, indent=2)
    os.chmod(temporary, 0o600)
    os.replace(temporary, path)
