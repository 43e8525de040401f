"""STAND-IN for DigitalOcean's API v2 (classimage tests): DigitalOcean cannot be reached from the
machines the tests run on. It implements the endpoints classimage uses, over HTTPS (a test CA), and
**validates every request and every response it sends against DigitalOcean's published API
description** (the vendored openapi archive, with openapi-core): a request classimage should not
send, or an answer DigitalOcean would not give, is recorded in `violations` (and refused), and the
tests assert there are none.

It is as strict as the service where the verbs depend on it, not only as its description; each
strictness cites its source where it is enforced (../shared/reference/digitalocean-behaviour.md has
the review behind them):
- an action completes when its command is issued, not when its effect is there: a droplet is `off`
  some time after its shutdown action completed, and a hung guest never (`hung`);
- a second action on a droplet with one in progress (its creation, a volume attaching, an address
  being assigned) is refused: 422 "Droplet already has a pending event.";
- a snapshot makes a droplet only in its `regions` and on a size whose disk holds `min_disk_size`;
- firewall rules with `ports` "0" are refused, ICMP rules without `ports` accepted;
- a droplet just made is listed a few seconds later; a destroyed one is listed as `archive` for a
  while, with its volumes and address still held;
- a volume is snapshotted at most once every 10 minutes;
- faults tests inject: a refusal before anything is done (`fail`), or a 5xx *after* the change was
  made (`fail(..., after=True)`); pydo returns some 404 and 400 bodies as results, as it does here.

Time: `WallClock` for test droplets, whose work (booting, shutting down) takes its own time; `Ticks`
where no droplet boots: time passes only with requests (`step` seconds each), so a run's sequence of
requests is the same every time (the crash walk kills the client after each one). Actions take what
`Latency` says: `HERE` (nothing added to the machines' own time) or `DIGITALOCEAN` (figures from
DigitalOcean's published examples and issue reports, each stated with its source).

What it stands on:
- `Machines`: droplets are test droplets (tests/testdroplet.py) booted with the posted user data by
  the real cloud-init, on the image (with the stand-ins for TLJH's downloads) or on a registered
  snapshot; volumes are loop devices over sparse files, bound into a droplet at
  /dev/disk/by-id/scsi-0DO_Volume_<name> as DigitalOcean's appear; a reserved IP is an address on
  the droplet it is assigned to, routed to that droplet's veth.
- `Paper`: where a droplet's inside does not matter, no droplet boots: each answers `classimage up`'s
  status reads on port 80 of its address (a loopback one) as the real one would (waiting for the
  class's volume its user data names, ready once attached), and each volume keeps a log of what was
  done to it (mounted, a last copy of the database at a graceful shutdown): the data's history.
Firewalls, DNS records and tags are only recorded.
"""

from __future__ import annotations

import base64
import collections
import copy
import datetime
import errno
import functools
import gzip
import hashlib
import http.server
import ipaddress
import itertools
import json
import os
import re
import shutil
import socket
import ssl
import subprocess
import tarfile
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import yaml

import testdroplet

HERE = Path(__file__).resolve().parent
VENDOR = Path(os.environ.get("CLASSIMAGE_VENDOR", HERE.parent.parent / "shared" / "vendor"))
ARCHIVE = "digitalocean-openapi-7c1300c.tar.gz"
SERVER = "https://api.digitalocean.com"  # the description's server, which requests are checked against
TOKEN = "dop_v1_" + "0" * 64  # what the stand-in's account accepts
# TEST-NET-2: reserved IPs on test droplets. Routed on the host, so each region claims a /28 of its own
# (a lock held while it lives): two test runs side by side never route the same address.
RESERVED = ipaddress.ip_network("198.51.100.0/24")
SIZES = {  # slug: (vcpus, memory MiB, disk GiB, price a month, regions)
    "s-1vcpu-1gb": (1, 1024, 25, 6.0, ["nyc3", "fra1", "sgp1"]),
    "s-2vcpu-4gb": (2, 4096, 80, 24.0, ["nyc3", "fra1", "sgp1"]),
    "s-4vcpu-8gb": (4, 8192, 160, 48.0, ["nyc3", "fra1"]),
}
BASE_IMAGES = ("ubuntu-24-04-x64", "ubuntu-22-04-x64", "debian-12-x64", "debian-11-x64")
VOLUME_DEVICE = re.compile(r"/dev/disk/by-id/scsi-0DO_Volume_([A-Za-z0-9._-]+)")
NOT_FOUND = "The resource you were accessing could not be found."
# DigitalOcean's own words (terraform-provider-digitalocean #1034, packer #1814, and the retry on this
# message in the provider's digitalocean/volume/resource_volume_attachment.go).
PENDING = "Droplet already has a pending event."


@dataclass(frozen=True)
class Latency:
    """Seconds DigitalOcean takes for what classimage waits on."""

    create: float = 0.0  # POST /v2/droplets until the create action completes (status active)
    attach: float = 0.0  # an attach_volume action (also the one a create with volumes leaves behind)
    detach: float = 0.0
    assign: float = 0.0  # an assign_ip action
    resize: float = 0.0
    shutdown: float = 0.0  # the guest's own shutdown: `off` this long after the shutdown action completed
    power_off: float = 0.0
    destroy: float = 0.0  # listed as `archive`, volumes and address still held, this long after DELETE
    listed: float = 0.0  # a droplet just made is missing from GET /v2/droplets this long


HERE_LATENCY = Latency()
DIGITALOCEAN = Latency(
    # DigitalOcean's API description, its example of a droplet's actions: create started 19:37:30,
    # completed 19:37:45 (specification/resources/droplets/responses/all_droplet_actions.yml).
    create=15.0,
    # Its example attach_volume action: 17:51:03 -> 17:51:14 (resources/volumes/examples.yml).
    attach=11.0,
    # No completed example of a detach (resources/volumes/examples.yml shows one in progress): taken
    # as long as an attach. An assumption.
    detach=11.0,
    # Its example assign_ip action: 17:51:03 -> 17:51:14 (resources/reserved_ips/responses/
    # reserved_ip_action.yml).
    assign=11.0,
    resize=11.0,  # an assumption: as long as the other volume actions
    # A droplet's own shutdown: systemd stops the hub and its proxy and classimage-data.service copies
    # the hub's database (measured in the test droplets: tests/booted/test_cloud_droplets.py prints it); 10 s
    # is an assumption here, bounded by classimage's SHUTDOWN_WAIT (then power_off).
    shutdown=10.0,
    power_off=5.0,  # an assumption: a hard power cut
    destroy=10.0,  # an assumption; Terraform waits for `archive` (resource_droplet.go waitForDropletDestroy)
    # "After couple of seconds then it actually listed" (digitalocean/api-v2 #202).
    listed=3.0,
)


class WallClock:
    """Time as it passes: test droplets boot and stop in their own time."""

    def now(self) -> float:
        return time.monotonic()

    def tick(self) -> None:
        pass


class Ticks:
    """Time that passes only with requests, `step` seconds each: what happens after N requests is
    the same in every run (no wall-clock race)."""

    def __init__(self, step: float = 2.0):
        self.step, self.time = step, 0.0

    def now(self) -> float:
        return self.time

    def tick(self) -> None:
        self.time += self.step

    def advance(self, seconds: float) -> None:
        self.time += seconds


def now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


@functools.cache
def description():
    """DigitalOcean's API description, from the vendored archive (unpacked into the test cache)."""
    from openapi_core import Config, OpenAPI

    archive = VENDOR / ARCHIVE
    if not archive.is_file():
        raise FileNotFoundError(f"DigitalOcean's API description is not at {archive}: set CLASSIMAGE_VENDOR to the "
                                f"folder holding {ARCHIVE} (shared/vendor beside this checkout)")
    folder = testdroplet.CACHE / "openapi" / (hashlib.sha256(archive.read_bytes()).hexdigest()[:16] + "-off")
    if not (folder / "done").exists():
        folder.mkdir(parents=True, exist_ok=True)
        with tarfile.open(archive) as tar:
            tar.extractall(folder, filter="data")
        # droplet.yml lists the status `off` unquoted, which YAML reads as false: no droplet that is off
        # could be valid. Its own text says the status "may be "new", "active", "off", or "archive"".
        (model,) = folder.glob("*/specification/resources/droplets/models/droplet.yml")
        text = model.read_text()
        assert text.count("\n      - off\n") == 1, "droplet.yml changed: look again at its status enum"
        model.write_text(text.replace("\n      - off\n", '\n      - "off"\n'))
        (folder / "done").touch()
    (main,) = folder.glob("*/specification/DigitalOcean-public.v2.yaml")
    # The description puts $refs where OpenAPI 3.0 allows none (tag descriptions): its own check
    # of the document is skipped; requests and responses are still checked against every schema.
    return OpenAPI.from_file_path(str(main), config=Config(spec_validator_cls=None))


