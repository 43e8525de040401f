"""STAND-IN for DigitalOcean's API v2 (classimage tests): DigitalOcean cannot be reached from the
machines the tests run on. It implements the endpoints classimage uses, over HTTPS (a test CA), and
**validates every request and every response it sends against DigitalOcean's published API
description** (the vendored openapi archive, with openapi-core): a request classimage should not
send, or an answer DigitalOcean would not give, is recorded in `violations` (and refused), and the
tests assert there are none.

What it stands on is real wherever it can be:
- droplets are test droplets (tests/testdroplet.py) booted with the posted user data by the real
  cloud-init, on the image (with the stand-ins for TLJH's downloads) or on a registered snapshot;
- volumes are loop devices over sparse files, bound into a droplet at
  /dev/disk/by-id/scsi-0DO_Volume_<name> as DigitalOcean's appear; volume snapshots are copies;
- a reserved IP is an address on the droplet it is assigned to, routed to that droplet's veth;
- actions go from in-progress to completed as DigitalOcean's do (when the work is done).
Firewalls, DNS records and tags are only recorded. Faults (a bad token, a quota, rate limits,
server errors) are injected by tests with `fail()`.
"""

from __future__ import annotations

import datetime
import functools
import hashlib
import http.server
import ipaddress
import itertools
import json
import os
import re
import shutil
import ssl
import subprocess
import tarfile
import threading
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import testdroplet

HERE = Path(__file__).resolve().parent
VENDOR = Path(os.environ.get("CLASSIMAGE_VENDOR", HERE.parent.parent / "shared" / "vendor"))
ARCHIVE = "digitalocean-openapi-7c1300c.tar.gz"
SERVER = "https://api.digitalocean.com"  # the description's server, which requests are checked against
TOKEN = "dop_v1_" + "0" * 64  # what the stand-in's account accepts
RESERVED = ipaddress.ip_network("198.51.100.0/24")  # TEST-NET-2: reserved IPs
SIZES = {  # slug: (vcpus, memory MiB, disk GiB, price a month, regions)
    "s-1vcpu-1gb": (1, 1024, 25, 6.0, ["nyc3", "fra1", "sgp1"]),
    "s-2vcpu-4gb": (2, 4096, 80, 24.0, ["nyc3", "fra1", "sgp1"]),
    "s-4vcpu-8gb": (4, 8192, 160, 48.0, ["nyc3", "fra1"]),
}
BASE_IMAGES = ("ubuntu-24-04-x64", "ubuntu-22-04-x64", "debian-12-x64", "debian-11-x64")


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
    folder = testdroplet.CACHE / "openapi" / hashlib.sha256(archive.read_bytes()).hexdigest()[:16]
    if not (folder / "done").exists():
        folder.mkdir(parents=True, exist_ok=True)
        with tarfile.open(archive) as tar:
            tar.extractall(folder, filter="data")
        (folder / "done").touch()
    (main,) = folder.glob("*/specification/DigitalOcean-public.v2.yaml")
    # The description puts $refs where OpenAPI 3.0 allows none (tag descriptions): its own check
    # of the document is skipped; requests and responses are still checked against every schema.
    return OpenAPI.from_file_path(str(main), config=Config(spec_validator_cls=None))


class Refused(Exception):
    def __init__(self, status: int, ident: str, message: str, headers: dict | None = None):
        super().__init__(message)
        self.status, self.ident, self.message, self.headers = status, ident, message, headers or {}


@dataclass
class Fault:
    """A refusal tests inject: the next `times` requests matching method and path get it."""

    method: str
    path: str  # a regular expression, searched in the path
    status: int
    ident: str
    message: str
    times: int = 1
    headers: dict = field(default_factory=dict)


# -- the machines behind droplets, volumes and addresses -------------------------------------------

