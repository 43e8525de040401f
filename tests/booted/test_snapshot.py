"""Bake once, boot in seconds, on the real TLJH: the bake user data on a build droplet, Packer's
finishing command (`classimage-provision finish-bake`: seal and clean), the build droplet's disk kept
as the "snapshot", then fresh droplets made from it with the boot user data, one of which holds a
student's first class. The hygiene checks read the image itself.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

import course_repo
import testdroplet
import tljh_downloads
from conftest import CASES
from firstboot import BOOT_DEADLINE, assert_failed, assert_ready, browser, droplets, explain, render_for, \
    student_journey
from classimage.pipeline import plan, spec, tljh
from classimage.droplet import provision

pytestmark = pytest.mark.droplet
BAKEABLE = CASES / "droplet" / "journey.yaml"


def identity(droplet: testdroplet.TestDroplet) -> dict:
    """What must differ between droplets: SSH host keys, machine-id, the hub's secrets."""
    read = lambda inside: droplet.path(inside).read_text() if droplet.path(inside).exists() else None
    return {"ssh": read("/etc/ssh/ssh_host_ed25519_key.pub"), "machine-id": read("/etc/machine-id"),
            "proxy-secret": read(tljh.PROXY_SECRET), "cookie-secret": read(f"{tljh.STATE}/jupyterhub_cookie_secret")}


@dataclass
class Baked:
    stack: list[Path]
    build_identity: dict
    finish: subprocess.CompletedProcess
    bake_status: dict
    spec_path: Path
    image: Path  # the snapshot, mounted for inspection (never booted)
    make: object  # makes more droplets in this module's folder
    ca: course_repo.TestCA


@pytest.fixture(scope="module")
def baked(image, tmp_path_factory):
    folder = tmp_path_factory.mktemp("snapshot")
    ca = course_repo.TestCA(folder / "ca")
    with droplets(image, folder) as make:
        builder = make("build")
        user_data, spec_path = render_for(builder, BAKEABLE, plan.BAKE, ca=ca)
        builder.seed(user_data, "i-build")
        builder.boot()
        assert builder.wait_for_cloud_init(BOOT_DEADLINE)["status"] == "done", explain(builder)
        bake_status = builder.read_json(provision.STATUS)
        browser(builder).get("/hub/signup")  # the build's hub answered: its secrets and database exist
        build_identity = identity(builder)
        finish = builder.sh(f"{provision.RUNNER} finish-bake", timeout=600)  # what Packer's provisioner runs
        builder.collect(folder / "build-logs")
        stack = builder.snapshot(folder / "snapshot-layer")
        inspect = make("inspect-snapshot", stack, inspect_only=True)
        yield Baked(stack, build_identity, finish, bake_status, spec_path, inspect.root, make, ca)


def test_the_bake_succeeds_and_is_sealed(baked):
    assert baked.bake_status["state"] == "ready" and baked.bake_status["stage"] == plan.BAKE
    assert baked.finish.returncode == 0, baked.finish.stdout + baked.finish.stderr
    image = json.loads((baked.image / provision.IMAGE.lstrip("/")).read_text())
    course = spec.load_file(baked.spec_path)
    assert image["bake_digest"] == plan.bake_digest(course.spec)
    assert image["spec_digest"] == course.digest and image["course"]["slug"] == course.spec.course.slug
    # The build droplet never had admins, and its hub let nobody sign up.
    settings = yaml.safe_load((baked.image / tljh.CONFIG_YAML.lstrip("/")).read_text())
    assert settings == tljh.lockdown(course.spec.tljh.version)
    log = (baked.image / "opt/tljh/installer.log")
    assert not log.exists() or log.stat().st_size == 0  # emptied with the other logs


