"""Let's Encrypt for the test droplets: Pebble, the ACME test server Let's Encrypt publishes (Debian's
`pebble`), on the host, and the public DNS its validation reads, stood in for by Pebble's own
`pebble-challtestsrv` (its mock DNS answers only the names a test gives it).

Both listen on the address of this process's shared proxy (tests/testdroplet.py), which every
droplet already routes to through its veth. The droplet's TLJH and traefik stay as they are; only
the harness changes two things in it, as an operator of a private ACME server would:
- where traefik's ACME client goes: a file in TLJH's `traefik_config.d`, which TLJH merges into the
  traefik.toml it writes (tljh/traefik.py, `ensure_traefik_config`), setting `caServer`;
- whom the droplet trusts: the CA of Pebble's own HTTPS listener, through the spec's
  `network.ca_certificates`, as a campus CA would be.
The certificates Pebble issues chain to a root it makes at each start: tests verify the hub's
certificate against that root (`root()`), never the droplet's trust store.

Pebble validates as Let's Encrypt does (TLS-ALPN-01, the challenge TLJH configures, on port 443 of
the address the name resolves to): a name whose DNS record points elsewhere gets no certificate.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import socket
import ssl
import subprocess
import time
import urllib.request
from pathlib import Path

import course_repo
import testdroplet

ACME_PORT, MANAGEMENT_PORT, DNS_PORT, DNS_MANAGEMENT_PORT = 14000, 15000, 8053, 8055
# What TLJH names its certificate resolver in the traefik.toml it writes (tljh/traefik.toml.tpl).
TRAEFIK_EXTRA = "/opt/tljh/config/traefik_config.d/test-acme-server.toml"


class Pebble:
    def __init__(self, folder: Path, validity: int | None = None, ca: course_repo.TestCA | None = None):
        """`validity`: the seconds each certificate it issues is valid (Pebble 2.4's
        `certificateValidityPeriod`; unset, Pebble's default of 5 years). `ca`: the test CA that
        signs its listener's certificate (the course repository's, say), rather than one of its own."""
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.address = testdroplet.shared_proxy().address
        self.listener = course_repo.TestCA(self.folder / "listener", address=self.address, issuer=ca)
        config = {"pebble": {
            "listenAddress": f"{self.address}:{ACME_PORT}",
            "managementListenAddress": f"{self.address}:{MANAGEMENT_PORT}",
            "certificate": str(self.listener.pem), "privateKey": str(self.listener.key),
            "httpPort": 80, "tlsPort": 443,  # where Let's Encrypt connects to validate
            "ocspResponderURL": "", "externalAccountBindingRequired": False}}
        if validity is not None:
            config["pebble"]["certificateValidityPeriod"] = validity
        (self.folder / "pebble.json").write_text(json.dumps(config, indent=1))
        self.log = self.folder / "pebble.log"
        # No random 0-15 s sleep before each validation (PEBBLE_VA_NOSLEEP: Pebble's own switch for
        # tests); no good nonce refused on purpose (Pebble refuses 5% by default to test clients'
        # retries, which traefik's client does; a flaky test would not say more).
        env = {"PATH": testdroplet.PATH, "PEBBLE_VA_NOSLEEP": "1", "PEBBLE_WFE_NONCEREJECT": "0"}
        self.processes: list[subprocess.Popen] = []
        try:
            # The mock DNS: a name it was not given resolves to the host's own address, where nothing
            # answers on 443, as a record not yet made (or pointing elsewhere) leaves Let's Encrypt.
            self._start(["pebble-challtestsrv", "-dns01", f"{self.address}:{DNS_PORT}",
                         "-management", f"{self.address}:{DNS_MANAGEMENT_PORT}", "-defaultIPv4", self.address,
                         "-defaultIPv6", "", "-http01", "", "-https01", "", "-tlsalpn01", ""],
                        self.folder / "dns.log", env, DNS_MANAGEMENT_PORT)
            self._start(["pebble", "-config", str(self.folder / "pebble.json"),
                         "-dnsserver", f"{self.address}:{DNS_PORT}"], self.log, env, ACME_PORT)
        except BaseException:
            self.close()
            raise

    def _start(self, argv: list[str], log: Path, env: dict, port: int) -> None:
        with open(log, "ab") as output:
            process = subprocess.Popen(argv, stdout=output, stderr=output, stdin=subprocess.DEVNULL,
                                       start_new_session=True, env=env)
        self.processes.append(process)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection((self.address, port), timeout=1):
                return
            if process.poll() is not None:
                break
            time.sleep(0.1)
        raise testdroplet.DropletError(f"{argv[0]} did not start on {self.address}:{port}: see {log}")

    @property
    def directory(self) -> str:
        return f"https://{self.address}:{ACME_PORT}/dir"

    def _get(self, port: int, path: str, data: bytes | None = None) -> bytes:
        """From Pebble's management port (HTTPS, its listener's CA) or the DNS's (plain HTTP)."""
        scheme = "http" if port == DNS_MANAGEMENT_PORT else "https"
        context = ssl.create_default_context(cafile=str(self.listener.ca_pem))
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}),
                                             urllib.request.HTTPSHandler(context=context))
        with opener.open(f"{scheme}://{self.address}:{port}{path}", data=data, timeout=10) as response:
            return response.read()

    def root(self) -> str:
        """The root Pebble's certificates chain to (made at its start, so for this Pebble only)."""
        return self._get(MANAGEMENT_PORT, "/roots/0").decode()

    def point(self, hostname: str, address: str) -> None:
        """The DNS record the instructor makes: `hostname` A `address`, as Pebble's validation sees it."""
        self._get(DNS_MANAGEMENT_PORT, "/add-a", json.dumps({"host": hostname, "addresses": [address]}).encode())

    def orders(self) -> int:
        """How many certificate orders Pebble has taken (its log names each request it handles)."""
        return len(re.findall(r"POST /order-plz\b", self.log.read_text())) if self.log.exists() else 0

    def issued(self) -> int:
        return len(re.findall(r"Issued certificate serial", self.log.read_text())) if self.log.exists() else 0

    def prepare(self, droplet: testdroplet.TestDroplet, certificates_duration: int | None = None) -> None:
        """Before `droplet` boots: its traefik's ACME client goes to this Pebble. TLJH makes
        traefik_config.d 0700 itself (and classimage's hub-config step its parent).
        `certificates_duration`: the hours traefik takes its certificates to last (its
        `certificatesDuration`, which sets when it renews them; unset, traefik's default of 90 days,
        Let's Encrypt's)."""
        extra = droplet.path(TRAEFIK_EXTRA)
        for folder in (extra.parent.parent, extra.parent):
            folder.mkdir(mode=0o700, exist_ok=True)
            os.chmod(folder, 0o700)
        settings = f'caServer = "{self.directory}"\n'
        if certificates_duration is not None:
            settings += f"certificatesDuration = {certificates_duration}\n"
        extra.write_text(f"[certificatesResolvers.letsencrypt.acme]\n{settings}")
        extra.chmod(0o600)

    def close(self) -> None:
        for process in reversed(self.processes):
            testdroplet._end(process)
        self.processes = []

    def __enter__(self) -> Pebble:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