# What the service accepts that its description does not (each with its source), as the request
# that the description would accept: what is validated is this, what is handled the request itself.
def _described(method: str, path: str, body: Any) -> Any:
    if method == "POST" and path == "/v2/firewalls" and isinstance(body, dict):
        # ICMP rules take no ports: doctl #278 (only leaving `ports` out worked), Terraform's
        # digitalocean/firewall/firewalls.go (sends ICMP rules without them); the description
        # (firewall_rule.yml) requires `ports`.
        body = copy.deepcopy(body)
        for rule in (body.get("inbound_rules") or []) + (body.get("outbound_rules") or []):
            if isinstance(rule, dict) and rule.get("protocol") == "icmp" and "ports" not in rule:
                rule["ports"] = "all"
    return body


class Refused(Exception):
    def __init__(self, status: int, ident: str, message: str, headers: dict | None = None):
        super().__init__(message)
        self.status, self.ident, self.message, self.headers = status, ident, message, headers or {}


@dataclass
class Fault:
    """A refusal tests inject: the next `times` requests matching method and path get it, before
    anything is done, or (`after`) once the request's change is made, as a 5xx that hides a success."""

    method: str
    path: str  # a regular expression, searched in the path
    status: int
    ident: str
    message: str
    times: int = 1
    headers: dict = field(default_factory=dict)
    after: bool = False
    at: int | None = None  # only the request with this number (1: the first since the log was emptied)


@dataclass
class Later:
    """Something the service does in its own time: at `due` (and once `work`, run in a thread, is
    done), `effect` runs under the stand-in's lock."""

    due: float
    effect: Callable[[], None]
    work: threading.Event | None = None
    failed: list = field(default_factory=list)


# -- the machines behind droplets, volumes and addresses -------------------------------------------

