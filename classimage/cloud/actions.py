"""The mechanics of an `up`: each request that makes or moves one of the class's resources at
DigitalOcean, waited out until the cloud shows it done (deploy.py decides which run, and in what
order). Every one reads the state it is for before it acts, and every create looks for what it would
make before making it again, so any of them stopped half way is finished by the next `up`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from classimage.cloud.digitalocean import JSON, CloudError, DigitalOcean, NotFound, TimedOut
from classimage.cloud.found import Found, Names, region_of
from classimage.cloud.progress import resolves_to
from classimage.cloud.wanted import FIREWALL_PORTS

# "Attempt a shutdown, with a reasonable timeout, followed by a power_off action" (DigitalOcean's API
# description, droplet actions). systemd gives each unit 90 s to stop by default: a droplet not off
# after 120 s is stuck, and is powered off.
SHUTDOWN_WAIT = 120.0
POWER_OFF_WAIT = 120.0
# A new droplet goes from `new` to `active` when DigitalOcean has created and started it.
CREATE_WAIT = 600.0
# How long an address DigitalOcean is assigning (locked) is waited for, to tell whether it is the class's.
ADDRESS_WAIT = 120.0


@dataclass(frozen=True)
class Account:
    """Where the actions happen: the API, what the course calls its resources, the class's region,
    and who hears what is done."""

    api: DigitalOcean
    names: Names
    region: str
    echo: Callable[[str], None]


def address_in_flight(account: Account, found: Found) -> JSON | None:
    """The class's address, reserved for one of its droplets by an `up` stopped before it recorded
    it: while DigitalOcean assigns an address it is `locked`, with no droplet yet. Such an address
    in the region is waited for, and is the class's if a droplet of the course then holds it."""
    api, region, ids = account.api, account.region, {d["id"] for d in found.droplets}
    read: dict[str, list[JSON]] = {}

    def settled() -> bool:
        read["ips"] = api.reserved_ips()
        return not any(a.get("locked") and region_of(a) == region and not a.get("droplet") for a in read["ips"])

    if not settled():
        account.echo("  an address is being assigned in the region: waiting to see whether it is the class's")
        api.until("an address being assigned", settled, ADDRESS_WAIT)
    return next((a for a in read["ips"] if ((a.get("droplet") or {}).get("id")) in ids), None)


# -- the volume ------------------------------------------------------------------------------------


def create_volume(
    account: Account, course: str, name: str, size: int, backup: JSON | None = None, tags: list[str] | None = None
) -> JSON:
    """The class's data volume `name` (`course`: the course's name, which describes it), empty or
    from a backup."""
    api, region = account.api, account.region
    source = f" from backup {backup['name']}" if backup else ""
    account.echo(f"  creating the class's data volume {name} ({size} GiB{source})")
    body = {
        "name": name,
        "region": region,
        "size_gigabytes": size,
        "description": f"classimage: the data of {course}",
        "tags": ["classimage", account.names.tag, *(tags or [])],
    }
    if backup is not None:
        body["snapshot_id"] = backup["id"]
    return api.create(
        f"creating volume {name}",
        lambda: api.create_volume(body),
        lambda: next((v for v in api.volumes(region) if v["name"] == name), None),
    )


def resize(account: Account, volume: JSON, size: int) -> JSON:
    """The volume grown to `size` GiB, as DigitalOcean now shows it."""
    api = account.api
    account.echo(f"  growing volume {volume['name']} to {size} GiB")
    read: dict[str, JSON] = {}

    def grown() -> bool:
        read["volume"] = api.volume(volume["id"])
        return read["volume"]["size_gigabytes"] >= size

    api.settle(
        f"resizing {volume['name']}",
        grown,
        lambda: api.volume_action(volume["id"], {"type": "resize", "size_gigabytes": size, "region": account.region}),
    )
    return read["volume"]


def detach(account: Account, volume: JSON, droplet_id: int) -> None:
    api = account.api
    account.echo(f"  detaching volume {volume['name']} from droplet {droplet_id}")

    def post() -> JSON | None:
        try:
            return api.volume_action(
                volume["id"], {"type": "detach", "droplet_id": droplet_id, "region": account.region}
            )
        except NotFound:  # a droplet being destroyed lets go of its volumes when it is gone
            return None

    api.settle(f"detaching {volume['name']}", lambda: droplet_id not in api.volume(volume["id"])["droplet_ids"], post)


def attach(account: Account, volume: JSON, droplet: JSON) -> None:
    api = account.api
    account.echo(f"  attaching volume {volume['name']} to droplet {droplet['id']}")
    api.settle(
        f"attaching {volume['name']}",
        lambda: droplet["id"] in api.volume(volume["id"])["droplet_ids"],
        lambda: api.volume_action(
            volume["id"], {"type": "attach", "droplet_id": droplet["id"], "region": account.region}
        ),
    )
    volume["droplet_ids"] = [droplet["id"]]


# -- droplets --------------------------------------------------------------------------------------


def create_droplet(account: Account, body: JSON, deploy: str) -> JSON:
    """The droplet `body` describes, made once: found again by its deploy tag."""
    api = account.api
    return api.create(
        f"creating droplet {body['name']}",
        lambda: api.create_droplet(body),
        lambda: next((d for d in api.droplets(deploy) if d.get("status") != "archive"), None),
    )


