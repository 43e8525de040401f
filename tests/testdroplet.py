"""The test droplet: a fresh Debian 12 system booted under systemd-nspawn, whose real cloud-init
consumes user data from a NoCloud seed exactly as a droplet's consumes it from DigitalOcean.

- `image()` builds the root filesystem once (debootstrap, then cloud-init inside it) and caches it
  under /var/cache/classimage-test-droplet/KEY, KEY being a hash of the recipe.
- `TestDroplet` lays a writable overlay over that image for one test (the image stays pristine;
  the droplet's writes land in its own `upper` folder), seeds it, and boots it in its own network namespace
  (`--network-veth`, never the host's): the host end of the veth gets 10.213.N.1, the droplet
  10.213.N.2, and the droplet reaches PyPI and Debian only through a tinyproxy the harness runs on
  the host end. It runs commands inside (nsenter), reboots it (same instance-id) or not, collects
  the logs, and always shuts down, ending its own processes by PID and removing its copy.

Root only. Independent of pytest, so a command-line verb can expose it later.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

CACHE = Path(os.environ.get("CLASSIMAGE_TEST_CACHE", "/var/cache/classimage-test-droplet"))
MIRROR = os.environ.get("CLASSIMAGE_TEST_MIRROR", "http://deb.debian.org/debian")
LOCKS = Path("/run/classimage-test-droplet")
# Debian packages are kept across droplets; PyPI's are not: this network's TLS-inspecting egress
# makes pip's responses uncacheable, so each droplet downloads them through its proxy.
APT_CACHE = CACHE / "downloads" / "apt-archives"
HOST_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

# Configuration of the image after its packages: a droplet-like locale, networkd to apply the
# network config cloud-init renders, NoCloud as the datasource, no waiting for router
# advertisements that never come on a veth, and dpkg without fsync (a throwaway disk: speed only).
SETUP = """\
set -eu
export DEBIAN_FRONTEND=noninteractive
echo force-unsafe-io > /etc/dpkg/dpkg.cfg.d/test-droplet-unsafe-io
apt-get update -q
apt-get install -y -q --no-install-recommends {packages}
echo '{locale} UTF-8' > /etc/locale.gen
locale-gen
update-locale LANG={locale}
systemctl enable systemd-networkd
printf 'datasource_list: [ NoCloud, None ]\\n' > /etc/cloud/cloud.cfg.d/90-test-droplet.cfg
mkdir -p /etc/systemd/network/10-cloud-init-host0.network.d
printf '[Network]\\nIPv6AcceptRA=no\\nLinkLocalAddressing=no\\n' \\
  > /etc/systemd/network/10-cloud-init-host0.network.d/50-test-droplet.conf
apt-get clean
"""


class DropletError(Exception):
    pass


@dataclass(frozen=True)
class Recipe:
    suite: str = "bookworm"
    include: tuple = ("systemd", "systemd-sysv", "dbus", "openssh-server", "locales", "ca-certificates",
                      "curl", "python3", "iproute2")
    packages: tuple = ("cloud-init", "sudo")  # cloud-init in debootstrap's --include fails to configure
    locale: str = "en_US.UTF-8"

    @property
    def key(self) -> str:
        text = json.dumps(asdict(self), sort_keys=True) + SETUP + MIRROR
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def run(argv: list[str], *, timeout: float = 600, **kwargs) -> subprocess.CompletedProcess:
    """A host command; a failure names the command and shows the tail of its output."""
    result = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, **kwargs)
    if result.returncode != 0:
        tail = "\n".join((result.stdout + result.stderr).splitlines()[-20:])
        raise DropletError(f"{' '.join(argv[:6])}... exited {result.returncode}:\n{tail}")
    return result


@contextlib.contextmanager
def locked(path: Path, blocking: bool = True):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        yield handle


def image(recipe: Recipe = Recipe(), log=print) -> Path:
    """The root filesystem for `recipe`, from the cache or built now (about two minutes)."""
    home = CACHE / recipe.key
    rootfs = home / "rootfs"
    if rootfs.is_dir():
        return rootfs
    with locked(CACHE / f"{recipe.key}.lock"):
        if rootfs.is_dir():
            return rootfs
        building = home / f"rootfs.building-{os.getpid()}"
        shutil.rmtree(building, ignore_errors=True)
        building.parent.mkdir(parents=True, exist_ok=True)
        started = time.monotonic()
        log(f"test droplet image {recipe.key}: debootstrap {recipe.suite} from {MIRROR}")
        run(["debootstrap", "--variant=minbase", f"--include={','.join(recipe.include)}", recipe.suite,
             str(building), MIRROR], timeout=1800)
        script = SETUP.format(packages=" ".join(recipe.packages), locale=recipe.locale)
        # Not booted: a container process running apt (as in a chroot), so the host's network is fine.
        run(["systemd-nspawn", "--quiet", "--register=no", "--keep-unit", "-D", str(building),
             "/bin/sh", "-c", script], timeout=1800, env={"PATH": PATH})
        (home / "recipe.json").write_text(json.dumps(asdict(recipe), indent=1) + "\n")
        building.rename(rootfs)
        log(f"test droplet image {recipe.key}: built in {time.monotonic() - started:.0f}s")
    return rootfs


def host_extra_cas() -> list[str]:
    """The CAs this host trusts beyond Debian's own set: here, the one that inspects TLS."""
    if not HOST_BUNDLE.exists():
        return []
    shipped = {p.read_text().strip() for p in Path("/usr/share/ca-certificates").rglob("*.crt")}
    blocks = re.findall(r"-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----", HOST_BUNDLE.read_text(), re.S)
    return [block + "\n" for block in blocks if block.strip() not in shipped]


