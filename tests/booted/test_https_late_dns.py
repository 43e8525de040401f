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
QUIET = 20  # seconds the ACME server is out of reach, then seconds traefik is seen ordering nothing


def test_https_before_the_dns_record_the_class_opens_and_the_certificate_follows_it(image, tmp_path_factory):
    """A droplet booted before its name's record points at it (Let's Encrypt's validation reaches
    another address and fails): the class opens all the same (hub-ready waits for the hub, not the
    certificate), serving traefik's own certificate, while traefik's orders are refused, and its
    status says there is no certificate yet, with the record to make; once the record points at the
    droplet, the droplet's timer (https-nudge) has traefik order again, and it gets the certificate
    with no restart, and the status its expiry. Without the timer this failed once in CI's load:
    traefik ordered a certificate only when its configuration changed, and stopped after 6."""
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
        # Meanwhile traefik's orders are refused. How many it makes is its own affair (seen here: none to 121 a
        # minute): it asks only when its configuration changes, and a failed order's clean-up is such a change.
        before = acme.orders()
        time.sleep(WATCH)
        refused = acme.orders()
        assert refused >= 1 and acme.issued() == 0
        print(f"https: with the record elsewhere, traefik ordered {(refused - before) * 60 / WATCH:.0f} certificates "
              "a minute, each refused")
        assert droplet.sh("systemctl is-active classimage-https-nudge.timer", check=True).stdout.strip() == "active"
        pid = droplet.sh("systemctl show -p MainPID --value traefik", check=True).stdout
        # Let's Encrypt refuses every order for an hour once 5 validations of a name failed: refused before any
        # challenge, traefik's configuration changes no more and it orders no more. The harness refuses so too,
        # by refusing the droplet's connections to the ACME server for a while, and sees traefik stop.
        refuse = f"OUTPUT -p tcp -d {acme.address} --dport {pebble.ACME_PORT} -j REJECT --reject-with tcp-reset"
        droplet.sh(f"iptables -I {refuse}", check=True)
        time.sleep(QUIET)
        droplet.sh(f"iptables -D {refuse}", check=True)
        stopped = acme.orders()
        time.sleep(QUIET)
        assert acme.orders() == stopped, "traefik ordered again by itself: this test no longer shows the timer's part"
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
              f"({acme.orders() - stopped} more orders)")
        nudges = droplet.sh("journalctl -u classimage-https-nudge.service -o cat", check=True).stdout
        assert f"{HOSTNAME} resolves to {droplet.ip}: traefik asked to order its certificate again" in nudges, nudges
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
