"""`classimage up`, `status` and `down` end to end, against the DigitalOcean API stand-in, whose
droplets are test droplets running the posted user data with the real cloud-init and the real TLJH:
from nothing to a hub where a student signs in, a second `up` that changes nothing, `status`, `down`
(which keeps the class's data and address) and `down --delete-data`, which leaves nothing behind.
Between them the class outlives its droplet: students' work, accounts and approvals move, made before
broken, to a one-piece droplet (new settings) and then to a droplet from a newer snapshot on the same
volume, a backup brings the class back as it was, and a droplet without its volume never starts the
hub. The replacements' figures (students' downtime, and its parts) are what benchmarks/cloud.py prints."""

from __future__ import annotations

import datetime
import json
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

import course_repo
import do_standin
from conftest import CASES, REPO
from firstboot import ADMIN_PASSWORD, BOOT_DEADLINE, admin_hash, assert_ready, droplets, explain, layers, spec_for
from hubclient import Browser, wait_for
from classimage.pipeline import artifacts, plan, spec
from classimage.droplet import provision

pytestmark = pytest.mark.droplet


@dataclass
class Cloud:
    api: do_standin.StandIn
    machines: do_standin.Machines
    spec: Path
    folder: Path
    ca: object

    def classimage(self, *args: str, timeout: float = 1800) -> subprocess.CompletedProcess:
        environment = dict(os.environ, PYTHONPATH=str(REPO), DIGITALOCEAN_API_URL=self.api.url,
                           DIGITALOCEAN_TOKEN=do_standin.TOKEN, REQUESTS_CA_BUNDLE=str(self.api.bundle),
                           CLASSIMAGE_ADMIN_HASHES=json.dumps({"instructor": admin_hash()}))
        return subprocess.run([sys.executable, "-m", "classimage", *args], capture_output=True, text=True,
                              timeout=timeout, env=environment)


@pytest.fixture(scope="module")
def cloud(image, tmp_path_factory):
    folder = tmp_path_factory.mktemp("cloud")
    ca = course_repo.TestCA(folder / "ca")
    machines = do_standin.Machines(folder / "region", layers=lambda: layers(image),
                                   prepare=lambda droplet: course_repo.install(droplet.root, ca, droplet.workdir))
    spec = spec_for(folder / "course", CASES / "droplet" / "journey.yaml", ca)
    with do_standin.StandIn(folder / "region", machines, ca) as api:
        api.bundle = do_standin.ca_bundle(ca, folder)
        yield Cloud(api, machines, spec, folder, ca)
    assert api.violations == [], "\n".join(api.violations)
    assert machines.hazards == [], machines.hazards  # no volume detached from a droplet that had it mounted
    assert not machines.droplets and not machines.devices
    routes = subprocess.run(["ip", "route"], capture_output=True, text=True).stdout
    assert not do_standin.routed() & {str(a) for a in machines.reserved}, routes


@pytest.fixture(scope="module")
def first_up(cloud):
    started = time.monotonic()
    result = cloud.classimage("up", str(cloud.spec))
    return result, time.monotonic() - started, len(cloud.api.requests)


def test_up_makes_the_class_from_nothing(first_up, cloud, record_property):
    result, seconds, requests = first_up
    assert result.returncode == 0, result.stdout + result.stderr
    output = result.stdout
    assert "the class is at http://198.51.100." in output
    assert re.search(r"\[\d\d:\d\d\] Install The Littlest JupyterHub 2.0.0: done in \d+ s", output), output
    assert "next: sign in at" in output and "launch link for https://127.0.0.1:8443/course.git" in output
    (droplet,) = cloud.api.droplets.values()
    assert droplet["status"] == "active" and "classimage-firstclass" in droplet["tags"]
    (volume,) = cloud.api.volumes.values()
    assert volume["name"] == "firstclass-data" and volume["droplet_ids"] == [droplet["id"]]
    (address,) = cloud.api.reserved.values()
    assert address["droplet"]["id"] == droplet["id"]
    (firewall,) = cloud.api.firewalls.values()
    assert sorted(r["ports"] for r in firewall["inbound_rules"]) == ["22", "443", "80"]
    inside = cloud.machines.droplets[droplet["id"]]
    assert inside.sh("test -b /dev/disk/by-id/scsi-0DO_Volume_firstclass-data").returncode == 0  # attached
    assert_ready(inside, cloud.spec, volume=volume["name"])  # every check, the volume's files included
    record_property("figure", f"up from nothing to ready: {seconds:.0f} s, {requests} requests to the API "
                              "(tests/booted/test_cloud_droplets.py)")


