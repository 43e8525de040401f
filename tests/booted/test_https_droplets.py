"""A class over HTTPS, for real: `https.hostname` set, TLJH's own traefik getting its certificate by
ACME (TLS-ALPN-01, as TLJH configures it) from Pebble, Let's Encrypt's test server, on the host
(tests/pebble.py), with the DNS record pointing at the droplet as Pebble's validation reads it. The
student's whole first class runs over HTTPS, every certificate checked against Pebble's root alone;
port 80 answers with the redirect. Then the droplet is replaced by one on the same class's device,
which serves the same certificate without a new ACME order.

`pytest -k https` runs these alone; they print the time from the droplet's start to the hub's
first HTTPS 200 (the figure issue 18 asks for)."""

from __future__ import annotations

import http.client
import socket
import ssl
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

import course_repo
import pebble
import testdroplet
from firstboot import BOOT_DEADLINE, assert_ready, browser, droplets, explain, render_for, student_journey
from classimage.cloud import progress
from classimage.droplet.classdata import shared
from conftest import CASES

pytestmark = pytest.mark.droplet
JOURNEY = CASES / "droplet" / "journey.yaml"
HOSTNAME = "hub.firstclass.test"
DEVICE = "/dev/disk/by-id/virtio-classdata"  # the class's device, as another cloud's block device appears


class FirstHTTPS(threading.Thread):
    """From the droplet's start: the seconds until the hub's API first answers 200 over HTTPS by
    name, its certificate checked against Pebble's root."""

    def __init__(self, droplet, https: tuple[str, str], started: float):
        super().__init__(daemon=True)
        self.droplet, self.https, self.started = droplet, https, started
        self.stopped = threading.Event()
        self.seconds: float | None = None

    def run(self):
        hub = browser(self.droplet, self.https)
        while not self.stopped.is_set():
            if hub.get("/hub/api", timeout=3).code == 200:
                self.seconds = time.monotonic() - self.started
                return
            self.stopped.wait(0.5)


@dataclass
class Served:
    droplet: testdroplet.TestDroplet
    spec_path: Path
    cloud_init: dict
    first_https: float | None
    orders: int  # Pebble's orders when it was ready
    extra: dict = field(default_factory=dict)


def boot_watched(droplet, user_data: str, instance_id: str, https: tuple[str, str], acme: pebble.Pebble) -> tuple:
    droplet.seed(user_data, instance_id)
    started = time.monotonic()
    droplet.boot()
    watcher = FirstHTTPS(droplet, https, started)
    watcher.start()
    try:
        cloud_init = droplet.wait_for_cloud_init(BOOT_DEADLINE)
        if cloud_init["status"] == "done":
            watcher.join(120)  # the certificate may come just after the hub is ready
    finally:
        watcher.stopped.set()
        watcher.join()
    return cloud_init, watcher.seconds


@pytest.fixture(scope="module")
def https_class(image, tmp_path_factory):
    """Pebble and its DNS on the host; a blank device (a loop device); the journey's spec with
    `https.hostname` on a one-piece droplet on that device, the name's record pointing at it."""
    folder = tmp_path_factory.mktemp("https")
    backing = folder / "volume.img"
    subprocess.run(["truncate", "--size", "4G", str(backing)], check=True)
    loop = subprocess.run(["losetup", "--find", "--show", str(backing)], capture_output=True, text=True,
                          check=True).stdout.strip()
    source = yaml.safe_load(JOURNEY.read_text())
    source["https"] = {"hostname": HOSTNAME, "email": "instructor@firstclass.test"}
    source["storage"] = {"type": "device", "device": DEVICE}
    ca = course_repo.TestCA(folder / "ca")
    try:
        # Pebble's folder is not the droplets': their teardown finds every process left under theirs.
        # One test CA for the course's repository and Pebble's listener: the journey's user data, with
        # this network's CAs, has no room for another (64 KiB).
        with pebble.Pebble(tmp_path_factory.mktemp("pebble"), ca=ca) as acme, droplets(image, folder) as make:
            https = (HOSTNAME, acme.root())
            droplet = make("first", ca=ca)
            droplet.extra_nspawn.append(f"--bind={loop}:{DEVICE}")
            acme.prepare(droplet)
            acme.point(HOSTNAME, droplet.ip)
            user_data, spec_path = render_for(droplet, source, ca=ca, cas=(acme.listener.certificate,))
            cloud_init, seconds = boot_watched(droplet, user_data, "i-https-first", https, acme)
            served = Served(droplet, spec_path, cloud_init, seconds, acme.orders())
            served.extra.update(acme=acme, https=https, make=make, source=source, ca=ca, loop=loop)
            yield served
    finally:
        subprocess.run(["losetup", "--detach", loop], capture_output=True)


def certificate(address: str, hostname: str, root: str | None) -> dict:
    """The certificate the droplet serves for `hostname`, checked against `root` (None: this host's
    own trust store)."""
    context = ssl.create_default_context(cadata=root) if root else ssl.create_default_context()
    with socket.create_connection((address, 443), timeout=10) as sock, \
            context.wrap_socket(sock, server_hostname=hostname) as tls:
        return {"cert": tls.getpeercert(), "der": tls.getpeercert(binary_form=True)}


