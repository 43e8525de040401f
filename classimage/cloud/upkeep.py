"""Keeping a class at DigitalOcean: `status` says what exists, how provisioning and the hub are
and what it all costs; `down` shuts the droplet down (its last copy of the hub's database goes onto
the class's volume) and removes it (and with `--delete-data` the class's data); `backup` snapshots
the class's volume once a consistent copy of the hub's database is on it, and keeps the newest few.
Like deploy.py, it finds everything by the course's tag and keeps no state; each verb stopped half
way is finished by running it again.
"""

from __future__ import annotations

import datetime
import time
from collections.abc import Callable

from classimage.cloud.actions import stop
from classimage.cloud.digitalocean import JSON, CloudError, DigitalOcean
from classimage.cloud.found import Found, Names, discover, public_address, region_of, stamp, status_token
from classimage.cloud.progress import clock, https_said, hub_health, read_status, waiting_for_data
from classimage.pipeline import plan, pricing
from classimage.pipeline.spec import Loaded

# -- status and down -------------------------------------------------------------------------------


def age(created: str) -> str:
    then = datetime.datetime.strptime(created, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.timezone.utc)
    seconds = (datetime.datetime.now(datetime.timezone.utc) - then).total_seconds()
    for unit, length in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= length:
            return f"{seconds / length:.0f}{unit}"
    return f"{seconds:.0f}s"


def monthly(found: Found, sizes: list[JSON]) -> tuple[float, list[str]]:
    """What the course's resources cost a month, and the lines that say so (pricing.py prices them)."""
    items = pricing.existing(
        found.droplets,
        found.volumes or ([found.volume] if found.volume else []),
        sum(s["size_gigabytes"] for s in found.snapshots + found.backups),
        found.ip,
        sizes,
    )
    return sum(item.monthly or 0.0 for item in items), [
        f"  {item.what}: {pricing.money(item.monthly)} ({item.note})" for item in items
    ]


def status(loaded: Loaded, api: DigitalOcean, echo: Callable[[str], None]) -> Found:
    spec, names = loaded.spec, Names(loaded.spec.course.slug)
    found = discover(api, names, spec.droplet.region)
    token = status_token(api.token, spec.course.slug, loaded.digest)
    echo(f"{spec.course.name} ({spec.course.slug}) at DigitalOcean:")
    if not found.droplets:
        echo("  droplet: none (`classimage up` makes one)")
    holder = ((found.ip or {}).get("droplet") or {}).get("id")
    for droplet in found.droplets:
        own = public_address(droplet)
        echo(
            f"  droplet {droplet['name']} ({droplet['id']}): {droplet['status']}, {droplet['size_slug']} in "
            f"{droplet['region']['slug']}, {age(droplet['created_at'])} old, at {own}"
        )
        if droplet["id"] != holder and droplet["status"] == "active" and own:  # a new one, not serving yet
            provisioning = read_status(own, token)
            waiting = waiting_for_data(provisioning)
            state = f"waiting for {waiting}" if waiting else (provisioning or {}).get("state", "not answering")
            echo(f"    its provisioning (at its own address): {state}")
    if found.ip is not None:
        holder = (found.ip.get("droplet") or {}).get("id")
        echo(f"  address {found.ip['ip']}: " + (f"on droplet {holder}" if holder else "not assigned to a droplet"))
    for volume in found.volumes:
        attached = volume["droplet_ids"]
        role = "the class's data" if volume is found.volume else "a previous copy of the class's data, not in use"
        echo(
            f"  volume {volume['name']} ({role}): {volume['size_gigabytes']} GiB, {age(volume['created_at'])}"
            f" old, " + (f"attached to {attached[0]}" if attached else "not attached")
        )
    for volume in found.elsewhere:
        echo(
            f"  volume {volume['name']} in {region_of(volume)}, not the spec's region {spec.droplet.region}: "
            f"{volume['size_gigabytes']} GiB, " + ("attached" if volume["droplet_ids"] else "not attached")
        )
    for snapshot in found.snapshots:
        echo(f"  snapshot {snapshot['name']}: {snapshot['size_gigabytes']} GiB, {age(snapshot['created_at'])} old")
    for snapshot in found.backups:
        echo(
            f"  backup {snapshot['name']} ({snapshot['id']}): {snapshot['size_gigabytes']} GiB, "
            f"{age(snapshot['created_at'])} old"
        )
    if not found.backups and found.volume is not None:
        echo("  backups: none yet (`classimage backup` makes one; the backup workflow does it nightly)")
    address = (found.ip or {}).get("ip")
    if address and found.droplets:
        provisioning = read_status(address, token, hostname=spec.https.hostname)
        state = provisioning.get("state") if provisioning else "not answering"
        echo(
            f"  provisioning: {state}"
            + (f" (failed at {(provisioning or {}).get('failed_step')})" if state == "failed" else "")
        )
        problem = ((provisioning or {}).get("data") or {}).get("error")
        if problem:
            echo(f"  the class's data: {problem}")
        elif waiting_for_data(provisioning):
            echo(f"  the class's data: waiting for {waiting_for_data(provisioning)}")
        for warning in (provisioning or {}).get("warnings") or []:  # the hub's, the class's data's
            echo(f"  WARNING: {warning}")
        copied = copy_age(provisioning)
        if copied is not None:
            echo(f"  the hub's database was last copied to the volume {clock(copied)} (min:s) ago")
        echo(f"  hub: {hub_health(address, spec.https.hostname)}")
        https = https_said(provisioning, address)
        if https:
            echo(f"  https: {https}")
    total, lines = monthly(found, api.sizes())
    echo(f"  monthly cost: ${total:.2f}")
    for line in lines:
        echo(line)
    return found