class Machines:
    """Test droplets, loop devices and routed addresses: what a DigitalOcean region provides."""

    def __init__(self, folder: Path, layers: Callable[[], list[Path]],
                 prepare: Callable[[testdroplet.TestDroplet], None] | None = None):
        """`layers`: what a droplet from a base image stands on; `prepare`: done to each droplet's
        disk before it boots (what the test's world has in it, e.g. a course repository)."""
        self.folder, self.base_layers, self.prepare = folder, layers, prepare
        self.droplets: dict[int, testdroplet.TestDroplet] = {}
        self.devices: dict[str, str] = {}  # volume id -> /dev/loopN
        self.routes: dict[str, str] = {}  # reserved address -> the host's veth it is routed to
        self.addresses: dict[int, set[str]] = {}  # droplet id -> the reserved addresses assigned to it
        self.lock = threading.Lock()

    def backing(self, volume_id: str) -> Path:
        return self.folder / "volumes" / f"{volume_id}.img"

    def make_volume(self, volume_id: str, gigabytes: int, source: Path | None = None) -> None:
        path = self.backing(volume_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        if source is not None:
            subprocess.run(["cp", "--sparse=always", str(source), str(path)], check=True)
        subprocess.run(["truncate", "--size", f"{gigabytes}G", str(path)], check=True)
        self.devices[volume_id] = subprocess.run(["losetup", "--find", "--show", str(path)], capture_output=True,
                                                 text=True, check=True).stdout.strip()

    def grow_volume(self, volume_id: str, gigabytes: int) -> None:
        """The volume's device gets bigger where it is attached, as a resized volume does."""
        subprocess.run(["truncate", "--size", f"{gigabytes}G", str(self.backing(volume_id))], check=True)
        subprocess.run(["losetup", "--set-capacity", self.devices[volume_id]], check=True)

    def snapshot_volume(self, volume_id: str, snapshot_id: str) -> None:
        target = self.folder / "volume-snapshots" / f"{snapshot_id}.img"
        target.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(["sync"], check=True)
        subprocess.run(["cp", "--sparse=always", str(self.backing(volume_id)), str(target)], check=True)

    def snapshot_file(self, snapshot_id: str) -> Path:
        return self.folder / "volume-snapshots" / f"{snapshot_id}.img"

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
        droplet = self.droplets[droplet_id]
        if droplet.nspawn is None:
            return  # powered off: it appears at the next boot (--bind)
        node = os.stat(self.devices[volume_id]).st_rdev
        droplet.sh(f"mkdir -p /dev/disk/by-id && mknod {device_path(name)} b {os.major(node)} {os.minor(node)}",
                   check=True)

    def detach(self, droplet_id: int, name: str) -> None:
        droplet = self.droplets.get(droplet_id)
        if droplet is None:
            return
        droplet.extra_nspawn = [o for o in droplet.extra_nspawn if not o.endswith(f":{device_path(name)}")]
        if droplet.nspawn is not None:
            droplet.sh(f"umount --lazy {device_path(name)} 2>/dev/null; rm -f {device_path(name)}")

    def shutdown(self, droplet_id: int) -> None:
        droplet = self.droplets.get(droplet_id)
        if droplet is not None:
            droplet.shutdown(timeout=120)

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


def device_path(name: str) -> str:
    return f"/dev/disk/by-id/scsi-0DO_Volume_{name}"


# -- the API --------------------------------------------------------------------------------------

class StandIn:
    """DigitalOcean's API for one test: `with StandIn(folder, machines) as api: ... api.url ...`."""

    def __init__(self, folder: Path, machines: Machines, ca):
        self.folder, self.machines, self.ca = folder, machines, ca
        self.ids = itertools.count(3164444)
        self.lock = threading.RLock()
        self.droplets: dict[int, dict] = {}
        self.volumes: dict[str, dict] = {}
        self.volume_snapshots: dict[str, dict] = {}
        self.images: dict[int, dict] = {}  # droplet snapshots, as Packer makes them
        self.stacks: dict[int, list[Path]] = {}
        self.reserved: dict[str, dict] = {}
        self.actions: dict[int, dict] = {}
        self.pending: dict[int, threading.Event] = {}
        self.firewalls: dict[str, dict] = {}
        self.domains: dict[str, list[dict]] = {}
        self.tags: set[str] = set()
        self.keys = [{"id": 512190, "fingerprint": "3b:16:bf:e4:8b:00:8b:b8:59:8c:a9:d3:f0:19:45:fa",
                      "public_key": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGFjbGFzc2ltYWdlLXRlc3Qta2V5LW9ubHk= test",
                      "name": "instructor laptop"}]
        self.faults: list[Fault] = []
        self.requests: list[tuple[str, str, int]] = []
        self.violations: list[str] = []
        self.droplet_limit = 10
        self.server: http.server.ThreadingHTTPServer | None = None

    # -- what tests set up and look at ------------------------------------------------------------

    def add_domain(self, name: str) -> None:
        self.domains[name] = []

    def add_snapshot(self, name: str, stack: list[Path], created: str | None = None) -> int:
        """A droplet snapshot, as Packer leaves one in the account: `stack` is what droplets made
        from it stand on."""
        image_id = next(self.ids)
        self.images[image_id] = {"id": image_id, "name": name, "created_at": created or now(), "regions": ["nyc3"],
                                 "min_disk_size": 25, "size_gigabytes": 2.5, "tags": []}
        self.stacks[image_id] = stack
        return image_id

    def fail(self, method: str, path: str, status: int, ident: str, message: str, times: int = 1,
             headers: dict | None = None) -> None:
        self.faults.append(Fault(method, path, status, ident, message, times, headers or {}))

    def count(self, method: str | None = None) -> int:
        return sum(1 for m, _, _ in self.requests if method is None or m == method)

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.server.server_address[1]}"

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
        for event in self.pending.values():
            event.wait(timeout=300)
        for address, ip in self.reserved.items():
            self.machines.unassign(address, (ip.get("droplet") or {}).get("id"))
        self.machines.close()

    # -- handling ---------------------------------------------------------------------------------

    def handle(self, method: str, path: str, query: dict, body: Any, token: str) -> tuple[int, Any, dict]:
        for fault in self.faults:
            if fault.times > 0 and fault.method == method and re.search(fault.path, path):
                fault.times -= 1
                raise Refused(fault.status, fault.ident, fault.message, fault.headers)
        if token != TOKEN:
            raise Refused(401, "unauthorized", "Unable to authenticate you")
        for route_method, pattern, handler in ROUTES:
            match = re.fullmatch(pattern, path)
            if match and route_method == method:
                with self.lock:
                    return handler(self, *match.groups(), query=query, body=body)
        raise Refused(404, "not_found", "The resource you were accessing could not be found.")

    def action(self, kind: str, resource_id: int, resource_type: str, work: Callable[[], None] | None = None,
               region: str = "nyc3") -> dict:
        """An action, in progress until `work` (run in the background) is done."""
        action_id = next(self.ids)
        self.actions[action_id] = {"id": action_id, "status": "in-progress", "type": kind, "started_at": now(),
                                   "completed_at": None, "resource_id": resource_id, "resource_type": resource_type,
                                   "region": region_json(region), "region_slug": region}
        done = threading.Event()
        self.pending[action_id] = done

        def run():
            status = "completed"
            try:
                if work is not None:
                    work()
            except Exception as error:  # the action errors, as DigitalOcean's can
                status = "errored"
                self.violations.append(f"stand-in: {kind} of {resource_type} {resource_id} failed: {error!r}")
            with self.lock:
                self.actions[action_id].update(status=status, completed_at=now())
            done.set()

        threading.Thread(target=run, daemon=True).start()
        return self.actions[action_id]