def test_a_student_signs_in_through_the_class_address(first_up, cloud):
    address = next(iter(cloud.api.reserved))
    admin = Browser(f"http://{address}")
    admin.sign_in("instructor", ADMIN_PASSWORD)
    assert "Authorize Users" in admin.get("/hub/home").body
    student = Browser(f"http://{address}")
    assert student.sign_up("student1", "student-password-1").code == 200
    assert admin.set_approval("student1").code == 200
    student.sign_in("student1", "student-password-1")
    home = student.get("/hub/home")
    assert home.code == 200 and "/hub/login" not in home.url


def test_a_second_up_changes_nothing(first_up, cloud):
    before = len(cloud.api.requests)
    result = cloud.classimage("up", str(cloud.spec))
    assert result.returncode == 0, result.stderr
    assert "nothing to change" in result.stdout
    made = [(m, p) for m, p, _ in cloud.api.requests[before:] if m != "GET"]
    assert made == []


def test_status_says_what_exists_and_what_it_costs(first_up, cloud):
    result = cloud.classimage("status", str(cloud.spec))
    assert result.returncode == 0, result.stderr
    lines = result.stdout
    assert "droplet firstclass (" in lines and "s-2vcpu-4gb in nyc3" in lines
    assert "volume firstclass-data (the class's data): 20 GiB" in lines and "attached to" in lines
    assert "provisioning: ready" in lines and "hub: answers" in lines
    assert "monthly cost: $26.00" in lines and "droplet s-2vcpu-4gb: $24.00 (DigitalOcean's API)" in lines
    assert "WARNING" not in lines
    _, droplet = class_droplet(cloud)
    droplet.sh("tljh-config set services.cull.users true", check=True)  # what the docs say never to do
    warned = cloud.classimage("status", str(cloud.spec)).stdout
    droplet.sh("tljh-config unset services.cull.users", check=True)
    assert f"  WARNING: {provision.CULL_USERS_WARNING}" in warned, warned


# -- the class outlives its droplet: replacement, backup, restore ------------------------------------

