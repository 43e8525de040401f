"""The class's server on DigitalOcean: `up` makes what is missing (a reserved IP, the class's data
volume, the droplet, a cloud firewall, a DNS record), replaces a droplet whose software or settings
changed, and follows provisioning to the end; `status` says what exists and what it costs; `down`
removes the droplet and keeps the class's data.

The cloud is the source of truth: every resource is found by the course's name or tag, so there is
no local state to lose, a second `up` with nothing changed changes nothing, and an `up` stopped
half way (Ctrl-C, a failure) is finished by the next one.
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
import json
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field

from classimage import artifacts, plan, provision
from classimage.digitalocean import JSON, CloudError, DigitalOcean
from classimage.spec import Loaded

# What DigitalOcean's price list says (the API gives prices for droplet sizes only).
VOLUME_PER_GIB_MONTH = 0.10
SNAPSHOT_PER_GIB_MONTH = 0.06
UNASSIGNED_IP_MONTH = 5.00
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
    def volume(self) -> str:
        return f"{self.slug}-data"

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


def status_token(api_token: str, slug: str, spec_digest: str) -> str:
    """The token whose holder may read log tails from a droplet's status service: derived from the
    DigitalOcean token, so whoever runs `up` (the token's holder) has it and nothing is stored."""
    return hmac.new(api_token.encode(), f"classimage status {slug} {spec_digest}".encode(), hashlib.sha256).hexdigest()


# -- what exists ----------------------------------------------------------------------------------

@dataclass
class Found:
    droplets: list[JSON]
    volume: JSON | None
    ip: JSON | None
    firewall: JSON | None
    snapshots: list[JSON]  # the course's droplet snapshots, newest first
    volume_snapshots: list[JSON] = field(default_factory=list)


def discover(api: DigitalOcean, names: Names, region: str) -> Found:
    droplets = api.droplets(names.tag)
    volumes = api.volumes(names.volume, region)
    addresses = {ip["ip"]: ip for ip in api.reserved_ips()}
    ip = None
    for tag in api.tags():
        if tag["name"].startswith(names.ip_prefix):
            address = tag["name"][len(names.ip_prefix):].replace("-", ".")
            ip = addresses.get(address) or ip
    if ip is None:  # a droplet of the course holds one: the record was lost, not the address
        ids = {d["id"] for d in droplets}
        ip = next((a for a in addresses.values() if (a.get("droplet") or {}).get("id") in ids), None)
    firewall = next((f for f in api.firewalls() if f["name"] == names.firewall), None)
    snapshots = sorted((s for s in api.droplet_snapshots() if s["name"].startswith(names.snapshot_prefix)),
                       key=lambda s: s["created_at"], reverse=True)
    volume = volumes[0] if volumes else None
    found = Found(droplets, volume, ip, firewall, snapshots)
    if volume is not None:
        found.volume_snapshots = api.volume_snapshots(volume["id"])
    return found


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
        return Deployment(int(snapshot["id"]), snapshot["name"], plan.BOOT, files[artifacts.USER_DATA[plan.BOOT]],
                          droplet.size, droplet.region, droplet.ssh_keys)
    return Deployment(droplet.image, None, plan.FULL, files[artifacts.ONE_PIECE], droplet.size, droplet.region,
                      droplet.ssh_keys)


@dataclass(frozen=True)
class Change:
    what: str  # volume, ip, droplet, replace, assign, firewall, dns
    why: str


def changes(found: Found, wanted: Deployment, names: Names, dns: tuple[str, str] | None,
            records: list[JSON] | None) -> list[Change]:
    """What `up` must do, in order, to get from what exists to what is wanted. Pure: tested as a table."""
    todo = []
    if found.volume is None:
        todo.append(Change("volume", f"create the class's data volume {names.volume}"))
    if found.ip is None:
        todo.append(Change("ip", "reserve an IP address for the class"))
    current = [d for d in found.droplets if deploy_tag(d, names) == names.deploy_prefix + wanted.digest]
    others = [d for d in found.droplets if d not in current]
    if not current:
        if others:
            old = others[0]
            todo.append(Change("replace", f"replace droplet {old['name']} ({old['id']}): "
                                          f"{'a newer snapshot' if wanted.snapshot else 'new settings or software'}"))
        else:
            todo.append(Change("droplet", f"create droplet {names.droplet} from "
                                          f"{wanted.snapshot or wanted.image}"))
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

def read_status(address: str, token: str, timeout: float = 5) -> JSON | None:
    """The droplet's provisioning status (with log tails: the token is ours), or None when nothing
    answers yet."""
    request = urllib.request.Request(f"http://{address}{provision.SERVICE_PATH}",
                                     headers={"Authorization": f"token {token}", "Accept": "application/json"})
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
            raise CloudError(f"the droplet was not ready within {timeout / 60:.0f} minutes: see `classimage status`, "
                             f"or `ssh root@{address} classimage-provision status`")
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
                seconds = f" in {step['seconds']:.0f} s" if step.get("seconds") is not None and state != "running" else ""
                echo(f"  [{_clock(elapsed)}] {step.get('title') or step['name']}: {state}{seconds}")
                seen[step["name"]] = state
        if status.get("state") in ("ready", "failed"):
            return status
        time.sleep(poll)


def _clock(seconds: float) -> str:
    return f"{int(seconds) // 60:02d}:{int(seconds) % 60:02d}"


def failure_report(status: JSON) -> list[str]:
    step = next((s for s in status["steps"] if s.get("state") == "failed"), {})
    lines = [f"provisioning failed at {step.get('title') or status.get('failed_step')} "
             f"(exit code {step.get('exit_code')}); the last lines of its output:"]
    lines += [f"    | {line}" for line in step.get("log_tail") or ["(not shown: the status service did not share them)"]]
    return lines


# -- up --------------------------------------------------------------------------------------------

@dataclass
class Outcome:
    address: str | None = None
    changed: list[str] = field(default_factory=list)
    downtime: float | None = None
    status: JSON | None = None


class Up:
    """One `classimage up`."""

    def __init__(self, loaded: Loaded, api: DigitalOcean, files: dict[str, str],
                 echo: Callable[[str], None], timeout: float = 3600, dry_run: bool = False):
        self.loaded, self.spec, self.api, self.files = loaded, loaded.spec, api, files
        self.echo, self.timeout, self.dry_run = echo, timeout, dry_run
        self.names = Names(self.spec.course.slug)
        self.token = status_token(api.token, self.spec.course.slug, loaded.digest)

    def check_account(self) -> None:
        """What would make creating anything fail, found before anything is made."""
        droplet = self.spec.droplet
        size = next((s for s in self.api.sizes() if s["slug"] == droplet.size), None)
        if size is None:
            raise CloudError(f"DigitalOcean has no droplet size {droplet.size!r}: set droplet.size in the spec "
                             "(e.g. s-2vcpu-4gb)")
        if droplet.region not in size["regions"]:
            raise CloudError(f"size {droplet.size} is not offered in {droplet.region}: choose another droplet.size, "
                             f"or one of the regions that offer it ({', '.join(sorted(size['regions']))})")
        if droplet.ssh_keys:
            keys = {str(k["id"]) for k in self.api.account_keys()} | {k["fingerprint"] for k in self.api.account_keys()}
            missing = [k for k in droplet.ssh_keys if k not in keys]
            if missing:
                raise CloudError(f"no SSH key {', '.join(missing)} in your DigitalOcean account: add it (control "
                                 "panel > Settings > Security) or remove it from droplet.ssh_keys")

    def dns(self) -> tuple[str, str] | None:
        """(domain, record name) when https.hostname is in a domain whose DNS is at DigitalOcean."""
        hostname = self.spec.https.hostname
        if not hostname:
            return None
        domains = sorted((d["name"] for d in self.api.domains() if hostname == d["name"]
                          or hostname.endswith("." + d["name"])), key=len, reverse=True)
        if not domains:
            return None
        domain = domains[0]
        return domain, hostname[: -len(domain) - 1] if hostname != domain else "@"

    def run(self) -> Outcome:
        spec, names = self.spec, self.names
        self.check_account()
        found = discover(self.api, names, spec.droplet.region)
        snapshot = choose_snapshot(found.snapshots, names, plan.bake_digest(spec))
        wanted = deployment(self.loaded, self.files, snapshot)
        dns = self.dns()
        records = self.api.records(dns[0], spec.https.hostname) if dns else None
        todo = changes(found, wanted, names, dns, records)
        outcome = Outcome(address=(found.ip or {}).get("ip"))
        if not todo:
            self.echo(f"{names.droplet}: nothing to change (droplet, volume, address, firewall"
                      f"{', DNS' if dns else ''} as the spec wants)")
            outcome.status = read_status(outcome.address, self.token) if outcome.address else None
            return outcome
        self.echo(f"{names.droplet}: " + ("would " if self.dry_run else "will ") + "; ".join(c.why for c in todo))
        if self.dry_run:
            return outcome
        volume = found.volume or self.create_volume()
        address = found.ip or self.reserve_ip()
        outcome.address = address["ip"]
        kinds = {c.what for c in todo}
        current = [d for d in found.droplets if deploy_tag(d, names) == names.deploy_prefix + wanted.digest]
        started = None
        if "replace" in kinds:
            old = next(d for d in found.droplets if d not in current)
            started = time.monotonic()
            self.retire(old, volume)
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
            if old["id"] != droplet["id"] and old in found.droplets and "replace" not in kinds:
                self.api.destroy_droplet(old["id"])
        if "firewall" in kinds:
            self.create_firewall()
        if "dns" in kinds:
            self.point_dns(dns, address["ip"], records)
        if self.spec.https.hostname and dns is None:
            self.echo(f"  DNS: create an A record {self.spec.https.hostname} -> {address['ip']} at your DNS host; "
                      "HTTPS starts once it resolves")
        if {"droplet", "replace", "assign"} & kinds:
            self.echo(f"following the provisioning of {names.droplet} at {address['ip']}:")
            status = follow(address["ip"], self.token, self.echo, self.timeout)
            outcome.status = status
            if status["state"] == "failed":
                for line in failure_report(status):
                    self.echo(line)
                raise CloudError(f"provisioning of {names.droplet} failed: fix the cause and run `classimage up` "
                                 "again (it finishes what is half done)")
            if started is not None:
                outcome.downtime = time.monotonic() - started
        if "replace" in kinds:
            old = next(d for d in found.droplets if d not in current)
            self.api.destroy_droplet(old["id"])
        if self.spec.https.hostname:
            self.wait_for_dns(address["ip"])
        return outcome

    def create_volume(self) -> JSON:
        self.echo(f"  creating the class's data volume {self.names.volume} ({self.spec.storage.size_gigabytes} GiB)")
        return self.api.create_volume({"name": self.names.volume, "region": self.spec.droplet.region,
                                       "size_gigabytes": self.spec.storage.size_gigabytes,
                                       "description": f"classimage: the data of {self.spec.course.name}",
                                       "tags": ["classimage", self.names.tag]})

    def reserve_ip(self) -> JSON:
        self.echo("  reserving an IP address for the class")
        address = self.api.create_reserved_ip(self.spec.droplet.region)
        self.api.create_tag(self.names.ip_prefix + address["ip"].replace(".", "-"))
        return address

    def create_droplet(self, wanted: Deployment, volume: JSON) -> JSON:
        self.echo(f"  creating droplet {self.names.droplet} ({wanted.size}, {wanted.region}, "
                  f"{wanted.snapshot or wanted.image})")
        body = {"name": self.names.droplet, "region": wanted.region, "size": wanted.size, "image": wanted.image,
                "ssh_keys": list(wanted.ssh_keys), "user_data": wanted.user_data, "monitoring": True, "ipv6": False,
                "volumes": [volume["id"]], "tags": ["classimage", self.names.tag,
                                                    self.names.deploy_prefix + wanted.digest]}
        droplet, action = self.api.create_droplet(body)
        if action is not None:
            self.api.wait(action, f"creating droplet {self.names.droplet}")
        return self.api.droplet(droplet["id"])

    def assign(self, address: JSON, droplet: JSON) -> None:
        self.echo(f"  pointing {address['ip']} at droplet {droplet['id']}")
        action = self.api.reserved_ip_action(address["ip"], {"type": "assign", "droplet_id": droplet["id"]})
        self.api.wait(action, f"assigning {address['ip']}")

    def retire(self, old: JSON, volume: JSON) -> None:
        """The old droplet stops (writing a consistent copy of the hub's database on its way down)
        and lets go of the class's volume."""
        self.echo(f"  stopping droplet {old['id']} (its class data is written out as it shuts down)")
        self.api.wait(self.api.droplet_action(old["id"], "shutdown"), f"shutting down droplet {old['id']}", timeout=300)
        if old["id"] in (volume.get("droplet_ids") or []):
            self.api.wait(self.api.volume_action(volume["id"], {"type": "detach", "droplet_id": old["id"],
                                                                "region": self.spec.droplet.region}),
                          f"detaching {self.names.volume}")

    def create_firewall(self) -> None:
        self.echo(f"  creating firewall {self.names.firewall}")
        rules = [{"protocol": "tcp", "ports": port, "sources": {"addresses": ["0.0.0.0/0", "::/0"]}}
                 for port in FIREWALL_PORTS]
        outbound = [{"protocol": protocol, "ports": "0" if protocol == "icmp" else "all",
                     "destinations": {"addresses": ["0.0.0.0/0", "::/0"]}} for protocol in ("tcp", "udp", "icmp")]
        self.api.create_firewall({"name": self.names.firewall, "tags": [self.names.tag], "inbound_rules": rules,
                                  "outbound_rules": outbound})

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


# -- status and down -------------------------------------------------------------------------------

def age(created: str) -> str:
    then = datetime.datetime.strptime(created, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.timezone.utc)
    seconds = (datetime.datetime.now(datetime.timezone.utc) - then).total_seconds()
    for unit, length in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= length:
            return f"{seconds / length:.0f}{unit}"
    return f"{seconds:.0f}s"


def monthly(found: Found, sizes: list[JSON]) -> tuple[float, list[str]]:
    """What the course's resources cost a month, and the lines that say so."""
    prices = {s["slug"]: s["price_monthly"] for s in sizes}
    lines, total = [], 0.0
    for droplet in found.droplets:
        price = prices.get(droplet["size_slug"], droplet["size"]["price_monthly"])
        total += price
        lines.append(f"  droplet {droplet['size_slug']}: ${price:.2f} (DigitalOcean's API)")
    if found.volume is not None:
        price = found.volume["size_gigabytes"] * VOLUME_PER_GIB_MONTH
        total += price
        lines.append(f"  volume {found.volume['size_gigabytes']} GiB: ${price:.2f} (${VOLUME_PER_GIB_MONTH:.2f}/GiB)")
    stored = sum(s["size_gigabytes"] for s in found.snapshots + found.volume_snapshots)
    if stored:
        price = stored * SNAPSHOT_PER_GIB_MONTH
        total += price
        lines.append(f"  snapshots {stored:.1f} GiB: ${price:.2f} (${SNAPSHOT_PER_GIB_MONTH:.2f}/GiB)")
    if found.ip is not None and not found.ip.get("droplet"):
        total += UNASSIGNED_IP_MONTH
        lines.append(f"  reserved IP, unassigned: ${UNASSIGNED_IP_MONTH:.2f} (free while assigned)")
    return total, lines


def hub_health(address: str) -> str:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(f"http://{address}/hub/health", timeout=5) as response:
            return "answers" if response.status == 200 else f"answers {response.status}"
    except urllib.error.HTTPError as error:
        return f"answers {error.code}"
    except OSError:
        return "does not answer"


def status(loaded: Loaded, api: DigitalOcean, echo: Callable[[str], None]) -> Found:
    spec, names = loaded.spec, Names(loaded.spec.course.slug)
    found = discover(api, names, spec.droplet.region)
    token = status_token(api.token, spec.course.slug, loaded.digest)
    echo(f"{spec.course.name} ({spec.course.slug}) at DigitalOcean:")
    if not found.droplets:
        echo("  droplet: none (`classimage up` makes one)")
    for droplet in found.droplets:
        echo(f"  droplet {droplet['name']} ({droplet['id']}): {droplet['status']}, {droplet['size_slug']} in "
             f"{droplet['region']['slug']}, {age(droplet['created_at'])} old, at {public_address(droplet)}")
    if found.ip is not None:
        holder = (found.ip.get("droplet") or {}).get("id")
        echo(f"  address {found.ip['ip']}: " + (f"on droplet {holder}" if holder else "not assigned to a droplet"))
    if found.volume is not None:
        attached = found.volume["droplet_ids"]
        echo(f"  volume {found.volume['name']}: {found.volume['size_gigabytes']} GiB, {age(found.volume['created_at'])}"
             f" old, " + (f"attached to {attached[0]}" if attached else "not attached"))
    for snapshot in found.snapshots:
        echo(f"  snapshot {snapshot['name']}: {snapshot['size_gigabytes']} GiB, {age(snapshot['created_at'])} old")
    for snapshot in found.volume_snapshots:
        echo(f"  backup {snapshot['name']} ({snapshot['id']}): {snapshot['size_gigabytes']} GiB, "
             f"{age(snapshot['created_at'])} old")
    address = (found.ip or {}).get("ip")
    if address and found.droplets:
        provisioning = read_status(address, token)
        state = provisioning.get("state") if provisioning else "not answering"
        echo(f"  provisioning: {state}" + (f" (failed at {provisioning.get('failed_step')})" if state == "failed" else ""))
        echo(f"  hub: {hub_health(address)} at http://{address}/hub/health")
    total, lines = monthly(found, api.sizes())
    echo(f"  monthly cost: ${total:.2f}")
    for line in lines:
        echo(line)
    return found


def down(loaded: Loaded, api: DigitalOcean, echo: Callable[[str], None], delete_data: bool) -> Found:
    spec, names = loaded.spec, Names(loaded.spec.course.slug)
    found = discover(api, names, spec.droplet.region)
    for droplet in found.droplets:
        echo(f"destroying droplet {droplet['name']} ({droplet['id']})")
        api.destroy_droplet(droplet["id"])
    if found.firewall is not None:
        echo(f"deleting firewall {names.firewall}")
        api.delete_firewall(found.firewall["id"])
    if delete_data:
        if found.volume is not None:
            for snapshot in found.volume_snapshots:
                echo(f"deleting backup {snapshot['name']}")
                api.delete_snapshot(snapshot["id"])
            echo(f"deleting volume {names.volume} (the class's data)")
            _until_detached(api, found.volume)
            api.delete_volume(found.volume["id"])
        if found.ip is not None:
            echo(f"releasing {found.ip['ip']}")
            api.delete_reserved_ip(found.ip["ip"])
        for tag in api.tags():
            if tag["name"].startswith(names.ip_prefix):
                api.delete_tag(tag["name"])
    left = discover(api, names, spec.droplet.region)
    left.droplets = []  # destroyed (DigitalOcean may list them for a moment longer)
    total, lines = monthly(left, [])
    kept = ([f"volume {left.volume['name']}"] if left.volume else []) + ([f"address {left.ip['ip']}"] if left.ip else [])
    echo(("left: " + ", ".join(kept) + f", costing ${total:.2f} a month") if kept else "nothing left")
    for line in lines:
        echo(line)
    return left


def _until_detached(api: DigitalOcean, volume: JSON, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while api.volume(volume["id"])["droplet_ids"]:
        if time.monotonic() > deadline:
            raise CloudError(f"volume {volume['name']} is still attached: run `classimage down` again in a moment")
        time.sleep(2)

