"""A fresh Debian 12 machine, as a newcomer has one: the test droplet's image (a debootstrap of Debian
12 with cloud-init; no pip, no python3-venv, nothing of classimage) booted, with only what this
network needs set the way any proxied campus machine has it set (apt's, pip's and the login shell's
proxy, the CA that inspects TLS in the system's trust store), and classimage's checkout copied in as
`git clone` leaves it (its history as one commit). Commands run as root in the checkout, each
`&&`-joined part timed.

Used by tests/test_fresh_debian.py (the README's first command works there) and
benchmarks/readme_fresh.py (how long it takes)."""

from __future__ import annotations

import contextlib
import re
import shutil
import subprocess
import time
from pathlib import Path

import testdroplet
from conftest import REPO

CHECKOUT = "/root/classimage"
PROFILE = "/etc/profile.d/network.sh"
README = REPO / "README.md"


def readme_commands() -> list[str]:
    """The README's opening block: its two commands."""
    block = README.read_text().split("```bash\n", 1)[1].split("```", 1)[0]
    return block.splitlines()


def _checkout_files() -> list[str]:
    """What a clone of this checkout holds: every file git tracks, and new ones it does not ignore."""
    listed = subprocess.run(["git", "-C", str(REPO), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                            capture_output=True, check=True).stdout.decode().split("\0")
    return [name for name in listed if name and (REPO / name).is_file()]


@contextlib.contextmanager
def machine(workdir: Path, image: Path, *, cached_packages: bool = True):
    """A booted fresh Debian 12 machine with the checkout in CHECKOUT. `cached_packages`: seed apt's
    archive with the Debian packages earlier droplets downloaded (off for honest timings)."""
    with testdroplet.TestDroplet(workdir, image, seed_downloads=cached_packages) as droplet:
        proxy = droplet.proxy.url
        droplet.path("/etc/apt/apt.conf.d/90network-proxy").write_text(
            f'Acquire::http::Proxy "{proxy}";\nAcquire::https::Proxy "{proxy}";\n')
        droplet.path("/etc/pip.conf").write_text(f"[global]\nproxy = {proxy}\n")
        droplet.path(PROFILE).write_text(  # for everything else (npm, curl), as a login shell reads it
            f"export http_proxy={proxy} https_proxy={proxy} no_proxy=localhost,127.0.0.1\n"
            f"export NODE_EXTRA_CA_CERTS=/etc/ssl/certs/ca-certificates.crt\n")
        hosts = droplet.path("/etc/hosts")
        if not hosts.exists():  # debootstrap writes none; Debian's installer (netcfg) and its cloud images do
            hosts.write_text("127.0.0.1\tlocalhost\n::1\t\tlocalhost ip6-localhost ip6-loopback\n")
        cas = droplet.path("/usr/local/share/ca-certificates")
        cas.mkdir(parents=True, exist_ok=True)
        for number, pem in enumerate(testdroplet.host_extra_cas()):
            (cas / f"network-{number}.crt").write_text(pem)
        target = droplet.path(CHECKOUT)
        for name in _checkout_files():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, target / name)
        # A clone's history, in one commit of this checkout as it is (uncommitted changes too).
        git = ["git", "-C", str(target), "-c", "user.name=classimage tests", "-c", "user.email=tests@invalid",
               "-c", "init.defaultBranch=main"]
        for args in (["init", "--quiet"], ["add", "--all"], ["commit", "--quiet", "-m", "the checkout under test"]):
            subprocess.run(git + args, check=True, capture_output=True)
        droplet.seed("#cloud-config\n{}\n", "i-fresh-debian")
        droplet.boot()
        status = droplet.wait_for_cloud_init(300)
        assert status.get("status") in ("done", "degraded done"), status
        # The machine trusts the network's CA as a campus machine does: in the system store, which
        # pip is pointed at (pip's own bundle knows nothing of it).
        droplet.sh("update-ca-certificates --fresh >/dev/null", check=True)
        with droplet.path("/etc/pip.conf").open("a") as conf:
            conf.write("cert = /etc/ssl/certs/ca-certificates.crt\n")
        yield droplet


def run_timed(droplet: testdroplet.TestDroplet, command: str, timeout: float = 1800
              ) -> tuple[subprocess.CompletedProcess, list[tuple[str, float]]]:
    """Run `command` as root in the checkout, in one bash, and time each of its `&&`-joined parts
    (a part that fails stops the rest, as `&&` does)."""
    parts = [part.strip() for part in re.split(r"\s&&\s", command)]
    script = ["set -e", f". {PROFILE}", f"cd {CHECKOUT}", 'mark() { echo "@@part $1 $(date +%s.%N)" >&2; }',
              "mark start"]
    for number, part in enumerate(parts):
        script += [part, f"mark {number}"]
    started = time.monotonic()
    result = droplet.sh("\n".join(script), timeout=timeout)
    marks = [float(stamp) for _, stamp in re.findall(r"^@@part (\S+) (\S+)$", result.stderr, re.MULTILINE)]
    times = [(parts[i], marks[i + 1] - marks[i]) for i in range(len(marks) - 1)]
    if len(marks) < 2:
        times = [(command, time.monotonic() - started)]
    return result, times