def down(loaded: Loaded, api: DigitalOcean, echo: Callable[[str], None], delete_data: bool) -> Found:
    """Each droplet shut down (a last consistent copy of the hub's database goes onto the class's
    volume: destroying a running droplet is not graceful), then destroyed; the firewall deleted; with
    `delete_data`, the backups, the volumes (once DigitalOcean has let go of them) and the address."""
    spec, names = loaded.spec, Names(loaded.spec.course.slug)
    found = discover(api, names, spec.droplet.region)
    for droplet in found.droplets:
        if droplet["status"] == "active":
            stop(api, droplet["id"], echo)
        echo(f"destroying droplet {droplet['name']} ({droplet['id']})")
        api.destroy_droplet(droplet["id"])
    if found.firewall is not None:
        echo(f"deleting firewall {names.firewall}")
        api.delete_firewall(found.firewall["id"])
    if delete_data:
        for snapshot in found.backups:
            echo(f"deleting backup {snapshot['name']}")
            api.delete_snapshot(snapshot["id"])
        for volume in found.volumes:
            echo(f"deleting volume {volume['name']} (the class's data)")
            _until_detached(api, volume)
            api.delete_volume(volume["id"])
        if found.ip is not None:
            echo(f"releasing {found.ip['ip']}")
            api.delete_reserved_ip(found.ip["ip"])
        for tag in api.tags():
            if tag["name"].startswith((names.ip_prefix, names.restored_from(""))):
                api.delete_tag(tag["name"])
    left = discover(api, names, spec.droplet.region)
    left.droplets = []  # destroyed (DigitalOcean may list them for a moment longer)
    total, lines = monthly(left, [])
    kept = (
        [f"volume {v['name']}" for v in left.volumes]
        + [f"{len(left.backups)} backup(s)"] * bool(left.backups)
        + ([f"address {left.ip['ip']}"] if left.ip else [])
    )
    echo(("left: " + ", ".join(kept) + f", costing ${total:.2f} a month") if kept else "nothing left")
    for line in lines:
        echo(line)
    return left


def _until_detached(api: DigitalOcean, volume: JSON, timeout: float = 300) -> None:
    """A destroyed droplet lets go of its volumes when DigitalOcean has finished destroying it."""
    if not api.until(f"detaching {volume['name']}", lambda: not api.volume(volume["id"])["droplet_ids"], timeout):
        raise CloudError(f"volume {volume['name']} is still attached: run `classimage down` again in a moment")


