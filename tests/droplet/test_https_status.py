"""Where HTTPS stands, as the droplet's status service says it (classimage/droplet/statusservice.py) and
`classimage status` prints it (classimage/cloud/progress.py `https_said`): traefik's certificate for the
hub's name and its expiry, read from acme.json in traefik's format; until it has one, what the name
resolves to from the droplet and the DNS record to make. Certificates here are real (openssl), the
status service a real `serve-status` process."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import ssl
import subprocess
import time
from pathlib import Path

import pytest

import course_repo
from test_runner import Droplet, get, status_service, three_steps
from classimage.cloud import progress
from classimage.droplet import provision, statusservice
from classimage.droplet.provision import Plan

NAME = "hub.course.test"


@pytest.fixture(scope="module")
def issued(tmp_path_factory) -> dict:
    """A certificate for NAME, its chain (the leaf first, then a CA that outlives it, as traefik
    stores Let's Encrypt's chain) and its notAfter as CPython's own parser reads it."""
    folder = tmp_path_factory.mktemp("issued")
    ca = course_repo.TestCA(folder / "ca", address=NAME)  # the leaf: 30 days
    longer = folder / "longer.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "400", "-subj", "/CN=longer",
                    "-keyout", str(folder / "longer.key"), "-out", str(longer)], check=True, capture_output=True)
    seconds = ssl.cert_time_to_seconds(ssl._ssl._test_decode_cert(str(ca.pem))["notAfter"])
    return {"chain": ca.pem.read_text() + longer.read_text(),
            "expires": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))}


def acme_json(chain: str, main: str = NAME, sans: list | None = None) -> dict:
    """acme.json as traefik writes it: per resolver (TLJH names its own letsencrypt), the account
    and each certificate with its domains, the PEM chain and key base64-encoded."""
    encoded = base64.b64encode(chain.encode()).decode()
    return {"letsencrypt": {"Account": {"Email": "i@course.test", "Registration": {}, "PrivateKey": "x",
                                        "KeyType": "4096"},
                            "Certificates": [{"domain": {"main": main, **({"sans": sans} if sans else {})},
                                              "certificate": encoded, "key": "a2V5", "Store": "default"}]}}


def test_https_certificate_expiry_is_the_leafs(issued):
    assert statusservice.certificate_expiry(issued["chain"]) == issued["expires"]
    assert statusservice.certificate_expiry("not a certificate") is None


@pytest.mark.parametrize("acme, held", [
    (None, False),  # no acme.json yet
    ({}, False),
    ({"letsencrypt": {"Account": {}, "Certificates": None}}, False),  # traefik's, before its first certificate
    ("garbage", False), ({"letsencrypt": [1]}, False), ({"letsencrypt": {"Certificates": [{"domain": 1}]}}, False),
    ("other-name", False),
    ("main", True),
    ("san", True),
])
def test_https_state_reads_traefiks_certificate_for_the_name(acme, held, issued):
    kinds = {"main": acme_json(issued["chain"]), "san": acme_json(issued["chain"], "other.test", [NAME]),
             "other-name": acme_json(issued["chain"], "other.test")}
    acme = kinds.get(acme, acme) if isinstance(acme, str) else acme
    resolved: list[str] = []
    state = statusservice.https_state(NAME, acme, lambda pem: pem[:27], lambda name: resolved.append(name) or ["192.0.2.9"])
    if held:
        assert state == {"hostname": NAME, "certificate": {"expires": "-----BEGIN CERTIFICATE-----"},
                         "resolves_to": None}
        assert resolved == []  # no DNS lookup once the certificate is there
    else:
        assert state == {"hostname": NAME, "certificate": None, "resolves_to": ["192.0.2.9"]}


def test_https_state_without_a_hostname_is_none():
    assert statusservice.https_state(None, None, statusservice.certificate_expiry, statusservice.addresses) is None


def test_https_addresses_from_the_resolver():
    assert "127.0.0.1" in statusservice.addresses("localhost")
    assert statusservice.addresses("no-such-name.invalid") == []  # RFC 6761: never resolves


NOW = time.mktime((2026, 3, 1, 0, 0, 0, 0, 0, 0))