class Machines:
    """Test droplets, loop devices and routed addresses: what a DigitalOcean region provides."""

    def __init__(self, folder: Path, layers: Callable[[], list[Path]],
                 prepare: Callable[[testdroplet.TestDroplet], None] | None = None):
        """`layers`: what a droplet from a base image stands on; `prepare`: done to each droplet's
        disk before it boots (what the test's world has in it, e.g. a course repository)."""
        self.folder, self.base_layers, self.prepare = folder, layers, prepare
        blocks = list(RESERVED.subnets(new_prefix=28))
        # Block 0 is skipped: stand-ins before this one routed 198.51.100.10 and on, whoever else ran.
        self._reserved_lock, index = testdroplet.claim(
            "reserved", range(1, len(blocks)), "no free /28 of 198.51.100.0/24 for a test region's reserved IPs",
            free=lambda index: not any(str(a) in routed() for a in blocks[index]))
        self.reserved = blocks[index]
        self.droplets: dict[int, testdroplet.TestDroplet] = {}
        self.devices: dict[str, str] = {}  # volume id -> /dev/loopN
        self.routes: dict[str, str] = {}  # reserved address -> the host's veth it is routed to
        self.addresses: dict[int, set[str]] = {}  # droplet id -> the reserved addresses assigned to it
        self.lock = threading.Lock()
        self.hazards: list[str] = []

    def backing(self, volume_id: str) -> Path:
        return self.folder / "volumes" / f"{volume_id}.img"

    def make_volume(self, volume_id: str, gigabytes: int, source: str | None = None) -> None:
        path = self.backing(volume_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        if source is not None:
            subprocess.run(["cp", "--sparse=always", str(self.snapshot_file(source)), str(path)], check=True)
        subprocess.run(["truncate", "--size", f"{gigabytes}G", str(path)], check=True)
        self.devices[volume_id] = subprocess.run(["losetup", "--find", "--show", str(path)], capture_output=True,
                                                 text=True, check=True).stdout.strip()

    def grow_volume(self, volume_id: str, gigabytes: int) -> None:
        """The volume's device gets bigger where it is attached, as a resized volume does."""
        subprocess.run(["truncate", "--size", f"{gigabytes}G", str(self.backing(volume_id))], check=True)
        subprocess.run(["losetup", "--set-capacity", self.devices[volume_id]], check=True)

    def snapshot_volume(self, volume_id: str, snapshot_id: str) -> float:
        """A copy of the volume; its size in GiB."""
        target = self.snapshot_file(snapshot_id)
        target.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(["sync"], check=True)
        subprocess.run(["cp", "--sparse=always", str(self.backing(volume_id)), str(target)], check=True)
        return round(os.stat(target).st_blocks * 512 / 2**30, 2)

    def snapshot_file(self, snapshot_id: str) -> Path:
        return self.folder / "volume-snapshots" / f"{snapshot_id}.img"

    def drop_snapshot(self, snapshot_id: str) -> None:
        self.snapshot_file(snapshot_id).unlink(missing_ok=True)

    def drop_volume(self, volume_id: str) -> None:
        device = self.devices.pop(volume_id, None)
        if device:
            subprocess.run(["losetup", "--detach", device], capture_output=True)
        self.backing(volume_id).unlink(missing_ok=True)

    def boot(self, droplet_id: int, user_data: str, stack: list[Path] | None, volumes: dict[str, str]) -> str:
        """Boot a test droplet with this user data; volumes {name: id} bound in. Its address."""
        droplet = testdroplet.TestDroplet(self.folder / "droplets" / str(droplet_id), stack or self.base_layers())
        for name, volume_id in volumes.items():
            droplet.extra_nspawn.append(f"--bind={self.devices[volume_id]}:{device_path(name)}")
        if self.prepare is not None:
            self.prepare(droplet)
        droplet.seed(user_data, f"i-{droplet_id}", hostname=f"droplet-{droplet_id}")
        droplet.boot()
        with self.lock:
            self.droplets[droplet_id] = droplet
        return droplet.ip

    def running(self, droplet_id: int) -> testdroplet.TestDroplet | None:
        return self.droplets.get(droplet_id)

    def attach(self, droplet_id: int, name: str, volume_id: str) -> None:
        droplet = self.droplets.get(droplet_id)
        if droplet is None:
            return
        if droplet.nspawn is None:  # powered off: it appears at the next boot (--bind)
            droplet.extra_nspawn.append(f"--bind={self.devices[volume_id]}:{device_path(name)}")
            return
        node = os.stat(self.devices[volume_id]).st_rdev
        droplet.sh(f"mkdir -p /dev/disk/by-id && mknod {device_path(name)} b {os.major(node)} {os.minor(node)}",
                   check=True)

    def detach(self, droplet_id: int, name: str) -> None:
        droplet = self.droplets.get(droplet_id)
        if droplet is None:
            return
        droplet.extra_nspawn = [o for o in droplet.extra_nspawn if not o.endswith(f":{device_path(name)}")]
        if droplet.nspawn is not None:
            if droplet.sh(f"findmnt --source {device_path(name)}").returncode == 0:
                self.hazards.append(f"volume {name} detached from droplet {droplet_id} while it had it mounted")
            droplet.sh(f"umount --lazy {device_path(name)} 2>/dev/null; rm -f {device_path(name)}")

    def shutdown(self, droplet_id: int, timeout: float = 120) -> None:
        droplet = self.droplets.get(droplet_id)
        if droplet is not None:
            droplet.shutdown(timeout=timeout)

    def power_off(self, droplet_id: int) -> None:
        self.shutdown(droplet_id, timeout=5)

    def power_on(self, droplet_id: int) -> None:
        droplet = self.droplets.get(droplet_id)
        if droplet is not None and droplet.nspawn is None:
            droplet.boot()
            for address in sorted(self.addresses.get(droplet_id, ())):  # a reserved IP stays assigned
                self.assign(address, droplet_id)

    def destroy(self, droplet_id: int) -> None:
        with self.lock:
            droplet = self.droplets.pop(droplet_id, None)
        for address in self.addresses.pop(droplet_id, set()):
            self.routes.pop(address, None)  # its veth, and with it the route, goes with it
        if droplet is not None:
            droplet.collect(self.folder / "logs" / f"droplet-{droplet_id}")
            droplet.destroy()

    def assign(self, address: str, droplet_id: int) -> None:
        droplet = self.droplets[droplet_id]
        droplet.sh(f"ip addr replace {address}/32 dev host0", check=True)
        testdroplet.run(["ip", "route", "replace", f"{address}/32", "dev", droplet.veth])
        self.routes[address] = droplet.veth
        self.addresses.setdefault(droplet_id, set()).add(address)

    def unassign(self, address: str, droplet_id: int | None) -> None:
        # Only a route this region made: another test's stand-in may route the same test address.
        veth = self.routes.pop(address, None)
        for held in self.addresses.values():
            held.discard(address)
        if veth is not None:
            subprocess.run(["ip", "route", "del", f"{address}/32", "dev", veth], capture_output=True)
        droplet = self.droplets.get(droplet_id) if droplet_id is not None else None
        if droplet is not None and droplet.nspawn is not None:
            droplet.sh(f"ip addr del {address}/32 dev host0 2>/dev/null; true")

    def close(self) -> None:
        for droplet_id in list(self.droplets):
            self.destroy(droplet_id)
        for volume_id in list(self.devices):
            device = self.devices.pop(volume_id)
            subprocess.run(["losetup", "--detach", device], capture_output=True)
        self._reserved_lock.close()


def listening() -> str:
    """The host's listening TCP sockets, one a line (ss)."""
    return subprocess.run(["ss", "-ltnH"], capture_output=True, text=True).stdout


def routed() -> set[str]:
    """The host's routed destinations, as written (198.51.100.10 for a /32)."""
    table = subprocess.run(["ip", "-o", "-4", "route"], capture_output=True, text=True).stdout
    return {line.split()[0].removesuffix("/32") for line in table.splitlines() if line.strip()}


def device_path(name: str) -> str:
    return f"/dev/disk/by-id/scsi-0DO_Volume_{name}"


def wanted_volume(user_data: str) -> str | None:
    """The volume a droplet's user data puts the class's data on, by name (None: none named)."""
    try:
        document = yaml.safe_load(user_data) or {}
    except yaml.YAMLError:
        return None
    for entry in document.get("write_files") or []:
        content = entry.get("content") or ""
        if entry.get("encoding") == "gz+b64":
            # The runner is a zip (its members stored, so their text reads as it is among the bytes).
            content = gzip.decompress(base64.b64decode(content)).decode(errors="replace")
        found = VOLUME_DEVICE.search(content)
        if found:
            return found.group(1)
    return None


class Paper:
    """STAND-IN for a region's machines where a droplet's inside does not matter: no droplet boots.
    Each droplet answers on port 80 of its address (a loopback address of a network of its own:
    nothing else binds there) what `classimage up` and `status` read of a real one: its provisioning
    status (waiting for the class's volume its user data names until that is attached, then ready)
    and /hub/health. Each volume keeps a log of what was done to it; detaching one from a droplet
    that has it mounted, or cutting the power of one that has, is a hazard the tests assert against."""

    def __init__(self):
        # 127.N.0.0/16 of its own, claimed with a lock while it lives: two test runs side by side never
        # serve the same address.
        self._lock_file, octet = testdroplet.claim("paper", range(16, 250), "no free 127.N.0.0/16 for a paper region",
                                                   free=lambda n: f" 127.{n}." not in listening())
        self.public = ipaddress.ip_network(f"127.{octet}.0.0/24")
        self.reserved = ipaddress.ip_network(f"127.{octet}.1.0/24")
        self.hosts = itertools.count(10)
        self.droplets: dict[int, dict] = {}  # id -> {address, wants, attached {name: id}, on, mounted}
        self.volumes: dict[str, list[str]] = {}  # id -> what happened to it, in order
        self.snapshots: dict[str, list[str]] = {}
        self.routes: dict[str, int] = {}  # address -> droplet id
        self.servers: dict[str, http.server.ThreadingHTTPServer] = {}
        self.hazards: list[str] = []
        self.fail = False  # the next droplet's provisioning fails
        self.lock = threading.RLock()

    # -- the state, for tests that start many runs from one point -------------------------------

    def state(self) -> dict:
        with self.lock:
            return copy.deepcopy({"droplets": self.droplets, "volumes": self.volumes, "snapshots": self.snapshots,
                                  "routes": self.routes, "hazards": self.hazards})

    def restore(self, state: dict) -> None:
        with self.lock:
            for name, value in copy.deepcopy(state).items():
                setattr(self, name, value)
            self.serve()

    # -- what the stand-in's handlers call --------------------------------------------------------

    def make_volume(self, volume_id: str, gigabytes: int, source: str | None = None) -> None:
        self.volumes[volume_id] = list(self.snapshots[source]) if source else []

    def grow_volume(self, volume_id: str, gigabytes: int) -> None:
        self.volumes[volume_id].append(f"grown to {gigabytes} GiB")

    def snapshot_volume(self, volume_id: str, snapshot_id: str) -> float:
        self.snapshots[snapshot_id] = list(self.volumes[volume_id])
        return 0.1

    def drop_snapshot(self, snapshot_id: str) -> None:
        self.snapshots.pop(snapshot_id, None)

    def drop_volume(self, volume_id: str) -> None:
        self.volumes.pop(volume_id, None)

    def boot(self, droplet_id: int, user_data: str, stack: list[Path] | None, volumes: dict[str, str]) -> str:
        address = str(self.public[next(self.hosts)])
        with self.lock:
            self.droplets[droplet_id] = {"address": address, "wants": wanted_volume(user_data), "attached": dict(volumes),
                                         "on": True, "mounted": None, "fails": self.fail}
            self.fail = False
            self.routes[address] = droplet_id
            self.serve()
        return address

    def attach(self, droplet_id: int, name: str, volume_id: str) -> None:
        with self.lock:
            if droplet_id in self.droplets:
                self.droplets[droplet_id]["attached"][name] = volume_id

    def detach(self, droplet_id: int, name: str) -> None:
        with self.lock:
            droplet = self.droplets.get(droplet_id)
            if droplet is None:
                return
            volume_id = droplet["attached"].pop(name, None)
            if droplet["on"] and droplet["mounted"] == volume_id:
                self.hazards.append(f"volume {name} detached from droplet {droplet_id} while it had it mounted")
            if droplet["mounted"] == volume_id:
                droplet["mounted"] = None

    def shutdown(self, droplet_id: int, timeout: float = 120) -> None:
        """A graceful shutdown: classimage-data.service writes a last copy of the hub's database."""
        with self.lock:
            droplet = self.droplets.get(droplet_id)
            if droplet is not None and droplet["on"]:
                if droplet["mounted"] in self.volumes:
                    self.volumes[droplet["mounted"]].append(f"database copied by droplet {droplet_id} at shutdown")
                droplet["on"] = False
                self.serve()

    def power_off(self, droplet_id: int) -> None:
        with self.lock:
            droplet = self.droplets.get(droplet_id)
            if droplet is not None and droplet["on"]:
                if droplet["mounted"] is not None:
                    self.hazards.append(f"droplet {droplet_id} powered off with the class's data mounted")
                droplet["on"] = False
                self.serve()

    def power_on(self, droplet_id: int) -> None:
        with self.lock:
            if droplet_id in self.droplets:
                self.droplets[droplet_id]["on"] = True
                self.serve()

    def destroy(self, droplet_id: int) -> None:
        with self.lock:
            droplet = self.droplets.pop(droplet_id, None)
            if droplet is not None and droplet["on"] and droplet["mounted"] is not None:
                self.hazards.append(f"droplet {droplet_id} destroyed running, with the class's data mounted")
            for address in [a for a, d in self.routes.items() if d == droplet_id]:
                del self.routes[address]
            self.serve()

    def assign(self, address: str, droplet_id: int) -> None:
        with self.lock:
            self.routes[address] = droplet_id
            self.serve()

    def unassign(self, address: str, droplet_id: int | None) -> None:
        with self.lock:
            self.routes.pop(address, None)
            self.serve()

    def close(self) -> None:
        with self.lock:
            self.routes.clear()
            self.serve()
        self._lock_file.close()

    # -- the inside ---------------------------------------------------------------------------------

    def status(self, droplet_id: int) -> tuple[int, dict]:
        """What the droplet's status service answers: provisioning as classimage-provision reports it."""
        with self.lock:
            droplet = self.droplets[droplet_id]
            wants, attached = droplet["wants"], droplet["attached"]
            data_step = {"name": "class-data", "title": "Put the class's data on its own device", "state": "running"}
            steps = [{"name": "hub-config", "title": "Write the hub's settings", "state": "done", "seconds": 0.5},
                     data_step, {"name": "hub-ready", "title": "Wait for the hub to answer", "state": "pending"}]
            document: dict = {"format": 2, "state": "running", "steps": steps, "data": None}
            if droplet["fails"]:
                data_step.update(state="failed", seconds=1.0, exit_code=1, log_tail=["stand-in: this droplet fails"])
                document.update(state="failed", failed_step="class-data")
            elif wants is not None and wants not in attached:
                document["data"] = {"waiting": f"the class's volume {wants} to be attached to this droplet",
                                    "mounted": None, "database_copied": None, "error": None}
            else:
                if wants is not None and droplet["mounted"] != attached[wants]:
                    droplet["mounted"] = attached[wants]
                    self.volumes[attached[wants]].append(f"mounted by droplet {droplet_id}")
                data_step.update(state="done", seconds=1.0)
                steps[-1].update(state="done", seconds=1.0)
                # its timer has just copied the hub's database onto the volume (what `backup` waits for)
                document.update(state="ready", data={"mounted": now(), "database_copied": now(), "error": None,
                                                     "waiting": None} if wants else None)
            return 200, document

    def serve(self) -> None:
        """One server per address routed to a running droplet; none elsewhere (nothing answers)."""
        with self.lock:
            wanted = {a for a, d in self.routes.items() if self.droplets.get(d, {}).get("on")}
            for address in list(self.servers):
                if address not in wanted:
                    server = self.servers.pop(address)
                    server.shutdown()
                    server.server_close()
            for address in sorted(wanted - set(self.servers)):
                handler = type("Inside", (_Inside,), {"paper": self, "address": address})
                server = _bound((address, 80), handler)
                server.daemon_threads = True
                threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
                self.servers[address] = server


def _bound(address: tuple[str, int], handler) -> http.server.ThreadingHTTPServer:
    """A server on `address`, waiting up to 5 s for the one this region closed there a moment ago to
    let go of it (seen once in CI under load: a power cycle's bind refused three times, then taken; why the
    old socket lingered was not found)."""
    for attempt in range(50):
        try:
            return http.server.ThreadingHTTPServer(address, handler)
        except OSError as error:
            if error.errno != errno.EADDRINUSE or attempt == 49:
                raise
            time.sleep(0.1)
    raise AssertionError("unreachable")


class _Inside(http.server.BaseHTTPRequestHandler):
    paper: Paper
    address: str

    def do_GET(self):
        droplet_id = self.paper.routes.get(self.address)
        if droplet_id is None or droplet_id not in self.paper.droplets:
            self.send_error(503)
            return
        code, document = self.paper.status(droplet_id)
        if self.path.startswith("/hub/health"):
            code, document = (200, {}) if document["state"] == "ready" else (503, {})
        body = json.dumps(document).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


# -- the API --------------------------------------------------------------------------------------

class StandIn:
    """DigitalOcean's API for one test: `with StandIn(folder, machines, ca) as api: ... api.url ...`."""

    def __init__(self, folder: Path, machines: Machines | Paper, ca, clock: WallClock | Ticks | None = None,
                 latency: Latency = HERE_LATENCY):
        self.folder, self.machines, self.ca = folder, machines, ca
        self.clock = clock or WallClock()
        self.latency = latency
        self.ids = itertools.count(3164444)
        self.lock = threading.RLock()
        self.droplets: dict[int, dict] = {}
        self.volumes: dict[str, dict] = {}
        self.volume_snapshots: dict[str, dict] = {}
        self.images: dict[int, dict] = {}  # droplet snapshots, as Packer makes them
        self.stacks: dict[int, list[Path]] = {}
        self.reserved: dict[str, dict] = {}
        self.actions: dict[int, dict] = {}
        self.occupied: dict[int, set[int]] = {}  # action id -> the droplets it keeps busy until it completes
        self.later: list[Later] = []
        self.firewalls: dict[str, dict] = {}
        self.domains: dict[str, list[dict]] = {}
        self.tags: set[str] = set()
        self.hung: set[int] = set()  # droplets whose guest never shuts down by itself
        self.keys = [{"id": 512190, "fingerprint": "3b:16:bf:e4:8b:00:8b:b8:59:8c:a9:d3:f0:19:45:fa",
                      "public_key": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGFjbGFzc2ltYWdlLXRlc3Qta2V5LW9ubHk= test",
                      "name": "instructor laptop"}]
        self.faults: list[Fault] = []
        self.requests: list[tuple[str, str, int]] = []
        self.log: list[dict] = []  # every request: method, path, status, and the body of those that change
        self.made: collections.Counter[str] = collections.Counter()  # what was made (and billed), by kind
        self.violations: list[str] = []
        self.droplet_limit = 10
        # Called after each request is handled (the count so far, method, path); True: answer nothing
        # (the client was killed right after the request was carried out).
        self.after_request: Callable[[int, str, str], bool] | None = None
        self.server: http.server.ThreadingHTTPServer | None = None

    # -- what tests set up and look at ------------------------------------------------------------

    def add_domain(self, name: str) -> None:
        self.domains[name] = []

    def add_snapshot(self, name: str, stack: list[Path], created: str | None = None, regions: list[str] | None = None,
                     min_disk_size: int = 25) -> int:
        """A droplet snapshot, as Packer leaves one in the account: `stack` is what droplets made
        from it stand on."""
        image_id = next(self.ids)
        self.images[image_id] = {"id": image_id, "name": name, "created_at": created or now(),
                                 "regions": regions or ["nyc3"], "min_disk_size": min_disk_size, "size_gigabytes": 2.5,
                                 "tags": []}
        self.stacks[image_id] = stack
        return image_id

    def fail(self, method: str, path: str, status: int, ident: str, message: str, times: int = 1,
             headers: dict | None = None, after: bool = False, at: int | None = None) -> None:
        self.faults.append(Fault(method, path, status, ident, message, times, headers or {}, after, at))

    def count(self, method: str | None = None) -> int:
        return sum(1 for m, _, _ in self.requests if method is None or m == method)

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.server.server_address[1]}"

    def state(self) -> dict:
        """Everything the account holds, for a test that starts many runs from one point (Paper only)."""
        with self.lock:
            keep = ("droplets", "volumes", "volume_snapshots", "images", "stacks", "reserved", "actions", "occupied",
                    "firewalls", "domains", "tags", "hung", "droplet_limit")
            state = copy.deepcopy({name: getattr(self, name) for name in keep})
            state["ids"] = next(self.ids)
            state["clock"] = self.clock.now()
            state["machines"] = self.machines.state()
            assert not self.later, "a state is taken with nothing in progress"
            return state

    def restore(self, state: dict) -> None:
        with self.lock:
            state = copy.deepcopy(state)
            self.ids = itertools.count(state.pop("ids"))
            self.clock.time = state.pop("clock")
            self.machines.restore(state.pop("machines"))
            for name, value in state.items():
                setattr(self, name, value)
            self.later, self.faults, self.requests, self.log = [], [], [], []
            self.made = collections.Counter()

    def __enter__(self) -> StandIn:
        description()  # loaded once, before any request waits on it
        handler = type("Handler", (_Handler,), {"api": self})
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(str(self.ca.pem), str(self.ca.key))
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
        for later in list(self.later):  # what is under way finishes, as at DigitalOcean
            if later.work is not None:
                later.work.wait(timeout=300)
        with self.lock:
            self.advance(everything=True)
        for address, ip in self.reserved.items():
            self.machines.unassign(address, (ip.get("droplet") or {}).get("id"))
        self.machines.close()

    # -- time --------------------------------------------------------------------------------------

    def after(self, delay: float, effect: Callable[[], None], work: Callable[[], None] | None = None) -> Later:
        """`effect` in `delay` seconds (and once `work`, started now in a thread, is done)."""
        later = Later(self.clock.now() + delay, effect)
        if work is not None:
            later.work = threading.Event()

            def run():
                try:
                    work()
                except Exception as error:  # the service's own failure: the action errors
                    later.failed.append(error)
                finally:
                    later.work.set()

            self.run(run)
        self.later.append(later)
        return later

    def run(self, work: Callable[[], None]) -> None:
        """Work on the machines: in a thread of its own for test droplets (it takes their time), at once
        on Paper (instant, and so in the same order in every run)."""
        if isinstance(self.machines, Paper):
            work()
        else:
            threading.Thread(target=work, daemon=True).start()

    def quiesce(self) -> None:
        """Everything under way carried out, as if long enough had passed."""
        for later in list(self.later):
            if later.work is not None:
                later.work.wait(timeout=300)
        with self.lock:
            if isinstance(self.clock, Ticks):
                self.clock.advance(3600)
            self.advance(everything=True)

    def advance(self, everything: bool = False) -> None:
        """Carry out what is due (under the lock), in the order it is due."""
        while True:
            due = [later for later in self.later if (everything or later.due <= self.clock.now())
                   and (later.work is None or later.work.is_set())]
            if not due:
                return
            later = min(due, key=lambda item: item.due)
            self.later.remove(later)
            later.effect()

    def busy(self, droplet_id: int) -> bool:
        return any(droplet_id in droplets for droplets in self.occupied.values())

    def refuse_if_busy(self, *droplet_ids: int | None) -> None:
        if any(droplet_id is not None and self.busy(droplet_id) for droplet_id in droplet_ids):
            raise Refused(422, "unprocessable_entity", PENDING)

    def action(self, kind: str, resource_id: int, resource_type: str, region: str = "nyc3", *, delay: float = 0.0,
               work: Callable[[], None] | None = None, effect: Callable[[], None] | None = None,
               droplets: tuple[int, ...] = ()) -> dict:
        """An action, in progress for `delay` seconds and until `work` is done; then `effect`. The
        `droplets` it concerns have a pending event meanwhile."""
        action_id = next(self.ids)
        record = {"id": action_id, "status": "in-progress", "type": kind, "started_at": now(), "completed_at": None,
                  "resource_id": resource_id, "resource_type": resource_type, "region": region_json(region),
                  "region_slug": region}
        self.actions[action_id] = record
        self.occupied[action_id] = set(droplets)

        def complete():
            self.occupied.pop(action_id, None)
            if pending.failed:
                record.update(status="errored", completed_at=now())
                self.violations.append(f"stand-in: {kind} of {resource_type} {resource_id} failed: "
                                       f"{pending.failed[0]!r}")
                return
            if effect is not None:
                effect()
            record.update(status="completed", completed_at=now())

        pending = self.after(delay, complete, work)
        return record

    # -- handling ---------------------------------------------------------------------------------

    def handle(self, method: str, path: str, query: dict, body: Any, token: str) -> tuple[int, Any, dict]:
        with self.lock:
            self.clock.tick()
            self.advance()
            after = None
            number = len(self.requests) + 1  # one client at a time: its requests are answered in turn
            for fault in self.faults:
                if fault.times > 0 and fault.method == method and re.search(fault.path, path) \
                        and fault.at in (None, number):
                    if not fault.after:
                        fault.times -= 1
                        raise Refused(fault.status, fault.ident, fault.message, fault.headers)
                    after = fault  # once the request has done what it does
                    break
            if token != TOKEN:
                raise Refused(401, "unauthorized", "Unable to authenticate you")
            for route_method, pattern, handler in ROUTES:
                match = re.fullmatch(pattern, path)
                if match and route_method == method:
                    answer = handler(self, *match.groups(), query=query, body=body)
                    self.advance()  # what takes no time is done before the answer
                    if after is not None:
                        after.times -= 1
                        raise Refused(after.status, after.ident, after.message, after.headers)
                    return answer
            raise Refused(404, "not_found", NOT_FOUND)


