"""The class's server on DigitalOcean: `up` makes what is missing (the class's data volume, the
droplet, a reserved IP, a cloud firewall, a DNS record), replaces a droplet whose software or
settings changed, and follows provisioning to the end; `restore` is an `up` onto a new volume made
from a backup. (`status`, `down` and `backup`, which keep a class rather than make one, are in
upkeep.py.)

A replacement makes before it breaks: the new droplet is created without the class's volume, boots
and provisions up to the point where it needs the class's data (its class-data step waits for the
volume to appear) while the old one still serves; only then does the old one shut down (writing a
last copy of the hub's database), the volume move, the address move, and the new droplet finish.
Students' downtime is the shutdown, the moves, the mount and the hub's start, not a droplet's
creation, boot and provisioning.

The cloud is the source of truth: every resource is found by the course's name or tag, so there is
no local state to lose, a second `up` with nothing changed changes nothing, and an `up` stopped at
any request (Ctrl-C, a crash, a failure) is finished by the next one: each step reads the state it
is for before it acts, and every create looks for what it would make before making it again.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from classimage.cloud.digitalocean import JSON, CloudError, DigitalOcean, NotFound, TimedOut
from classimage.cloud.found import (
    Found,
    Names,
    discover,
    public_address,
    region_of,
    region_refusal,
    stamp,
    status_token,
)
from classimage.cloud.progress import (
    failure_report,
    follow,
    hub_health,
    read_status,
    resolves_to,
    waiting_for_data,
)
from classimage.cloud.wanted import (
    FIREWALL_PORTS,
    Deployment,
    changes,
    choose_snapshot,
    deployment,
    serving,
    snapshot_problem,
)
from classimage.cloud.wanted import (
    Change as Change,  # read from here by the tests, as before wanted.py
)
from classimage.pipeline import plan, pricing
from classimage.pipeline.spec import Loaded

# "Attempt a shutdown, with a reasonable timeout, followed by a power_off action" (DigitalOcean's API
# description, droplet actions). systemd gives each unit 90 s to stop by default: a droplet not off
# after 120 s is stuck, and is powered off.
SHUTDOWN_WAIT = 120.0
POWER_OFF_WAIT = 120.0
# A new droplet goes from `new` to `active` when DigitalOcean has created and started it.
CREATE_WAIT = 600.0
# How long an address DigitalOcean is assigning (locked) is waited for, to tell whether it is the class's.
ADDRESS_WAIT = 120.0


# -- up --------------------------------------------------------------------------------------------


def stop(api: DigitalOcean, droplet_id: int, echo: Callable[[str], None]) -> None:
    """The droplet off, for certain: DigitalOcean completes a shutdown action once the command is
    issued, so the droplet's own status is what is waited for; a droplet that does not stop within
    SHUTDOWN_WAIT is powered off (DigitalOcean's own advice). Shutting down lets the droplet write a
    last consistent copy of the hub's database onto the class's volume."""

    def off() -> bool:
        try:
            return api.droplet(droplet_id)["status"] in ("off", "archive")
        except NotFound:
            return True

    def shutdown() -> JSON:
        echo(f"  stopping droplet {droplet_id} (it writes a last copy of the hub's database on its way down)")
        return api.droplet_action(droplet_id, "shutdown")

    try:
        api.settle(f"shutting down droplet {droplet_id}", off, shutdown, timeout=SHUTDOWN_WAIT)
    except TimedOut:
        echo(f"  droplet {droplet_id} did not shut down within {SHUTDOWN_WAIT:.0f} s: powering it off")
        api.settle(
            f"powering off droplet {droplet_id}",
            off,
            lambda: api.droplet_action(droplet_id, "power_off"),
            timeout=POWER_OFF_WAIT,
        )


# -- up --------------------------------------------------------------------------------------------


@dataclass
class Outcome:
    address: str | None = None
    changed: list[str] = field(default_factory=list)
    downtime: float | None = None  # seconds students could not reach the class
    prepared: float | None = None  # seconds a new droplet took to be ready but for its data, the class still up
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
        self.made: float | None = None  # when this run made the new droplet

    def check_account(self) -> JSON:
        """What would make creating anything fail, found before anything is made. The size."""
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
            keys = self.api.account_keys()
            known = {str(k["id"]) for k in keys} | {k["fingerprint"] for k in keys}
            missing = [k for k in droplet.ssh_keys if k not in known]
            if missing:
                raise CloudError(
                    f"no SSH key {', '.join(missing)} in your DigitalOcean account: add it (control "
                    "panel > Settings > Security) or remove it from droplet.ssh_keys"
                )
        return size

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

    def say(self, message: str) -> None:
        self.echo(f"{self.names.droplet}: " + ("would " if self.dry_run else "will ") + message)

    def snapshot(self, found: Found, size: JSON) -> JSON | None:
        """The course's snapshot for this spec that DigitalOcean can use here; says why one that holds
        this spec's software cannot be used."""
        digest, region = plan.bake_digest(self.spec), self.spec.droplet.region
        chosen = choose_snapshot(found.snapshots, self.names, digest, region, size.get("disk"))
        for candidate in found.snapshots:
            if candidate is chosen:
                break
            problem = snapshot_problem(candidate, self.names, digest, region, size.get("disk"))
            if problem and problem != "another spec's software":
                self.echo(f"  note: snapshot {candidate['name']} holds this spec's software, but {problem}")
        return chosen

    def run(self, restore: JSON | None = None, again: bool = False) -> Outcome:
        """Make the class as the spec wants it. `restore`: a backup (a snapshot of the class's volume)
        to bring back on a new volume, which the new droplet takes instead of the current one (`again`:
        even when the class runs on a copy of it already)."""
        spec, names = self.spec, self.names
        size = self.check_account()
        found = discover(self.api, names, spec.droplet.region)
        refusal = region_refusal(found, spec.droplet.region)
        if refusal:
            raise CloudError(refusal)
        if found.ip is None and found.droplets:
            found.ip = self.address_in_flight(found)
            found.ip_recorded = found.ip is None
        keeps_data = spec.storage.type != "none"
        previous = found.volume
        if restore is not None:
            found.volume = self.restored_volume(found, restore, again)
        volume_name = (found.volume or {}).get("name", names.volume) if keeps_data else None
        files = self.render(volume_name)
        wanted = deployment(self.loaded, files, self.snapshot(found, size))
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
            if not self.dry_run:
                self.finish_restore(restore, previous, found.volume)
            outcome.status = (
                read_status(outcome.address, self.token, hostname=spec.https.hostname) if outcome.address else None
            )
            return outcome
        self.say("; ".join(c.why for c in todo))
        if self.dry_run:
            return outcome
        kinds = {c.what for c in todo}
        volume = (found.volume or self.create_volume(names.volume, spec.storage.size_gigabytes)) if keeps_data else None
        if "resize" in kinds and volume is not None:
            volume = self.resize(volume)
        current, others = serving(found, wanted, names)
        droplet = self.started(current[0]) if current else self.create_droplet(wanted, volume)
        others += current[1:]
        outcome.changed.append(f"droplet {droplet['id']}" + ("" if current else " created"))
        address, started = self.take_over(droplet, found, volume, outcome)
        outcome.address = address["ip"]
        if "firewall" in kinds:
            self.create_firewall()
        if "dns" in kinds and dns is not None:
            self.point_dns(dns, address["ip"], records)
        if self.spec.https.hostname and dns is None:
            self.echo(
                f"  DNS: create an A record {self.spec.https.hostname} -> {address['ip']} at your DNS host; "
                "HTTPS starts once it resolves"
            )
        # Whatever changed, the class is ready before `up` says so (an earlier run may have stopped early).
        self.echo(f"following the provisioning of {names.droplet} at {address['ip']}:")
        status = follow(address["ip"], self.token, self.echo, self.timeout, hostname=self.spec.https.hostname)
        outcome.status = status
        if status["state"] == "failed":
            for line in failure_report(status):
                self.echo(line)
            kept = [d["id"] for d in others]
            raise CloudError(
                f"provisioning of {names.droplet} failed: fix the cause and run `classimage up` again (it "
                "finishes what is half done)"
                + (f"; the previous droplet {', '.join(map(str, kept))} is kept, powered off" if kept else "")
            )
        if started is not None:
            outcome.downtime = time.monotonic() - started
        for old in others:
            self.retire(old)
        self.finish_restore(restore, previous, found.volume)
        if self.spec.https.hostname:
            self.wait_for_dns(address["ip"])
            self.echo(f"  hub: {hub_health(address['ip'], self.spec.https.hostname)}")
        return outcome

    # -- the steps, each of which reads the state it is for before it acts -------------------------

    def address_in_flight(self, found: Found) -> JSON | None:
        """The class's address, reserved for one of its droplets by an `up` stopped before it recorded
        it: while DigitalOcean assigns an address it is `locked`, with no droplet yet. Such an address
        in the region is waited for, and is the class's if a droplet of the course then holds it."""
        region, ids = self.spec.droplet.region, {d["id"] for d in found.droplets}
        read: dict[str, list[JSON]] = {}

        def settled() -> bool:
            read["ips"] = self.api.reserved_ips()
            return not any(a.get("locked") and region_of(a) == region and not a.get("droplet") for a in read["ips"])

        if not settled():
            self.echo("  an address is being assigned in the region: waiting to see whether it is the class's")
            self.api.until("an address being assigned", settled, ADDRESS_WAIT)
        return next((a for a in read["ips"] if ((a.get("droplet") or {}).get("id")) in ids), None)

    def restored_volume(self, found: Found, backup: JSON, again: bool) -> JSON:
        """The volume a restore brings the backup back on: the one a restore of this backup made already
        (an interrupted one is finished; a finished one is where the class runs), unless `again` asks
        for a fresh copy of a backup the class already runs on; else a new one."""
        tag = self.names.restored_from(backup["id"])
        made = next((v for v in found.volumes if tag in (v.get("tags") or [])), None)
        if made is not None and not (again and made is found.volume and made.get("droplet_ids")):
            self.echo(
                f"{self.names.droplet}: the class's copy of backup {backup['name']} is volume {made['name']} (made "
                f"{made['created_at']}); `restore --again` brings the backup back once more"
            )
            return made
        if self.spec.droplet.region not in (backup.get("regions") or [self.spec.droplet.region]):
            raise CloudError(
                f"backup {backup['name']} is in {', '.join(backup['regions'])}, not {self.spec.droplet.region}: "
                "DigitalOcean cannot move a volume's backup to another region; set droplet.region to "
                f"{backup['regions'][0]}"
            )
        name = self.names.restored(stamp())
        size = max(self.spec.storage.size_gigabytes, int(backup["min_disk_size"]))
        self.say(f"bring backup {backup['name']} back as volume {name} ({size} GiB)")
        if self.dry_run:
            return {"id": None, "name": name, "size_gigabytes": size, "droplet_ids": [], "tags": [tag]}
        volume = self.create_volume(name, size, backup, tags=[tag])
        found.volumes.append(volume)
        return volume

    def finish_restore(self, restore: JSON | None, previous: JSON | None, current: JSON | None) -> None:
        """The instructor hears what the class's previous volume costs, kept."""
        if restore is not None and previous is not None and previous["id"] != (current or {}).get("id"):
            self.echo(
                f"  the class's previous volume {previous['name']} is kept, detached "
                f"(${previous['size_gigabytes'] * pricing.VOLUME_PER_GIB_MONTH:.2f} a month): delete it in the control "
                "panel once the restored class is as you want it"
            )

    def create_volume(self, name: str, size: int, backup: JSON | None = None, tags: list[str] | None = None) -> JSON:
        source = f" from backup {backup['name']}" if backup else ""
        self.echo(f"  creating the class's data volume {name} ({size} GiB{source})")
        region = self.spec.droplet.region
        body = {
            "name": name,
            "region": region,
            "size_gigabytes": size,
            "description": f"classimage: the data of {self.spec.course.name}",
            "tags": ["classimage", self.names.tag, *(tags or [])],
        }
        if backup is not None:
            body["snapshot_id"] = backup["id"]
        return self.api.create(
            f"creating volume {name}",
            lambda: self.api.create_volume(body),
            lambda: next((v for v in self.api.volumes(region) if v["name"] == name), None),
        )

    def resize(self, volume: JSON) -> JSON:
        size = self.spec.storage.size_gigabytes
        self.echo(f"  growing volume {volume['name']} to {size} GiB")
        read: dict[str, JSON] = {}

        def grown() -> bool:
            read["volume"] = self.api.volume(volume["id"])
            return read["volume"]["size_gigabytes"] >= size

        self.api.settle(
            f"resizing {volume['name']}",
            grown,
            lambda: self.api.volume_action(
                volume["id"], {"type": "resize", "size_gigabytes": size, "region": self.spec.droplet.region}
            ),
        )
        return read["volume"]

    def create_droplet(self, wanted: Deployment, volume: JSON | None) -> JSON:
        """The droplet, made once (found again by its deploy tag), and started. It takes the class's
        volume at creation only when no droplet has it: otherwise it is made without, and takes it
        when the old one has stopped (make before break)."""
        free = volume is not None and not volume.get("droplet_ids")
        self.echo(
            f"  creating droplet {self.names.droplet} ({wanted.size}, {wanted.region}, "
            f"{wanted.snapshot or wanted.image}{', with the class volume' if free else ''})"
        )
        deploy = self.names.deploy_prefix + wanted.digest
        self.made = time.monotonic()
        body = {
            "name": self.names.droplet,
            "region": wanted.region,
            "size": wanted.size,
            "image": wanted.image,
            # all-digit keys are ids: sent as numbers, as godo and Terraform send them
            "ssh_keys": [int(k) if k.isdigit() else k for k in wanted.ssh_keys],
            "user_data": wanted.user_data,
            "monitoring": True,
            "ipv6": False,
            "volumes": [volume["id"]] if free and volume is not None else [],
            "tags": ["classimage", self.names.tag, deploy],
        }
        made = self.api.create(
            f"creating droplet {self.names.droplet}",
            lambda: self.api.create_droplet(body),
            lambda: next((d for d in self.api.droplets(deploy) if d.get("status") != "archive"), None),
        )
        if free and volume is not None:
            volume["droplet_ids"] = [made["id"]]
        return self.started(made)

    def started(self, droplet: JSON) -> JSON:
        """The droplet once DigitalOcean has made and started it (`active`, with its address); one that is
        off is powered on."""
        read: dict[str, JSON] = {"droplet": droplet}

        def active() -> bool:
            read["droplet"] = self.api.droplet(droplet["id"])
            return read["droplet"]["status"] == "active"

        if droplet["status"] == "off":  # the class's droplet, powered off (by hand): on again
            self.echo(f"  powering droplet {droplet['id']} on")
            self.api.settle(
                f"powering on droplet {droplet['id']}",
                active,
                lambda: self.api.droplet_action(droplet["id"], "power_on"),
                timeout=CREATE_WAIT,
            )
        if droplet["status"] != "active" and not self.api.until(f"starting {droplet['id']}", active, CREATE_WAIT):
            raise CloudError(
                f"droplet {droplet['id']} was not started within {CREATE_WAIT / 60:.0f} minutes: run `classimage up` "
                "again (it finds the droplet), or see the control panel"
            )
        return read["droplet"]

    def take_over(
        self, droplet: JSON, found: Found, volume: JSON | None, outcome: Outcome
    ) -> tuple[JSON, float | None]:
        """The class moves to `droplet`. While another droplet still serves it (has the class's volume
        or address), the new one is first followed until it is ready but for the class's data; only
        then does the old one stop and let go of the volume, the volume is attached to the new one
        and the address pointed at it. (The class's address, and when students lost the class.)"""
        started = None
        attached = [i for i in (volume or {}).get("droplet_ids") or [] if i != droplet["id"]]
        holder = ((found.ip or {}).get("droplet") or {}).get("id")
        if attached or holder not in (None, droplet["id"]):
            self.ready_but_data(droplet)
            started = time.monotonic()
            if self.made is not None:
                outcome.prepared = started - self.made
        if volume is not None and droplet["id"] not in (volume.get("droplet_ids") or []):
            for old in attached:
                self.stop(old)
                self.detach(volume, old)
            self.attach(volume, droplet)
            outcome.changed.append(f"volume {volume['name']} moved to droplet {droplet['id']}")
        address = found.ip
        if address is None:
            address = self.reserve_ip(droplet)
        else:
            if holder != droplet["id"]:
                self.assign(address, droplet)
            if not found.ip_recorded:
                self.record(address)
        return address, started

    def ready_but_data(self, droplet: JSON) -> None:
        """Follow the new droplet at its own address until it waits for the class's data (or, with
        none to wait for, is ready); one that fails never served anyone: it is destroyed."""
        address = public_address(droplet) or ""
        self.echo(f"following droplet {droplet['id']} at its own address {address} while the class still runs:")
        status = follow(address, self.token, self.echo, self.timeout, until=lambda s: waiting_for_data(s) is not None)
        if status.get("state") == "failed":
            for line in failure_report(status):
                self.echo(line)
            self.echo(f"  destroying droplet {droplet['id']}: it never served the class, which still runs as it was")
            self.api.destroy_droplet(droplet["id"])
            raise CloudError(
                "provisioning of the new droplet failed, so the class was left as it was: fix the cause and run "
                "`classimage up` again"
            )
        if waiting_for_data(status):
            self.echo(f"  droplet {droplet['id']} is ready but for the class's data: {waiting_for_data(status)}")

    def stop(self, droplet_id: int) -> None:
        stop(self.api, droplet_id, self.echo)

    def detach(self, volume: JSON, droplet_id: int) -> None:
        self.echo(f"  detaching volume {volume['name']} from droplet {droplet_id}")

        def post() -> JSON | None:
            try:
                return self.api.volume_action(
                    volume["id"], {"type": "detach", "droplet_id": droplet_id, "region": self.spec.droplet.region}
                )
            except NotFound:  # a droplet being destroyed lets go of its volumes when it is gone
                return None

        self.api.settle(
            f"detaching {volume['name']}", lambda: droplet_id not in self.api.volume(volume["id"])["droplet_ids"], post
        )

    def attach(self, volume: JSON, droplet: JSON) -> None:
        self.echo(f"  attaching volume {volume['name']} to droplet {droplet['id']}")
        self.api.settle(
            f"attaching {volume['name']}",
            lambda: droplet["id"] in self.api.volume(volume["id"])["droplet_ids"],
            lambda: self.api.volume_action(
                volume["id"], {"type": "attach", "droplet_id": droplet["id"], "region": self.spec.droplet.region}
            ),
        )
        volume["droplet_ids"] = [droplet["id"]]

    def reserve_ip(self, droplet: JSON) -> JSON:
        """A reserved IP made for the droplet (so that, unrecorded, it is found by its holder) and
        recorded by a tag."""
        self.echo(f"  reserving an IP address for the class, on droplet {droplet['id']}")

        def held() -> JSON | None:
            return next(
                (a for a in self.api.reserved_ips() if (a.get("droplet") or {}).get("id") == droplet["id"]), None
            )

        address = self.api.create(
            "reserving an IP address",
            lambda: self.api.create_reserved_ip({"droplet_id": droplet["id"]}),
            held,
        )
        self.record(address)
        if not self.api.until(
            f"assigning {address['ip']}",
            lambda: ((self.api.reserved_ip(address["ip"]).get("droplet") or {}).get("id")) == droplet["id"],
            CREATE_WAIT,
        ):
            raise CloudError(f"{address['ip']} was not assigned to droplet {droplet['id']}: run `classimage up` again")
        return address

    def record(self, address: JSON) -> None:
        name = self.names.ip_tag(address["ip"])
        self.api.create(
            f"recording {address['ip']}",
            lambda: self.api.create_tag(name),
            lambda: next((t for t in self.api.tags() if t["name"] == name), None),
        )

    def assign(self, address: JSON, droplet: JSON) -> None:
        self.echo(f"  pointing {address['ip']} at droplet {droplet['id']}")
        self.api.settle(
            f"assigning {address['ip']}",
            lambda: ((self.api.reserved_ip(address["ip"]).get("droplet") or {}).get("id")) == droplet["id"],
            lambda: self.api.reserved_ip_action(address["ip"], {"type": "assign", "droplet_id": droplet["id"]}),
        )
        address["droplet"] = {"id": droplet["id"]}

    def retire(self, old: JSON) -> None:
        """A droplet the class no longer runs on goes; one still running is shut down first (a volume
        it has gets a last consistent copy of the hub's database)."""
        if old.get("status") == "active" and old.get("volume_ids"):
            self.stop(old["id"])
        self.echo(f"  destroying droplet {old['id']}")
        self.api.destroy_droplet(old["id"])

    def create_firewall(self) -> None:
        self.echo(f"  creating firewall {self.names.firewall}")
        rules = [
            {"protocol": "tcp", "ports": port, "sources": {"addresses": ["0.0.0.0/0", "::/0"]}}
            for port in FIREWALL_PORTS
        ]
        # ICMP takes no ports: DigitalOcean refuses "0" ("You must specify a positive value for
        # ports", doctl #247, #278); Terraform's provider sends ICMP rules without them.
        outbound: list[JSON] = [
            {"protocol": protocol, "ports": "all", "destinations": {"addresses": ["0.0.0.0/0", "::/0"]}}
            for protocol in ("tcp", "udp")
        ]
        outbound.append({"protocol": "icmp", "destinations": {"addresses": ["0.0.0.0/0", "::/0"]}})
        body = {
            "name": self.names.firewall,
            "tags": [self.names.tag],
            "inbound_rules": rules,
            "outbound_rules": outbound,
        }
        self.api.create(
            f"creating firewall {self.names.firewall}",
            lambda: self.api.create_firewall(body),
            lambda: next((f for f in self.api.firewalls() if f["name"] == self.names.firewall), None),
        )

    def point_dns(self, dns: tuple[str, str], address: str, records: list[JSON] | None) -> None:
        domain, name = dns
        self.echo(f"  DNS: {self.spec.https.hostname} -> {address}")
        existing = (records or [])[:1]
        body = {"type": "A", "name": name, "data": address, "ttl": 300}
        if existing:
            self.api.update_record(domain, existing[0]["id"], body)
        else:
            self.api.create(
                f"creating a DNS record in {domain}",
                lambda: self.api.create_record(domain, body),
                lambda: next(
                    (r for r in self.api.records(domain, self.spec.https.hostname or "") if r["data"] == address), None
                ),
            )

    def wait_for_dns(self, address: str, timeout: float = 600) -> None:
        hostname = self.spec.https.hostname
        deadline = time.monotonic() + timeout
        while True:
            if hostname is None or resolves_to(hostname, address):
                return
            if time.monotonic() > deadline:
                self.echo(f"  {hostname} does not resolve to {address} yet: HTTPS starts once it does")
                return
            time.sleep(10)