class _Handler(http.server.BaseHTTPRequestHandler):
    api: StandIn
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        self.serve()

    def do_POST(self):
        self.serve()

    def do_PUT(self):
        self.serve()

    def do_DELETE(self):
        self.serve()

    def serve(self) -> None:
        from openapi_core.testing import MockRequest, MockResponse

        parts = urllib.parse.urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        query = {k: v[-1] for k, v in urllib.parse.parse_qs(parts.query).items()}
        headers = {k: v for k, v in self.headers.items()}
        request = MockRequest(SERVER, self.command.lower(), parts.path, args=query, data=raw or None,
                              headers=headers, content_type=self.headers.get("Content-Type") or "application/json")
        api = self.api
        try:
            description().validate_request(request)
        except Exception as error:
            cause = getattr(error, "__cause__", None) or error
            api.violations.append(f"request {self.command} {self.path}: {error}: {cause}")
            status, document, extra = 400, {"id": "bad_request", "message": f"stand-in: {error}"}, {}
        else:
            token = headers.get("Authorization", "").removeprefix("Bearer ").strip()
            try:
                body = json.loads(raw) if raw else None
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
        try:
            description().validate_response(request, response)
        except Exception as error:
            cause = getattr(error, "__cause__", None) or error
            api.violations.append(f"response {status} to {self.command} {self.path}: {error}: {cause}")
        api.requests.append((self.command, parts.path, status))
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
            "locked": False, "status": droplet["status"], "created_at": droplet["created_at"],
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
            else None, "locked": False, "project_id": "746c6152-2fa2-11ed-92d3-27aaa54e4988"}


def snapshot_json(snapshot: dict, resource_type: str) -> dict:
    return {"id": str(snapshot["id"]), "name": snapshot["name"], "created_at": snapshot["created_at"],
            "regions": snapshot.get("regions", ["nyc3"]), "resource_id": str(snapshot.get("resource_id", "")),
            "resource_type": resource_type, "min_disk_size": snapshot.get("min_disk_size", 1),
            "size_gigabytes": snapshot["size_gigabytes"], "tags": snapshot.get("tags", [])}


