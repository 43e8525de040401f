"""A droplet's status service, from outside: asked by the class's name over HTTPS once the name
resolves to the droplet, else at its address (saying why and what to fix), and followed step by
step until provisioning ends."""

from __future__ import annotations

import datetime
import http.client
import json
import socket
import ssl
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass

from classimage.cloud.digitalocean import JSON, CloudError
from classimage.droplet import provision
from classimage.pipeline.yamlsource import shown

# Seconds between two reads of a droplet's provisioning status.
FOLLOW_POLL = 3.0


def resolves_to(hostname: str, address: str) -> bool:
    """Whether `hostname` resolves to `address` here, as it must for Let's Encrypt to certify it."""
    try:
        return address in {info[4][0] for info in socket.getaddrinfo(hostname, 443, type=socket.SOCK_STREAM)}
    except OSError:
        return False


@dataclass(frozen=True)
class Answer:
    """What the droplet answered, where, and, when not by the class's name: why (`note`) and what
    the instructor can do about it (`fix`)."""

    code: int
    body: bytes
    url: str
    note: str = ""
    fix: str = ""


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):  # a redirect is an answer of its own (an HTTPError)
        return None


ANSWER_MOST = 1 << 20  # bytes read of an answer: the status is a few KiB


def _once(url: str, headers: dict[str, str], timeout: float, context: ssl.SSLContext | None = None) -> Answer | None:
    """One request, no redirect followed; None when nothing answers. Raises ssl.SSLCertVerificationError."""
    opener = urllib.request.build_opener(
        urllib.request.ProxyHandler({}), _NoRedirect(), urllib.request.HTTPSHandler(context=context)
    )
    try:
        with opener.open(urllib.request.Request(url, headers=headers), timeout=timeout) as response:
            return Answer(response.status, response.read(ANSWER_MOST), url)
    except urllib.error.HTTPError as error:
        return Answer(error.code, error.read(ANSWER_MOST), url)
    except urllib.error.URLError as error:
        if isinstance(error.reason, ssl.SSLCertVerificationError):
            raise error.reason from None
        return None
    except (OSError, http.client.HTTPException):  # a broken answer (cut short, garbled) is no answer
        return None


def ask(
    address: str, path: str, hostname: str | None = None, headers: dict[str, str] | None = None, timeout: float = 5
) -> Answer | None:
    """GET `path` from the class's droplet as the verbs should: over HTTPS by `hostname`, its
    certificate checked, once the name resolves to `address`; else at the address, where TLJH's
    traefik redirects port 80 to HTTPS once HTTPS is on: that redirect is followed to the address
    with no certificate check (no certificate names an address; what the verbs read there, the
    status and the health, is what plain HTTP would carry), and without the `Authorization` header:
    a connection nobody vouches for gets the public status only. None when nothing answers."""
    headers = headers or {}
    note = fix = ""
    if hostname is not None:
        note, fix = f"{hostname} does not resolve to {address} yet", f"create the DNS record {hostname} A {address}"
        if resolves_to(hostname, address):
            try:
                answer = _once(f"https://{hostname}{path}", headers, timeout)
                if answer is not None:
                    return answer
                note, fix = f"nothing answers HTTPS at {hostname} yet", ""  # the droplet's own page, on port 80
            except ssl.SSLCertVerificationError as error:
                note = f"{hostname} has no valid certificate yet ({error.verify_message})"
                fix = (
                    "traefik asks Let's Encrypt for one once the name resolves to the droplet; if this lasts, "
                    f"see `ssh root@{address} journalctl -u traefik`"
                )
    answer = _once(f"http://{address}{path}", headers, timeout)
    if answer is not None and 300 <= answer.code < 400:
        unchecked = ssl.create_default_context()
        unchecked.check_hostname, unchecked.verify_mode = False, ssl.CERT_NONE
        public = {key: value for key, value in headers.items() if key.lower() != "authorization"}
        answer = _once(f"https://{address}{path}", public, timeout, unchecked)
    return None if answer is None else Answer(answer.code, answer.body, answer.url, note, fix)


def read_status(address: str, token: str | None, timeout: float = 5, hostname: str | None = None) -> JSON | None:
    """The droplet's provisioning status (with log tails when the token is ours; None: the public
    part), or None when nothing answers yet. `hostname`: the class's (see `ask`)."""
    return parse_status(status_answer(address, token, timeout, hostname))


def status_answer(address: str, token: str | None, timeout: float = 5, hostname: str | None = None) -> Answer | None:
    headers = {"Accept": "application/json"} | ({"Authorization": f"token {token}"} if token else {})
    return ask(address, provision.SERVICE_PATH, hostname, headers, timeout)


def parse_status(answer: Answer | None) -> JSON | None:
    if answer is None or answer.code not in (200, 503):
        return None
    try:
        return json.loads(answer.body)
    except ValueError:
        return None