class _Handler(http.server.BaseHTTPRequestHandler):
    api: StandIn
    protocol_version = "HTTP/1.1"
    checked: dict = {}  # what the description said of a request or answer seen before (most repeat)

    def setup(self):
        super().setup()
        # The answer's head and body are written apart: without this, the client waits for a delayed
        # ACK (40 ms) at every request.
        self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def do_GET(self):
        self.serve()

    def do_POST(self):
        self.serve()

    def do_PUT(self):
        self.serve()

    def do_DELETE(self):
        self.serve()

    def validate(self, key: tuple, check: Callable[[], None]) -> str | None:
        if key not in self.checked:
            try:
                check()
                self.checked[key] = None
            except Exception as error:
                cause = getattr(error, "__cause__", None) or error
                self.checked[key] = f"{error}: {cause}"
        return self.checked[key]

    def serve(self) -> None:
        from openapi_core.testing import MockRequest, MockResponse

        parts = urllib.parse.urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        query = {k: v[-1] for k, v in urllib.parse.parse_qs(parts.query).items()}
        headers = {k: v for k, v in self.headers.items()}
        api = self.api
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        described = json.dumps(_described(self.command, parts.path, body)).encode() if body is not None else raw
        request = MockRequest(SERVER, self.command.lower(), parts.path, args=query, data=described or None,
                              headers=headers, content_type=self.headers.get("Content-Type") or "application/json")
        violation = self.validate(("request", self.command, self.path, described),
                                  lambda: description().validate_request(request))
        if violation:
            api.violations.append(f"request {self.command} {self.path}: {violation}")
            status, document, extra = 400, {"id": "bad_request", "message": f"stand-in: {violation}"}, {}
        else:
            token = headers.get("Authorization", "").removeprefix("Bearer ").strip()
            try:
                status, document, extra = api.handle(self.command, parts.path, query, body, token)
            except Refused as refused:
                status, document, extra = refused.status, {"id": refused.ident, "message": refused.message}, \
                    refused.headers
        payload = json.dumps(document).encode() if document is not None else b""
        reply_headers = {"ratelimit-limit": "5000", "ratelimit-remaining": "4999",
                         "ratelimit-reset": str(int(datetime.datetime.now().timestamp()) + 60), **extra}
        if payload:
            reply_headers["Content-Type"] = "application/json"
        response = MockResponse(payload or b"", status_code=status, headers=reply_headers,
                                content_type="application/json" if payload else None)
        violation = self.validate(("response", self.command, self.path, described, status, payload,
                                   tuple(sorted(extra))),
                                  lambda: description().validate_response(request, response))
        if violation:
            api.violations.append(f"response {status} to {self.command} {self.path}: {violation}")
        with api.lock:
            api.requests.append((self.command, parts.path, status))
            api.log.append({"method": self.command, "path": parts.path, "status": status,
                            "body": body if self.command != "GET" else None})
            count = len(api.requests)
        if api.after_request is not None and api.after_request(count, self.command, parts.path):
            self.close_connection = True
            return
        self.send_response(status)
        for name, value in reply_headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args):
        pass