# -- the endpoints ----------------------------------------------------------------------------------

def account_keys(api, query, body):
    return page(api.keys, "ssh_keys", query)


def sizes(api, query, body):
    return page([size_json(s) for s in SIZES], "sizes", query)


def list_droplets(api, query, body):
    tag = query.get("tag_name")
    found = [droplet_json(api, d) for d in api.droplets.values() if tag is None or tag in d["tags"]]
    return page(found, "droplets", query)


def get_droplet(api, droplet_id, query, body):
    droplet = api.droplets.get(int(droplet_id))
    if droplet is None:
        raise Refused(404, "not_found", "The resource you were accessing could not be found.")
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
               "monitoring": body.get("monitoring", False), "ip": None}
    api.droplets[droplet_id] = droplet
    api.tags.update(droplet["tags"])
    for volume_id in attached.values():
        api.volumes[volume_id]["droplet_ids"] = [droplet_id]

    def work():
        droplet["ip"] = api.machines.boot(droplet_id, body.get("user_data") or "", stack, attached)
        droplet["status"] = "active"

    action = api.action("create", droplet_id, "droplet", work, region)
    return 202, {"droplet": droplet_json(api, droplet),
                 "links": {"actions": [{"id": action["id"], "rel": "create",
                                        "href": f"{SERVER}/v2/actions/{action['id']}"}]}}, {}


def destroy_droplet(api, droplet_id, query, body):
    droplet = api.droplets.pop(int(droplet_id), None)
    if droplet is None:
        raise Refused(404, "not_found", "The resource you were accessing could not be found.")
    for volume in api.volumes.values():
        if droplet["id"] in volume["droplet_ids"]:
            volume["droplet_ids"] = []
    for address in api.reserved.values():
        if (address.get("droplet") or {}).get("id") == droplet["id"]:
            api.machines.unassign(address["ip"], droplet["id"])
            address["droplet"] = None
    threading.Thread(target=api.machines.destroy, args=(droplet["id"],), daemon=True).start()
    return 204, None, {}


def droplet_action(api, droplet_id, query, body):
    droplet = api.droplets.get(int(droplet_id))
    if droplet is None:
        raise Refused(404, "not_found", "The resource you were accessing could not be found.")
    kind = body["type"]
    if kind in ("shutdown", "power_off"):
        def work():
            api.machines.shutdown(droplet["id"])
            droplet["status"] = "off"
    elif kind == "power_on":
        def work():
            api.machines.power_on(droplet["id"])
            droplet["status"] = "active"
    else:
        raise Refused(422, "unprocessable_entity", f"stand-in: droplet action {kind} is not implemented")
    return 201, {"action": api.action(kind, droplet["id"], "droplet", work, droplet["region"])}, {}


def get_action(api, action_id, query, body):
    action = api.actions.get(int(action_id))
    if action is None:
        raise Refused(404, "not_found", "The resource you were accessing could not be found.")
    return 200, {"action": action}, {}


def list_volumes(api, query, body):
    found = [volume_json(v) for v in api.volumes.values()
             if query.get("name") in (None, v["name"]) and query.get("region") in (None, v["region"])]
    return page(found, "volumes", query)


def get_volume(api, volume_id, query, body):
    volume = api.volumes.get(volume_id)
    if volume is None:
        raise Refused(404, "not_found", "The resource you were accessing could not be found.")
    return 200, {"volume": volume_json(volume)}, {}


def create_volume(api, query, body):
    if any(v["name"] == body["name"] and v["region"] == body.get("region") for v in api.volumes.values()):
        raise Refused(409, "conflict", "a volume with that name already exists in this region")
    volume_id = hashlib.sha256(f"{body['name']}{next(api.ids)}".encode()).hexdigest()[:8] + \
        "-e098-11e5-ad9f-000f53306ae1"
    snapshot = body.get("snapshot_id")
    source = None
    gigabytes = body.get("size_gigabytes")
    if snapshot:
        found = api.volume_snapshots.get(snapshot)
        if found is None:
            raise Refused(404, "not_found", "snapshot not found")
        source, gigabytes = api.machines.snapshot_file(snapshot), max(gigabytes or 0, found["min_disk_size"])
    volume = {"id": volume_id, "name": body["name"], "region": body.get("region", "nyc3"), "droplet_ids": [],
              "size_gigabytes": gigabytes, "created_at": now(), "tags": list(body.get("tags") or []),
              "description": body.get("description", "")}
    api.machines.make_volume(volume_id, gigabytes, source)
    api.volumes[volume_id] = volume
    return 201, {"volume": volume_json(volume)}, {}