def test_the_image_passes_every_hygiene_check(baked):
    root = baked.image
    problems = []

    def check(ok: bool, what: str):
        if not ok:
            problems.append(what)

    check(not list((root / "etc/ssh").glob("ssh_host_*")), "SSH host keys left in /etc/ssh")
    revoked = root / "etc/ssh/revoked_keys"
    check(revoked.exists() and oct(revoked.stat().st_mode & 0o777) == "0o600", "/etc/ssh/revoked_keys (mode 600) missing")
    for home in [root / "root", *(root / "home").glob("*")]:
        check(not (home / ".ssh/authorized_keys").exists(), f"authorized_keys in {home}")
        check(not list((home / ".ssh").glob("id_*")), f"private keys in {home}/.ssh")
        history = home / ".bash_history"
        check(not history.exists() or history.stat().st_size == 0, f"shell history in {home}")
    for line in (root / "etc/shadow").read_text().splitlines():
        name, password = line.split(":")[:2]
        check(password != "" and not password.startswith("$"), f"account {name} has a password (or none needed)")
    logs = [p for p in (root / "var/log").rglob("*")
            if p.is_file() and not p.is_symlink() and "journal" not in p.parts]
    # wtmp: powering off for the snapshot (on DigitalOcean too) records the shutdown; no logins may remain.
    logins = subprocess.run(["last", "-x", "-f", str(root / "var/log/wtmp")], capture_output=True, text=True).stdout
    check(not [l for l in logins.splitlines() if l.strip() and l.split()[0] not in ("shutdown", "runlevel", "wtmp")],
          f"logins recorded in wtmp: {logins}")
    left = [str(p) for p in logs if p.stat().st_size and p.name != "wtmp"]
    check(not left, f"logs not emptied: {left}")
    check(not [p for p in logs if re.search(r"(\.gz|\.[0-9]|\.old)$", p.name)], "rotated logs left")
    check(not list((root / "tmp").iterdir()) and not list((root / "var/tmp").iterdir()), "files left in /tmp or /var/tmp")
    instances = root / "var/lib/cloud/instances"
    check(not instances.exists() or not list(instances.iterdir()), "cloud-init instance state left")
    check((root / "usr/bin/cloud-init").exists(), "cloud-init missing")
    check((root / "etc/machine-id").read_text() == "", "/etc/machine-id not empty")
    dbus_id = root / "var/lib/dbus/machine-id"  # systemd would take this one instead of making a new id
    check(not dbus_id.exists() or (dbus_id.is_symlink() and dbus_id.readlink() == Path("/etc/machine-id")),
          "/var/lib/dbus/machine-id keeps the build's machine-id")
    state = root / tljh.STATE.lstrip("/")
    for secret in ("jupyterhub_cookie_secret", "traefik-api.secret", "acme.json", "jupyterhub.sqlite"):
        check(not (state / secret).exists(), f"TLJH {secret} left from the build")
    wants = root / "etc/systemd/system/multi-user.target.wants"
    check(not (wants / "jupyterhub.service").exists(), "the hub starts before a droplet has its own secrets")
    check(not list((root / "var/cache/apt/archives").glob("*.deb")), "apt's package cache left")
    check(not (root / "root/.cache").exists(), "pip's cache left")
    check(not list((root / "opt/tljh/user/pkgs").glob("*")) if (root / "opt/tljh/user/pkgs").exists() else True,
          "conda's package cache left")
    if not tljh_downloads.REAL:
        calls = [c["command"] for c in tljh_downloads.conda_calls(root)]
        check(calls[-1:] == ["clean"], "conda clean did not run")
    check(not (root / tljh.PROXY_RULES.lstrip("/")).exists(), "the proxy's rules (a hash of the build's secret) left")
    check(not (root / provision.HUB_OPEN.lstrip("/")).exists(), "the build's class left open")
    check(not [line for line in (root / "etc/passwd").read_text().splitlines() if line.startswith("jupyter-")],
          "hub users' Unix accounts from the build")
    check(not (root / "opt/digitalocean").exists(), "DigitalOcean agent directory present")
    check(not (root / provision.STATUS.lstrip("/")).exists(), "the bake's status file left")
    ufw = (root / "etc/ufw/ufw.conf").read_text()
    rules = (root / "etc/ufw/user.rules").read_text()
    check("ENABLED=yes" in ufw, "firewall (ufw) not enabled")
    for port in (22, 80, 443):
        check(f"--dport {port} -j ACCEPT" in rules, f"firewall does not let port {port} in")
    upgrades = subprocess.run(["systemd-nspawn", "--quiet", "--register=no", "--keep-unit", "--read-only",
                               "--private-network", "-D", str(root), "apt-get", "--simulate", "-o",
                               "Debug::NoLocking=1", "upgrade"], capture_output=True, text=True)
    check(re.search(r"^0 upgraded", upgrades.stdout, re.M) is not None, f"pending updates: {upgrades.stdout[-500:]}")
    assert problems == [], "\n".join(problems)


@pytest.fixture(scope="module")
def made_from_snapshot(baked):
    """Two droplets made from the snapshot: one with the boot user data of the baked spec (and the
    course repository, for a student's first class), one of a spec whose software differs (it must
    warn, and still come up)."""
    made = {}
    other = yaml.safe_load(BAKEABLE.read_text())
    other["environment"]["pip"].append("xvfbwrapper")
    for name, source in (("first", BAKEABLE), ("other-spec", other)):
        droplet = baked.make(name, baked.stack, ca=baked.ca)
        user_data, spec_path = render_for(droplet, source, plan.BOOT, ca=baked.ca)
        droplet.seed(user_data, f"i-{name}", hostname=name)
        started = time.monotonic()
        droplet.boot()
        cloud_init = droplet.wait_for_cloud_init(BOOT_DEADLINE)
        made[name] = (droplet, cloud_init, time.monotonic() - started, spec_path)
    return made


def test_droplets_from_the_snapshot_come_up_ready(made_from_snapshot, baked):
    for name, (droplet, cloud_init, seconds, spec_path) in made_from_snapshot.items():
        assert cloud_init["status"] == "done", explain(droplet)
        status = assert_ready(droplet, spec_path) if name == "first" else droplet.read_json(provision.STATUS)
        assert status["state"] == "ready" and status["stage"] == plan.BOOT, explain(droplet)
        assert status["image"]["bake_digest"] == json.loads((baked.image / provision.IMAGE.lstrip("/")).read_text())["bake_digest"]
        settings = yaml.safe_load(droplet.path(tljh.CONFIG_YAML).read_text())
        assert settings["users"]["admin"] == ["instructor"]  # the boot user data brought the admins
        installs = droplet.path("/opt/tljh/installer.log")
        assert not installs.exists() or "Running TLJH installer" not in installs.read_text()  # nothing reinstalled
        print(f"{name}: boot to ready in {seconds:.1f} s")
    warnings = [droplet.path(provision.LOG).read_text().count("baked from a different spec")
                for droplet, *_ in made_from_snapshot.values()]
    assert warnings[0] == 0 and warnings[1] >= 1


