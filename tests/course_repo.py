"""A course repository served over HTTPS inside a test droplet, as GitHub serves one: smart HTTP
through git's own `git http-backend` (nbgitpuller always clones with --depth 1, which git's dumb
HTTP transport refuses), with a certificate from a test CA made here. The CA reaches the droplet
the way a campus CA does: through the spec's network.ca_certificates.

`TestCA` makes the CA and server certificates with openssl; `install(root, ca)` puts the repository
(one notebook, StartHere.ipynb, and a data file), the server and its systemd unit into a droplet's
root filesystem before it boots.
"""

from __future__ import annotations

import json
import re
import subprocess
import textwrap
from pathlib import Path

PORT = 8443
URL = f"https://127.0.0.1:{PORT}/course.git"  # .git on purpose: nbgitpuller names folders after the URL
REPOS = "/srv/course-git"
SERVER = "/usr/local/lib/course-git-server.py"
NOTEBOOK = "StartHere.ipynb"
MARKER = "classimage test course, week 1"

SERVER_SOURCE = textwrap.dedent(f'''\
    """Course repositories over HTTPS for a classimage test droplet: git's smart HTTP protocol,
    answered by `git http-backend` as a CGI program."""
    import http.server
    import os
    import ssl
    import subprocess


    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.backend()

        def do_POST(self):
            self.backend()

        def backend(self):
            path, _, query = self.path.partition("?")
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            env = {{"GIT_PROJECT_ROOT": "{REPOS}", "GIT_HTTP_EXPORT_ALL": "1", "PATH": "/usr/bin:/bin",
                   "PATH_INFO": path, "QUERY_STRING": query, "REQUEST_METHOD": self.command,
                   "CONTENT_TYPE": self.headers.get("Content-Type", ""), "CONTENT_LENGTH": str(length),
                   "HTTP_CONTENT_ENCODING": self.headers.get("Content-Encoding", ""),
                   "GIT_PROTOCOL": self.headers.get("Git-Protocol", ""), "REMOTE_ADDR": self.client_address[0]}}
            output = subprocess.run(["git", "http-backend"], input=body, env=env, capture_output=True).stdout
            separator = b"\\r\\n\\r\\n" if b"\\r\\n\\r\\n" in output else b"\\n\\n"
            head, _, payload = output.partition(separator)
            status, headers = 200, []
            for line in head.decode("latin-1").splitlines():
                name, _, value = line.partition(":")
                if name.lower() == "status":
                    status = int(value.split()[0])
                elif name:
                    headers.append((name, value.strip()))
            self.send_response(status)
            for name, value in headers:
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)


    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain("{REPOS}/server.pem", "{REPOS}/server.key")
    server = http.server.ThreadingHTTPServer(("127.0.0.1", {PORT}), Handler)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    server.serve_forever()
''')

UNIT = f"""\
# classimage tests: the course repository, over HTTPS on the droplet's loopback.
[Unit]
Description=Course git repository (classimage test)

[Service]
ExecStart=/usr/bin/python3 {SERVER}

[Install]
WantedBy=multi-user.target
"""


class TestCA:
    """A CA for this test run and a certificate it signs for one IP address (127.0.0.1: the course
    repository's server inside the droplet) or DNS name. `issuer`: another's CA signs it instead of
    a new one (each CA a droplet trusts costs its user data 1.4 KB of the 64 KiB it may have)."""

    def __init__(self, folder: Path, address: str = "127.0.0.1", issuer: TestCA | None = None):
        self.folder, self.address = folder, address
        folder.mkdir(parents=True, exist_ok=True)
        self.ca_key, self.ca_pem = (issuer.ca_key, issuer.ca_pem) if issuer else (folder / "ca.key", folder / "ca.pem")
        self.key, self.pem = folder / "server.key", folder / "server.pem"
        if not self.pem.exists():
            self._make()

    def _make(self) -> None:
        openssl = ["openssl"]
        if not self.ca_pem.exists():
            subprocess.run([*openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "30", "-subj",
                            "/CN=classimage test course CA", "-keyout", str(self.ca_key), "-out", str(self.ca_pem)],
                           check=True, capture_output=True)
        request = self.folder / "server.csr"
        subprocess.run([*openssl, "req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={self.address}",
                        "-keyout", str(self.key), "-out", str(request)], check=True, capture_output=True)
        extensions = self.folder / "server.ext"
        kind = "IP" if re.fullmatch(r"[0-9.]+", self.address) else "DNS"
        extensions.write_text(f"subjectAltName = {kind}:{self.address}\nbasicConstraints = CA:FALSE\n"
                              "extendedKeyUsage = serverAuth\n")
        subprocess.run([*openssl, "x509", "-req", "-in", str(request), "-CA", str(self.ca_pem), "-CAkey",
                        str(self.ca_key), "-CAcreateserial", "-days", "30", "-extfile", str(extensions),
                        "-out", str(self.pem)], check=True, capture_output=True)

    @property
    def certificate(self) -> str:
        return self.ca_pem.read_text()


def notebook(marker: str) -> str:
    return json.dumps({"cells": [{"cell_type": "markdown", "metadata": {}, "source": [f"# {marker}\n"]},
                                 {"cell_type": "code", "execution_count": None, "metadata": {}, "outputs": [],
                                  "source": ["print('hello from the course')\n"]}],
                       "metadata": {}, "nbformat": 4, "nbformat_minor": 5}, indent=1) + "\n"


def install(root: Path, ca: TestCA, work: Path) -> None:
    """The repository, its server and unit, into the droplet's root filesystem (before it boots)."""
    repos = root / REPOS.lstrip("/")
    repos.mkdir(parents=True, exist_ok=True)
    source = work / "course-source"
    source.mkdir(parents=True, exist_ok=True)
    (source / NOTEBOOK).write_text(notebook(MARKER))
    (source / "data").mkdir(exist_ok=True)
    (source / "data" / "readings.csv").write_text("week,topic\n1,plates\n")
    git = ["git", "-c", "user.name=Instructor", "-c", "user.email=instructor@example.edu",
           "-c", "init.defaultBranch=main", "-C", str(source)]
    subprocess.run([*git, "init", "--quiet"], check=True)
    subprocess.run([*git, "add", "--all"], check=True)
    subprocess.run([*git, "commit", "--quiet", "--message", "Week 1"], check=True)
    subprocess.run(["git", "clone", "--quiet", "--bare", str(source), str(repos / "course.git")], check=True)
    for name in ("server.pem", "server.key"):
        (repos / name).write_bytes((ca.folder / name).read_bytes())
    server = root / SERVER.lstrip("/")
    server.parent.mkdir(parents=True, exist_ok=True)
    server.write_text(SERVER_SOURCE)
    unit = root / "etc/systemd/system/course-git-server.service"
    unit.write_text(UNIT)
    wants = root / "etc/systemd/system/multi-user.target.wants"
    wants.mkdir(parents=True, exist_ok=True)
    link = wants / unit.name
    if not link.is_symlink():
        link.symlink_to(f"/etc/systemd/system/{unit.name}")