PASSWORDS = {"student1": "student-password-1", "ann": "ann-password-2", "late": "late-password-3"}
NOTEBOOK = {"cells": [{"cell_type": "code", "execution_count": None, "id": "c0ffee", "metadata": {}, "outputs": [],
                       "source": "print('my work')"}], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
ACCOUNT = '{"letsencrypt": {"Account": {"Email": "instructor@example.org"}, "Certificates": null}}'


def student_wheel(folder: Path) -> Path:
    """A package a student installs with `pip install --user` (made here: no index needed)."""
    import base64
    import hashlib
    import zipfile

    files = {"classwork_helper.py": "ANSWER = 42\n",
             "classwork_helper-1.0.dist-info/METADATA": "Metadata-Version: 2.1\nName: classwork-helper\nVersion: 1.0\n",
             "classwork_helper-1.0.dist-info/WHEEL": "Wheel-Version: 1.0\nGenerator: classimage-tests\n"
                                                    "Root-Is-Purelib: true\nTag: py3-none-any\n"}
    record = "".join(f"{name},sha256={base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b'=').decode()},"
                     f"{len(text.encode())}\n" for name, text in files.items())
    files["classwork_helper-1.0.dist-info/RECORD"] = record + "classwork_helper-1.0.dist-info/RECORD,,\n"
    path = folder / "classwork_helper-1.0-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as archive:
        for name, text in files.items():
            archive.writestr(name, text)
    return path


def class_address(cloud) -> str:
    (address,) = cloud.api.reserved
    return address


def class_droplet(cloud):
    (droplet_id,) = cloud.api.droplets
    return droplet_id, cloud.machines.droplets[droplet_id]


def signed_in(cloud, name: str, password: str) -> Browser:
    browser = Browser(f"http://{class_address(cloud)}")
    browser.sign_in(name, password)
    home = browser.get("/hub/home")
    assert home.code == 200 and "/hub/login" not in home.url, (name, home)
    return browser


def join(cloud, admin: Browser, name: str) -> Browser:
    """A student signs up and the admin approves them (unless they are in the class already), then
    they sign in."""
    browser = Browser(f"http://{class_address(cloud)}")
    browser.sign_in(name, PASSWORDS[name])
    if "/hub/login" in browser.get("/hub/home").url:
        browser.sign_up(name, PASSWORDS[name])
        assert admin.set_approval(name).code == 200
    return signed_in(cloud, name, PASSWORDS[name])


def accounts(droplet) -> list[tuple[str, int, int]]:
    """The hub users' Unix accounts, in the order /etc/passwd has them (the order they were made)."""
    lines = droplet.sh("getent passwd", check=True).stdout.splitlines()
    return [(f[0], int(f[2]), int(f[3])) for f in (line.split(":") for line in lines) if f[0].startswith("jupyter-")]


def manifest(droplet) -> str:
    """Every file of every home (path, size, owner, mode), the files of the hub's state but its
    database (path, mode: the proxy's rules are written anew at each start), and the database's
    users and approvals, read through SQLite (its bytes differ after a copy)."""
    listing = droplet.sh("cd /home && find . -xdev -printf '%p %s %u %g %m\\n' | sort; "
                         "cd /opt/tljh/state && find . -xdev ! -name 'jupyterhub.sqlite*' -printf '%p %m\\n' | sort",
                         check=True).stdout
    users = droplet.sh("python3 -c 'import sqlite3; c = sqlite3.connect(\"/opt/tljh/state/jupyterhub.sqlite\"); "
                       "print(sorted(c.execute(\"SELECT name, admin FROM users\")), "
                       "sorted(c.execute(\"SELECT username, is_authorized FROM users_info\")))'", check=True).stdout
    return listing + users


@pytest.fixture(scope="module")
def class_on_a(first_up, cloud):
    """On the first droplet: student1 and ann are approved students; student1 starts first (so ann's
    account is made after theirs: on the next droplet, accounts are made in name order), writes a
    notebook and `pip install --user`s a package; the admin starts a server too; Let's Encrypt's
    account is in the hub's state."""
    droplet_id, droplet = class_droplet(cloud)
    admin = signed_in(cloud, "instructor", ADMIN_PASSWORD)
    pupil = join(cloud, admin, "student1")
    pupil.start_server("student1")
    wheel = student_wheel(cloud.folder)
    import base64
    code, body = pupil.api("PUT", f"/user/student1/api/contents/{wheel.name}",
                           {"type": "file", "format": "base64", "content": base64.b64encode(wheel.read_bytes()).decode()})
    assert code in (200, 201), body
    installed = pupil.execute("student1", "import subprocess, sys\n"
                              f"r = subprocess.run([sys.executable, '-m', 'pip', 'install', '--user', '--no-index', "
                              f"'{wheel.name}'], capture_output=True, text=True)\nprint(r.returncode, r.stderr[-800:])",
                              timeout=120)
    assert installed.startswith("0"), installed
    assert pupil.execute("student1", "import classwork_helper; print(classwork_helper.ANSWER)").strip() == "42"
    code, body = pupil.api("PUT", "/user/student1/api/contents/work.ipynb",
                           {"type": "notebook", "format": "json", "content": NOTEBOOK})
    assert code in (200, 201), body
    classmate = join(cloud, admin, "ann")
    classmate.start_server("ann")
    admin.start_server("instructor")
    droplet.sh(f"printf '%s' '{ACCOUNT}' > /opt/tljh/state/acme.json", check=True)
    made = accounts(droplet)
    # TLJH's installer made the admin's; the students' came as their servers first started
    assert [name for name, _, _ in made] == ["jupyter-instructor", "jupyter-student1", "jupyter-ann"], made
    return {"droplet": droplet_id, "accounts": made, "state": droplet.sh("ls /opt/tljh/state", check=True).stdout,
            "bytes": data_size(droplet)}


def data_size(droplet) -> int:
    return int(droplet.sh("df --block-size=1 --output=size /srv/classimage-data | tail -1", check=True).stdout)


def test_the_class_data_is_on_the_volume(class_on_a, cloud):
    _, droplet = class_droplet(cloud)
    mounts = droplet.sh("findmnt -n -o SOURCE,TARGET /srv/classimage-data; findmnt -n -o TARGET /home; "
                        "findmnt -n -o TARGET /opt/tljh/state", check=True).stdout
    assert "/srv/classimage-data" in mounts and "/home" in mounts and "/opt/tljh/state" in mounts, mounts
    assert droplet.sh("test -f /srv/classimage-data/home/jupyter-student1/work.ipynb").returncode == 0
    assert droplet.sh("systemctl is-enabled classimage-data-copy.timer").stdout.strip() == "enabled"


def downtime(result, droplet) -> dict:
    """What a replacement's output and the new droplet say about it: students' downtime, how long the
    new droplet took to be ready but for the class's data while the old one served, and the droplet's
    own part of the downtime (from the class's data mounted to the hub ready)."""
    down = re.search(r"students could not reach the hub for (\d+) s", result.stdout)
    prepared = re.search(r"ready but for the class's data (\d+) s after it was made", result.stdout)
    assert down and prepared, result.stdout
    status, data = droplet.read_json(provision.STATUS), droplet.read_json(provision.DATA_RECORD)
    ready = next(s for s in status["steps"] if s["name"] == "hub-ready")["finished"]
    seconds = [datetime.datetime.strptime(t, "%Y-%m-%dT%H:%M:%SZ") for t in (data["mounted"], ready)]
    return {"down": int(down.group(1)), "prepared": int(prepared.group(1)),
            "inside": (seconds[1] - seconds[0]).total_seconds()}


@pytest.fixture(scope="module")
def one_piece(class_on_a, cloud):
    """A setting of the hub changes before the course has a snapshot: a one-piece droplet (TLJH and
    the course's software installed on it) replaces the first, made before the first breaks."""
    source = yaml.safe_load((CASES / "droplet" / "journey.yaml").read_text())
    source["hub"]["idle_timeout"] = "50m"
    path = spec_for(cloud.folder / "course-v1b", source, cloud.ca)
    old, _ = class_droplet(cloud)
    started = time.monotonic()
    result = cloud.classimage("up", str(path))
    return {"old": old, "result": result, "seconds": time.monotonic() - started}


def test_a_one_piece_replacement_installs_everything_before_the_class_goes_down(one_piece, cloud, record_property):
    result = one_piece["result"]
    assert result.returncode == 0, result.stdout + result.stderr
    droplet_id, droplet = class_droplet(cloud)
    assert droplet_id != one_piece["old"] and one_piece["old"] not in cloud.machines.droplets
    out = result.stdout
    assert out.index("is ready but for the class's data") < out.index(f"stopping droplet {one_piece['old']}")
    # TLJH and the course's software went in while the old droplet served; the class data came after
    steps = {s["name"]: s for s in droplet.read_json(provision.STATUS)["steps"]}
    assert steps["tljh"]["finished"] <= steps["class-data"]["finished"] <= steps["hub-accounts"]["started"]
    (volume,) = [v for v in cloud.api.volumes.values() if v["droplet_ids"] == [droplet_id]]
    assert volume["name"] == "firstclass-data"
    pupil = signed_in(cloud, "student1", PASSWORDS["student1"])
    pupil.start_server("student1")
    code, notebook = pupil.api("GET", "/user/student1/api/contents/work.ipynb")
    assert code == 200 and notebook["content"]["cells"][0]["source"] == "print('my work')", notebook
    figures = downtime(result, droplet)
    record_property("figure", f"one-piece replacement (make before break): {one_piece['seconds']:.0f} s in all; the "
                              f"new droplet ready but for its data after {figures['prepared']} s while the class ran; "
                              f"students could not reach the hub for {figures['down']} s, of which the droplet's own "
                              f"part (data mounted to hub ready) {figures['inside']:.0f} s (tests/booted/test_cloud_droplets.py)")


@pytest.fixture(scope="module")
def newer_snapshot(one_piece, class_on_a, cloud, image):
    """The course's next software (one more pip package) baked as Packer does, and its spec, which
    also asks for a volume 1 GiB bigger."""
    source = yaml.safe_load((CASES / "droplet" / "journey.yaml").read_text())
    source["environment"]["pip"].append("xvfbwrapper")
    source["storage"] = {"size_gigabytes": 21}
    path = spec_for(cloud.folder / "course-v2", source, cloud.ca)
    rendered = cloud.folder / "course-v2" / "rendered"
    result = cloud.classimage("render", str(path), "--out", str(rendered))
    assert result.returncode == 0, result.stderr
    with droplets(image, cloud.folder / "bake") as make:
        builder = make("build")
        builder.seed((rendered / artifacts.USER_DATA[plan.BAKE]).read_text(), "i-build")
        builder.boot()
        assert builder.wait_for_cloud_init(BOOT_DEADLINE)["status"] == "done", explain(builder)
        finish = builder.sh(f"{provision.RUNNER} finish-bake", timeout=600)
        assert finish.returncode == 0, finish.stdout + finish.stderr
        stack = builder.snapshot(cloud.folder / "snapshot-v2")
    digest = plan.bake_digest(spec.load_file(path).spec)
    cloud.api.add_snapshot(f"firstclass-{digest}-20261126120000", stack)
    return path


@pytest.fixture(scope="module")
def moved(newer_snapshot, class_on_a, cloud):
    before = len(cloud.api.requests)
    old, _ = class_droplet(cloud)
    dry = cloud.classimage("up", str(newer_snapshot), "--dry-run")
    assert dry.returncode == 0, dry.stdout + dry.stderr
    assert [m for m, _, _ in cloud.api.requests[before:] if m != "GET"] == []
    started = time.monotonic()
    result = cloud.classimage("up", str(newer_snapshot))
    return dry, result, time.monotonic() - started, old


def test_up_replaces_the_droplet_and_says_what_it_does(moved, cloud, record_property):
    dry, result, seconds, old = moved
    assert "would grow volume firstclass-data from 20 to 21 GiB" in dry.stdout, dry.stdout
    assert f"replace droplet firstclass ({old}) by one with a newer snapshot" in dry.stdout, dry.stdout
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert out.index("is ready but for the class's data") < out.index(f"stopping droplet {old}")
    figures = downtime(result, class_droplet(cloud)[1])
    record_property("figure", f"replacement onto a newer snapshot (make before break): {seconds:.0f} s in all; the new "
                              f"droplet ready but for its data after {figures['prepared']} s while the class ran; "
                              f"students could not reach the hub for {figures['down']} s, of which the droplet's own "
                              f"part (data mounted to hub ready) {figures['inside']:.0f} s (tests/booted/test_cloud_droplets.py)")


def test_students_find_everything_on_the_new_droplet(moved, class_on_a, cloud):
    droplet_id, droplet = class_droplet(cloud)
    assert droplet_id != moved[3] and moved[3] not in cloud.machines.droplets
    (volume,) = cloud.api.volumes.values()
    assert volume["droplet_ids"] == [droplet_id] and volume["size_gigabytes"] == 21
    assert_ready(droplet, moved_spec(cloud), volume=volume["name"])
    # grown online with the volume (by 1 GiB), not reformatted: the work below is still there
    assert data_size(droplet) - class_on_a["bytes"] > (1 << 30) * 0.9, (data_size(droplet), class_on_a["bytes"])
    # The accounts came back with their homes' ids, made in another order than on the first droplet.
    made = accounts(droplet)
    assert sorted(made) == sorted(class_on_a["accounts"]), (made, class_on_a["accounts"])
    assert [name for name, _, _ in made] != [name for name, _, _ in class_on_a["accounts"]], made
    assert "jupyterhub-admins" in droplet.sh("id -nG jupyter-instructor", check=True).stdout.split()
    assert droplet.sh("cat /opt/tljh/state/acme.json", check=True).stdout == ACCOUNT  # inside: a bind mount
    assert droplet.sh("ls /opt/tljh/state", check=True).stdout == class_on_a["state"]
    # Same password, no new approval; the notebook and the package are theirs, and they can write.
    pupil = signed_in(cloud, "student1", PASSWORDS["student1"])
    pupil.start_server("student1")
    code, notebook = pupil.api("GET", "/user/student1/api/contents/work.ipynb")
    assert code == 200 and notebook["content"]["cells"][0]["source"] == "print('my work')", notebook
    printed = pupil.execute("student1", "import classwork_helper, os\n"
                            "open('after-the-move.txt', 'w').write('still mine')\n"
                            "print(classwork_helper.ANSWER, os.stat('work.ipynb').st_uid == os.getuid(), "
                            "os.stat('.local').st_uid == os.getuid())")
    assert printed.split() == ["42", "True", "True"], printed
    admin = signed_in(cloud, "instructor", ADMIN_PASSWORD)
    code, user = admin.api("GET", "/hub/api/users/instructor")
    assert code == 200 and user["admin"] is True, user
    assert signed_in(cloud, "ann", PASSWORDS["ann"])


@pytest.fixture(scope="module")
def backed_up(moved, cloud):
    """A backup with every student's server stopped (so homes hold still), what the class was then,
    and the class changed afterwards: a file gone, a file added, a new student."""
    _, droplet = class_droplet(cloud)
    admin = signed_in(cloud, "instructor", ADMIN_PASSWORD)
    for name in ("student1", "ann", "instructor"):
        admin.api("DELETE", f"/hub/api/users/{name}/server")
    assert wait_for(lambda: not droplet.sh("pgrep -f jupyterhub-singleuser").stdout, 60, "servers stopped")
    then = manifest(droplet)
    started = time.monotonic()
    result = cloud.classimage("backup", str(moved_spec(cloud)))
    seconds = time.monotonic() - started
    assert result.returncode == 0, result.stdout + result.stderr
    (backup,) = [s for s in cloud.api.volume_snapshots.values() if s["name"].startswith("firstclass-backup-")]
    droplet.sh("rm /home/jupyter-student1/work.ipynb && echo new > /home/jupyter-ann/new.txt", check=True)
    join(cloud, admin, "late")
    assert manifest(droplet) != then
    return backup, then, seconds, result


def moved_spec(cloud) -> Path:
    return cloud.folder / "course-v2" / "spec.yaml"


def test_backup_waits_for_a_consistent_copy_and_snapshots_the_volume(backed_up, cloud, record_property):
    backup, _, seconds, result = backed_up
    assert re.search(r"the hub's database was copied to firstclass-data \d+ s ago", result.stdout), result.stdout
    (volume,) = [v for v in cloud.api.volumes.values() if v["name"] == "firstclass-data"]
    assert backup["resource_id"] == volume["id"] and "classimage-firstclass" in backup["tags"], backup
    record_property("figure", f"backup of the class's volume: {seconds:.0f} s (tests/booted/test_cloud_droplets.py)")


def test_restore_brings_the_class_back_as_it_was_at_the_backup(backed_up, cloud, record_property):
    backup, then, _, _ = backed_up
    old_id, _ = class_droplet(cloud)
    started = time.monotonic()
    result = cloud.classimage("restore", str(moved_spec(cloud)), "--backup", backup["name"])
    seconds = time.monotonic() - started
    assert result.returncode == 0, result.stdout + result.stderr
    droplet_id, droplet = class_droplet(cloud)
    assert droplet_id != old_id
    restored = [v for v in cloud.api.volumes.values() if v["droplet_ids"] == [droplet_id]]
    assert len(restored) == 1 and re.fullmatch(r"firstclass-data-\d{8}-\d{6}", restored[0]["name"]), restored
    assert "previous volume firstclass-data is kept" in result.stdout, result.stdout
    assert_ready(droplet, moved_spec(cloud), volume=restored[0]["name"])
    assert manifest(droplet) == then
    assert signed_in(cloud, "student1", PASSWORDS["student1"])
    refused = Browser(f"http://{class_address(cloud)}")
    refused.sign_in("late", PASSWORDS["late"])  # signed up after the backup: unknown again
    assert refused.get("/hub/home").url.split("?")[0].endswith("/hub/login")
    record_property("figure", f"restore from a backup onto a new volume and droplet: {seconds:.0f} s "
                              "(tests/booted/test_cloud_droplets.py)")


def test_without_its_volume_the_hub_does_not_start(backed_up, cloud):
    """The droplet reboots with its volume gone: the hub stays down (never on an empty stand-in for
    the class's data) and says why; with the volume back, the class is back."""
    droplet_id, droplet = class_droplet(cloud)
    (volume,) = [v for v in cloud.api.volumes.values() if v["droplet_ids"] == [droplet_id]]
    cloud.machines.shutdown(droplet_id)
    cloud.machines.detach(droplet_id, volume["name"])
    cloud.machines.power_on(droplet_id)
    assert wait_for(lambda: droplet.sh("systemctl is-failed classimage-data.service").stdout.strip() == "failed",
                    240, "classimage-data fails without its device")
    assert droplet.sh("systemctl is-active jupyterhub.service").stdout.strip() != "active"
    assert droplet.sh("systemctl is-active traefik.service").stdout.strip() != "active"
    assert not [h for h in droplet.sh("ls /home").stdout.split() if h.startswith("jupyter-")]  # its own disk
    record = droplet.read_json("/var/lib/classimage/data.json")
    assert "is not there: attach the class's volume" in record["error"], record
    page = wait_for(lambda: (lambda p: p if p.code == 503 else None)(Browser(f"http://{class_address(cloud)}").get("/")),
                    60, "port 80 says the class is closed")  # 503: unavailable, come back later
    assert "The class is closed" in page.body, page
    status = cloud.classimage("status", str(moved_spec(cloud)))
    assert "the class's data: the class's data device /dev/disk/by-id/scsi-0DO_Volume_firstclass-data-" in status.stdout
    assert "then restart the droplet" in status.stdout, status.stdout
    cloud.machines.shutdown(droplet_id)
    cloud.machines.droplets[droplet_id].extra_nspawn.append(
        f"--bind={cloud.machines.devices[volume['id']]}:{do_standin.device_path(volume['name'])}")
    cloud.machines.power_on(droplet_id)
    assert wait_for(lambda: droplet.sh("systemctl is-active jupyterhub.service").stdout.strip() == "active",
                    240, "the hub is back with its volume")
    assert wait_for(lambda: Browser(f"http://{class_address(cloud)}").get("/hub/login").code == 200, 120,
                    "the hub answers")
    assert signed_in(cloud, "ann", PASSWORDS["ann"])


def test_down_keeps_the_data_and_delete_data_leaves_nothing(first_up, cloud):
    result = cloud.classimage("down", str(cloud.spec))
    assert result.returncode == 0, result.stderr
    assert not cloud.api.droplets and not cloud.api.firewalls
    # the first volume (kept by the restore), the restored one, the backup and the address stay
    assert len(cloud.api.volumes) == 2 and len(cloud.api.reserved) == 1 and len(cloud.api.volume_snapshots) == 1
    left = re.search(r"left: (.*), costing \$\d+\.\d\d a month", result.stdout)
    assert left, result.stdout
    assert re.fullmatch(r"(volume firstclass-data(-\d{8}-\d{6})?, ){2}1 backup\(s\), address 198\.51\.100\.\d+",
                        left.group(1)), left.group(1)
    gone = cloud.classimage("down", str(cloud.spec), "--delete-data", "--yes")
    assert gone.returncode == 0, gone.stderr
    assert "nothing left" in gone.stdout
    assert not cloud.api.volumes and not cloud.api.reserved and not cloud.api.droplets
    assert not cloud.api.volume_snapshots
    assert not [t for t in cloud.api.tags if t.startswith("classimage-firstclass-ip-")]
