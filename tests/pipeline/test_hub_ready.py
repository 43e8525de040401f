"""The hub-ready step's own script, run against a stand-in for what a droplet's port 80 and 443 answer,
in a network namespace of its own (bubblewrap): ready is the hub's own answer (the JSON of its API),
never a redirect or traefik's 404. With HTTPS on, TLJH's traefik redirects all of port 80, so the
step asks port 443 by the hub's name, whatever certificate it gets."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

import course_repo
from classimage.pipeline import network, plan, spec, templating, tljh
from conftest import CASES, REPO

# Answers port 80 and 443 (TLS, the certificate given) per the first argument: "api" the hub's JSON,
# "redirect" what TLJH's traefik answers on port 80 with HTTPS on, "404" traefik before the hub's
# routes, "html" a page that is not the API. The second says which ports answer so; others redirect.
SERVER = r"""
import http.server, json, ssl, sys, threading
kind, ports, cert, key = sys.argv[1], sys.argv[2].split(","), sys.argv[3], sys.argv[4]

class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        port = str(self.server.server_address[1])
        answer = kind if port in ports else "redirect"
        if answer == "redirect":
            self.send_response(308)
            self.send_header("Location", "https://" + (self.headers["Host"] or "x") + self.path)
            self.end_headers()
            return
        code, body, mime = {"api": (200, json.dumps({"version": "5.3.0"}), "application/json"),
                            "404": (404, "404 page not found", "text/plain"),
                            "html": (200, "<html>a page</html>", "text/html")}[answer]
        self.send_response(code)
        self.send_header("Content-Type", mime)
        self.end_headers()
        self.wfile.write(body.encode())

    def log_message(self, *args):
        pass

plain = http.server.ThreadingHTTPServer(("127.0.0.1", 80), Handler)
secure = http.server.ThreadingHTTPServer(("127.0.0.1", 443), Handler)
context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
context.load_cert_chain(cert, key)
secure.socket = context.wrap_socket(secure.socket, server_side=True)
for server in (plain, secure):
    threading.Thread(target=server.serve_forever, daemon=True).start()
print("listening", flush=True)
threading.Event().wait()
"""

HTTP_SPEC = spec.load_file(REPO / "examples" / "minimal.yaml").spec
PROXIED = spec.load_file(CASES / "tljh" / "campus-network" / "spec.yaml").spec
HTTPS_SPEC = spec.load_file(CASES / "tljh" / "signup-https-classic" / "spec.yaml").spec


def script(course, wait: int = 4) -> str:
    url, resolve = tljh.public_hub_api(course)
    return templating.render("steps/hub-ready.sh.j2", files=(), hub_api=url, resolve=resolve, wait=wait)


@pytest.mark.parametrize("course", [HTTP_SPEC, HTTPS_SPEC], ids=["http", "https"])
def test_the_plan_renders_the_step_this_test_runs(course):
    step = next(s for s in plan.steps(course, plan.FULL) if s.name == "hub-ready")
    assert step.run == script(course, plan.HUB_WAIT)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    if not shutil.which("bwrap"):
        pytest.fail("bubblewrap (bwrap) is needed: apt-get install bubblewrap (.ci/run does)")
    here = tmp_path_factory.mktemp("hub-ready")
    course_repo.TestCA(here / "ca")  # a certificate for the stand-in's port 443 (not one curl trusts)
    (here / "server.py").write_text(SERVER)
    return here


def ready(folder: Path, course, kind: str, ports: str) -> int:
    """The step's exit code with the stand-in answering `kind` on `ports`."""
    (folder / "step.sh").write_text(script(course))
    ca = folder / "ca"
    inside = (f"python3 /work/server.py {kind} {ports} /work/ca/server.pem /work/ca/server.key > /work/server.out & "
              "for _ in $(seq 50); do grep -q listening /work/server.out 2>/dev/null && break; sleep 0.1; done; "
              "bash /work/step.sh; echo \"exit $?\"")
    result = subprocess.run(["bwrap", "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "--tmpfs", "/tmp",
                             "--bind", str(folder), "/work", "--ro-bind", str(ca), "/work/ca", "--unshare-all",
                             "--die-with-parent", "--setenv", "PATH", "/usr/sbin:/usr/bin:/sbin:/bin",
                             # as the course's proxy leaves the steps' environment: one that answers nothing
                             *[arg for name, value in network.environment(PROXIED).items()
                               for arg in ("--setenv", name, value)],
                             "/bin/bash", "-c", inside], capture_output=True, text=True, timeout=60)
    assert "exit " in result.stdout, result.stdout + result.stderr
    return int(result.stdout.rsplit("exit ", 1)[1])


@pytest.mark.parametrize(("kind", "ports", "expected"), [
    ("api", "80,443", 0),
    ("redirect", "80,443", 1),  # what TLJH's traefik answers on port 80 with HTTPS on: not the hub
    ("404", "80,443", 1),
    ("html", "80,443", 1),
])
def test_the_step_over_http_wants_the_hubs_api(folder, kind, ports, expected):
    assert ready(folder, HTTP_SPEC, kind, ports) == expected


@pytest.mark.parametrize(("kind", "ports", "expected"), [
    ("api", "443", 0),  # port 80 redirects, as TLJH's traefik does with HTTPS on
    ("redirect", "80,443", 1),
    ("404", "443", 1),
    ("api", "80", 1),  # the hub answering on port 80 only is not what students reach by name
])
def test_the_step_over_https_asks_port_443_by_name(folder, kind, ports, expected):
    assert ready(folder, HTTPS_SPEC, kind, ports) == expected
