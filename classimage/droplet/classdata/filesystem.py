"""What the class's device holds and where it appears: a filesystem only if it held none at all
(blkid's "nothing found" on a device whose start reads as zeros), mounted, its folders bound into
place, and grown to a volume made bigger: before mounting at boot, or mounted by the timer."""

from __future__ import annotations

import json
import os
import stat

from .shared import MARKER, MOUNT, PLACES, DataError, run, say

ZEROS = 1 << 20  # bytes at the start of a device that must read as zeros before it is formatted


def kind(device: str) -> str | None:
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
    grown = mount_device(device, kind(device))
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
