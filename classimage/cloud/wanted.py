"""What `up` wants and what it must change to get there, pure (tested as tables): the droplet the
spec asks for (image, user data and what identifies both), the course's snapshot it can be made from,
and the changes, in order, from what the course has at DigitalOcean to what the spec wants.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from classimage.cloud.digitalocean import JSON
from classimage.cloud.found import Found, Names, deploy_tag
from classimage.pipeline import artifacts, plan
from classimage.pipeline.spec import Loaded

FIREWALL_PORTS = ("22", "80", "443")  # the class's firewall lets in SSH, HTTP and HTTPS only


@dataclass(frozen=True)
class Deployment:
    """The droplet `up` wants: its image, user data and what identifies both."""

    image: str | int  # a base image slug, or the id of the course's snapshot
    snapshot: str | None  # that snapshot's name
    stage: str  # plan.FULL (one-piece) or plan.BOOT (from the snapshot)
    user_data: str
    size: str
    region: str
    ssh_keys: tuple[str, ...]

    @property
    def digest(self) -> str:
        parts = [str(self.image), self.user_data, self.size, self.region, *self.ssh_keys]
        return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:16]


def choose_snapshot(
    snapshots: list[JSON], names: Names, bake_digest: str, region: str | None = None, disk: int | None = None
) -> JSON | None:
    """The course's newest snapshot baked from this spec's software (its name carries the digest)
    that DigitalOcean can make the droplet from: available in `region`, and needing no more disk
    than the size has (`disk`, GB)."""
    return next((s for s in snapshots if not snapshot_problem(s, names, bake_digest, region, disk)), None)


def snapshot_problem(
    snapshot: JSON, names: Names, bake_digest: str, region: str | None, disk: int | None
) -> str | None:
    """Why this snapshot cannot make the course's droplet (None: it can). DigitalOcean refuses an
    image outside the droplet's region, or one whose `min_disk_size` exceeds the size's disk."""
    if not snapshot["name"].startswith(f"{names.snapshot_prefix}{bake_digest}-"):
        return "another spec's software"
    if region is not None and region not in (snapshot.get("regions") or []):
        return (
            f"it is not available in {region} (only {', '.join(snapshot.get('regions') or []) or 'nowhere'}): add "
            f"{region} to droplet.snapshot_regions and run `classimage build`, or add the region to the snapshot "
            "(control panel > Backups & Snapshots > More > Add to region)"
        )
    if disk is not None and int(snapshot.get("min_disk_size") or 0) > disk:
        return (
            f"it needs a disk of {snapshot['min_disk_size']} GB and the droplet size has {disk} GB: choose a "
            "larger droplet.size, or run `classimage build` to bake on this one"
        )
    return None


def deployment(loaded: Loaded, files: dict[str, str], snapshot: JSON | None) -> Deployment:
    """From the course's snapshot with the boot user data, else the base image with the one-piece
    user data (`files`: what `render` writes)."""
    droplet = loaded.spec.droplet
    if snapshot is not None:
        return Deployment(
            int(snapshot["id"]),
            snapshot["name"],
            plan.BOOT,
            files[artifacts.USER_DATA[plan.BOOT]],
            droplet.size,
            droplet.region,
            droplet.ssh_keys,
        )
    return Deployment(
        droplet.image, None, plan.FULL, files[artifacts.ONE_PIECE], droplet.size, droplet.region, droplet.ssh_keys
    )


@dataclass(frozen=True)
class Change:
    what: str  # volume, resize, droplet, replace, start, move, attach, ip, assign, record, cleanup, firewall, dns
    why: str


def serving(found: Found, wanted: Deployment, names: Names) -> tuple[list[JSON], list[JSON]]:
    """(the droplets made as `wanted` is, best first; the course's other droplets). Best: the one
    holding the class's volume, then the address, then the oldest."""
    current = [d for d in found.droplets if deploy_tag(d, names) == names.deploy_prefix + wanted.digest]
    volume_ids = set((found.volume or {}).get("droplet_ids") or [])
    holder = ((found.ip or {}).get("droplet") or {}).get("id")
    current.sort(key=lambda d: (d["id"] not in volume_ids, d["id"] != holder, d["created_at"], d["id"]))
    return current, [d for d in found.droplets if d not in current]


def changes(
    found: Found,
    wanted: Deployment,
    names: Names,
    dns: tuple[str, str] | None,
    records: list[JSON] | None,
    volume_size: int | None = 20,
) -> list[Change]:
    """What `up` must do, in order, to get from what exists to what is wanted (`volume_size`: the
    class's volume, in GiB; None: the class keeps no volume). Pure: tested as a table."""
    todo = []
    volume = found.volume if volume_size is not None else None
    if volume_size is not None and volume is None:
        todo.append(Change("volume", f"create the class's data volume {names.volume}"))
    elif volume is not None and volume_size is not None and volume["size_gigabytes"] < volume_size:
        todo.append(
            Change(
                "resize",
                f"grow volume {volume['name']} from {volume['size_gigabytes']} "
                f"to {volume_size} GiB (its filesystem grows with it, nothing is formatted)",
            )
        )
    current, others = serving(found, wanted, names)
    holder = ((found.ip or {}).get("droplet") or {}).get("id")
    attached = set((volume or {}).get("droplet_ids") or [])
    if not current:
        old = next((d for d in others if d["id"] in attached or d["id"] == holder), None)
        if old is not None:
            todo.append(
                Change(
                    "replace",
                    f"replace droplet {old['name']} ({old['id']}) by one with "
                    f"{'a newer snapshot' if wanted.snapshot else 'new settings or software'}: make it, then move "
                    "the class's data and address to it",
                )
            )
        else:
            todo.append(Change("droplet", f"create droplet {names.droplet} from {wanted.snapshot or wanted.image}"))
    else:
        new = current[0]
        if new.get("status") == "off":
            todo.append(Change("start", f"power droplet {new['id']} on (it is off)"))
        if volume is not None and new["id"] not in attached:
            if attached:
                todo.append(Change("move", f"move the class's data to droplet {new['id']} (make before break)"))
            else:
                todo.append(Change("attach", f"attach volume {volume['name']} to droplet {new['id']}"))
    target = current[0]["id"] if current else None
    if found.ip is None:
        todo.append(Change("ip", "reserve an IP address for the class"))
    elif target is None or holder != target:
        todo.append(Change("assign", "point the class's IP address at the droplet"))
    elif not found.ip_recorded:
        todo.append(Change("record", f"record {found.ip['ip']} as the class's address"))
    if current and (others or len(current) > 1):
        todo.append(Change("cleanup", f"destroy {len(others) + len(current) - 1} older droplet(s) of the course"))
    if found.firewall is None:
        todo.append(Change("firewall", f"create firewall {names.firewall} (in: {', '.join(FIREWALL_PORTS)})"))
    if dns is not None and found.ip is not None:
        domain, name = dns
        if not any(r["data"] == found.ip["ip"] for r in records or []):
            todo.append(Change("dns", f"point {name}.{domain} at {found.ip['ip']}" if name != "@" else domain))
    elif dns is not None:
        todo.append(Change("dns", f"point {dns[1]}.{dns[0]} at the class's IP address"))
    return todo