# -- resources as DigitalOcean describes them -----------------------------------------------------

def region_json(slug: str) -> dict:
    return {"name": {"nyc3": "New York 3", "fra1": "Frankfurt 1", "sgp1": "Singapore 1"}.get(slug, slug), "slug": slug,
            "features": ["backups", "ipv6", "metadata", "install_agent"], "available": True,
            "sizes": [s for s, spec in SIZES.items() if slug in spec[4]]}


def size_json(slug: str) -> dict:
    vcpus, memory, disk, price, regions = SIZES[slug]
    return {"slug": slug, "memory": memory, "vcpus": vcpus, "disk": disk, "transfer": 4.0, "price_monthly": price,
            "price_hourly": round(price / 672, 5), "regions": regions, "available": True,
            "description": "Basic"}


def page(items: list, key: str, query: dict) -> tuple[int, dict, dict]:
    per_page, number = int(query.get("per_page", 20)), int(query.get("page", 1))
    chosen = items[(number - 1) * per_page:number * per_page]
    links: dict = {}
    if number * per_page < len(items):
        links["pages"] = {"next": f"{SERVER}/v2/{key}?page={number + 1}&per_page={per_page}"}
    return 200, {key: chosen, "links": links, "meta": {"total": len(items)}}, {}


def droplet_json(api: StandIn, droplet: dict) -> dict:
    vcpus, memory, disk, price, _ = SIZES[droplet["size_slug"]]
    networks = {"v4": [{"ip_address": droplet["ip"], "netmask": "255.255.255.0", "gateway": droplet["ip"].rsplit(".", 1)[0]
                        + ".1", "type": "public"}] if droplet.get("ip") else [], "v6": []}
    image = droplet["image"]
    return {"id": droplet["id"], "name": droplet["name"], "memory": memory, "vcpus": vcpus, "disk": disk,
            "locked": droplet["status"] == "new", "status": droplet["status"], "created_at": droplet["created_at"],
            "features": ["monitoring"] if droplet.get("monitoring") else [], "backup_ids": [],
            "next_backup_window": None, "snapshot_ids": [],
            "image": {"id": image["id"], "name": image["name"], "type": image["type"], "distribution": "Debian",
                      "slug": image.get("slug"), "public": image.get("slug") is not None, "regions": ["nyc3"],
                      "created_at": image["created_at"], "min_disk_size": 25, "size_gigabytes": 2.5,
                      "description": "", "tags": [], "status": "available", "error_message": ""},
            "volume_ids": [v for v, volume in api.volumes.items() if droplet["id"] in volume["droplet_ids"]],
            "size": size_json(droplet["size_slug"]), "size_slug": droplet["size_slug"], "networks": networks,
            "region": region_json(droplet["region"]), "tags": droplet["tags"]}


def volume_json(volume: dict) -> dict:
    return {"id": volume["id"], "region": region_json(volume["region"]), "droplet_ids": volume["droplet_ids"],
            "name": volume["name"], "description": volume.get("description", ""),
            "size_gigabytes": volume["size_gigabytes"], "created_at": volume["created_at"],
            "filesystem_type": "", "filesystem_label": "", "tags": volume["tags"]}


def reserved_json(api: StandIn, address: dict) -> dict:
    droplet = address.get("droplet")
    return {"ip": address["ip"], "region": region_json(address["region"]),
            "droplet": droplet_json(api, api.droplets[droplet["id"]]) if droplet and droplet["id"] in api.droplets
            else None, "locked": bool(address.get("locked")), "project_id": "746c6152-2fa2-11ed-92d3-27aaa54e4988"}


