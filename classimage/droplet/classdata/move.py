"""The first time only: what the droplet already has in /home and /opt/tljh/state moved onto the
device whole, every owner, mode, time, ACL, attribute and link kept, or nothing moved and why."""

from __future__ import annotations

import os
import shutil

from .shared import DataError, run

# What the first move onto the device keeps (GNU cp: ACLs come with `mode`), and fails when it cannot.
KEEP = "mode,ownership,timestamps,links,xattr"


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