def test_https_class_boots_to_ready_with_pebbles_certificate(https_class):
    droplet = https_class.droplet
    assert https_class.cloud_init["status"] == "done", explain(droplet)
    assert_ready(droplet, https_class.spec_path, https=https_class.extra["https"])
    assert https_class.first_https is not None, "the hub never answered over HTTPS with Pebble's certificate"
    served = certificate(droplet.ip, HOSTNAME, https_class.extra["https"][1])["cert"]
    assert ("DNS", HOSTNAME) in served["subjectAltName"], served
    issuer = dict(item for part in served["issuer"] for item in part)
    assert issuer["commonName"].startswith("Pebble Intermediate"), served
    assert https_class.orders == 1 and https_class.extra["acme"].issued() == 1
    print(f"https: droplet start to the hub's first HTTPS 200 in {https_class.first_https:.0f} s "
          f"({https_class.orders} ACME order)")


def test_https_certificate_is_not_trusted_without_pebbles_root(https_class):
    """The check above means something: nothing but Pebble's root vouches for that certificate."""
    with pytest.raises(ssl.SSLCertVerificationError):
        certificate(https_class.droplet.ip, HOSTNAME, None)


def test_https_port_80_answers_with_the_redirect(https_class):
    connection = http.client.HTTPConnection(https_class.droplet.ip, 80, timeout=10)
    connection.request("GET", "/hub/login?next=%2Fhub%2Fhome", headers={"Host": HOSTNAME})
    response = connection.getresponse()
    assert response.status in (301, 302, 307, 308), response.status
    assert response.getheader("Location") == f"https://{HOSTNAME}/hub/login?next=%2Fhub%2Fhome"


def test_https_students_first_class(https_class):
    student_journey(https_class.droplet, https_class.spec_path, https=https_class.extra["https"])


def test_https_acme_json_is_on_the_class_device(https_class):
    """Let's Encrypt's account and certificate live with the class, on its device, private."""
    droplet = https_class.droplet
    places = droplet.sh("findmnt -n -o TARGET --mountpoint /opt/tljh/state").stdout
    assert places.strip() == "/opt/tljh/state", places  # the device's tljh-state, bound there
    on_device = droplet.read_json(f"{shared.MOUNT}/{shared.STATE}/acme.json")
    assert on_device == droplet.read_json("/opt/tljh/state/acme.json")
    assert on_device["letsencrypt"]["Certificates"][0]["domain"]["main"] == HOSTNAME, on_device.keys()
    assert droplet.file_mode("/opt/tljh/state/acme.json") == 0o600


def test_https_status_at_the_address_names_the_record_to_make(https_class):
    """From this host, where the hub's name resolves nowhere: what `classimage status` says of the
    real droplet (its traefik redirecting port 80, its certificate not checkable by address)."""
    address = https_class.droplet.ip
    said = progress.hub_health(address, HOSTNAME)
    assert said == (f"answers at https://{address}/hub/health; not by name: {HOSTNAME} does not resolve to "
                    f"{address} yet: create the DNS record {HOSTNAME} A {address}"), said
    status = progress.read_status(address, None, hostname=HOSTNAME)
    assert status is not None and status["state"] == "ready", status


@pytest.fixture(scope="module")
def replaced(https_class):
    """The first droplet powers off (writing the class's database copy); a new one-piece droplet boots
    on the same device, the name's record pointing at it from the start: Pebble's validation would
    succeed, so any order it took would be a new certificate."""
    first, extra = https_class.droplet, https_class.extra
    acme, https = extra["acme"], extra["https"]
    before = certificate(first.ip, HOSTNAME, https[1])["der"]
    first.shutdown(timeout=120)
    orders = acme.orders()
    droplet = extra["make"]("second", ca=extra["ca"])
    droplet.extra_nspawn.append(f"--bind={extra['loop']}:{DEVICE}")
    acme.prepare(droplet)
    acme.point(HOSTNAME, droplet.ip)
    user_data, spec_path = render_for(droplet, extra["source"], ca=extra["ca"], cas=(acme.listener.certificate,))
    cloud_init, seconds = boot_watched(droplet, user_data, "i-https-second", https, acme)
    return Served(droplet, spec_path, cloud_init, seconds, acme.orders() - orders, {"before": before})


def test_https_replacement_serves_the_same_certificate_without_a_new_order(replaced, https_class):
    droplet = replaced.droplet
    assert replaced.cloud_init["status"] == "done", explain(droplet)
    assert_ready(droplet, replaced.spec_path, https=https_class.extra["https"])
    assert replaced.orders == 0, "the replacement asked Pebble for a certificate the class's device holds"
    assert certificate(droplet.ip, HOSTNAME, https_class.extra["https"][1])["der"] == replaced.extra["before"]
    assert replaced.first_https is not None
    print(f"https: replacement droplet start to the hub's first HTTPS 200 in {replaced.first_https:.0f} s "
          "(the certificate from the class's device, no ACME order)")


def test_https_students_account_survives_the_replacement(replaced, https_class):
    """The student the first class approved signs in on the new droplet, over HTTPS."""
    pupil = browser(replaced.droplet, https_class.extra["https"])
    pupil.sign_in("student1", "student-password-1")
    assert pupil.is_signed_in()