def snapshot_json(snapshot: dict, resource_type: str) -> dict:
    return {"id": str(snapshot["id"]), "name": snapshot["name"], "created_at": snapshot["created_at"],
            "regions": snapshot.get("regions", ["nyc3"]), "resource_id": str(snapshot.get("resource_id", "")),
            "resource_type": resource_type, "min_disk_size": snapshot.get("min_disk_size", 1),
            "size_gigabytes": snapshot["size_gigabytes"], "tags": snapshot.get("tags", [])}


def rule_json(rule: dict) -> dict:
    """A firewall rule as DigitalOcean answers it: "0" for ICMP and for all ports (godo #149: create
    takes "all", the API returns "0"; Terraform's firewalls.go: "If protocol is `icmp` the API returns
    0 for when port was not specified")."""
    answer = dict(rule)
    if rule.get("protocol") == "icmp" or rule.get("ports") in (None, "all"):
        answer["ports"] = "0"
    return answer


# -- the endpoints ----------------------------------------------------------------------------------

def account_keys(api, query, body):
    return page(api.keys, "ssh_keys", query)


def sizes(api, query, body):
    return page([size_json(s) for s in SIZES], "sizes", query)


def list_droplets(api, query, body):
    tag, name = query.get("tag_name"), query.get("name")
    # A droplet just made is listed a moment later (digitalocean/api-v2 #202).
    found = [droplet_json(api, d) for d in api.droplets.values() if tag in (None, *d["tags"])
             and name in (None, d["name"]) and d["listed"] <= api.clock.now()]
    return page(found, "droplets", query)


def get_droplet(api, droplet_id, query, body):
    droplet = api.droplets.get(int(droplet_id))
    if droplet is None:
        raise Refused(404, "not_found", NOT_FOUND)
    return 200, {"droplet": droplet_json(api, droplet)}, {}


def create_droplet(api, query, body):
    if len(api.droplets) >= api.droplet_limit:
        raise Refused(422, "unprocessable_entity", "creating this/these droplet(s) will exceed your droplet limit")
    size, region = body["size"], body["region"]
    if size not in SIZES or region not in SIZES[size][4]:
        raise Refused(422, "unprocessable_entity", "Size is not available in this region.")
    image = body["image"]
    if isinstance(image, int) or (isinstance(image, str) and image.isdigit()):
        snapshot = api.images.get(int(image))
        if snapshot is None:
            raise Refused(422, "unprocessable_entity", "You specified an invalid image for Droplet creation.")
        # An image makes droplets only in its regions, on a disk of at least its min_disk_size (the
        # description's snapshots_base.yml: "regions: the regions that the snapshot is available in",
        # "min_disk_size: the minimum size in GB required for a volume or Droplet to use this snapshot").
        # DigitalOcean's wording of these two refusals was not found: these are the stand-in's.
        if region not in snapshot["regions"]:
            raise Refused(422, "unprocessable_entity", f"The image is not available in the region {region}.")
        if snapshot["min_disk_size"] > SIZES[size][2]:
            raise Refused(422, "unprocessable_entity",
                          f"The image needs a disk of at least {snapshot['min_disk_size']} GB; {size} has less.")
        image_json, stack = {"id": snapshot["id"], "name": snapshot["name"], "type": "snapshot",
                             "created_at": snapshot["created_at"], "slug": None}, api.stacks[snapshot["id"]]
    elif image in BASE_IMAGES:
        image_json, stack = {"id": 100000 + BASE_IMAGES.index(image), "name": image, "type": "base",
                             "created_at": "2026-01-01T00:00:00Z", "slug": image}, None
    else:
        raise Refused(422, "unprocessable_entity", "You specified an invalid image for Droplet creation.")
    keys = {str(k["id"]) for k in api.keys} | {k["fingerprint"] for k in api.keys}
    if any(str(key) not in keys for key in body.get("ssh_keys") or []):
        raise Refused(422, "unprocessable_entity", "ssh key not found")
    attached = {}
    for volume_id in body.get("volumes") or []:
        volume = api.volumes.get(volume_id)
        if volume is None or volume["droplet_ids"] or volume["region"] != region:
            raise Refused(422, "unprocessable_entity", "a volume must exist in the droplet's region, unattached")
        attached[volume["name"]] = volume_id
    droplet_id = next(api.ids)
    droplet = {"id": droplet_id, "name": body["name"], "status": "new", "created_at": now(), "size_slug": size,
               "region": region, "tags": list(body.get("tags") or []), "image": image_json,
               "monitoring": body.get("monitoring", False), "ip": None,
               "listed": api.clock.now() + api.latency.listed}
    api.droplets[droplet_id] = droplet
    api.tags.update(droplet["tags"])
    api.made["droplet"] += 1
    for volume_id in attached.values():
        api.volumes[volume_id]["droplet_ids"] = [droplet_id]
    booted: dict = {}

    def boot():
        booted["ip"] = api.machines.boot(droplet_id, body.get("user_data") or "", stack, attached)

    def started():
        droplet.update(ip=booted["ip"], status="active")
        for name, volume_id in attached.items():  # the volumes' own attach actions follow the create
            api.action("attach_volume", droplet_id, "volume", region, delay=api.latency.attach, droplets=(droplet_id,))

    action = api.action("create", droplet_id, "droplet", region, delay=api.latency.create, work=boot, effect=started,
                        droplets=(droplet_id,))
    return 202, {"droplet": droplet_json(api, droplet),
                 "links": {"actions": [{"id": action["id"], "rel": "create",
                                        "href": f"{SERVER}/v2/actions/{action['id']}"}]}}, {}


def destroy_droplet(api, droplet_id, query, body):
    droplet = api.droplets.get(int(droplet_id))
    if droplet is None or droplet["status"] == "archive":
        raise Refused(404, "not_found", NOT_FOUND)
    # Destroying is not graceful, and takes a while: the droplet is listed as `archive`, its volumes
    # and address still held, until it is gone (Terraform's waitForDropletDestroy waits for that).
    droplet["status"] = "archive"

    def gone():
        api.droplets.pop(droplet["id"], None)
        for volume in api.volumes.values():
            if droplet["id"] in volume["droplet_ids"]:
                volume["droplet_ids"] = []
        for address in api.reserved.values():
            if (address.get("droplet") or {}).get("id") == droplet["id"]:
                api.machines.unassign(address["ip"], droplet["id"])
                address["droplet"] = None
        api.run(functools.partial(api.machines.destroy, droplet["id"]))

    api.after(api.latency.destroy, gone)
    return 204, None, {}


def droplet_action(api, droplet_id, query, body):
    droplet = api.droplets.get(int(droplet_id))
    if droplet is None or droplet["status"] == "archive":
        raise Refused(404, "not_found", NOT_FOUND)
    api.refuse_if_busy(droplet["id"])
    kind, region = body["type"], droplet["region"]
    if kind == "shutdown":
        # "this action guarantees that the command is issued, not that it succeeds" (the description's
        # dropletActions_post.yml; api-v2 #79, droplet_kit #50): the action completes at once, the droplet
        # is off when its guest has stopped, and never if it hangs. An off droplet takes it without error
        # (Terraform's resource_droplet.go).
        if droplet["status"] == "active" and droplet["id"] not in api.hung:
            def off():
                droplet["status"] = "off"
            api.after(api.latency.shutdown, off, work=functools.partial(api.machines.shutdown, droplet["id"]))
        return 201, {"action": api.action(kind, droplet["id"], "droplet", region)}, {}
    if kind == "power_off":
        def cut():
            droplet["status"] = "off"
        work = functools.partial(api.machines.power_off, droplet["id"]) if droplet["status"] == "active" else None
        return 201, {"action": api.action(kind, droplet["id"], "droplet", region, delay=api.latency.power_off,
                                          work=work, effect=cut, droplets=(droplet["id"],))}, {}
    if kind == "power_on":
        def on():
            droplet["status"] = "active"
        return 201, {"action": api.action(kind, droplet["id"], "droplet", region,
                                          work=functools.partial(api.machines.power_on, droplet["id"]), effect=on,
                                          droplets=(droplet["id"],))}, {}
    raise Refused(422, "unprocessable_entity", f"stand-in: droplet action {kind} is not implemented")


def get_action(api, action_id, query, body):
    action = api.actions.get(int(action_id))
    if action is None:
        raise Refused(404, "not_found", NOT_FOUND)
    return 200, {"action": action}, {}


def list_volumes(api, query, body):
    found = [volume_json(v) for v in api.volumes.values()
             if query.get("name") in (None, v["name"]) and query.get("region") in (None, v["region"])]
    return page(found, "volumes", query)