@pytest.mark.parametrize("https, said", [
    (None, None),
    ({"hostname": NAME, "certificate": {"expires": "2026-05-30T11:59:59Z"}, "resolves_to": None},
     f"{NAME}: certificate valid until 2026-05-30 11:59 UTC"),
    ({"hostname": NAME, "certificate": {"expires": "2026-01-30T11:59:59Z"}, "resolves_to": None},
     f"{NAME}: certificate EXPIRED on 2026-01-30 11:59 UTC"),
    ({"hostname": NAME, "certificate": {"expires": None}, "resolves_to": None},
     f"{NAME}: traefik holds a certificate (its expiry unreadable)"),
    ({"hostname": NAME, "certificate": None, "resolves_to": []},
     f"{NAME}: no certificate yet (from the droplet it does not resolve): create the DNS record {NAME} A 203.0.113.7"),
    ({"hostname": NAME, "certificate": None, "resolves_to": ["198.51.100.1"]},
     f"{NAME}: no certificate yet (from the droplet it resolves to 198.51.100.1): create the DNS record {NAME} A "
     "203.0.113.7"),
    ({"hostname": NAME, "certificate": None, "resolves_to": ["203.0.113.7"]},
     f"{NAME}: no certificate yet; it resolves to 203.0.113.7, the droplet has traefik ask Let's Encrypt again every "
     "20 minutes: if this lasts an hour, see `ssh root@203.0.113.7 journalctl -u traefik`"),
])
def test_https_said_by_classimage_status(https, said):
    assert progress.https_said({"state": "ready", "https": https}, "203.0.113.7", now=NOW) == said


@pytest.mark.parametrize("https", ["a string", {"hostname": NAME, "certificate": "a string"},
                                   {"hostname": NAME, "certificate": None, "resolves_to": [1, None]},
                                   {"hostname": NAME, "certificate": None, "resolves_to": "203.0.113.7"}])
def test_https_said_of_a_droplet_that_says_nonsense_is_no_traceback(https):
    said = progress.https_said({"state": "ready", "https": https}, "203.0.113.7", now=NOW)
    assert said is None or "create the DNS record" in said  # a string is no list of addresses


def test_https_said_prints_no_terminal_escapes_of_the_droplets():
    https = {"hostname": "\x1b[2Jhub.ok", "certificate": None, "resolves_to": ["\x1b[31m1.2.3.4"]}
    said = progress.https_said({"state": "ready", "https": https}, "203.0.113.7", now=NOW)
    assert said is not None and "\x1b" not in said and "'\\x1b[2Jhub.ok'" in said  # escaped, as file names are


def test_https_addresses_soon_waits_for_no_slow_nameserver(monkeypatch):
    """A lookup that hangs (a nameserver that never answers) delays a status answer by `wait` once;
    the answers after it wait for none, and make no second lookup while the first hangs."""
    lookups = []

    def hangs(name):
        lookups.append(name)
        time.sleep(5)
        return ["192.0.2.9"]

    monkeypatch.setattr(statusservice, "addresses", hangs)
    monkeypatch.setattr(statusservice, "_lookups", {})
    started = time.monotonic()
    assert statusservice.addresses_soon(NAME, wait=0.5) == []
    assert statusservice.addresses_soon(NAME, wait=0.5) == []
    assert time.monotonic() - started < 2 and lookups == [NAME]


def test_https_said_of_a_droplet_that_says_nothing():
    assert progress.https_said(None, "203.0.113.7") is None
    assert progress.https_said({"state": "ready"}, "203.0.113.7") is None  # a droplet of an older classimage


def test_https_state_is_in_the_status_service_for_everyone(tmp_path, issued):
    """The real `serve-status`: no certificate and the name's addresses, then traefik's certificate
    and its expiry; the same for the public and the token holder."""
    droplet = Droplet(tmp_path)
    droplet.plan(*three_steps(), token_sha256=hashlib.sha256(b"t0ken").hexdigest())
    plan = Plan.from_json(Path(droplet.paths.plan).read_text())
    Path(droplet.paths.plan).write_text(dataclasses.replace(plan, https_hostname="localhost").to_json())
    assert droplet.run() == 0
    acme = Path(droplet.paths.at(provision.ACME))
    acme.parent.mkdir(parents=True)
    acme.write_text("")  # as traefik leaves it before its first certificate
    with status_service(droplet) as url:
        public = json.loads(get(url)[1])
        assert public["https"]["certificate"] is None and "127.0.0.1" in public["https"]["resolves_to"]
        acme.write_text(json.dumps(acme_json(issued["chain"], "localhost")))
        public = json.loads(get(url)[1])
        assert public["https"] == {"hostname": "localhost", "certificate": {"expires": issued["expires"]},
                                   "resolves_to": None}
        assert public["state"] == "ready"
        assert json.loads(get(url, {"Authorization": "token t0ken"})[1])["https"] == public["https"]