def hub_health(address: str, hostname: str | None = None) -> str:
    """Whether the hub answers, where, and, with HTTPS, why not by name and what to do."""
    answer = ask(address, "/hub/health", hostname)
    if answer is None:
        return f"does not answer at {address}"
    said = ("answers" if answer.code == 200 else f"answers {answer.code}") + f" at {answer.url}"
    if hostname is not None and not answer.note:
        return said + " (HTTPS, its certificate valid)"
    return said + (f"; not by name: {answer.note}" if answer.note else "") + (f": {answer.fix}" if answer.fix else "")


def https_said(status: JSON | None, address: str, now: float | None = None) -> str | None:
    """Where the class's certificate stands, as the droplet's status says (None: no HTTPS, or a
    droplet that does not say): its expiry, or why traefik has none yet and the record to make."""
    https = (status or {}).get("https")
    if not isinstance(https, dict) or not https:
        return None
    # What the droplet says is printed as text only: no terminal escapes.
    name, certificate = shown(str(https.get("hostname"))), https.get("certificate")
    if isinstance(certificate, dict):
        try:
            ends = datetime.datetime.strptime(str(certificate.get("expires")), "%Y-%m-%dT%H:%M:%SZ")
        except (TypeError, ValueError):
            return f"{name}: traefik holds a certificate (its expiry unreadable)"
        ends = ends.replace(tzinfo=datetime.timezone.utc)
        verb = "valid until" if ends.timestamp() > (time.time() if now is None else now) else "EXPIRED on"
        return f"{name}: certificate {verb} {ends:%Y-%m-%d %H:%M} UTC"
    said = https.get("resolves_to")
    seen = [shown(str(each)) for each in said] if isinstance(said, list) else []
    if address in seen:  # the record is right: Let's Encrypt's turn (or its hourly limit of failures)
        return (
            f"{name}: no certificate yet; it resolves to {address}, the droplet has traefik ask Let's Encrypt again "
            f"every {provision.NUDGE_AGAIN // 60} minutes: if this lasts an hour, see "
            f"`ssh root@{address} journalctl -u traefik`"
        )
    found = f"resolves to {', '.join(seen)}" if seen else "does not resolve"
    return f"{name}: no certificate yet (from the droplet it {found}): create the DNS record {name} A {address}"


def where(answer: Answer | None, address: str) -> str:
    """Where the droplet answered, and why there when not by the class's name."""
    if answer is None:
        return f"{address}: nothing answers yet"
    return answer.url.split("/services/")[0] + (f" ({answer.note})" if answer.note else "")


def waiting_for_data(status: JSON | None) -> str | None:
    """What a droplet's class-data step waits for (the class's volume), or None."""
    return ((status or {}).get("data") or {}).get("waiting")


def follow(
    address: str,
    token: str,
    echo: Callable[[str], None],
    timeout: float,
    poll: float | None = None,
    until: Callable[[JSON], bool] | None = None,
    hostname: str | None = None,
) -> JSON:
    """Print each step as it starts and ends, until the droplet is ready or failed (or `until`
    says the status is what the caller waits for). `hostname`: the class's, followed by name over
    HTTPS once it resolves to `address` (and said, whenever where it answers changes)."""
    poll = FOLLOW_POLL if poll is None else poll
    started = time.monotonic()
    seen: dict[str, str] = {}
    waiting_said = False
    said_where = ""
    while True:
        elapsed = time.monotonic() - started
        if elapsed > timeout:
            raise CloudError(
                f"the droplet was not ready within {timeout / 60:.0f} minutes: see `classimage status`, "
                f"or `ssh root@{address} classimage-provision status`"
            )
        answer = status_answer(address, token, hostname=hostname)
        status = parse_status(answer)
        if status is not None and where(answer, address) != said_where:
            said_where = where(answer, address)
            echo(f"  answering at {said_where}")
        if status is None or "steps" not in status:
            if not waiting_said:
                echo(f"  waiting for the droplet at {address} to answer...")
                waiting_said = True
            time.sleep(poll)
            continue
        for step in status["steps"]:
            state = step.get("state")
            if seen.get(step["name"]) != state and state in ("running", "done", "failed"):
                seconds = (
                    f" in {step['seconds']:.0f} s" if step.get("seconds") is not None and state != "running" else ""
                )
                echo(f"  [{clock(elapsed)}] {step.get('title') or step['name']}: {state}{seconds}")
                seen[step["name"]] = state
        if status.get("state") in ("ready", "failed") or (until is not None and until(status)):
            return status
        time.sleep(poll)


def clock(seconds: float) -> str:
    return f"{int(seconds) // 60:02d}:{int(seconds) % 60:02d}"


def failure_report(status: JSON) -> list[str]:
    step: JSON = next((s for s in status["steps"] if s.get("state") == "failed"), {})
    lines = [
        f"provisioning failed at {step.get('title') or status.get('failed_step')} "
        f"(exit code {step.get('exit_code')}); the last lines of its output:"
    ]
    lines += [
        f"    | {line}" for line in step.get("log_tail") or ["(not shown: the status service did not share them)"]
    ]
    return lines