# -- backups -----------------------------------------------------------------------------------------


def copy_age(status: JSON | None) -> float | None:
    """Seconds since the droplet last copied the hub's database to the class's volume, or None."""
    copied = ((status or {}).get("data") or {}).get("database_copied")
    if not copied:
        return None
    then = datetime.datetime.strptime(copied, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.timezone.utc)
    return max(0.0, (datetime.datetime.now(datetime.timezone.utc) - then).total_seconds())


def backup(
    loaded: Loaded, api: DigitalOcean, echo: Callable[[str], None], wait: float | None = None, poll: float = 10
) -> JSON:
    """Snapshot the class's volume once a consistent copy of the hub's database is on it, then keep
    only the newest `storage.keep_backups` backups. Nothing on the droplet needs a secret: the token
    is the caller's."""
    spec, names = loaded.spec, Names(loaded.spec.course.slug)
    found = discover(api, names, spec.droplet.region)
    volume = found.volume
    if volume is None:
        raise CloudError(
            f"{names.slug} has no data volume to back up (`classimage up` makes one"
            f"{'; storage.type is none' if spec.storage.type == 'none' else ''})"
        )
    fresh = 2 * plan.DATABASE_COPY_SECONDS  # the copy's timer runs every DATABASE_COPY_SECONDS
    wait = fresh + 60 if wait is None else wait
    if volume["droplet_ids"]:
        droplet = next((d for d in found.droplets if d["id"] in volume["droplet_ids"]), None)
        address = (found.ip or {}).get("ip") or (public_address(droplet) if droplet else None)
        deadline = time.monotonic() + wait
        while True:
            copied = copy_age(read_status(address, None)) if address else None
            if copied is not None and copied <= fresh:
                break
            if time.monotonic() > deadline:
                raise CloudError(
                    f"the droplet has not copied the hub's database to {volume['name']} in the last "
                    f"{fresh // 60} minutes (its timer classimage-data-copy does, every "
                    f"{plan.DATABASE_COPY_SECONDS // 60} minutes): see `classimage status`. Nothing was "
                    "backed up"
                )
            time.sleep(poll)
        echo(f"the hub's database was copied to {volume['name']} {copied:.0f} s ago: a consistent copy is on it")
    else:
        echo(f"{volume['name']} is not attached: its data is at rest, as the last droplet left it")
    name = names.backup_prefix + stamp()
    echo(f"backing up {volume['name']} as {name}")
    snapshot = api.create(
        f"backing up {volume['name']}",
        lambda: api.snapshot_volume(volume["id"], {"name": name, "tags": ["classimage", names.tag]}),
        lambda: next((s for s in api.volume_snapshots() if s["name"] == name), None),
    )
    echo(f"  backup {name} ({snapshot['id']}): {snapshot['size_gigabytes']} GiB")
    kept = sorted(
        [snapshot] + [b for b in found.backups if b["id"] != snapshot["id"]],
        key=lambda s: s["created_at"],
        reverse=True,
    )
    for old in kept[spec.storage.keep_backups :]:
        echo(f"  deleting backup {old['name']} (storage.keep_backups: {spec.storage.keep_backups})")
        api.delete_snapshot(old["id"])
    return snapshot


def find_backup(loaded: Loaded, api: DigitalOcean, wanted: str) -> JSON:
    """The course's backup with this id or name, or an error that lists them."""
    names = Names(loaded.spec.course.slug)
    found = discover(api, names, loaded.spec.droplet.region)
    match = next((b for b in found.backups if wanted in (str(b["id"]), b["name"])), None)
    if match is None:
        known = ", ".join(f"{b['name']} ({b['id']})" for b in found.backups[:10]) or "none yet"
        raise CloudError(f"no backup {wanted!r} of {names.slug}: its backups, newest first: {known}")
    return match
