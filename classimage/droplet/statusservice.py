"""The status service of classimage-provision: the status as JSON over HTTP (the hub runs
`classimage-provision serve-status` as its service; the public part for anyone, all of it for the
token holder), where HTTPS stands, and the page students see while the class is being prepared;
and `https-nudge`, which has traefik order the hub's certificate again (a timer runs it).
Shipped in the runner's zip; standard library only, Python 3.9.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import hashlib
import hmac
import html
import http.server
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from typing import Any, Callable

try:  # in the package (classimage.droplet): the pipeline's and the tests'
    from . import provision
except ImportError:  # run as a program: its sibling modules lie beside it (in its zip; in this folder)
    import provision  # type: ignore[no-redef,import-not-found]


def public_status(status: dict[str, Any]) -> dict[str, Any]:
    """The status for anyone to read: states and times; no log tails, process ids or exit codes."""
    public = {
        key: status.get(key)
        for key in ("format", "state", "stage", "course", "classimage", "spec_digest", "failed_step")
    }
    public["run"] = {key: status.get("run", {}).get(key) for key in ("number", "started", "finished")}
    public["image"] = {key: (status.get("image") or {}).get(key) for key in ("bake_digest", "baked")}
    public["steps"] = [
        {key: step.get(key) for key in ("name", "title", "state", "started", "seconds")}
        for step in status.get("steps", [])
    ]
    public["warnings"] = list(status.get("warnings") or [])
    public["https"] = status.get("https")  # a certificate and a DNS answer: both public anyway
    # the class's data device, as classimage-class-data keeps its record. Times only, whether it
    # failed, and what the droplet waits for before its data is in place (`classimage up` moves the
    # volume once it says so): its notes, warnings and error name students, files and devices, and
    # quote commands' output (the token holder reads them).
    data = status.get("data")
    public["data"] = None
    if data:
        public["data"] = {
            "mounted": data.get("mounted"),
            "database_copied": data.get("database_copied"),
            "error": provision.DATA_CLOSED if data.get("error") else None,
            "waiting": data.get("waiting"),
        }
    return public


def data_warnings(data: dict[str, Any] | None) -> list[str]:
    """The warnings the class's data record keeps for the instructor, each with its time."""
    kept = (data or {}).get("warnings") or []
    return ["%s (%s)" % (str(w.get("message")).replace("WARNING: ", "", 1), w.get("at")) for w in kept]


def acme_certificate(acme: Any, hostname: str) -> str | None:
    """The PEM chain traefik holds for `hostname` in its acme.json (any resolver), or None."""
    try:
        for resolver in acme.values():
            for held in resolver.get("Certificates") or []:
                domain = held["domain"]
                if hostname == domain.get("main") or hostname in (domain.get("sans") or []):
                    return base64.b64decode(held["certificate"]).decode("ascii")
    except (AttributeError, KeyError, TypeError, ValueError):  # not traefik's format: none it can serve
        pass
    return None


def https_state(
    hostname: str | None, acme: Any, expiry: Callable[[str], str | None], resolve: Callable[[str], list[str]]
) -> dict[str, Any] | None:
    """Where HTTPS stands: the certificate's expiry once traefik holds one; until then, what the
    name resolves to from here (the instructor must point it at the class's address)."""
    if not hostname:
        return None
    pem = acme_certificate(acme, hostname)
    if pem:
        return {"hostname": hostname, "certificate": {"expires": expiry(pem)}, "resolves_to": None}
    return {"hostname": hostname, "certificate": None, "resolves_to": resolve(hostname)}


def token_allows(plan: provision.Plan | None, header: str | None) -> bool:
    """Whether an `Authorization: token T` header carries the token the plan names (by its hash)."""
    if plan is None or not plan.status_token_sha256 or not header or not header.startswith("token "):
        return False
    given = hashlib.sha256(header[len("token ") :].strip().encode()).hexdigest()
    return hmac.compare_digest(given, plan.status_token_sha256)


_cull_settings: dict[str, Any] = {}  # config.yaml's (mtime, size) when last read, and what it said


def hub_warnings(paths: provision.Paths) -> list[str]:
    """What the instructor must hear about the hub's settings: `services.cull.users` set (the docs
    say never). Read again only when config.yaml changes: the hub's Python takes a moment."""
    try:
        info = os.stat(paths.at(provision.TLJH_CONFIG))
    except OSError:
        return []
    key = (info.st_mtime_ns, info.st_size)
    if _cull_settings.get("key") != key:
        _cull_settings.update(key=key, users=cull_users(paths))
    return [provision.CULL_USERS_WARNING] if _cull_settings["users"] else []