class Proxy:
    """tinyproxy on the host: the droplets' only way to PyPI and Debian."""

    def __init__(self, listen: str, allow: str, folder: Path, port: int = 3128):
        self.listen, self.port, self.folder = listen, port, folder
        folder.mkdir(parents=True, exist_ok=True)
        self.config = folder / "tinyproxy.conf"
        self.config.write_text(f"Port {port}\nListen {listen}\nAllow {allow}\nTimeout 600\nMaxClients 200\n"
                               "ConnectPort 443\nLogLevel Connect\n")
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://{self.listen}:{self.port}"

    def start(self) -> None:
        log = open(self.folder / "tinyproxy.log", "ab")
        self.process = subprocess.Popen(["tinyproxy", "-d", "-c", str(self.config)], stdout=log, stderr=log,
                                        stdin=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection((self.listen, self.port), timeout=1):
                return
            if self.process.poll() is not None:
                break
            time.sleep(0.1)
        raise DropletError(f"tinyproxy did not start on {self.url}: see {self.folder / 'tinyproxy.log'}")

    def stop(self) -> None:
        _end(self.process)
        self.process = None


def claim(kind: str, numbers: range, none_left: str, free=lambda number: True):
    """The first of `numbers` no other process holds (by a lock held as long as the returned file
    is open) and `free` says is free: (the lock file, the number)."""
    LOCKS.mkdir(parents=True, exist_ok=True)
    for number in numbers:
        handle = open(LOCKS / f"{kind}-{number}.lock", "w")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            continue
        if free(number):
            return handle, number
        handle.close()
    raise DropletError(none_left)


class SharedProxy:
    """One proxy for every droplet this process boots, at a fixed address (10.213.255.W on the host's
    loopback; W is claimed with a lock, so processes side by side each have their own). Droplets
    route to it through their veth. Fixed, so the spec naming it (network.proxy) is the same for
    every droplet, and known before a droplet exists (the cloud stand-in's are made later)."""

    def __init__(self):
        self.lock, self.index = claim("proxy", range(1, 250), "no free address for a test proxy")
        self.address = f"10.213.255.{self.index}"
        run(["ip", "addr", "replace", f"{self.address}/32", "dev", "lo"])
        self.proxy = Proxy(self.address, "10.213.0.0/16", CACHE / "proxies" / str(self.index))
        self.proxy.start()
        atexit.register(self.close)

    @property
    def url(self) -> str:
        return self.proxy.url

    def close(self) -> None:
        self.proxy.stop()
        subprocess.run(["ip", "addr", "del", f"{self.address}/32", "dev", "lo"], capture_output=True)
        self.lock.close()


_shared: SharedProxy | None = None
_sharing = threading.Lock()  # droplets made side by side in threads (a bake meanwhile) share one proxy


def shared_proxy() -> SharedProxy:
    global _shared
    with _sharing:
        if _shared is None:
            _shared = SharedProxy()
    return _shared


def _end(process: subprocess.Popen | None, grace: float = 10) -> None:
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


class TestDroplet:
    """One droplet for one test: `with TestDroplet(workdir) as droplet: droplet.seed(...); droplet.boot()`."""

    def __init__(self, workdir: Path, layers: Path | list[Path], *, seed_downloads: bool = True):
        """`layers`: the image, or several read-only layers, topmost first (a snapshot over its image).
        `seed_downloads`: put cached Debian packages in (leave it off to inspect layers unchanged)."""
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.root = self.workdir / "rootfs"
        self.upper = self.workdir / "upper"
        self.layers = [Path(layers)] if isinstance(layers, (str, Path)) else [Path(p) for p in layers]
        self._network_lock = self._claim_network()
        self.name = f"cim{self.index}"
        self.host_ip, self.ip = f"10.213.{self.index}.1", f"10.213.{self.index}.2"
        self.veth = f"ve-{self.name}"
        self.proxy = shared_proxy()
        self.nspawn: subprocess.Popen | None = None
        self.extra_nspawn: list[str] = []  # more systemd-nspawn options (a volume's device bound in)
        self.boots = 0
        if seed_downloads:
            self._seed_downloads()
        self._mount()
        # Until the user data's own CAs are installed, trust what the host trusts (TLS is inspected).
        shutil.copy(HOST_BUNDLE, self.root / "etc/ssl/certs/ca-certificates.crt")

    def _mount(self) -> None:
        work = self.workdir / "overlay-work"
        for folder in (self.root, self.upper, work):
            folder.mkdir(exist_ok=True)
        lower = ":".join(str(layer) for layer in self.layers)
        run(["mount", "-t", "overlay", "overlay", "-o", f"lowerdir={lower},upperdir={self.upper},workdir={work}",
             str(self.root)])
        self._mounted = True

    def _unmount(self) -> None:
        if getattr(self, "_mounted", False):
            run(["umount", str(self.root)])
            self._mounted = False

    def _claim_network(self):
        handle, self.index = claim("net", range(10, 250), "no free 10.213.N.0/24 network for a test droplet",
                                   free=lambda index: f"10.213.{index}." not in run(["ip", "-o", "-4", "addr"]).stdout)
        return handle

    # -- downloads ---------------------------------------------------------------------------------
    # Packages fetched by earlier droplets are put into each new droplet's own apt archive (apt
    # would refuse a shared one in use by another droplet) and new ones gathered back at the end.

    @property
    def _archives(self) -> Path:
        return self.upper / "var/cache/apt/archives"  # written before the overlay is mounted

    def _seed_downloads(self) -> None:
        APT_CACHE.mkdir(parents=True, exist_ok=True)
        self._archives.mkdir(parents=True, exist_ok=True)
        for deb in APT_CACHE.glob("*.deb"):
            target = self._archives / deb.name
            if not target.exists():
                try:
                    os.link(deb, target)
                except OSError:
                    shutil.copy2(deb, target)

    def _harvest_downloads(self) -> None:
        for deb in self._archives.glob("*.deb"):
            kept = APT_CACHE / deb.name
            if not kept.exists():
                partial = APT_CACHE / f".{deb.name}.{os.getpid()}"
                shutil.copy2(deb, partial)
                partial.rename(kept)

    # -- seed and boot ---------------------------------------------------------------------------

    def seed(self, user_data: str, instance_id: str, hostname: str = "droplet", public_keys: tuple = ()) -> None:
        """The user data, where NoCloud reads it: root's only, as DigitalOcean's metadata service
        is on a droplet whose user data closes it to everyone but root. `public_keys`: SSH keys the
        cloud gives the image's default user (`debian`), as other clouds' metadata does."""
        seed = self.root / "var/lib/cloud/seed/nocloud"
        seed.mkdir(parents=True, exist_ok=True)
        seed.chmod(0o700)
        (seed / "user-data").write_text(user_data)
        keys = "".join(f"  - {json.dumps(key)}\n" for key in public_keys)
        (seed / "meta-data").write_text(f"instance-id: {instance_id}\nlocal-hostname: {hostname}\n"
                                        + (f"public-keys:\n{keys}" if keys else ""))
        (seed / "network-config").write_text(
            f"version: 2\nethernets:\n  host0:\n    addresses: [{self.ip}/24]\n"
            f"    routes: [{{to: {self.proxy.address}/32, via: {self.host_ip}}}]\n")

    def boot(self) -> None:
        if self.nspawn is not None:
            raise DropletError("already running")
        console = open(self.workdir / "console.log", "ab")
        self.nspawn = subprocess.Popen(
            ["systemd-nspawn", "--quiet", "--register=no", "--keep-unit", "-M", self.name, "--network-veth",
             "--boot", "--console=read-only", *self.extra_nspawn, "-D", str(self.root)],
            stdin=subprocess.DEVNULL, stdout=console, stderr=console, start_new_session=True, env={"PATH": PATH})
        self.boots += 1
        deadline = time.monotonic() + 20
        while not Path(f"/sys/class/net/{self.veth}").exists():
            if self.nspawn.poll() is not None or time.monotonic() > deadline:
                raise DropletError(f"the droplet did not start: {self.console_tail()}")
            time.sleep(0.05)
        run(["ip", "addr", "add", f"{self.host_ip}/24", "dev", self.veth])
        run(["ip", "link", "set", self.veth, "up"])

    @property
    def leader(self) -> int:
        """The host PID of the droplet's init (its systemd)."""
        if self.nspawn is None:
            raise DropletError("not running")
        children = Path(f"/proc/{self.nspawn.pid}/task/{self.nspawn.pid}/children").read_text().split()
        if not children:
            raise DropletError(f"the droplet has no init process: {self.console_tail()}")
        return int(children[0])

    def _enter(self) -> list[str]:
        """The start of a command line that runs inside the droplet: in all its namespaces, its root."""
        return ["nsenter", f"--target={self.leader}", "--mount", "--uts", "--ipc", "--net", "--pid", "--cgroup",
                "--root", "--wd", "--"]

    def sh(self, command: str, *, user: int | None = None, timeout: float = 120,
           check: bool = False) -> subprocess.CompletedProcess:
        """Run `command` with bash inside the running droplet, as root or as the uid `user`."""
        argv = self._enter()
        if user is not None:
            argv += ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups", "--"]
        result = subprocess.run(argv + ["/bin/bash", "-c", command], capture_output=True, text=True,
                                timeout=timeout, env={"PATH": PATH, "HOME": "/root", "LANG": "C.UTF-8"})
        if check and result.returncode != 0:
            raise DropletError(f"{command!r} exited {result.returncode}:\n{result.stdout}{result.stderr}")
        return result

    def wait_for_cloud_init(self, timeout: float) -> dict:
        """Block until cloud-init has finished this boot; its status (`cloud-init status --long`)."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise DropletError(f"cloud-init did not finish within {timeout:.0f}s:\n{self.console_tail()}")
            try:
                result = self.sh("cloud-init status --wait --long", timeout=remaining)
            except subprocess.TimeoutExpired:
                continue
            status = self._status_fields(result.stdout)
            if status.get("status") in ("done", "error", "degraded done", "disabled"):
                return status
            time.sleep(1)  # cloud-init had not started yet

    @staticmethod
    def _status_fields(text: str) -> dict:
        fields = {}
        for line in text.splitlines():
            key, sep, value = line.partition(":")
            if sep and not line.startswith(" "):
                fields[key.strip()] = value.strip()
        return fields

    def path(self, inside: str) -> Path:
        """A path inside the droplet, as seen from the host: the droplet's own disk (readable whether
        it runs or not), so not what the droplet mounts over it (the class's volume on /home and
        /opt/tljh/state). To see what the droplet's processes see, use read_bytes/read_text/
        read_json/exists/file_mode, which look from inside while it runs."""
        return self.root / inside.lstrip("/")

    def read_bytes(self, inside: str) -> bytes | None:
        """A file's bytes as the droplet's own processes see them (through its namespaces while it
        runs, whatever is mounted there; from its disk when it does not), or None if there is none."""
        if self.nspawn is None:
            path = self.path(inside)
            return path.read_bytes() if path.exists() else None
        result = subprocess.run(self._enter() + ["cat", "--", inside], capture_output=True, timeout=120,
                                env={"PATH": PATH, "LANG": "C.UTF-8"})
        if result.returncode == 0:
            return result.stdout
        if b"No such file or directory" in result.stderr:
            return None
        raise DropletError(f"cannot read {inside} in the droplet: {result.stderr.decode(errors='replace')}")

    def read_text(self, inside: str) -> str | None:
        data = self.read_bytes(inside)
        return None if data is None else data.decode()

    def read_json(self, inside: str) -> dict | None:
        text = self.read_text(inside)
        return None if text is None else json.loads(text)

    def _stat(self, inside: str, form: str) -> str | None:
        if self.nspawn is None:
            path = self.path(inside)
            if not path.exists():
                return None
            info = path.stat()
            return {"%a": f"{info.st_mode & 0o7777:o}", "%u:%g": f"{info.st_uid}:{info.st_gid}"}[form]
        result = subprocess.run(self._enter() + ["stat", "--dereference", "--format", form, "--", inside],
                                capture_output=True, text=True, timeout=60, env={"PATH": PATH, "LANG": "C.UTF-8"})
        return result.stdout.strip() if result.returncode == 0 else None

    def exists(self, inside: str) -> bool:
        """Whether the droplet's processes see a file at `inside` (following symlinks)."""
        return self._stat(inside, "%a") is not None

    def file_mode(self, inside: str) -> int:
        """The permission bits of `inside` as the droplet sees it (after symlinks)."""
        found = self._stat(inside, "%a")
        if found is None:
            raise DropletError(f"{inside} is not in the droplet")
        return int(found, 8)

    def owner(self, inside: str) -> tuple[int, int]:
        """(uid, gid) of `inside` as the droplet sees it (after symlinks)."""
        found = self._stat(inside, "%u:%g")
        if found is None:
            raise DropletError(f"{inside} is not in the droplet")
        uid, gid = found.split(":")
        return int(uid), int(gid)

    def console_tail(self, lines: int = 30) -> str:
        path = self.workdir / "console.log"
        text = path.read_bytes().decode("utf-8", "replace") if path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    # -- stop ------------------------------------------------------------------------------------

    def shutdown(self, timeout: float = 60) -> None:
        """Power the droplet off (nspawn turns SIGTERM into a clean shutdown), then the proxy."""
        if self.nspawn is not None:
            if self.nspawn.poll() is None:
                self.nspawn.send_signal(signal.SIGTERM)
                try:
                    self.nspawn.wait(timeout=timeout)
                except subprocess.TimeoutExpired:
                    self.nspawn.kill()
                    self.nspawn.wait(timeout=30)
            self.nspawn = None

    def reboot(self, timeout: float = 60) -> None:
        """The same disk and seed boot again: cloud-init sees the same instance-id."""
        self.shutdown(timeout)
        self.boot()

    def snapshot(self, destination: Path) -> list[Path]:
        """Power off and keep this droplet's disk, as DigitalOcean snapshots one: its writes become
        a read-only layer at `destination`. Returns the layers a droplet made from it stands on."""
        self.shutdown()
        self._unmount()
        self.upper.rename(destination)
        self.upper = self.workdir / "upper"
        self.upper.mkdir()
        return [destination, *self.layers]

    def collect(self, destination: Path) -> None:
        """Copy what explains a run: cloud-init's logs and result, classimage's log and status."""
        destination.mkdir(parents=True, exist_ok=True)
        for inside in ("/var/log/cloud-init.log", "/var/log/cloud-init-output.log", "/var/log/classimage.log",
                       "/var/lib/classimage/status.json", "/var/lib/cloud/data/result.json",
                       "/opt/tljh/installer.log"):
            source = self.path(inside)
            if source.exists():
                shutil.copy(source, destination / source.name)
        for name in ("console.log", "tinyproxy.log"):
            if (self.workdir / name).exists():
                shutil.copy(self.workdir / name, destination / name)

    def destroy(self) -> None:
        try:
            self.shutdown()
            self._unmount()
            self._harvest_downloads()
        finally:
            if not getattr(self, "_mounted", False):
                for folder in (self.root, self.upper, self.workdir / "overlay-work"):
                    shutil.rmtree(folder, ignore_errors=True)
            self._network_lock.close()

    def __enter__(self) -> TestDroplet:
        return self

    def __exit__(self, *exc) -> None:
        self.destroy()