def get_volume(api, volume_id, query, body):
    volume = api.volumes.get(volume_id)
    if volume is None:
        raise Refused(404, "not_found", NOT_FOUND)
    return 200, {"volume": volume_json(volume)}, {}


def create_volume(api, query, body):
    region = body.get("region", "nyc3")
    if any(v["name"] == body["name"] and v["region"] == region for v in api.volumes.values()):
        raise Refused(409, "conflict", "a volume with that name already exists in this region")
    volume_id = hashlib.sha256(f"{body['name']}{next(api.ids)}".encode()).hexdigest()[:8] + \
        "-e098-11e5-ad9f-000f53306ae1"
    snapshot = body.get("snapshot_id")
    gigabytes = body.get("size_gigabytes")
    if snapshot:
        found = api.volume_snapshots.get(snapshot)
        if found is None:
            raise Refused(404, "not_found", "snapshot not found")
        # "Snapshots of volumes cannot be moved between regions" (docs.digitalocean.com/products/
        # snapshots/details/limits/).
        if region not in found["regions"]:
            raise Refused(422, "unprocessable_entity", f"the snapshot is not available in {region}")
        gigabytes = max(gigabytes or 0, found["min_disk_size"])
    volume = {"id": volume_id, "name": body["name"], "region": region, "droplet_ids": [],
              "size_gigabytes": gigabytes, "created_at": now(), "tags": list(body.get("tags") or []),
              "description": body.get("description", ""), "snapshotted": None}
    api.machines.make_volume(volume_id, gigabytes, snapshot or None)
    api.volumes[volume_id] = volume
    api.made["volume"] += 1
    api.tags.update(volume["tags"])
    return 201, {"volume": volume_json(volume)}, {}


def delete_volume(api, volume_id, query, body):
    volume = api.volumes.get(volume_id)
    if volume is None:
        raise Refused(404, "not_found", NOT_FOUND)
    if volume["droplet_ids"]:
        raise Refused(409, "conflict", "volume is attached to a droplet: detach it first")
    api.volumes.pop(volume_id)
    api.machines.drop_volume(volume_id)
    return 204, None, {}


def volume_action(api, volume_id, query, body):
    volume = api.volumes.get(volume_id)
    if volume is None:
        raise Refused(404, "not_found", NOT_FOUND)
    kind, droplet_id, region = body["type"], body.get("droplet_id"), volume["region"]
    if kind in ("attach", "detach"):
        droplet = api.droplets.get(droplet_id)
        if droplet is None or droplet["status"] == "archive":
            raise Refused(404, "not_found", NOT_FOUND)
        api.refuse_if_busy(droplet_id)
    if kind == "attach":
        if volume["droplet_ids"]:
            raise Refused(422, "unprocessable_entity", "volume is already attached to another droplet")
        if droplet["region"] != region:
            raise Refused(422, "unprocessable_entity", "the volume and the droplet must be in the same region")

        def attached():  # the device appears when the action completes
            api.machines.attach(droplet_id, volume["name"], volume_id)
            volume["droplet_ids"] = [droplet_id]
        action = api.action("attach_volume", droplet_id, "volume", region, delay=api.latency.attach,
                            effect=attached, droplets=(droplet_id,))
    elif kind == "detach":
        if droplet_id not in volume["droplet_ids"]:
            raise Refused(422, "unprocessable_entity", "volume is not attached to this droplet")

        def detached():
            api.machines.detach(droplet_id, volume["name"])
            volume["droplet_ids"] = []
        action = api.action("detach_volume", droplet_id, "volume", region, delay=api.latency.detach,
                            effect=detached, droplets=(droplet_id,))
    elif kind == "resize":
        if body["size_gigabytes"] <= volume["size_gigabytes"]:
            raise Refused(422, "unprocessable_entity", "volumes can only be resized to a larger size")
        api.refuse_if_busy(*volume["droplet_ids"])
        size = body["size_gigabytes"]

        def grown():
            volume["size_gigabytes"] = size
        action = api.action("resize_volume", droplet_id or 0, "volume", region, delay=api.latency.resize,
                            work=functools.partial(api.machines.grow_volume, volume_id, size), effect=grown,
                            droplets=tuple(volume["droplet_ids"]))
    else:
        raise Refused(422, "unprocessable_entity", f"stand-in: volume action {kind} is not implemented")
    return 202, {"action": action}, {}


def list_volume_snapshots(api, volume_id, query, body):
    found = [snapshot_json(s, "volume") for s in api.volume_snapshots.values() if s["resource_id"] == volume_id]
    return page(found, "snapshots", query)


def create_volume_snapshot(api, volume_id, query, body):
    volume = api.volumes.get(volume_id)
    if volume is None:
        raise Refused(404, "not_found", NOT_FOUND)
    if sum(1 for s in api.volume_snapshots.values() if s["resource_id"] == volume_id) >= 25:
        raise Refused(422, "unprocessable_entity", "a volume may have at most 25 snapshots")
    # "For each volume, you can create up to one snapshot every 10 minutes" (docs.digitalocean.com/
    # products/snapshots/details/limits/). The refusal's wording is the stand-in's.
    if volume["snapshotted"] is not None and api.clock.now() - volume["snapshotted"] < 600:
        raise Refused(422, "unprocessable_entity", "a volume can be snapshotted once every 10 minutes")
    snapshot_id = f"{next(api.ids):08d}-3e2d-11eb-b0e8-0a58ac144b9d"
    size = api.machines.snapshot_volume(volume_id, snapshot_id)
    volume["snapshotted"] = api.clock.now()
    snapshot = {"id": snapshot_id, "name": body["name"], "created_at": now(), "regions": [volume["region"]],
                "resource_id": volume_id, "min_disk_size": volume["size_gigabytes"], "size_gigabytes": size,
                "tags": list(body.get("tags") or [])}
    api.volume_snapshots[snapshot_id] = snapshot
    api.made["volume_snapshot"] += 1
    return 201, {"snapshot": snapshot_json(snapshot, "volume")}, {}


def list_snapshots(api, query, body):
    kind = query.get("resource_type")
    found = ([snapshot_json(s, "droplet") for s in api.images.values()] if kind in (None, "droplet") else []) + \
        ([snapshot_json(s, "volume") for s in api.volume_snapshots.values()] if kind in (None, "volume") else [])
    return page(found, "snapshots", query)


def delete_snapshot(api, snapshot_id, query, body):
    if snapshot_id in api.volume_snapshots:
        api.volume_snapshots.pop(snapshot_id)
        api.machines.drop_snapshot(snapshot_id)
    elif snapshot_id.isdigit() and int(snapshot_id) in api.images:
        api.images.pop(int(snapshot_id))
    else:
        raise Refused(404, "not_found", NOT_FOUND)
    return 204, None, {}


def list_reserved(api, query, body):
    return page([reserved_json(api, a) for a in api.reserved.values()], "reserved_ips", query)


def get_reserved(api, address, query, body):
    if address not in api.reserved:
        raise Refused(404, "not_found", NOT_FOUND)
    return 200, {"reserved_ip": reserved_json(api, api.reserved[address])}, {}


def create_reserved(api, query, body):
    if len(api.reserved) >= 3:
        raise Refused(422, "unprocessable_entity", "You have reached your limit of reserved IPs")
    droplet = None
    if "droplet_id" in body:  # reserved for a droplet: assigned to it, in its region
        droplet = api.droplets.get(body["droplet_id"])
        if droplet is None or droplet["status"] == "archive":
            raise Refused(422, "unprocessable_entity", "the droplet does not exist")
        api.refuse_if_busy(droplet["id"])
    region = droplet["region"] if droplet else body.get("region", "nyc3")
    address = str(next(a for a in api.machines.reserved.hosts() if str(a) not in api.reserved))
    api.reserved[address] = {"ip": address, "region": region, "droplet": None}
    api.made["reserved_ip"] += 1
    actions = []
    if droplet is not None:
        actions.append(assign(api, api.reserved[address], droplet))
    return 202, {"reserved_ip": reserved_json(api, api.reserved[address]),
                 "links": {"droplets": [], "actions": [{"id": a["id"], "rel": "assign_ip",
                                                        "href": f"{SERVER}/v2/actions/{a['id']}"} for a in actions]}}, {}


def assign(api, found: dict, droplet: dict) -> dict:
    """An assign_ip action. Meanwhile the address is `locked` and still where it was: just reserved for a
    droplet, it has `droplet: null` and `locked: true` (the description's example "Assigning to Droplet",
    resources/reserved_ips/responses/examples.yml)."""
    previous = (found.get("droplet") or {}).get("id")
    found["locked"] = True

    def assigned():  # the address moves when the action completes
        api.machines.unassign(found["ip"], previous)
        api.machines.assign(found["ip"], droplet["id"])
        found.update(droplet={"id": droplet["id"]}, locked=False)
    return api.action("assign_ip", droplet["id"], "reserved_ip", found["region"], delay=api.latency.assign,
                      effect=assigned, droplets=tuple(d for d in (droplet["id"], previous) if d))