def cull_users(paths: provision.Paths) -> bool:
    """Whether TLJH, reading its config as it does, would run the culler with --cull-users."""
    try:
        result = subprocess.run(
            [paths.at(provision.TLJH_PYTHON), "-c", provision.CULL_PROBE],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            timeout=60,
        )
        return result.returncode == 0 and bool(json.loads(result.stdout).get("users"))
    except (OSError, ValueError, subprocess.TimeoutExpired):
        return False


@functools.lru_cache(maxsize=8)  # once a certificate: the status is public, and openssl a process
def certificate_expiry(pem: str) -> str | None:
    """When the chain's first certificate expires (UTC). openssl reads it (every droplet has it: the
    standard library parses no certificate but the peer's of a connection) and ssl reads openssl's
    date format."""
    try:
        result = subprocess.run(
            ["openssl", "x509", "-noout", "-enddate"], input=pem.encode(), stdout=subprocess.PIPE, timeout=10
        )
        seconds = ssl.cert_time_to_seconds(result.stdout.decode().strip().partition("=")[2])
    except (OSError, ValueError, subprocess.TimeoutExpired):
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


def addresses(hostname: str) -> list[str]:
    try:
        return sorted({str(info[4][0]) for info in socket.getaddrinfo(hostname, 443, type=socket.SOCK_STREAM)})
    except (OSError, UnicodeError):
        return []


_lookups: dict[str, dict[str, Any]] = {}


def addresses_soon(hostname: str, fresh: float = 10, wait: float = 2) -> list[str]:
    """`addresses`, as last known: looked up again at most every `fresh` seconds, one lookup at a
    time, waited for at most `wait`: a slow nameserver delays no answer of the public status, and a
    stranger's requests make no lookup each."""
    known = _lookups.get(hostname)
    if known is not None and (not known["done"] or time.monotonic() < known["at"] + fresh):
        return known["value"]
    entry = {"at": time.monotonic(), "done": False, "value": known["value"] if known else []}
    _lookups[hostname] = entry

    def look() -> None:
        entry["value"], entry["done"] = addresses(hostname), True

    lookup = threading.Thread(target=look, daemon=True)
    lookup.start()
    lookup.join(wait)
    return entry["value"]


def read_acme(paths: provision.Paths) -> Any:
    try:
        return provision.read_json(paths.at(provision.ACME))
    except (OSError, ValueError):  # traefik's empty file before its first certificate
        return None


# -------------------------------------------------------------------------------------------------
# traefik asked to order the certificate again. traefik 3.1 orders one only when its configuration
# changes (its ACME provider, watchNewDomains): at its start, and after a failed order, whose
# challenge's clean-up is such a change; but that loop ends (a refusal before any challenge, as Let's
# Encrypt's once 5 validations of the name failed in an hour; or the change arriving while the order
# still counts as running) and then it never asks again by itself. tests/booted/test_https_late_dns.py.


def nudge_due(last: dict[str, Any] | None, resolves_to: list[str], now: float) -> bool:
    """Whether to make traefik order again, the name resolving to `resolves_to` and no certificate
    held: when the name's addresses changed since the last run (the instructor made the record), or
    provision.NUDGE_AGAIN after the last nudge. Not on the first run after boot (traefik orders at its start),
    nor while the name resolves nowhere (no validation can succeed)."""
    if last is None or not resolves_to:
        return False
    return resolves_to != last.get("resolves_to") or now >= float(last.get("nudged", 0)) + provision.NUDGE_AGAIN


def nudge_text(at: str) -> str:
    """A change of traefik's dynamic configuration that changes nothing else: a middleware no route uses."""
    return (
        "# classimage-provision https-nudge: changed to make traefik order the hub's certificate again\n"
        "[http.middlewares.classimage-acme-nudge.headers.customResponseHeaders]\n"
        '  X-Classimage-Acme-Order = "%s"\n' % at
    )


