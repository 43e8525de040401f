"""classimage-class-data: keeps the class's data (students' homes and the hub's state: accounts,
approvals, password hashes, Let's Encrypt's account and certificates) on its own block device, a
DigitalOcean volume or any other, so that it outlives every droplet. Shipped by classimage into the
user data as one zip of its modules (standard library only, Python 3.9 or newer).

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
import json
import os

from . import accounts, database, devices, filesystem, move, record
from .devices import OWN_DISK
from .shared import COPY, IDS, MARKER, MOUNT, PLACES, STATE, DataError, now, run, say


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
            device = devices.recalled(args.device) if args.verb == "tend" else OWN_DISK  # copy-database: no device
            if device != OWN_DISK:
                filesystem.grow_mounted(device, filesystem.kind(device))
            when = database.copy_database()
            say("copied the hub's database at %s" % when if when else "no hub database yet")
            if filesystem.mounted(MOUNT):  # students who joined since the boot: their groups' GIDs
                accounts.record_ids(os.path.join(MOUNT, IDS), os.path.join(MOUNT, "home"))
            return 0
        record.update_record({"admins": args.admin})
        if args.verb == "prepare":
            device = devices.wait_for(
                args.device, "run `classimage-provision run` (as root)", patient=devices.is_volume(args.device)
            )
            record.update_record({"chosen": device})
            said = own_disk() if device == OWN_DISK else prepare(device, args.course)
        else:
            device = devices.recalled(args.device)
            if device == OWN_DISK:
                said = []
            else:
                devices.wait_for(device, "restart the droplet")
                said = filesystem.mount_all(device, args.course) + settle(device)
        for line in said:
            say(line)
        return 0
    except DataError as error:
        record.update_record({"error": str(error)})
        say("FAILED: %s" % error)
        return 1


def wait(device: str, now: bool) -> int:
    """The `wait` verb: 0 once the device is there (its path printed), 3 with --now if it is not yet."""
    if now:
        chosen = devices.choose(device, devices.attached_volumes())
        if chosen is None or (chosen != OWN_DISK and not os.path.exists(chosen)):
            return 3
    else:
        chosen = devices.wait_for(device, "run `classimage-provision run` (as root)", patient=devices.is_volume(device))
    print(chosen, flush=True)
    return 0


def own_disk() -> list[str]:
    said = [
        "no DigitalOcean volume is attached: the class's data stays on this droplet's own disk and goes with "
        "the droplet (attach a volume when creating the droplet to keep it)"
    ]
    record.update_record({"notes": said, "error": None})
    return said


def prepare(device: str, course: str) -> list[str]:
    """At provisioning. Returns what to tell the instructor."""
    said = []
    devices.wait_for(device, "run `classimage-provision run` (as root)")
    kind = filesystem.kind(device)
    if filesystem.decide_format(kind):
        run(["mkfs.ext4", "-q", "-L", "classdata", device])
        said.append("formatted %s (it held no filesystem)" % device)
        fresh = True
    else:
        said.append("%s holds a %s filesystem: kept as it is" % (device, kind))
        fresh = False
    grown = filesystem.mount_device(device, kind or "ext4")
    if grown:
        said.append(grown)
    if fresh:
        with open(os.path.join(MOUNT, MARKER), "w") as handle:
            json.dump({"course": course, "made": now()}, handle)
    for folder, place in PLACES:  # the first time: what the droplet has already goes onto the device
        target = os.path.join(MOUNT, folder)
        if not os.path.exists(target):
            if os.path.isdir(place) and not filesystem.mounted(place):
                said.append(move.move_onto_device(place, target))
            else:
                os.makedirs(target)
    os.chmod(os.path.join(MOUNT, STATE), 0o700)
    said += filesystem.mount_all(device, course)
    return said + settle(device)


def settle(device: str) -> list[str]:
    """Once mounted, before the hub starts: its database sound, every student's account back."""
    said = []
    repaired = database.check_database(os.path.join(MOUNT, STATE), os.path.join(MOUNT, COPY))
    if repaired:
        said.append(repaired)
    said += accounts.reconcile()
    record.after_mount(device, said)
    return said