def delete_volume(api, volume_id, query, body):
    volume = api.volumes.get(volume_id)
    if volume is None:
        raise Refused(404, "not_found", "The resource you were accessing could not be found.")
    if volume["droplet_ids"]:
        raise Refused(409, "conflict", "volume is attached to a droplet: detach it first")
    api.volumes.pop(volume_id)
    api.machines.drop_volume(volume_id)
    return 204, None, {}


def volume_action(api, volume_id, query, body):
    volume = api.volumes.get(volume_id)
    if volume is None:
        raise Refused(404, "not_found", "The resource you were accessing could not be found.")
    kind, droplet_id = body["type"], body.get("droplet_id")
    if kind == "attach":
        if volume["droplet_ids"]:
            raise Refused(422, "unprocessable_entity", "volume is already attached to another droplet")
        volume["droplet_ids"] = [droplet_id]
        work = functools.partial(api.machines.attach, droplet_id, volume["name"], volume_id)
    elif kind == "detach":
        if droplet_id not in volume["droplet_ids"]:
            raise Refused(422, "unprocessable_entity", "volume is not attached to this droplet")
        volume["droplet_ids"] = []
        work = functools.partial(api.machines.detach, droplet_id, volume["name"])
    elif kind == "resize":
        if body["size_gigabytes"] <= volume["size_gigabytes"]:
            raise Refused(422, "unprocessable_entity", "volumes can only be resized to a larger size")
        volume["size_gigabytes"] = body["size_gigabytes"]
        work = functools.partial(api.machines.grow_volume, volume_id, body["size_gigabytes"])
    else:
        raise Refused(422, "unprocessable_entity", f"stand-in: volume action {kind} is not implemented")
    return 202, {"action": api.action(f"{kind}_volume", droplet_id, "volume", work, volume["region"])}, {}


def list_volume_snapshots(api, volume_id, query, body):
    found = [snapshot_json(s, "volume") for s in api.volume_snapshots.values() if s["resource_id"] == volume_id]
    return page(found, "snapshots", query)


def create_volume_snapshot(api, volume_id, query, body):
    volume = api.volumes.get(volume_id)
    if volume is None:
        raise Refused(404, "not_found", "The resource you were accessing could not be found.")
    if sum(1 for s in api.volume_snapshots.values() if s["resource_id"] == volume_id) >= 25:
        raise Refused(422, "unprocessable_entity", "a volume may have at most 25 snapshots")
    snapshot_id = f"{next(api.ids):08d}-3e2d-11eb-b0e8-0a58ac144b9d"
    api.machines.snapshot_volume(volume_id, snapshot_id)
    snapshot = {"id": snapshot_id, "name": body["name"], "created_at": now(), "regions": [volume["region"]],
                "resource_id": volume_id, "min_disk_size": volume["size_gigabytes"],
                "size_gigabytes": round(os.stat(api.machines.snapshot_file(snapshot_id)).st_blocks * 512 / 2**30, 2),
                "tags": list(body.get("tags") or [])}
    api.volume_snapshots[snapshot_id] = snapshot
    return 201, {"snapshot": snapshot_json(snapshot, "volume")}, {}


def list_snapshots(api, query, body):
    kind = query.get("resource_type")
    found = ([snapshot_json(s, "droplet") for s in api.images.values()] if kind in (None, "droplet") else []) + \
        ([snapshot_json(s, "volume") for s in api.volume_snapshots.values()] if kind in (None, "volume") else [])
    return page(found, "snapshots", query)


def delete_snapshot(api, snapshot_id, query, body):
    if snapshot_id in api.volume_snapshots:
        api.volume_snapshots.pop(snapshot_id)
        api.machines.snapshot_file(snapshot_id).unlink(missing_ok=True)
    elif snapshot_id.isdigit() and int(snapshot_id) in api.images:
        api.images.pop(int(snapshot_id))
    else:
        raise Refused(404, "not_found", "The resource you were accessing could not be found.")
    return 204, None, {}


def list_reserved(api, query, body):
    return page([reserved_json(api, a) for a in api.reserved.values()], "reserved_ips", query)


def get_reserved(api, address, query, body):
    if address not in api.reserved:
        raise Refused(404, "not_found", "The resource you were accessing could not be found.")
    return 200, {"reserved_ip": reserved_json(api, api.reserved[address])}, {}


