"""The class's server on DigitalOcean: `up` makes what is missing (a reserved IP, the class's data
volume, the droplet, a cloud firewall, a DNS record), replaces a droplet whose software or settings
changed (the volume and the address move to the new one), and follows provisioning to the end;
`restore` is an `up` onto a new volume made from a backup. (`status`, `down` and `backup`, which
keep a class rather than make one, are in upkeep.py.)

The cloud is the source of truth: every resource is found by the course's name or tag, so there is
no local state to lose, a second `up` with nothing changed changes nothing, and an `up` stopped
half way (Ctrl-C, a failure) is finished by the next one.
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
import json
import re
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field

from classimage import artifacts, plan, pricing, provision
from classimage.digitalocean import JSON, CloudError, DigitalOcean
from classimage.spec import Loaded

FIREWALL_PORTS = ("22", "80", "443")


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


# -- what exists ----------------------------------------------------------------------------------


@dataclass
class Found:
    droplets: list[JSON]
    volume: JSON | None  # the class's volume: the one a droplet of the course has, else the newest
    ip: JSON | None
    firewall: JSON | None
    snapshots: list[JSON]  # the course's droplet snapshots, newest first
    backups: list[JSON] = field(default_factory=list)  # snapshots of the class's volumes, newest first
    volumes: list[JSON] = field(default_factory=list)  # every volume of the course (after a restore, the old)


def current_volume(volumes: list[JSON], droplets: list[JSON]) -> JSON | None:
    """The class's data: the volume a droplet of the course has attached, else the newest (a restore
    makes a new one; `down` leaves it unattached)."""
    ids = {d["id"] for d in droplets}
    attached = [v for v in volumes if ids & set(v.get("droplet_ids") or [])]
    return max(attached or volumes, key=lambda v: v["created_at"], default=None)


def discover(api: DigitalOcean, names: Names, region: str) -> Found:
    droplets = api.droplets(names.tag)
    volumes = [v for v in api.volumes(region) if names.is_volume(v["name"])]
    addresses = {ip["ip"]: ip for ip in api.reserved_ips()}
    ip = None
    for tag in api.tags():
        if tag["name"].startswith(names.ip_prefix):
            address = tag["name"][len(names.ip_prefix) :].replace("-", ".")
            ip = addresses.get(address) or ip
    if ip is None:  # a droplet of the course holds one: the record was lost, not the address
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
    return Found(droplets, current_volume(volumes, droplets), ip, firewall, snapshots, backups, volumes)


def public_address(droplet: JSON) -> str | None:
    return next((n["ip_address"] for n in droplet["networks"]["v4"] if n["type"] == "public"), None)


def deploy_tag(droplet: JSON, names: Names) -> str | None:
    return next((t for t in droplet["tags"] if t.startswith(names.deploy_prefix)), None)


# -- what up makes --------------------------------------------------------------------------------


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


def choose_snapshot(snapshots: list[JSON], names: Names, bake_digest: str) -> JSON | None:
    """The course's newest snapshot baked from this spec's software (its name carries the digest)."""
    wanted = f"{names.snapshot_prefix}{bake_digest}-"
    return next((s for s in snapshots if s["name"].startswith(wanted)), None)


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
    what: str  # volume, ip, droplet, replace, assign, firewall, dns
    why: str


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
    if volume_size is not None and found.volume is None:
        todo.append(Change("volume", f"create the class's data volume {names.volume}"))
    elif volume_size is not None and found.volume is not None and found.volume["size_gigabytes"] < volume_size:
        todo.append(
            Change(
                "resize",
                f"grow volume {found.volume['name']} from {found.volume['size_gigabytes']} "
                f"to {volume_size} GiB (its filesystem grows with it, nothing is formatted)",
            )
        )
    if found.ip is None:
        todo.append(Change("ip", "reserve an IP address for the class"))
    current = [d for d in found.droplets if deploy_tag(d, names) == names.deploy_prefix + wanted.digest]
    others = [d for d in found.droplets if d not in current]
    if not current:
        if others:
            old = others[0]
            todo.append(
                Change(
                    "replace",
                    f"replace droplet {old['name']} ({old['id']}): "
                    f"{'a newer snapshot' if wanted.snapshot else 'new settings or software'}",
                )
            )
        else:
            todo.append(Change("droplet", f"create droplet {names.droplet} from {wanted.snapshot or wanted.image}"))
    elif others:
        todo.append(Change("cleanup", f"destroy {len(others)} older droplet(s) of the course"))
    holder = (found.ip or {}).get("droplet") or {}
    if not current or holder.get("id") != current[0]["id"]:
        todo.append(Change("assign", "point the class's IP address at the droplet"))
    if found.firewall is None:
        todo.append(Change("firewall", f"create firewall {names.firewall} (in: {', '.join(FIREWALL_PORTS)})"))
    if dns is not None and found.ip is not None:
        domain, name = dns
        if not any(r["data"] == found.ip["ip"] for r in records or []):
            todo.append(Change("dns", f"point {name}.{domain} at {found.ip['ip']}" if name != "@" else domain))
    elif dns is not None:
        todo.append(Change("dns", f"point {dns[1]}.{dns[0]} at the class's IP address"))
    return todo


# -- following provisioning -----------------------------------------------------------------------


def read_status(address: str, token: str | None, timeout: float = 5) -> JSON | None:
    """The droplet's provisioning status (with log tails when the token is ours; None: the public
    part), or None when nothing answers yet."""
    headers = {"Accept": "application/json"} | ({"Authorization": f"token {token}"} if token else {})
    request = urllib.request.Request(f"http://{address}{provision.SERVICE_PATH}", headers=headers)
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(request, timeout=timeout) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as error:
        if error.code == 503:
            try:
                return json.loads(error.read())
            except ValueError:
                return None
        return None
    except (OSError, ValueError):
        return None


def follow(address: str, token: str, echo: Callable[[str], None], timeout: float, poll: float = 3) -> JSON:
    """Print each step as it starts and ends, until the droplet is ready or failed."""
    started = time.monotonic()
    seen: dict[str, str] = {}
    waiting_said = False
    while True:
        elapsed = time.monotonic() - started
        if elapsed > timeout:
            raise CloudError(
                f"the droplet was not ready within {timeout / 60:.0f} minutes: see `classimage status`, "
                f"or `ssh root@{address} classimage-provision status`"
            )
        status = read_status(address, token)
        if status is None or "steps" not in status:
            if not waiting_said:
                echo(f"  waiting for the droplet at {address} to answer...")
                waiting_said = True
            time.sleep(poll)
            continue
        for step in status["steps"]:
            state = step.get("state")
            if seen.get(step["name"]) != state and state in ("running", "done", "failed"):
                seconds = (
                    f" in {step['seconds']:.0f} s" if step.get("seconds") is not None and state != "running" else ""
                )
                echo(f"  [{clock(elapsed)}] {step.get('title') or step['name']}: {state}{seconds}")
                seen[step["name"]] = state
        if status.get("state") in ("ready", "failed"):
            return status
        time.sleep(poll)


def clock(seconds: float) -> str:
    return f"{int(seconds) // 60:02d}:{int(seconds) % 60:02d}"


def failure_report(status: JSON) -> list[str]:
    step: JSON = next((s for s in status["steps"] if s.get("state") == "failed"), {})
    lines = [
        f"provisioning failed at {step.get('title') or status.get('failed_step')} "
        f"(exit code {step.get('exit_code')}); the last lines of its output:"
    ]
    lines += [
        f"    | {line}" for line in step.get("log_tail") or ["(not shown: the status service did not share them)"]
    ]
    return lines


# -- up --------------------------------------------------------------------------------------------


@dataclass
class Outcome:
    address: str | None = None
    changed: list[str] = field(default_factory=list)
    downtime: float | None = None
    status: JSON | None = None


class Up:
    """One `classimage up` (or the `restore` that moves the class onto a backup's copy)."""

    def __init__(
        self,
        loaded: Loaded,
        api: DigitalOcean,
        render: Callable[[str | None], dict[str, str]],
        echo: Callable[[str], None],
        timeout: float = 3600,
        dry_run: bool = False,
    ):
        """`render`: what `render` writes for the spec, given the name of the class's volume (the user
        data mounts it by name)."""
        self.loaded, self.spec, self.api, self.render = loaded, loaded.spec, api, render
        self.echo, self.timeout, self.dry_run = echo, timeout, dry_run
        self.names = Names(self.spec.course.slug)
        self.token = status_token(api.token, self.spec.course.slug, loaded.digest)

    def check_account(self) -> None:
        """What would make creating anything fail, found before anything is made."""
        droplet = self.spec.droplet
        if self.spec.storage.type == "device":
            raise CloudError(
                "storage.type is `device`, a disk of another cloud: at DigitalOcean the class's data "
                "lives on a volume `classimage up` makes; set storage.type to auto"
            )
        size = next((s for s in self.api.sizes() if s["slug"] == droplet.size), None)
        if size is None:
            raise CloudError(
                f"DigitalOcean has no droplet size {droplet.size!r}: set droplet.size in the spec (e.g. s-2vcpu-4gb)"
            )
        if droplet.region not in size["regions"]:
            raise CloudError(
                f"size {droplet.size} is not offered in {droplet.region}: choose another droplet.size, "
                f"or one of the regions that offer it ({', '.join(sorted(size['regions']))})"
            )
        if droplet.ssh_keys:
            keys = {str(k["id"]) for k in self.api.account_keys()} | {k["fingerprint"] for k in self.api.account_keys()}
            missing = [k for k in droplet.ssh_keys if k not in keys]
            if missing:
                raise CloudError(
                    f"no SSH key {', '.join(missing)} in your DigitalOcean account: add it (control "
                    "panel > Settings > Security) or remove it from droplet.ssh_keys"
                )

    def dns(self) -> tuple[str, str] | None:
        """(domain, record name) when https.hostname is in a domain whose DNS is at DigitalOcean."""
        hostname = self.spec.https.hostname
        if not hostname:
            return None
        domains = sorted(
            (d["name"] for d in self.api.domains() if hostname == d["name"] or hostname.endswith("." + d["name"])),
            key=len,
            reverse=True,
        )
        if not domains:
            return None
        domain = domains[0]
        return domain, hostname[: -len(domain) - 1] if hostname != domain else "@"

    def run(self, restore: JSON | None = None) -> Outcome:
        """Make the class as the spec wants it. `restore`: a backup (a snapshot of the class's volume)
        to bring back on a new volume, which the new droplet takes instead of the current one."""
        spec, names = self.spec, self.names
        self.check_account()
        found = discover(self.api, names, spec.droplet.region)
        keeps_data = spec.storage.type != "none"
        previous = found.volume
        if restore is not None:
            name = names.restored(stamp())
            size = max(spec.storage.size_gigabytes, int(restore["min_disk_size"]))
            self.echo(
                f"{names.droplet}: "
                + ("would " if self.dry_run else "will ")
                + f"bring backup {restore['name']} back as volume {name} ({size} GiB)"
            )
            found.volume = (
                {"id": None, "name": name, "size_gigabytes": size, "droplet_ids": []}
                if self.dry_run
                else self.create_volume(name, size, restore)
            )
        volume_name = (found.volume or {}).get("name", names.volume) if keeps_data else None
        files = self.render(volume_name)
        snapshot = choose_snapshot(found.snapshots, names, plan.bake_digest(spec))
        wanted = deployment(self.loaded, files, snapshot)
        dns = self.dns()
        records = self.api.records(dns[0], spec.https.hostname) if dns and spec.https.hostname else None
        todo = changes(found, wanted, names, dns, records, spec.storage.size_gigabytes if keeps_data else None)
        outcome = Outcome(address=(found.ip or {}).get("ip"))
        if found.volume is not None and found.volume["size_gigabytes"] > spec.storage.size_gigabytes:
            self.echo(
                f"  note: volume {found.volume['name']} has {found.volume['size_gigabytes']} GiB, more than "
                f"storage.size_gigabytes ({spec.storage.size_gigabytes}); volumes cannot shrink, so it is kept"
            )
        if not todo:
            self.echo(
                f"{names.droplet}: nothing to change (droplet, volume, address, firewall"
                f"{', DNS' if dns else ''} as the spec wants)"
            )
            outcome.status = read_status(outcome.address, self.token) if outcome.address else None
            return outcome
        self.echo(f"{names.droplet}: " + ("would " if self.dry_run else "will ") + "; ".join(c.why for c in todo))
        if self.dry_run:
            return outcome
        kinds = {c.what for c in todo}
        volume = (found.volume or self.create_volume(names.volume, spec.storage.size_gigabytes)) if keeps_data else None
        if "resize" in kinds and volume is not None:
            self.resize(volume)
        address = found.ip or self.reserve_ip()
        outcome.address = address["ip"]
        current = [d for d in found.droplets if deploy_tag(d, names) == names.deploy_prefix + wanted.digest]
        started = None
        if "replace" in kinds:
            old = next(d for d in found.droplets if d not in current)
            started = time.monotonic()
            self.retire(old, found.volumes)
            droplet = self.create_droplet(wanted, volume)
            self.assign(address, droplet)
            outcome.changed.append(f"replaced droplet {old['id']} with {droplet['id']}")
        elif "droplet" in kinds:
            droplet = self.create_droplet(wanted, volume)
            self.assign(address, droplet)
            outcome.changed.append(f"created droplet {droplet['id']}")
        else:
            droplet = current[0]
            if "assign" in kinds:
                self.assign(address, droplet)
        for old in found.droplets:
            if old["id"] != droplet["id"] and "replace" not in kinds:
                self.api.destroy_droplet(old["id"])
        if "firewall" in kinds:
            self.create_firewall()
        if "dns" in kinds and dns is not None:
            self.point_dns(dns, address["ip"], records)
        if self.spec.https.hostname and dns is None:
            self.echo(
                f"  DNS: create an A record {self.spec.https.hostname} -> {address['ip']} at your DNS host; "
                "HTTPS starts once it resolves"
            )
        if {"droplet", "replace", "assign"} & kinds:
            self.echo(f"following the provisioning of {names.droplet} at {address['ip']}:")
            status = follow(address["ip"], self.token, self.echo, self.timeout)
            outcome.status = status
            if status["state"] == "failed":
                for line in failure_report(status):
                    self.echo(line)
                raise CloudError(
                    f"provisioning of {names.droplet} failed: fix the cause and run `classimage up` "
                    "again (it finishes what is half done)"
                )
            if started is not None:
                outcome.downtime = time.monotonic() - started
        if "replace" in kinds:
            old = next(d for d in found.droplets if d not in current)
            self.api.destroy_droplet(old["id"])
        if restore is not None and previous is not None:
            self.echo(
                f"  the class's previous volume {previous['name']} is kept, detached "
                f"(${previous['size_gigabytes'] * pricing.VOLUME_PER_GIB_MONTH:.2f} a month): delete it in the control "
                "panel once the restored class is as you want it"
            )
        if self.spec.https.hostname:
            self.wait_for_dns(address["ip"])
        return outcome

    def create_volume(self, name: str, size: int, backup: JSON | None = None) -> JSON:
        source = f" from backup {backup['name']}" if backup else ""
        self.echo(f"  creating the class's data volume {name} ({size} GiB{source})")
        body = {
            "name": name,
            "region": self.spec.droplet.region,
            "size_gigabytes": size,
            "description": f"classimage: the data of {self.spec.course.name}",
            "tags": ["classimage", self.names.tag],
        }
        if backup is not None:
            body["snapshot_id"] = backup["id"]
        return self.api.create_volume(body)

    def resize(self, volume: JSON) -> None:
        size = self.spec.storage.size_gigabytes
        self.echo(f"  growing volume {volume['name']} to {size} GiB")
        self.api.wait(
            self.api.volume_action(
                volume["id"], {"type": "resize", "size_gigabytes": size, "region": self.spec.droplet.region}
            ),
            f"resizing {volume['name']}",
        )

    def reserve_ip(self) -> JSON:
        self.echo("  reserving an IP address for the class")
        address = self.api.create_reserved_ip(self.spec.droplet.region)
        self.api.create_tag(self.names.ip_prefix + address["ip"].replace(".", "-"))
        return address

    def create_droplet(self, wanted: Deployment, volume: JSON | None) -> JSON:
        self.echo(
            f"  creating droplet {self.names.droplet} ({wanted.size}, {wanted.region}, "
            f"{wanted.snapshot or wanted.image})"
        )
        body = {
            "name": self.names.droplet,
            "region": wanted.region,
            "size": wanted.size,
            "image": wanted.image,
            "ssh_keys": list(wanted.ssh_keys),
            "user_data": wanted.user_data,
            "monitoring": True,
            "ipv6": False,
            "volumes": [volume["id"]] if volume else [],
            "tags": ["classimage", self.names.tag, self.names.deploy_prefix + wanted.digest],
        }
        droplet, action = self.api.create_droplet(body)
        if action is not None:
            self.api.wait(action, f"creating droplet {self.names.droplet}")
        return self.api.droplet(droplet["id"])

    def assign(self, address: JSON, droplet: JSON) -> None:
        self.echo(f"  pointing {address['ip']} at droplet {droplet['id']}")
        action = self.api.reserved_ip_action(address["ip"], {"type": "assign", "droplet_id": droplet["id"]})
        self.api.wait(action, f"assigning {address['ip']}")

    def retire(self, old: JSON, volumes: list[JSON]) -> None:
        """The old droplet stops (writing a consistent copy of the hub's database on its way down)
        and lets go of the class's volume."""
        self.echo(f"  stopping droplet {old['id']} (its class data is written out as it shuts down)")
        try:
            self.api.wait(
                self.api.droplet_action(old["id"], "shutdown"), f"shutting down droplet {old['id']}", timeout=300
            )
        except CloudError as error:  # DigitalOcean's advice when a droplet does not shut down: power it off
            self.echo(f"  {error}; powering it off")
            self.api.wait(self.api.droplet_action(old["id"], "power_off"), f"powering off droplet {old['id']}")
        for volume in volumes:
            if old["id"] in (volume.get("droplet_ids") or []):
                self.api.wait(
                    self.api.volume_action(
                        volume["id"], {"type": "detach", "droplet_id": old["id"], "region": self.spec.droplet.region}
                    ),
                    f"detaching {volume['name']}",
                )

    def create_firewall(self) -> None:
        self.echo(f"  creating firewall {self.names.firewall}")
        rules = [
            {"protocol": "tcp", "ports": port, "sources": {"addresses": ["0.0.0.0/0", "::/0"]}}
            for port in FIREWALL_PORTS
        ]
        outbound = [
            {
                "protocol": protocol,
                "ports": "0" if protocol == "icmp" else "all",
                "destinations": {"addresses": ["0.0.0.0/0", "::/0"]},
            }
            for protocol in ("tcp", "udp", "icmp")
        ]
        self.api.create_firewall(
            {"name": self.names.firewall, "tags": [self.names.tag], "inbound_rules": rules, "outbound_rules": outbound}
        )

    def point_dns(self, dns: tuple[str, str], address: str, records: list[JSON] | None) -> None:
        domain, name = dns
        self.echo(f"  DNS: {self.spec.https.hostname} -> {address}")
        existing = (records or [])[:1]
        if existing:
            self.api.update_record(domain, existing[0]["id"], {"type": "A", "name": name, "data": address, "ttl": 300})
        else:
            self.api.create_record(domain, {"type": "A", "name": name, "data": address, "ttl": 300})

    def wait_for_dns(self, address: str, timeout: float = 600) -> None:
        hostname = self.spec.https.hostname
        deadline = time.monotonic() + timeout
        while True:
            try:
                resolved = {info[4][0] for info in socket.getaddrinfo(hostname, 443, type=socket.SOCK_STREAM)}
            except OSError:
                resolved = set()
            if address in resolved:
                return
            if time.monotonic() > deadline:
                self.echo(f"  {hostname} does not resolve to {address} yet: HTTPS starts once it does")
                return
            time.sleep(10)
