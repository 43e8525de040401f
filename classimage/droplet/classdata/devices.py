"""Which device holds the class's data, and waiting for it: a path as it is, or for user data pasted
at DigitalOcean the one volume attached, whatever its name (two or more: a refusal naming them); a
DigitalOcean volume waited for as long as it takes, saying so in the record, another device for a
minute."""

from __future__ import annotations

import os
import time

from . import record
from .shared import DataError, say

DEVICE_WAIT = 60  # seconds a device may take to appear after boot (DigitalOcean attaches volumes before it)
# How DigitalOcean volumes appear on a droplet, by name (classimage/pipeline/plan.py VOLUME_DEVICE).
VOLUMES = "/dev/disk/by-id"
VOLUME_PREFIX = "scsi-0DO_Volume_"
# The devices of pasted user data (classimage/droplet/provision.py has the same words), and the recorded choice
# of the droplet's own disk.
ANY_VOLUME = "any-digitalocean-volume"
ANY_VOLUME_OR_OWN_DISK = "any-digitalocean-volume-or-own-disk"
OWN_DISK = "own-disk"


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
                record.update_record({"waiting": None})
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
            record.update_record({"waiting": awaited(device), "error": None})
            say("waiting for %s" % awaited(device))
            said = True
        time.sleep(1)


def recalled(device: str) -> str:
    """At boot: the device chosen at provisioning for a pasted droplet's DEVICE (a path as it is)."""
    if device not in (ANY_VOLUME, ANY_VOLUME_OR_OWN_DISK):
        return device
    chosen = record.read_record().get("chosen")
    return chosen or choose(device, attached_volumes()) or device