def https_nudge(paths: provision.Paths) -> int:
    """One look (the timer's, every minute): nudge traefik if it is time."""
    try:
        plan = provision.read_plan(paths)
    except provision.PlanError as error:
        provision.say(str(error), sys.stderr)
        return 1
    hostname = plan.https_hostname if plan else None
    rules = os.path.dirname(paths.at(provision.ACME_NUDGE))  # TLJH's, on the class's device: none while it is missing
    if not hostname or not os.path.isdir(rules) or acme_certificate(read_acme(paths), hostname):
        return 0
    state = paths.at(provision.ACME_NUDGE_STATE)
    try:
        last = provision.read_json(state)
    except (OSError, ValueError):
        last = None
    last = last if isinstance(last, dict) else None
    resolves_to, now = addresses(hostname), time.time()
    nudged = last.get("nudged", now) if last else now
    if nudge_due(last, resolves_to, now):
        provision.write_text(paths.at(provision.ACME_NUDGE), nudge_text(provision.now()), 0o600)
        provision.say(
            "%s resolves to %s: traefik asked to order its certificate again" % (hostname, ", ".join(resolves_to))
        )
        nudged = now
    provision.write_json(state, {"resolves_to": resolves_to, "nudged": nudged}, 0o600)
    return 0


# -------------------------------------------------------------------------------------------------
# The status over HTTP, and the page students see while the class is being prepared


def progress_page(public: dict[str, Any]) -> str:
    course = public.get("course") or {}
    name = html.escape(course.get("name") or "This class")
    rows = "".join(
        "<tr><td>%s</td><td>%s</td></tr>"
        % (html.escape(s.get("title") or s["name"]), html.escape(s.get("state") or ""))
        for s in public.get("steps", [])
    )
    if (public.get("data") or {}).get("error"):
        headline = "The class is closed: its files are not on this server right now. Your instructor can see why."
    elif public.get("state") == "failed":
        headline = "Setting up the class server stopped at a problem. Your instructor has been told."
    else:
        headline = "The class is being prepared. Please come back in a few minutes."
    return (
        '<!DOCTYPE html>\n<html><head><meta charset="utf-8"><meta http-equiv="refresh" content="15">'
        '<meta name="viewport" content="width=device-width"><title>%s: being prepared</title></head>'
        '<body style="font-family:sans-serif;max-width:40em;margin:3em auto"><h1>%s</h1><p>%s</p>'
        "<table>%s</table><p><small>This page refreshes itself.</small></p></body></html>\n"
        % (name, name, headline, rows)
    )


def status_handler(paths: provision.Paths, page: bool) -> type:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            status = provision.read_json(paths.status)
            if status is not None:
                # the class's data, as classdata keeps it
                status["data"] = provision.read_json(paths.at(provision.DATA_RECORD))
            if page and not self.path.split("?", 1)[0].startswith(provision.SERVICE_PATH):
                body = progress_page(public_status(status or {})).encode()
                self.reply(503, "text/html; charset=utf-8", body, {"Retry-After": "30"})
                return
            try:
                plan = provision.read_plan(paths)
            except provision.PlanError:
                plan = None
            if status is not None:
                hostname = plan.https_hostname if plan else None
                status["https"] = https_state(hostname, read_acme(paths), certificate_expiry, addresses_soon)
            if status is None:
                document: dict[str, Any] = {"state": "not started"}
            elif token_allows(plan, self.headers.get("Authorization")):
                # The token holder (whoever ran `classimage up`) sees log tails and the class's data.
                status["warnings"] = hub_warnings(paths) + data_warnings(status["data"])
                document = status
            else:
                status["warnings"] = hub_warnings(paths)
                document = public_status(status)
            self.reply(200 if status else 503, "application/json", json.dumps(document, indent=2).encode())

        def reply(self, code: int, kind: str, body: bytes, headers: dict[str, str] | None = None) -> None:
            self.send_response(code)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    return Handler


def serve(paths: provision.Paths, listener: socket.socket, page: bool) -> int:
    # TLJH's installer stops the page with SIGINT; whatever started us may have ignored it.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    server = http.server.ThreadingHTTPServer(
        listener.getsockname()[:2], status_handler(paths, page), bind_and_activate=False
    )
    server.socket.close()
    server.socket = listener
    server.daemon_threads = True
    with contextlib.suppress(KeyboardInterrupt):
        server.serve_forever()
    return 0


def listen(port: int) -> socket.socket | None:
    """A socket listening on every address at `port` (IPv6 and IPv4 where the system has IPv6),
    or None if something else holds the port."""
    try:
        listener = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
        listener.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        address: tuple[str, int] = ("::", port)
    except OSError:  # no IPv6 on this system
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        address = ("0.0.0.0", port)
    # Connections the page answered linger in TIME_WAIT after it stops; the proxy that takes the port
    # next can bind over them only if this socket allowed it too (as http.server's own servers do).
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind(address)
        listener.listen(64)
    except OSError:
        listener.close()
        return None
    return listener