def create_reserved(api, query, body):
    if len(api.reserved) >= 3:
        raise Refused(422, "unprocessable_entity", "You have reached your limit of reserved IPs")
    address = str(RESERVED[len(api.reserved) + 10])
    api.reserved[address] = {"ip": address, "region": body.get("region", "nyc3"), "droplet": None}
    return 202, {"reserved_ip": reserved_json(api, api.reserved[address]),
                 "links": {"droplets": [], "actions": []}}, {}


def delete_reserved(api, address, query, body):
    found = api.reserved.pop(address, None)
    if found is None:
        raise Refused(404, "not_found", "The resource you were accessing could not be found.")
    api.machines.unassign(address, (found.get("droplet") or {}).get("id"))
    return 204, None, {}


def reserved_action(api, address, query, body):
    found = api.reserved.get(address)
    if found is None:
        raise Refused(404, "not_found", "The resource you were accessing could not be found.")
    if body["type"] == "assign":
        droplet = api.droplets.get(body["droplet_id"])
        if droplet is None or droplet["region"] != found["region"]:
            raise Refused(422, "unprocessable_entity", "the droplet must exist in the reserved IP's region")
        previous = (found.get("droplet") or {}).get("id")
        found["droplet"] = {"id": droplet["id"]}

        def work():
            api.machines.unassign(address, previous)
            api.machines.assign(address, droplet["id"])
        resource = droplet["id"]
    else:
        previous = (found.get("droplet") or {}).get("id")
        found["droplet"] = None

        def work():
            api.machines.unassign(address, previous)
        resource = previous or 0
    action = api.action(f"{body['type']}_ip", resource, "reserved_ip", work, found["region"])
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
        raise Refused(404, "not_found", "The resource you were accessing could not be found.")
    api.tags.discard(name)
    return 204, None, {}


def list_firewalls(api, query, body):
    return page(list(api.firewalls.values()), "firewalls", query)


def create_firewall(api, query, body):
    firewall_id = hashlib.sha256(f"{body['name']}{next(api.ids)}".encode()).hexdigest()[:8] + \
        "-3e2d-11eb-b0e8-0a58ac144b9d"
    firewall = {"id": firewall_id, "status": "succeeded", "created_at": now(), "pending_changes": [],
                "name": body["name"], "droplet_ids": body.get("droplet_ids") or [], "tags": body.get("tags") or [],
                "inbound_rules": body.get("inbound_rules") or [], "outbound_rules": body.get("outbound_rules") or []}
    api.firewalls[firewall_id] = firewall
    return 202, {"firewall": firewall}, {}


def delete_firewall(api, firewall_id, query, body):
    if api.firewalls.pop(firewall_id, None) is None:
        raise Refused(404, "not_found", "The resource you were accessing could not be found.")
    return 204, None, {}


def list_domains(api, query, body):
    return page([{"name": d, "ttl": 1800, "zone_file": ""} for d in api.domains], "domains", query)


def list_records(api, domain, query, body):
    if domain not in api.domains:
        raise Refused(404, "not_found", "The resource you were accessing could not be found.")
    name, kind = query.get("name"), query.get("type")
    found = [r for r in api.domains[domain] if kind in (None, r["type"])
             and name in (None, r["name"] + "." + domain if r["name"] != "@" else domain)]
    return page(found, "domain_records", query)


def create_record(api, domain, query, body):
    if domain not in api.domains:
        raise Refused(404, "not_found", "The resource you were accessing could not be found.")
    record = {"id": next(api.ids), "type": body["type"], "name": body["name"], "data": body["data"],
              "priority": None, "port": None, "ttl": body.get("ttl", 1800), "weight": None, "flags": None, "tag": None}
    api.domains[domain].append(record)
    return 201, {"domain_record": record}, {}


def update_record(api, domain, record_id, query, body):
    record = next((r for r in api.domains.get(domain, []) if r["id"] == int(record_id)), None)
    if record is None:
        raise Refused(404, "not_found", "The resource you were accessing could not be found.")
    record.update({k: v for k, v in body.items() if k in ("data", "ttl", "name")})
    return 200, {"domain_record": record}, {}


def delete_record(api, domain, record_id, query, body):
    records = api.domains.get(domain, [])
    kept = [r for r in records if r["id"] != int(record_id)]
    if len(kept) == len(records):
        raise Refused(404, "not_found", "The resource you were accessing could not be found.")
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
