"""Renewal, for real: traefik replaces the hub's certificate by itself, in the same process, while a
student works. Let's Encrypt's certificates last 90 days and traefik renews them 30 days before they
expire; no test waits two months, so here Pebble issues certificates that last VALIDITY seconds and
the harness's traefik_config.d file tells traefik so (`certificatesDuration`, in hours: under 24,
traefik renews 20 minutes before expiry, checking every minute; pkg/provider/acme,
getCertificateRenewDurations, and traefik's ACME documentation, "certificatesDuration"). Production
keeps traefik's defaults, which fit Let's Encrypt's 90 days.

What the students must not notice: traefik's process is the same (no restart), a student signed in
before is signed in after with the same cookies, and a kernel's websocket and a keep-alive HTTPS
connection opened before the renewal still answer after it. The class's volume keeps the new
certificate (acme.json), so a replacement droplet would serve it."""

from __future__ import annotations

import asyncio
import base64
import http.client
import json
import re
import socket
import ssl
import subprocess
import time
from dataclasses import dataclass

import pytest
import yaml

import pebble
from conftest import REPO
from firstboot import ADMIN_PASSWORD, browser, droplets, explain, render_for
from hubclient import run_cell
from test_https_droplets import DEVICE, HOSTNAME, boot_watched, certificate
from classimage.droplet.classdata import shared

pytestmark = pytest.mark.droplet
# Pebble's certificates last 22 minutes: traefik renews each once it has 20 minutes left, at its first
# check (every minute) past the age of 2 minutes.
VALIDITY = 22 * 60
CERTIFICATES_DURATION = 1  # hours: the smallest traefik accepts ("lower than 1 hour" is refused at its start)
RENEW_PERIOD, RENEW_INTERVAL = 20 * 60, 60  # traefik's for certificatesDuration < 24
# From reading a certificate to its replacement, at most: its age when it enters the renew period,
# one check's interval, and the order itself (TLS-ALPN validation, issuance) with room for a busy host.
WAIT = VALIDITY - RENEW_PERIOD + RENEW_INTERVAL + 90
STUDENT, PASSWORD = "student1", "student-password-1"
NO_RENEWAL = "no renewal to check: see test_https_traefik_renews_the_certificate_in_the_same_process"


@dataclass
class Served:
    der: bytes
    serial: str
    not_before: float
    not_after: float

    @classmethod
    def now(cls, address: str, root: str) -> Served:
        seen = certificate(address, HOSTNAME, root)
        cert = seen["cert"]
        return cls(seen["der"], cert["serialNumber"], ssl.cert_time_to_seconds(cert["notBefore"]),
                   ssl.cert_time_to_seconds(cert["notAfter"]))


def traefik_pid(droplet) -> str:
    return droplet.sh("systemctl show -p MainPID --value traefik", check=True).stdout.strip()


def held_connection(address: str, root: str) -> http.client.HTTPSConnection:
    """A browser's keep-alive connection to the hub by name, at `address`, already open: should it
    close, http.client would connect again by name, which resolves nowhere here, and fail."""
    context = ssl.create_default_context(cadata=root)
    connection = http.client.HTTPSConnection(HOSTNAME, 443, context=context, timeout=30)
    connection.sock = context.wrap_socket(socket.create_connection((address, 443), timeout=30),
                                          server_hostname=HOSTNAME)
    return connection


def hub_api(connection: http.client.HTTPSConnection) -> dict:
    connection.request("GET", "/hub/api")
    response = connection.getresponse()
    body = response.read()
    assert response.status == 200, (response.status, body[:300])
    return json.loads(body)


def on_device(droplet) -> bytes:
    """The certificate acme.json holds on the class's device (the first of its PEM chain), as DER."""
    stored = droplet.read_json(f"{shared.MOUNT}/{shared.STATE}/acme.json")
    chain = base64.b64decode(stored["letsencrypt"]["Certificates"][0]["certificate"]).decode()
    first = re.search(r"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", chain, re.S)
    assert first, chain[:200]
    return ssl.PEM_cert_to_DER_cert(first.group(0))


