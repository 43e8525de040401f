"""What a course has at DigitalOcean, found by its names and tags (the cloud holds the only state):
what classimage calls each resource, and what exists of them now."""

from __future__ import annotations

import datetime
import hashlib
import hmac
import re
from dataclasses import dataclass, field

from classimage.cloud.digitalocean import JSON, DigitalOcean
from classimage.pipeline import plan


@dataclass(frozen=True)
class Names:
    """What classimage calls a course's resources at DigitalOcean, and the tags it finds them by."""

    slug: str

    @property
    def tag(self) -> str:
        return f"classimage-{self.slug}"

    @property
    def droplet(self) -> str:
        return self.slug

    @property
    def volume(self) -> str:  # the first; a restored one is named volume-TIME
        return plan.volume_name(self.slug)

    def restored(self, when: str) -> str:  # a volume made from a backup at `when` (STAMP)
        return plan.restored_volume_name(self.slug, when)

    def restored_from(self, backup_id: str) -> str:
        """The tag of a volume `restore` made from this backup: an interrupted restore finds it again
        instead of making another, and a finished one is not made again unless asked (`--again`)."""
        return f"classimage-{self.slug}-from-{backup_id}"

    def is_volume(self, name: str) -> bool:
        return name == self.volume or _stamped(name, f"{self.volume}-")

    @property
    def backup_prefix(self) -> str:  # backups (snapshots of the volume) are named SLUG-backup-TIME
        return f"{self.slug}-backup-"

    def is_backup(self, name: str) -> bool:
        return _stamped(name, self.backup_prefix)

    @property
    def firewall(self) -> str:
        return f"classimage-{self.slug}"

    @property
    def ip_prefix(self) -> str:  # reserved IPs take no tags: a tag of this name records the course's
        return f"classimage-{self.slug}-ip-"

    def ip_tag(self, address: str) -> str:
        return self.ip_prefix + address.replace(".", "-")

    @property
    def deploy_prefix(self) -> str:  # what a droplet was made with, on the droplet
        return f"classimage-{self.slug}-deploy-"

    @property
    def snapshot_prefix(self) -> str:  # Packer names snapshots SLUG-BAKEDIGEST-TIMESTAMP
        return f"{self.slug}-"


STAMP = "%Y%m%d-%H%M%S"


def _stamped(name: str, prefix: str) -> bool:
    """`name` is `prefix` and a time as classimage writes it (another course's slug may start alike)."""
    return name.startswith(prefix) and re.fullmatch(r"\d{8}-\d{6}", name[len(prefix) :]) is not None


def stamp() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime(STAMP)


def status_token(api_token: str, slug: str, spec_digest: str) -> str:
    """The token whose holder may read log tails from a droplet's status service: derived from the
    DigitalOcean token, so whoever runs `up` (the token's holder) has it and nothing is stored."""
    return hmac.new(api_token.encode(), f"classimage status {slug} {spec_digest}".encode(), hashlib.sha256).hexdigest()


@dataclass
class Found:
    droplets: list[JSON]
    volume: JSON | None  # the class's volume: the one a droplet of the course has, else the newest
    ip: JSON | None
    firewall: JSON | None
    snapshots: list[JSON]  # the course's droplet snapshots, newest first
    backups: list[JSON] = field(default_factory=list)  # snapshots of the class's volumes, newest first
    volumes: list[JSON] = field(default_factory=list)  # every volume of the course (after a restore, the old)
    elsewhere: list[JSON] = field(default_factory=list)  # the course's volumes in another region than the spec's
    ip_recorded: bool = True  # the reserved IP's record tag exists (it is found by its holder otherwise)


def current_volume(volumes: list[JSON], droplets: list[JSON]) -> JSON | None:
    """The class's data: the volume a droplet of the course has attached, else the newest (a restore
    makes a new one; `down` leaves it unattached)."""
    ids = {d["id"] for d in droplets}
    attached = [v for v in volumes if ids & set(v.get("droplet_ids") or [])]
    return max(attached or volumes, key=lambda v: v["created_at"], default=None)


def region_of(resource: JSON) -> str | None:
    region = resource.get("region")
    return region.get("slug") if isinstance(region, dict) else region


def discover(api: DigitalOcean, names: Names, region: str) -> Found:
    # A destroyed droplet is listed as `archive` for a while (Terraform waits for it): it is gone.
    droplets = [d for d in api.droplets(names.tag) if d.get("status") != "archive"]
    every = [v for v in api.volumes() if names.is_volume(v["name"])]
    volumes = [v for v in every if region_of(v) == region]
    addresses = {ip["ip"]: ip for ip in api.reserved_ips()}
    ip, recorded = None, False
    for tag in api.tags():
        if tag["name"].startswith(names.ip_prefix):
            address = tag["name"][len(names.ip_prefix) :].replace("-", ".")
            if address in addresses:
                ip, recorded = addresses[address], True
    if ip is None:  # a droplet of the course holds one: the record was lost (or not made yet), not the address
        ids = {d["id"] for d in droplets}
        ip = next((a for a in addresses.values() if (a.get("droplet") or {}).get("id") in ids), None)
    firewall = next((f for f in api.firewalls() if f["name"] == names.firewall), None)
    snapshots = sorted(
        (s for s in api.droplet_snapshots() if s["name"].startswith(names.snapshot_prefix)),
        key=lambda s: s["created_at"],
        reverse=True,
    )
    backups = sorted(
        (s for s in api.volume_snapshots() if names.is_backup(s["name"])), key=lambda s: s["created_at"], reverse=True
    )
    return Found(
        droplets,
        current_volume(volumes, droplets),
        ip,
        firewall,
        snapshots,
        backups,
        volumes,
        [v for v in every if v not in volumes],
        recorded or ip is None,
    )


def public_address(droplet: JSON) -> str | None:
    return next((n["ip_address"] for n in droplet["networks"]["v4"] if n["type"] == "public"), None)


def deploy_tag(droplet: JSON, names: Names) -> str | None:
    return next((t for t in droplet["tags"] if t.startswith(names.deploy_prefix)), None)


def region_refusal(found: Found, region: str) -> str | None:
    """Why `up` cannot move the class to `region`, and what to do instead; None when it need not."""
    kept = [f"volume {v['name']} in {region_of(v)}" for v in found.elsewhere]
    if found.ip is not None and region_of(found.ip) not in (None, region):
        kept.append(f"address {found.ip['ip']} in {region_of(found.ip)}")
    if not kept:
        return None
    old = region_of(found.elsewhere[0]) if found.elsewhere else region_of(found.ip or {})
    return (
        f"droplet.region is {region}, but the class's data and address are elsewhere ({', '.join(kept)}): "
        "DigitalOcean cannot move a volume, its backups or a reserved IP to another region. Set "
        f"droplet.region back to {old}; to start the class afresh in {region}, copy what you need off "
        "the droplet, then `classimage down --delete-data` and `classimage up`"
    )
