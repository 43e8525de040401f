"""`classimage up`, `status` and `down` end to end, against the DigitalOcean API stand-in, whose
droplets are test droplets running the posted user data with the real cloud-init and the real TLJH:
from nothing to a hub where a student signs in, a second `up` that changes nothing, `status`, `down`
(which keeps the class's data and address) and `down --delete-data`, which leaves nothing behind."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

import course_repo
import do_standin
from conftest import CASES, REPO
from firstboot import ADMIN_PASSWORD, admin_hash, layers, spec_for
from hubclient import Browser

pytestmark = pytest.mark.droplet


@dataclass
class Cloud:
    api: do_standin.StandIn
    machines: do_standin.Machines
    spec: Path
    folder: Path

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
        yield Cloud(api, machines, spec, folder)
    assert api.violations == [], "\n".join(api.violations)
    assert not machines.droplets and not machines.devices
    routes = subprocess.run(["ip", "route"], capture_output=True, text=True).stdout
    assert str(do_standin.RESERVED.network_address)[:10] not in routes, routes


@pytest.fixture(scope="module")
def first_up(cloud):
    started = time.monotonic()
    result = cloud.classimage("up", str(cloud.spec))
    return result, time.monotonic() - started, len(cloud.api.requests)


def test_up_makes_the_class_from_nothing(first_up, cloud):
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
    print(f"up from nothing to ready: {seconds:.0f} s, {requests} requests to the API")


def test_a_student_signs_in_through_the_class_address(first_up, cloud):
    address = next(iter(cloud.api.reserved))
    admin = Browser(f"http://{address}")
    admin.sign_in("instructor", ADMIN_PASSWORD)
    assert "Authorize Users" in admin.get("/hub/home").body
    student = Browser(f"http://{address}")
    assert student.sign_up("student1", "student-password-1").code == 200
    assert admin.get("/hub/authorize/student1").code == 200
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
    assert "volume firstclass-data: 20 GiB" in lines and "provisioning: ready" in lines and "hub: answers" in lines
    assert "monthly cost: $26.00" in lines and "droplet s-2vcpu-4gb: $24.00 (DigitalOcean's API)" in lines


def test_down_keeps_the_data_and_delete_data_leaves_nothing(first_up, cloud):
    result = cloud.classimage("down", str(cloud.spec))
    assert result.returncode == 0, result.stderr
    assert not cloud.api.droplets and not cloud.api.firewalls
    assert len(cloud.api.volumes) == 1 and len(cloud.api.reserved) == 1
    assert "left: volume firstclass-data, address 198.51.100." in result.stdout and "$7.00 a month" in result.stdout
    gone = cloud.classimage("down", str(cloud.spec), "--delete-data", "--yes")
    assert gone.returncode == 0, gone.stderr
    assert "nothing left" in gone.stdout
    assert not cloud.api.volumes and not cloud.api.reserved and not cloud.api.droplets
    assert not [t for t in cloud.api.tags if t.startswith("classimage-firstclass-ip-")]