def delete_reserved(api, address, query, body):
    found = api.reserved.get(address)
    if found is None:
        raise Refused(404, "not_found", NOT_FOUND)
    api.refuse_if_busy((found.get("droplet") or {}).get("id"))
    api.reserved.pop(address)
    api.machines.unassign(address, (found.get("droplet") or {}).get("id"))
    return 204, None, {}


def reserved_action(api, address, query, body):
    found = api.reserved.get(address)
    if found is None:
        raise Refused(404, "not_found", NOT_FOUND)
    previous = (found.get("droplet") or {}).get("id")
    if body["type"] == "assign":
        droplet = api.droplets.get(body["droplet_id"])
        # Reserved IPs "can only be assigned to Droplets within the same datacenter" (docs.digitalocean.com/
        # products/networking/reserved-ips/details/availability/).
        if droplet is None or droplet["status"] == "archive" or droplet["region"] != found["region"]:
            raise Refused(422, "unprocessable_entity", "the droplet must exist in the reserved IP's region")
        api.refuse_if_busy(droplet["id"], previous)
        action = assign(api, found, droplet)
    else:
        api.refuse_if_busy(previous)

        def unassigned():
            api.machines.unassign(address, previous)
            found["droplet"] = None
        action = api.action("unassign_ip", previous or 0, "reserved_ip", found["region"], delay=api.latency.assign,
                            effect=unassigned, droplets=(previous,) if previous else ())
    return 201, {"action": action}, {}


def list_tags(api, query, body):
    return page([{"name": t, "resources": {"count": 0, "last_tagged_uri": "",
                                           "droplets": {"count": 0, "last_tagged_uri": ""},
                                           "imgages": {"count": 0, "last_tagged_uri": ""},
                                           "volumes": {"count": 0, "last_tagged_uri": ""},
                                           "volume_snapshots": {"count": 0, "last_tagged_uri": ""},
                                           "databases": {"count": 0, "last_tagged_uri": ""}}}
                 for t in sorted(api.tags)], "tags", query)


def create_tag(api, query, body):
    api.tags.add(body["name"])
    return 201, {"tag": {"name": body["name"], "resources": {"count": 0}}}, {}


def delete_tag(api, name, query, body):
    name = urllib.parse.unquote(name)
    if name not in api.tags:
        raise Refused(404, "not_found", NOT_FOUND)
    api.tags.discard(name)
    for resource in list(api.droplets.values()) + list(api.volumes.values()):  # untagged everywhere
        if name in resource["tags"]:
            resource["tags"].remove(name)
    return 204, None, {}


def list_firewalls(api, query, body):
    return page(list(api.firewalls.values()), "firewalls", query)


def create_firewall(api, query, body):
    for rule in (body.get("inbound_rules") or []) + (body.get("outbound_rules") or []):
        # "422 You must specify a positive value for ports." (doctl #247; doctl #278: ICMP with "0").
        if rule.get("ports") == "0":
            raise Refused(422, "unprocessable_entity", "You must specify a positive value for ports.")
    firewall_id = hashlib.sha256(f"{body['name']}{next(api.ids)}".encode()).hexdigest()[:8] + \
        "-3e2d-11eb-b0e8-0a58ac144b9d"
    firewall = {"id": firewall_id, "status": "succeeded", "created_at": now(), "pending_changes": [],
                "name": body["name"], "droplet_ids": body.get("droplet_ids") or [], "tags": body.get("tags") or [],
                "inbound_rules": [rule_json(r) for r in body.get("inbound_rules") or []],
                "outbound_rules": [rule_json(r) for r in body.get("outbound_rules") or []]}
    api.firewalls[firewall_id] = firewall
    api.made["firewall"] += 1
    return 202, {"firewall": firewall}, {}


def delete_firewall(api, firewall_id, query, body):
    if api.firewalls.pop(firewall_id, None) is None:
        raise Refused(404, "not_found", NOT_FOUND)
    return 204, None, {}


def list_domains(api, query, body):
    return page([{"name": d, "ttl": 1800, "zone_file": ""} for d in api.domains], "domains", query)


def list_records(api, domain, query, body):
    if domain not in api.domains:
        raise Refused(404, "not_found", NOT_FOUND)
    name, kind = query.get("name"), query.get("type")
    found = [r for r in api.domains[domain] if kind in (None, r["type"])
             and name in (None, r["name"] + "." + domain if r["name"] != "@" else domain)]
    return page(found, "domain_records", query)


def create_record(api, domain, query, body):
    if domain not in api.domains:
        raise Refused(404, "not_found", NOT_FOUND)
    record = {"id": next(api.ids), "type": body["type"], "name": body["name"], "data": body["data"],
              "priority": None, "port": None, "ttl": body.get("ttl", 1800), "weight": None, "flags": None, "tag": None}
    api.domains[domain].append(record)
    api.made["domain_record"] += 1
    return 201, {"domain_record": record}, {}


def update_record(api, domain, record_id, query, body):
    record = next((r for r in api.domains.get(domain, []) if r["id"] == int(record_id)), None)
    if record is None:
        raise Refused(404, "not_found", NOT_FOUND)
    record.update({k: v for k, v in body.items() if k in ("data", "ttl", "name")})
    return 200, {"domain_record": record}, {}


def delete_record(api, domain, record_id, query, body):
    records = api.domains.get(domain, [])
    kept = [r for r in records if r["id"] != int(record_id)]
    if len(kept) == len(records):
        raise Refused(404, "not_found", NOT_FOUND)
    api.domains[domain] = kept
    return 204, None, {}


ROUTES: list[tuple[str, str, Callable[..., tuple[int, Any, dict]]]] = [
    ("GET", r"/v2/account/keys", account_keys),
    ("GET", r"/v2/sizes", sizes),
    ("GET", r"/v2/droplets", list_droplets),
    ("POST", r"/v2/droplets", create_droplet),
    ("GET", r"/v2/droplets/(\d+)", get_droplet),
    ("DELETE", r"/v2/droplets/(\d+)", destroy_droplet),
    ("POST", r"/v2/droplets/(\d+)/actions", droplet_action),
    ("GET", r"/v2/actions/(\d+)", get_action),
    ("GET", r"/v2/volumes", list_volumes),
    ("POST", r"/v2/volumes", create_volume),
    ("GET", r"/v2/volumes/([0-9a-f-]+)", get_volume),
    ("DELETE", r"/v2/volumes/([0-9a-f-]+)", delete_volume),
    ("POST", r"/v2/volumes/([0-9a-f-]+)/actions", volume_action),
    ("GET", r"/v2/volumes/([0-9a-f-]+)/snapshots", list_volume_snapshots),
    ("POST", r"/v2/volumes/([0-9a-f-]+)/snapshots", create_volume_snapshot),
    ("GET", r"/v2/snapshots", list_snapshots),
    ("DELETE", r"/v2/snapshots/([0-9a-f-]+)", delete_snapshot),
    ("GET", r"/v2/reserved_ips", list_reserved),
    ("POST", r"/v2/reserved_ips", create_reserved),
    ("GET", r"/v2/reserved_ips/([0-9.]+)", get_reserved),
    ("DELETE", r"/v2/reserved_ips/([0-9.]+)", delete_reserved),
    ("POST", r"/v2/reserved_ips/([0-9.]+)/actions", reserved_action),
    ("GET", r"/v2/tags", list_tags),
    ("POST", r"/v2/tags", create_tag),
    ("DELETE", r"/v2/tags/([^/]+)", delete_tag),
    ("GET", r"/v2/firewalls", list_firewalls),
    ("POST", r"/v2/firewalls", create_firewall),
    ("DELETE", r"/v2/firewalls/([0-9a-f-]+)", delete_firewall),
    ("GET", r"/v2/domains", list_domains),
    ("GET", r"/v2/domains/([^/]+)/records", list_records),
    ("POST", r"/v2/domains/([^/]+)/records", create_record),
    ("PUT", r"/v2/domains/([^/]+)/records/(\d+)", update_record),
    ("DELETE", r"/v2/domains/([^/]+)/records/(\d+)", delete_record),
]


def ca_bundle(ca, folder: Path) -> Path:
    """What the classimage process trusts to reach the stand-in: the host's CAs and the test CA."""
    bundle = folder / "ca-bundle.pem"
    shutil.copy(testdroplet.HOST_BUNDLE, bundle)
    with open(bundle, "a") as out:
        out.write("\n" + ca.certificate)
    return bundle