@dataclass
class Renewal:
    droplet: object
    root: str
    before: Served
    after: Served | None
    watched: float  # seconds from reading `before` to seeing `after` (or giving up)
    pids: tuple[str, str]
    cookies: tuple[dict, dict]
    signed_in_after: bool
    kernel: tuple[str, str]  # what the kernel printed through one websocket: before, after (or its failure)
    held: tuple[dict, dict | str, bytes]  # /hub/api on one connection before and after; the certificate it opened under
    same_socket: bool
    orders: int  # Pebble's orders while watching
    why: str  # what to read when no renewal came


async def watch(droplet, root: str, pupil, kernel_id: str, acme: pebble.Pebble) -> Renewal:
    """Open a kernel's websocket and a keep-alive connection, note the served certificate, then wait
    (letting both connections idle, as a student reading a notebook does) until traefik serves
    another; use both connections again."""
    channel = await pupil.kernel_channel(STUDENT, kernel_id)
    try:
        kernel_before = await run_cell(channel, STUDENT, "import os; pid = os.getpid(); print(pid)")
        held = held_connection(droplet.ip, root)
        held_before = hub_api(held)
        socket_before = held.sock
        held_cert = held.sock.getpeercert(binary_form=True)
        cookies_before = {c.name: c.value for c in pupil.jar}
        pid_before = traefik_pid(droplet)
        orders = acme.orders()
        before = Served.now(droplet.ip, root)
        started = time.monotonic()
        after = None
        while time.monotonic() - started < WAIT:
            await asyncio.sleep(5)
            served = await asyncio.to_thread(Served.now, droplet.ip, root)
            if served.der != before.der:
                after = served
                break
        watched = time.monotonic() - started
        why = ""
        if after is None:
            why = (f"traefik did not replace the certificate within {WAIT} s: still serial {before.serial}, valid "
                   f"{before.not_after - before.not_before:.0f} s (the test expects {VALIDITY} s); Pebble took "
                   f"{acme.orders() - orders} orders meanwhile. traefik's renewals:\n"
                   + droplet.sh("journalctl -u traefik --no-pager | grep -i renew | tail -n 20").stdout)
        kernel_after = await said(run_cell(channel, STUDENT, "print(pid)"))
        held_after = await said(asyncio.to_thread(hub_api, held))
        same_socket = held.sock is socket_before
        held.close()
    finally:
        channel.close()
    signed_in_after = await asyncio.to_thread(pupil.is_signed_in)
    return Renewal(droplet, root, before, after, watched, (pid_before, traefik_pid(droplet)),
                   (cookies_before, {c.name: c.value for c in pupil.jar}), signed_in_after,
                   (kernel_before, kernel_after), (held_before, held_after, held_cert), same_socket,
                   acme.orders() - orders, why)


async def said(awaitable):
    """What a connection answers, or how it failed (for the test's message, not the fixture's error)."""
    try:
        return await awaitable
    except Exception as error:  # any failure is the finding
        return f"{type(error).__name__}: {error}"


