"""What a class costs a month at DigitalOcean: what a spec will make (`render`, `up`) and what exists
(`status`, `down`). Droplet sizes are priced by DigitalOcean's API when the caller has its list
(`GET /v2/sizes`, which needs a token), else by the table below; volumes, snapshots and addresses,
which the API does not price, at DigitalOcean's documented rates. Plain data in, lines of text out:
no client, no network, so validating and rendering stay offline.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

# DigitalOcean's documented list prices in US dollars, read on this date from
#   droplets:     https://www.digitalocean.com/pricing/droplets (Basic, Regular: shared CPU, SSD)
#   volumes:      https://docs.digitalocean.com/products/volumes/details/pricing/
#   snapshots:    https://docs.digitalocean.com/products/snapshots/details/pricing/ (volume and droplet
#                 snapshots alike, by the data they hold)
#   reserved IPs: https://docs.digitalocean.com/products/networking/reserved-ips/details/pricing/ (free
#                 while assigned to a droplet; unassigned ones "accumulate charges", doctl's words)
# The API description (shared/vendor's openapi, sizes/responses/all_sizes.yml) shows the size fields
# used here (slug, memory in MiB, vcpus, disk in GiB, price_monthly) with one example size only, at an
# older price, so the table comes from the price list.
LIST_PRICES = "DigitalOcean's list prices of 2026-11-27"
VOLUME_PER_GIB_MONTH = 0.10
SNAPSHOT_PER_GIB_MONTH = 0.06
UNASSIGNED_IP_MONTH = 5.00


@dataclass(frozen=True)
class Size:
    slug: str
    vcpus: int
    memory_mib: int
    disk_gib: int | None
    monthly: float | None  # None: not in the table, and no API answer to price it


# slug: (vcpus, memory MiB, disk GiB, price a month). Basic droplets, Regular: classimage's default
# family; a class needing more is better served by the z2jh target (README).
_BASIC = {
    "s-1vcpu-512mb-10gb": (1, 512, 10, 4.0),
    "s-1vcpu-1gb": (1, 1024, 25, 6.0),
    "s-1vcpu-2gb": (1, 2048, 50, 12.0),
    "s-2vcpu-2gb": (2, 2048, 60, 18.0),
    "s-2vcpu-4gb": (2, 4096, 80, 24.0),
    "s-4vcpu-8gb": (4, 8192, 160, 48.0),
    "s-8vcpu-16gb": (8, 16384, 320, 96.0),
}
SIZES = {slug: Size(slug, *figures) for slug, figures in _BASIC.items()}
# Most slugs say their vCPUs and memory (s-4vcpu-8gb-amd, g-2vcpu-8gb, m-2vcpu-16gb): enough to size
# a class on a droplet the table does not price.
_NAMED = re.compile(r"(?:^|-)(\d+)vcpu-(\d+)(gb|mb)(?:-|$)")


def size(slug: str, api_sizes: list[dict[str, Any]] | None = None) -> Size | None:
    """What DigitalOcean's API says of `slug` (when given its list), else the table, else what the
    slug names (no price); None when nothing is known."""
    for found in api_sizes or []:
        if found.get("slug") == slug:
            return Size(slug, found["vcpus"], found["memory"], found.get("disk"), found.get("price_monthly"))
    if slug in SIZES:
        return SIZES[slug]
    named = _NAMED.search(slug)
    if named:
        vcpus, amount, unit = int(named.group(1)), int(named.group(2)), named.group(3)
        return Size(slug, vcpus, amount * 1024 if unit == "gb" else amount, None, None)
    return None


@dataclass(frozen=True)
class Item:
    what: str
    monthly: float | None  # None: unknown
    most: float | None = None  # when it depends on use: the most it can come to (backups)
    note: str = ""


def money(amount: float | None) -> str:
    return "unknown" if amount is None else f"${amount:,.2f}"


def plan(
    droplet_size: str,
    storage_type: str,
    volume_gib: int,
    keep_backups: int,
    api_sizes: list[dict[str, Any]] | None = None,
) -> list[Item]:
    """What `classimage up` makes for a spec, a month: the droplet, and with a DigitalOcean volume
    (storage auto or volume) the volume, its backups (`classimage backup` keeps the newest
    keep_backups) and the reserved IP. (`render`'s pasted droplet is the first item alone, plus a
    volume if one is attached to it.)"""
    found = size(droplet_size, api_sizes)
    source = "DigitalOcean's API" if api_sizes and found and found.monthly is not None else "list price"
    items = [
        Item(
            f"droplet {droplet_size}",
            found.monthly if found else None,
            note=source if found and found.monthly is not None else "a size this classimage has no price for",
        )
    ]
    if storage_type in ("auto", "volume"):
        items += [
            Item(
                f"volume, {volume_gib} GiB",
                volume_gib * VOLUME_PER_GIB_MONTH,
                note=f"${VOLUME_PER_GIB_MONTH:.2f} a GiB",
            ),
            Item(
                f"backups, the newest {keep_backups}",
                0.0,
                most=keep_backups * volume_gib * SNAPSHOT_PER_GIB_MONTH,
                note=f"${SNAPSHOT_PER_GIB_MONTH:.2f} a GiB of data each holds, at most the volume's {volume_gib} GiB",
            ),
            Item(
                "reserved IP",
                0.0,
                note=f"free while a droplet holds it; {money(UNASSIGNED_IP_MONTH)} a month while none does",
            ),
        ]
    return items


def existing(
    droplets: list[dict[str, Any]],
    volumes: list[dict[str, Any]],
    snapshot_gib: float,
    ip: dict[str, Any] | None,
    api_sizes: list[dict[str, Any]] | None = None,
) -> list[Item]:
    """What the resources a class has cost a month (DigitalOcean's JSON for each)."""
    items = []
    for droplet in droplets:
        found = size(droplet["size_slug"], api_sizes)
        price = (
            found.monthly if found and found.monthly is not None else (droplet.get("size") or {}).get("price_monthly")
        )
        items.append(Item(f"droplet {droplet['size_slug']}", price, note="DigitalOcean's API"))
    for volume in volumes:
        gib = volume["size_gigabytes"]
        items.append(Item(f"volume {gib} GiB", gib * VOLUME_PER_GIB_MONTH, note=f"${VOLUME_PER_GIB_MONTH:.2f}/GiB"))
    if snapshot_gib:
        items.append(
            Item(
                f"snapshots {snapshot_gib:.1f} GiB",
                snapshot_gib * SNAPSHOT_PER_GIB_MONTH,
                note=f"${SNAPSHOT_PER_GIB_MONTH:.2f}/GiB",
            )
        )
    if ip is not None and not ip.get("droplet"):
        items.append(Item("reserved IP, unassigned", UNASSIGNED_IP_MONTH, note="free while assigned"))
    return items


def total(items: list[Item]) -> tuple[float | None, float | None]:
    """The least and the most the items come to; None when one of them is unknown."""
    if any(item.monthly is None for item in items):
        return None, None
    least = sum(item.monthly or 0.0 for item in items)
    return least, least + sum((item.most or 0.0) - (item.monthly or 0.0) for item in items if item.most is not None)


def span(least: float | None, most: float | None) -> str:
    return money(least) if least == most else f"{money(least)} to {money(most)}"


def lines(items: list[Item]) -> list[str]:
    """The items, one a line, with the total first."""
    width = max(len(item.what) for item in items)
    out = [f"  {'in all':<{width}}  {span(*total(items))} a month"]
    for item in items:
        amount = span(item.monthly, item.most if item.most is not None else item.monthly)
        out.append(f"  {item.what:<{width}}  {amount}" + (f" ({item.note})" if item.note else ""))
    return out