def started(account: Account, droplet: JSON) -> JSON:
    """The droplet once DigitalOcean has made and started it (`active`, with its address); one that is
    off is powered on."""
    api = account.api
    read: dict[str, JSON] = {"droplet": droplet}

    def active() -> bool:
        read["droplet"] = api.droplet(droplet["id"])
        return read["droplet"]["status"] == "active"

    if droplet["status"] == "off":  # the class's droplet, powered off (by hand): on again
        account.echo(f"  powering droplet {droplet['id']} on")
        api.settle(
            f"powering on droplet {droplet['id']}",
            active,
            lambda: api.droplet_action(droplet["id"], "power_on"),
            timeout=CREATE_WAIT,
        )
    if droplet["status"] != "active" and not api.until(f"starting {droplet['id']}", active, CREATE_WAIT):
        raise CloudError(
            f"droplet {droplet['id']} was not started within {CREATE_WAIT / 60:.0f} minutes: run `classimage up` "
            "again (it finds the droplet), or see the control panel"
        )
    return read["droplet"]


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


def retire(account: Account, old: JSON) -> None:
    """A droplet the class no longer runs on goes; one still running is shut down first (a volume
    it has gets a last consistent copy of the hub's database)."""
    if old.get("status") == "active" and old.get("volume_ids"):
        stop(account.api, old["id"], account.echo)
    account.echo(f"  destroying droplet {old['id']}")
    account.api.destroy_droplet(old["id"])


# -- the address -----------------------------------------------------------------------------------


def reserve_ip(account: Account, droplet: JSON) -> JSON:
    """A reserved IP made for the droplet (so that, unrecorded, it is found by its holder) and
    recorded by a tag."""
    api = account.api
    account.echo(f"  reserving an IP address for the class, on droplet {droplet['id']}")

    def held() -> JSON | None:
        return next((a for a in api.reserved_ips() if (a.get("droplet") or {}).get("id") == droplet["id"]), None)

    address = api.create(
        "reserving an IP address",
        lambda: api.create_reserved_ip({"droplet_id": droplet["id"]}),
        held,
    )
    record(account, address)
    if not api.until(
        f"assigning {address['ip']}",
        lambda: ((api.reserved_ip(address["ip"]).get("droplet") or {}).get("id")) == droplet["id"],
        CREATE_WAIT,
    ):
        raise CloudError(f"{address['ip']} was not assigned to droplet {droplet['id']}: run `classimage up` again")
    return address


def record(account: Account, address: JSON) -> None:
    """The address recorded as the class's, by a tag (reserved IPs take none)."""
    api, name = account.api, account.names.ip_tag(address["ip"])
    api.create(
        f"recording {address['ip']}",
        lambda: api.create_tag(name),
        lambda: next((t for t in api.tags() if t["name"] == name), None),
    )


def assign(account: Account, address: JSON, droplet: JSON) -> None:
    api = account.api
    account.echo(f"  pointing {address['ip']} at droplet {droplet['id']}")
    api.settle(
        f"assigning {address['ip']}",
        lambda: ((api.reserved_ip(address["ip"]).get("droplet") or {}).get("id")) == droplet["id"],
        lambda: api.reserved_ip_action(address["ip"], {"type": "assign", "droplet_id": droplet["id"]}),
    )
    address["droplet"] = {"id": droplet["id"]}


# -- the firewall and DNS --------------------------------------------------------------------------


def create_firewall(account: Account) -> None:
    api, name = account.api, account.names.firewall
    account.echo(f"  creating firewall {name}")
    rules = [
        {"protocol": "tcp", "ports": port, "sources": {"addresses": ["0.0.0.0/0", "::/0"]}} for port in FIREWALL_PORTS
    ]
    # ICMP takes no ports: DigitalOcean refuses "0" ("You must specify a positive value for
    # ports", doctl #247, #278); Terraform's provider sends ICMP rules without them.
    outbound: list[JSON] = [
        {"protocol": protocol, "ports": "all", "destinations": {"addresses": ["0.0.0.0/0", "::/0"]}}
        for protocol in ("tcp", "udp")
    ]
    outbound.append({"protocol": "icmp", "destinations": {"addresses": ["0.0.0.0/0", "::/0"]}})
    body = {"name": name, "tags": [account.names.tag], "inbound_rules": rules, "outbound_rules": outbound}
    api.create(
        f"creating firewall {name}",
        lambda: api.create_firewall(body),
        lambda: next((f for f in api.firewalls() if f["name"] == name), None),
    )


def point_dns(account: Account, hostname: str, dns: tuple[str, str], address: str, records: list[JSON] | None) -> None:
    """`hostname`'s A record (`dns`: its domain and record name; `records`: those it has) at `address`."""
    api, (domain, name) = account.api, dns
    account.echo(f"  DNS: {hostname} -> {address}")
    existing = (records or [])[:1]
    body = {"type": "A", "name": name, "data": address, "ttl": 300}
    if existing:
        api.update_record(domain, existing[0]["id"], body)
    else:
        api.create(
            f"creating a DNS record in {domain}",
            lambda: api.create_record(domain, body),
            lambda: next((r for r in api.records(domain, hostname) if r["data"] == address), None),
        )


def wait_for_dns(echo: Callable[[str], None], hostname: str | None, address: str, timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if hostname is None or resolves_to(hostname, address):
            return
        if time.monotonic() > deadline:
            echo(f"  {hostname} does not resolve to {address} yet: HTTPS starts once it does")
            return
        time.sleep(10)