@pytest.fixture(scope="module")
def renewal(image, tmp_path_factory):
    """A class over HTTPS on a device, Pebble issuing certificates that last VALIDITY seconds; a
    student signed in with a kernel running; then the watch."""
    folder = tmp_path_factory.mktemp("https-renewal")
    backing = folder / "volume.img"
    subprocess.run(["truncate", "--size", "4G", str(backing)], check=True)
    loop = subprocess.run(["losetup", "--find", "--show", str(backing)], capture_output=True, text=True,
                          check=True).stdout.strip()
    source = yaml.safe_load((REPO / "examples" / "minimal.yaml").read_text())
    source["https"] = {"hostname": HOSTNAME, "email": "instructor@firstclass.test"}
    source["storage"] = {"type": "device", "device": DEVICE}
    try:
        with pebble.Pebble(tmp_path_factory.mktemp("pebble-renewal"), validity=VALIDITY) as acme, \
                droplets(image, folder) as make:
            https = (HOSTNAME, acme.root())
            droplet = make("renewal")
            droplet.extra_nspawn.append(f"--bind={loop}:{DEVICE}")
            acme.prepare(droplet, certificates_duration=CERTIFICATES_DURATION)
            acme.point(HOSTNAME, droplet.ip)
            user_data, spec_path = render_for(droplet, source, cas=(acme.listener.certificate,))
            cloud_init, _ = boot_watched(droplet, user_data, "i-https-renewal", https, acme)
            assert cloud_init["status"] == "done", explain(droplet)
            admin, pupil = browser(droplet, https), browser(droplet, https)
            admin.sign_in("instructor", ADMIN_PASSWORD)
            assert pupil.sign_up(STUDENT, PASSWORD).code == 200
            assert admin.set_approval(STUDENT).code == 200
            pupil.sign_in(STUDENT, PASSWORD)
            assert pupil.is_signed_in()
            pupil.start_server(STUDENT)
            code, kernel = pupil.api("POST", f"/user/{STUDENT}/api/kernels", {"name": "python3"})
            assert code == 201, (code, kernel)
            yield asyncio.run(watch(droplet, https[1], pupil, kernel["id"], acme))
    finally:
        subprocess.run(["losetup", "--detach", loop], capture_output=True)


def test_https_traefik_renews_the_certificate_in_the_same_process(renewal):
    before, after = renewal.before, renewal.after
    assert after is not None, renewal.why
    assert after.serial != before.serial and after.not_after > before.not_after
    # Pebble issued what the test asked for, and traefik renewed inside its renew period, not earlier.
    assert round(before.not_after - before.not_before) in (VALIDITY - 1, VALIDITY), before
    assert after.not_before < before.not_after
    assert before.not_after - after.not_before <= RENEW_PERIOD + 5, (before, after)
    assert renewal.orders >= 1
    assert renewal.pids[0] == renewal.pids[1] != "0", renewal.pids  # no restart
    print(f"https: certificate replaced {after.not_before - before.not_before:.0f} s after it was issued "
          f"({before.not_after - after.not_before:.0f} s before it expired), {renewal.watched:.0f} s after "
          f"the test read it; traefik's PID {renewal.pids[0]} throughout")


def test_https_students_session_survives_the_renewal(renewal):
    assert renewal.after is not None, NO_RENEWAL
    assert renewal.signed_in_after
    before, after = renewal.cookies
    assert before == after and "jupyterhub-hub-login" in before, (before.keys(), after.keys())


def test_https_connections_opened_before_the_renewal_still_answer(renewal):
    """A kernel's websocket and a keep-alive HTTPS connection, both opened under the old certificate."""
    assert renewal.after is not None, NO_RENEWAL
    printed_before, printed_after = renewal.kernel
    assert printed_before.strip() and printed_after.strip() == printed_before.strip(), renewal.kernel
    held_before, held_after, held_cert = renewal.held
    assert held_before == held_after and "version" in held_after, held_after
    assert renewal.same_socket, "the keep-alive connection was opened again"
    assert held_cert != renewal.after.der  # it was opened under a certificate since replaced


def test_https_renewed_certificate_is_kept_on_the_class_device(renewal):
    assert renewal.after is not None, NO_RENEWAL
    # traefik serves a new certificate first, then writes acme.json, and renews every few minutes here:
    # the file and what is served agree within moments.
    for _ in range(5):
        stored, served = on_device(renewal.droplet), Served.now(renewal.droplet.ip, renewal.root)
        if stored == served.der:
            break
        time.sleep(2)
    assert stored == served.der and served.not_before >= renewal.after.not_before
