"""A class over HTTPS whose name's record is made after the droplet has booted (tests/pebble.py:
Pebble validates as Let's Encrypt does, so it refuses every order until the record points at the
droplet). In a module of its own: its droplet never runs beside those of test_https_droplets.py."""

from __future__ import annotations

import ssl
import time

import pytest
import yaml

import pebble
from conftest import REPO
from firstboot import BOOT_DEADLINE, droplets, explain, render_for
from hubclient import wait_for
from test_https_droplets import HOSTNAME, certificate
from classimage.cloud import progress
from classimage.droplet import provision

pytestmark = pytest.mark.droplet
WATCH = 60  # seconds of watching traefik's orders while the name's record points elsewhere


def test_https_before_the_dns_record_the_class_opens_and_the_certificate_follows_it(image, tmp_path_factory):
    """A droplet booted before its name's record points at it (Let's Encrypt's validation reaches
    another address and fails): the class opens all the same (hub-ready waits for the hub, not the
    certificate), serving traefik's own certificate, while traefik orders one again and again, and
    its status says there is no certificate yet, with the record to make; once the record points at
    the droplet, traefik gets the certificate by itself, with no restart, and the status its expiry."""
    folder = tmp_path_factory.mktemp("https-late")
    source = yaml.safe_load((REPO / "examples" / "minimal.yaml").read_text())
    source["https"] = {"hostname": HOSTNAME, "email": "instructor@firstclass.test"}
    with pebble.Pebble(tmp_path_factory.mktemp("pebble-late")) as acme, droplets(image, folder) as make:
        root = acme.root()
        droplet = make("late")
        acme.prepare(droplet)
        user_data, spec_path = render_for(droplet, source, cas=(acme.listener.certificate,))
        droplet.seed(user_data, "i-https-late")
        droplet.boot()
        cloud_init = droplet.wait_for_cloud_init(BOOT_DEADLINE)
        assert cloud_init["status"] == "done", explain(droplet)
        assert droplet.read_json(provision.STATUS)["state"] == "ready"
        with pytest.raises(ssl.SSLCertVerificationError):
            certificate(droplet.ip, HOSTNAME, root)
        # The droplet's own DNS answers as Pebble's does: the name resolves elsewhere (the host).
        dns(droplet, acme.address)
        # The status service looks the name up at most every 10 s (statusservice.addresses_soon): its next look.
        said = wait_for(lambda: resolved(status(droplet)), 30, "the status's lookup of the name", interval=2)
        assert said["https"] == {"hostname": HOSTNAME, "certificate": None, "resolves_to": [acme.address]}, said
        assert progress.https_said(said, droplet.ip) == (
            f"{HOSTNAME}: no certificate yet (from the droplet it resolves to {acme.address}): "
            f"create the DNS record {HOSTNAME} A {droplet.ip}")
        # Meanwhile traefik asks again and again (seen here: 44 to 112 orders a minute, each refused).
        before = acme.orders()
        time.sleep(WATCH)
        refused = acme.orders()
        assert refused - before >= 2 and acme.issued() == 0  # before: maybe none yet (traefik asks after its start)
        print(f"https: with the record elsewhere, traefik ordered {(refused - before) * 60 / WATCH:.0f} certificates "
              "a minute, each refused")
        pid = droplet.sh("systemctl show -p MainPID --value traefik", check=True).stdout
        acme.point(HOSTNAME, droplet.ip)
        dns(droplet, droplet.ip)
        pointed = time.monotonic()

        def issued() -> bool:
            try:
                return bool(certificate(droplet.ip, HOSTNAME, root))
            except (ssl.SSLError, OSError):
                return False

        wait_for(issued, 600, "traefik's certificate once the record points at the droplet", interval=5)
        print(f"https: certificate {time.monotonic() - pointed:.0f} s after the record pointed at the droplet "
              f"({acme.orders() - refused} more orders)")
        assert droplet.sh("systemctl show -p MainPID --value traefik", check=True).stdout == pid  # no restart
        # The status says so, with the expiry of the certificate the droplet serves.
        served = certificate(droplet.ip, HOSTNAME, root)["cert"]["notAfter"]
        expires = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ssl.cert_time_to_seconds(served)))
        said = status(droplet)
        assert said["https"] == {"hostname": HOSTNAME, "certificate": {"expires": expires}, "resolves_to": None}, said
        assert progress.https_said(said, droplet.ip) == f"{HOSTNAME}: certificate valid until {expires[:10]} {expires[11:16]} UTC"


def dns(droplet, address: str) -> None:
    """The droplet's resolver answers for the hub's name as the public DNS would: `address`."""
    droplet.sh(f"sed -i '/ {HOSTNAME}$/d' /etc/hosts && echo '{address} {HOSTNAME}' >> /etc/hosts", check=True)


def resolved(said: dict) -> dict | None:
    """The status once it says what the name resolves to from the droplet."""
    return said if (said.get("https") or {}).get("resolves_to") else None


def status(droplet) -> dict:
    """The droplet's status, as `classimage status` reads it from here (where the name resolves nowhere)."""
    said = progress.read_status(droplet.ip, None, hostname=HOSTNAME)
    assert said is not None, explain(droplet)
    return said
