"""The class's server on DigitalOcean: `up` makes what is missing (the class's data volume, the
droplet, a reserved IP, a cloud firewall, a DNS record), replaces a droplet whose software or
settings changed, and follows provisioning to the end; `restore` is an `up` onto a new volume made
from a backup. `Up.run` is the order of its steps; what it wants and must change is wanted.py's, the
requests that make and move things actions.py's. (`status`, `down` and `backup`, which keep a class
rather than make one, are in upkeep.py.)

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

from classimage.cloud.actions import (
    Account,
    address_in_flight,
    assign,
    attach,
    create_droplet,
    create_firewall,
    create_volume,
    detach,
    point_dns,
    record,
    reserve_ip,
    resize,
    retire,
    started,
    stop,
    wait_for_dns,
)
from classimage.cloud.digitalocean import JSON, CloudError, DigitalOcean
from classimage.cloud.found import (
    Found,
    Names,
    discover,
    public_address,
    region_refusal,
    stamp,
    status_token,
)
from classimage.cloud.progress import failure_report, follow, hub_health, read_status, waiting_for_data
from classimage.cloud.wanted import Change, Deployment, changes, choose_snapshot, deployment, serving, snapshot_problem
from classimage.pipeline import plan, pricing
from classimage.pipeline.spec import Loaded


@dataclass
class Outcome:
    address: str | None = None
    changed: list[str] = field(default_factory=list)
    downtime: float | None = None  # seconds students could not reach the class
    prepared: float | None = None  # seconds a new droplet took to be ready but for its data, the class still up
    status: JSON | None = None


class Up:
    """One `classimage up` (or the `restore` that moves the class onto a backup's copy). `run` is its
    steps in order; each is a method below it, in the same order, taking what it needs and returning
    what it gives. The requests themselves are actions.py's."""

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
        self.account = Account(api, self.names, self.spec.droplet.region, echo)
        self.token = status_token(api.token, self.spec.course.slug, loaded.digest)
        self.made: float | None = None  # when this run made the new droplet

    def run(self, restore: JSON | None = None, again: bool = False) -> Outcome:
        """Make the class as the spec wants it. `restore`: a backup (a snapshot of the class's volume)
        to bring back on a new volume, which the new droplet takes instead of the current one (`again`:
        even when the class runs on a copy of it already)."""
        # What the account allows and what the course has there (a restore: its backup's copy too).
        size = self.check_account()
        found = self.find()
        previous = found.volume
        if restore is not None:
            found.volume = self.restored_volume(found, restore, again)
        # What the spec wants, and what must change to get there.
        wanted = self.wanted(found, size)
        dns = self.dns()
        records = self.records(dns)
        todo = self.todo(found, wanted, dns, records)
        outcome = Outcome(address=(found.ip or {}).get("ip"))
        if not todo:
            return self.unchanged(outcome, dns, restore, previous, found)
        self.say("; ".join(c.why for c in todo))
        if self.dry_run:
            return outcome
        # Make what is missing; the class moves to the new droplet when it is ready but for its data.
        kinds = {c.what for c in todo}
        volume = self.volume(found, grow="resize" in kinds)
        droplet, others = self.droplet(found, wanted, volume, outcome)
        address, down_since = self.take_over(droplet, found, volume, outcome)
        outcome.address = address["ip"]
        # Around it: the firewall, the hostname.
        if "firewall" in kinds:
            create_firewall(self.account)
        self.hostname(dns, "dns" in kinds, address["ip"], records)
        # Whatever changed, the class is ready before `up` says so (an earlier run may have stopped early);
        # only then do the droplets it ran on before go.
        outcome.status = self.ready(address["ip"], others)
        if down_since is not None:
            outcome.downtime = time.monotonic() - down_since
        for old in others:
            retire(self.account, old)
        self.finish_restore(restore, previous, found.volume)
        self.reachable(address["ip"])
        return outcome

    # -- the steps, in the order `run` takes them --------------------------------------------------

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

    def find(self) -> Found:
        """What the course has in the account, its address included when an `up` stopped before it
        recorded it; refused when the class lives in another region than the spec's."""
        found = discover(self.api, self.names, self.spec.droplet.region)
        refusal = region_refusal(found, self.spec.droplet.region)
        if refusal:
            raise CloudError(refusal)
        if found.ip is None and found.droplets:
            found.ip = address_in_flight(self.account, found)
            found.ip_recorded = found.ip is None
        return found

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
        volume = create_volume(self.account, self.spec.course.name, name, size, backup, tags=[tag])
        found.volumes.append(volume)
        return volume

    def wanted(self, found: Found, size: JSON) -> Deployment:
        """The droplet the spec wants, rendered for the class's volume (`size`: the droplet size's)."""
        keeps_data = self.spec.storage.type != "none"
        files = self.render((found.volume or {}).get("name", self.names.volume) if keeps_data else None)
        return deployment(self.loaded, files, self.snapshot(found, size))

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

    def records(self, dns: tuple[str, str] | None) -> list[JSON] | None:
        """The hostname's records in its domain at DigitalOcean (None: DigitalOcean has not its DNS)."""
        hostname = self.spec.https.hostname
        return self.api.records(dns[0], hostname) if dns and hostname else None

    def todo(
        self, found: Found, wanted: Deployment, dns: tuple[str, str] | None, records: list[JSON] | None
    ) -> list[Change]:
        """What this `up` changes (`changes`); a volume larger than the spec asks is kept, and said so."""
        storage = self.spec.storage
        todo = changes(
            found, wanted, self.names, dns, records, storage.size_gigabytes if storage.type != "none" else None
        )
        if found.volume is not None and found.volume["size_gigabytes"] > storage.size_gigabytes:
            self.echo(
                f"  note: volume {found.volume['name']} has {found.volume['size_gigabytes']} GiB, more than "
                f"storage.size_gigabytes ({storage.size_gigabytes}); volumes cannot shrink, so it is kept"
            )
        return todo

    def unchanged(
        self, outcome: Outcome, dns: tuple[str, str] | None, restore: JSON | None, previous: JSON | None, found: Found
    ) -> Outcome:
        """Nothing to change: what the class's status service says."""
        self.echo(
            f"{self.names.droplet}: nothing to change (droplet, volume, address, firewall"
            f"{', DNS' if dns else ''} as the spec wants)"
        )
        if not self.dry_run:
            self.finish_restore(restore, previous, found.volume)
        outcome.status = (
            read_status(outcome.address, self.token, hostname=self.spec.https.hostname) if outcome.address else None
        )
        return outcome

    def say(self, message: str) -> None:
        self.echo(f"{self.names.droplet}: " + ("would " if self.dry_run else "will ") + message)

    def volume(self, found: Found, grow: bool) -> JSON | None:
        """The class's volume, made if missing and grown to the spec's size (None: the class keeps none)."""
        storage = self.spec.storage
        if storage.type == "none":
            return None
        volume = found.volume or create_volume(
            self.account, self.spec.course.name, self.names.volume, storage.size_gigabytes
        )
        return resize(self.account, volume, storage.size_gigabytes) if grow else volume

    def droplet(
        self, found: Found, wanted: Deployment, volume: JSON | None, outcome: Outcome
    ) -> tuple[JSON, list[JSON]]:
        """The droplet made as `wanted` is, started (made if there is none); and the course's others,
        which go once it serves the class."""
        current, others = serving(found, wanted, self.names)
        droplet = started(self.account, current[0]) if current else self.new_droplet(wanted, volume)
        outcome.changed.append(f"droplet {droplet['id']}" + ("" if current else " created"))
        return droplet, others + current[1:]

    def new_droplet(self, wanted: Deployment, volume: JSON | None) -> JSON:
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
        made = create_droplet(self.account, body, deploy)
        if free and volume is not None:
            volume["droplet_ids"] = [made["id"]]
        return started(self.account, made)

    def take_over(
        self, droplet: JSON, found: Found, volume: JSON | None, outcome: Outcome
    ) -> tuple[JSON, float | None]:
        """The class moves to `droplet`. While another droplet still serves it (has the class's volume
        or address), the new one is first followed until it is ready but for the class's data; only
        then does the old one stop and let go of the volume, the volume is attached to the new one
        and the address pointed at it. (The class's address, and when students lost the class.)"""
        down_since = None
        attached = [i for i in (volume or {}).get("droplet_ids") or [] if i != droplet["id"]]
        holder = ((found.ip or {}).get("droplet") or {}).get("id")
        if attached or holder not in (None, droplet["id"]):
            self.ready_but_data(droplet)
            down_since = time.monotonic()
            if self.made is not None:
                outcome.prepared = down_since - self.made
        if volume is not None and droplet["id"] not in (volume.get("droplet_ids") or []):
            for old in attached:
                stop(self.api, old, self.echo)
                detach(self.account, volume, old)
            attach(self.account, volume, droplet)
            outcome.changed.append(f"volume {volume['name']} moved to droplet {droplet['id']}")
        address = found.ip
        if address is None:
            address = reserve_ip(self.account, droplet)
        else:
            if holder != droplet["id"]:
                assign(self.account, address, droplet)
            if not found.ip_recorded:
                record(self.account, address)
        return address, down_since

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

    def hostname(self, dns: tuple[str, str] | None, point: bool, address: str, records: list[JSON] | None) -> None:
        """https.hostname pointed at the class's address: by its record at DigitalOcean (`point`: it does
        not yet), else by the instructor at their DNS host."""
        hostname = self.spec.https.hostname
        if point and dns is not None:
            point_dns(self.account, hostname or "", dns, address, records)
        if hostname and dns is None:
            self.echo(
                f"  DNS: create an A record {hostname} -> {address} at your DNS host; HTTPS starts once it resolves"
            )

    def ready(self, address: str, others: list[JSON]) -> JSON:
        """The class's status once provisioning is over; a failure keeps the droplets it ran on before."""
        self.echo(f"following the provisioning of {self.names.droplet} at {address}:")
        status = follow(address, self.token, self.echo, self.timeout, hostname=self.spec.https.hostname)
        if status["state"] == "failed":
            for line in failure_report(status):
                self.echo(line)
            kept = [d["id"] for d in others]
            raise CloudError(
                f"provisioning of {self.names.droplet} failed: fix the cause and run `classimage up` again (it "
                "finishes what is half done)"
                + (f"; the previous droplet {', '.join(map(str, kept))} is kept, powered off" if kept else "")
            )
        return status

    def finish_restore(self, restore: JSON | None, previous: JSON | None, current: JSON | None) -> None:
        """The instructor hears what the class's previous volume costs, kept."""
        if restore is not None and previous is not None and previous["id"] != (current or {}).get("id"):
            self.echo(
                f"  the class's previous volume {previous['name']} is kept, detached "
                f"(${previous['size_gigabytes'] * pricing.VOLUME_PER_GIB_MONTH:.2f} a month): delete it in the control "
                "panel once the restored class is as you want it"
            )

    def reachable(self, address: str) -> None:
        """With a hostname: once it resolves to the address (or a while has passed), how the hub answers there."""
        hostname = self.spec.https.hostname
        if hostname:
            wait_for_dns(self.echo, hostname, address)
            self.echo(f"  hub: {hub_health(address, hostname)}")