def test_https_state_is_absent_without_a_hostname(tmp_path):
    droplet = Droplet(tmp_path)
    droplet.plan(*three_steps())
    assert droplet.run() == 0
    with status_service(droplet) as url:
        assert json.loads(get(url)[1])["https"] is None


# -- traefik asked to order again (statusservice.https_nudge; the real traefik: tests/booted/test_https_late_dns.py)

AT = 1_000_000.0


@pytest.mark.parametrize("last, resolves_to, now, due", [
    (None, ["203.0.113.7"], AT, False),  # the first look after boot: traefik orders at its own start
    ({"resolves_to": [], "nudged": AT}, [], AT + 9999, False),  # resolving nowhere: no validation can succeed
    ({"resolves_to": [], "nudged": AT}, ["203.0.113.7"], AT + 60, True),  # the record was made
    ({"resolves_to": ["198.51.100.1"], "nudged": AT}, ["203.0.113.7"], AT + 60, True),  # ... or changed
    ({"resolves_to": ["203.0.113.7"], "nudged": AT}, ["203.0.113.7"], AT + provision.NUDGE_AGAIN - 1, False),
    ({"resolves_to": ["203.0.113.7"], "nudged": AT}, ["203.0.113.7"], AT + provision.NUDGE_AGAIN, True),
])
def test_https_nudge_is_due_when_the_record_changes_and_then_every_20_minutes(last, resolves_to, now, due):
    assert statusservice.nudge_due(last, resolves_to, now) is due


def test_https_nudge_changes_traefiks_configuration_only_when_due(tmp_path, issued):
    """The real `https-nudge` command, as the timer runs it: the first look records what the name
    resolves to; a look after the name resolved elsewhere writes a new middleware value into
    traefik's watched folder (valid TOML); nothing once traefik holds the certificate."""
    import tomllib
    droplet = Droplet(tmp_path)
    droplet.plan(*three_steps())
    plan = Plan.from_json(Path(droplet.paths.plan).read_text())
    Path(droplet.paths.plan).write_text(dataclasses.replace(plan, https_hostname="localhost").to_json())
    nudge, state = Path(droplet.paths.at(provision.ACME_NUDGE)), Path(droplet.paths.at(provision.ACME_NUDGE_STATE))
    state.parent.mkdir(parents=True)
    state.write_text(json.dumps({"resolves_to": ["203.0.113.7"], "nudged": time.time()}))  # due, but ...
    assert droplet.cli("https-nudge").returncode == 0 and not nudge.parent.exists()  # no traefik folder: nothing
    state.unlink()
    nudge.parent.mkdir(parents=True)  # TLJH's
    assert droplet.cli("https-nudge").returncode == 0
    assert not nudge.exists() and "127.0.0.1" in json.loads(state.read_text())["resolves_to"]
    state.write_text(json.dumps({"resolves_to": ["203.0.113.7"], "nudged": time.time()}))  # the name moved since
    result = droplet.cli("https-nudge")
    assert result.returncode == 0 and "traefik asked to order its certificate again" in result.stdout
    headers = tomllib.loads(nudge.read_text())["http"]["middlewares"]["classimage-acme-nudge"]["headers"]
    assert set(headers["customResponseHeaders"]) == {"X-Classimage-Acme-Order"}
    nudge.unlink()  # (its text holds the time to the second: the same within one)
    assert droplet.cli("https-nudge").returncode == 0 and not nudge.exists()  # the same name, at once: not due
    state.write_text(json.dumps({"resolves_to": ["203.0.113.7"], "nudged": 0}))
    acme = Path(droplet.paths.at(provision.ACME))
    acme.write_text(json.dumps(acme_json(issued["chain"], "localhost")))
    assert droplet.cli("https-nudge").returncode == 0 and not nudge.exists()  # a certificate held: never


def test_https_nudge_without_a_hostname_does_nothing(tmp_path):
    droplet = Droplet(tmp_path)
    droplet.plan(*three_steps())
    assert droplet.cli("https-nudge").returncode == 0
    assert not Path(droplet.paths.at(provision.ACME_NUDGE_STATE)).exists()
