"""How `up` and `status` reach a class with `https.hostname` (classimage/cloud/progress.py `ask`): over HTTPS
by name, the certificate checked, once the name resolves to the class's address; else at the address
(TLJH's traefik redirects port 80 to HTTPS: followed there, the certificate unchecked), saying why
and, when the DNS record is missing, which record to make.

Each case runs in a network namespace of its own (bubblewrap), whose loopback serves what a droplet's
ports 80 and 443 answer, whose /etc/hosts is the DNS (resolved for real, by the C library), and
whose trust store (SSL_CERT_FILE) is what the instructor's machine trusts: Let's Encrypt's
stand-in is a test CA."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

import course_repo
from conftest import REPO, in_a_network_of_its_own

NAME = "hub.course.test"
# The droplet: with "https", port 80 redirects to 443 (TLJH's traefik with HTTPS on), which serves the
# status and health with the certificate given; with "plain", port 80 answers itself and nothing
# listens on 443 (no HTTPS, or classimage's own page while TLJH installs). Then it prints what the
# verbs say.
DROPLET = r"""
import http.server, json, ssl, sys, threading
sys.path.insert(0, sys.argv[1])
from classimage.cloud import progress
mode, cert, key, hostname = sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5] or None

class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        if self.server.server_address[1] == 80 and mode != "plain":
            self.send_response(301)
            self.send_header("Location", "https://" + self.headers["Host"] + self.path)
            self.end_headers()
            return
        body = json.dumps({"state": "ready", "steps": [], "port": self.server.server_address[1],
                           "token": self.headers["Authorization"]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass

servers = [http.server.ThreadingHTTPServer(("127.0.0.1", 80), Handler)]
if mode == "https":
    secure = http.server.ThreadingHTTPServer(("127.0.0.1", 443), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    secure.socket = context.wrap_socket(secure.socket, server_side=True)
    servers.append(secure)
for server in servers:
    threading.Thread(target=server.serve_forever, daemon=True).start()
answer = progress.status_answer("127.0.0.1", "t", hostname=hostname)
print(json.dumps({"health": progress.hub_health("127.0.0.1", hostname), "where": progress.where(answer, "127.0.0.1"),
                  "status": progress.parse_status(answer)}))
"""


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    if not shutil.which("bwrap"):
        pytest.fail("bubblewrap (bwrap) is needed: apt-get install bubblewrap (.ci/run does)")
    here = tmp_path_factory.mktemp("cloud-https")
    course_repo.TestCA(here / "issuer", address=NAME)  # what Let's Encrypt would issue for the name
    course_repo.TestCA(here / "other")  # a CA the instructor's machine does not trust for it
    (here / "droplet.py").write_text(DROPLET)
    return here


def verbs(folder: Path, *, hostname: str | None, resolves: bool = True, mode: str = "https",
          trusted: bool = True) -> dict:
    """What `status` and `up` read and say of a droplet at 127.0.0.1 serving `mode`."""
    trust = folder / ("issuer" if trusted else "other") / "ca.pem"
    return in_a_network_of_its_own(
        folder, [hostname] if hostname and resolves else [],
        ["/tmp/sandbox/droplet.py", str(REPO), mode, "/tmp/sandbox/issuer/server.pem", "/tmp/sandbox/issuer/server.key",
         hostname or ""],
        {"SSL_CERT_FILE": f"/tmp/sandbox/{trust.relative_to(folder)}", "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"},
        timeout=60)


def test_https_by_name_once_the_name_resolves_and_the_certificate_is_valid(folder):
    said = verbs(folder, hostname=NAME)
    assert said["health"] == f"answers at https://{NAME}/hub/health (HTTPS, its certificate valid)"
    assert said["where"] == f"https://{NAME}"
    assert said["status"]["port"] == 443 and said["status"]["token"] == "token t"  # a checked connection


def test_https_at_the_address_with_the_record_to_make_while_the_name_does_not_resolve(folder):
    said = verbs(folder, hostname=NAME, resolves=False)
    assert said["health"] == (f"answers at https://127.0.0.1/hub/health; not by name: {NAME} does not resolve to "
                              f"127.0.0.1 yet: create the DNS record {NAME} A 127.0.0.1")
    assert said["where"] == f"https://127.0.0.1 ({NAME} does not resolve to 127.0.0.1 yet)"
    assert said["status"]["port"] == 443  # the redirect followed to the address
    assert said["status"]["token"] is None  # a connection nobody vouches for: the public status only


def test_https_at_the_address_while_the_certificate_is_not_valid(folder):
    """The name resolves, but the certificate is not one the instructor's machine trusts for it
    (traefik's own default, before Let's Encrypt has issued one)."""
    said = verbs(folder, hostname=NAME, trusted=False)
    assert said["health"].startswith(f"answers at https://127.0.0.1/hub/health; not by name: {NAME} has no valid "
                                     "certificate yet (")
    assert "traefik asks Let's Encrypt for one once the name resolves" in said["health"]
    assert said["status"]["port"] == 443 and said["status"]["token"] is None


def test_https_class_while_it_installs_is_read_on_port_80(folder):
    """Before TLJH's traefik runs, or while a new droplet waits for the class's volume, classimage's
    own page answers on port 80 and nothing on 443."""
    said = verbs(folder, hostname=NAME, mode="plain")
    assert said["where"] == f"http://127.0.0.1 (nothing answers HTTPS at {NAME} yet)"
    assert said["status"]["port"] == 80


def test_a_class_without_https_is_read_over_http(folder):
    said = verbs(folder, hostname=None, mode="plain")
    assert said["health"] == "answers at http://127.0.0.1/hub/health"
    assert said["where"] == "http://127.0.0.1" and said["status"]["port"] == 80