def test_a_students_first_class_on_a_droplet_from_the_snapshot(made_from_snapshot):
    droplet, _, _, spec_path = made_from_snapshot["first"]
    student_journey(droplet, spec_path)


def test_each_droplet_has_its_own_identity_and_none_of_the_builds(made_from_snapshot, baked):
    identities = [identity(droplet) for droplet, *_ in made_from_snapshot.values()]
    assert all(value for key, value in baked.build_identity.items() if key != "cookie-secret"), baked.build_identity
    for key in ("ssh", "machine-id", "proxy-secret", "cookie-secret"):
        values = [ident[key] for ident in identities]
        assert all(values), (key, values)
        assert values[0] != values[1], f"{key}: both droplets have the same"
        assert baked.build_identity[key] not in values, f"{key}: a droplet kept the build's"


def test_boot_user_data_on_a_plain_droplet_fails_clearly(new_droplet):
    droplet = new_droplet()
    user_data, _ = render_for(droplet, BAKEABLE, plan.BOOT)
    droplet.seed(user_data, "i-plain")
    droplet.boot()
    cloud_init = droplet.wait_for_cloud_init(BOOT_DEADLINE)
    assert_failed(droplet, "image-check", cloud_init, "not made from one")
    assert not droplet.path("/opt/tljh/hub/bin/python3").exists()  # nothing was installed


# A guard that cannot be put in place, as on a kernel without iptables' owner match: every `iptables` the
# guard (and its step) runs fails. /usr/local/sbin comes first on the PATH of systemd's units and of root.
BROKEN_IPTABLES = "/usr/local/sbin/iptables"


def test_the_hub_never_starts_without_the_metadata_guard(baked):
    """The metadata guard fails closed. A droplet from the snapshot whose guard cannot be put in place
    opens no class (its boot stops at the metadata-guard step, before the hub starts); and once a class
    is open, a reboot on which the guard fails brings neither the hub nor anything else that runs a
    student's code (cron, at) back: they require the guard. Once the guard works again, the class
    resumes."""
    droplet = baked.make("no-guard", baked.stack, ca=baked.ca)
    user_data, spec_path = render_for(droplet, BAKEABLE, plan.BOOT, ca=baked.ca)
    droplet.seed(user_data, "i-no-guard", hostname="no-guard")
    broken = droplet.path(BROKEN_IPTABLES)
    broken.parent.mkdir(parents=True, exist_ok=True)
    broken.write_text("#!/bin/sh\necho 'iptables: the owner match is not supported (classimage test)' >&2\nexit 1\n")
    broken.chmod(0o755)
    droplet.boot()
    cloud_init = droplet.wait_for_cloud_init(BOOT_DEADLINE)
    assert_failed(droplet, "metadata-guard", cloud_init, "the owner match is not supported")
    assert droplet.sh("systemctl is-active jupyterhub.service").stdout.strip() != "active"
    assert droplet.sh("systemctl is-failed classimage-metadata-guard.service").stdout.strip() == "failed"

    broken.unlink()  # the cause fixed: the class resumes, with the guard
    resumed = droplet.sh(f"{provision.RUNNER} run", timeout=600)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert_ready(droplet, spec_path, first_boot_clean=False)
    bound = []
    for unit in plan.GUARDED_UNITS:  # those this droplet has (the test image has no cron or at)
        shown = dict(line.split("=", 1) for line in droplet.sh(
            f"systemctl show {unit} --property=LoadState --property=Requires --property=After").stdout.splitlines())
        if shown["LoadState"] == "loaded":
            assert {"classimage-metadata-guard.service"} <= set(shown["Requires"].split()) & set(shown["After"].split())
            bound.append(unit)
    assert "jupyterhub.service" in bound

    broken.write_text("#!/bin/sh\nexit 1\n")  # and the guard fails again, at the next boot
    broken.chmod(0o755)
    droplet.reboot()
    droplet.wait_for_cloud_init(120)
    assert droplet.sh("systemctl is-failed classimage-metadata-guard.service").stdout.strip() == "failed"
    time.sleep(10)  # what would start the hub has had its turn
    hub = droplet.sh("systemctl show jupyterhub.service --property=ActiveState --property=Result").stdout
    assert "ActiveState=active" not in hub, hub
    assert droplet.sh("systemctl start jupyterhub.service").returncode != 0  # not by hand either
    assert "ActiveState=active" not in droplet.sh("systemctl show jupyterhub.service --property=ActiveState").stdout
    assert droplet.sh("systemctl list-units --state=running --no-legend 'jupyter-*'").stdout.strip() == ""
