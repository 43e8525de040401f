"""DigitalOcean's API, through its official client pydo: the one module that talks to it. Its
answers come back as plain dicts (DigitalOcean's own JSON); its refusals as CloudError, worded as
what to change, whether pydo raised them or returned them (some operations return a 404 or 400 body
as a result).

DigitalOcean as it behaves, not only as its API description reads (the sources are in
../shared/reference/digitalocean-behaviour.md and in tests/do_standin.py, which enforces each):
- A request is repeated by pydo's pipeline only when repeating it cannot make anything twice: a
  read, a PUT or DELETE, or any request refused with 429 (the rate limiter refuses before anything
  is done), with backoff, honouring Retry-After. A POST answered 5xx, or whose answer was lost, may
  have been carried out: it raises Uncertain, and `create` looks for what it would have made before
  posting again (so a volume, an address or a droplet is never made, and billed, twice).
- An action (shutdown, attach, assign) refused because the droplet "already has a pending event"
  is posted again with backoff (`settle`), as DigitalOcean's own Terraform provider does.
- An action that has completed says only that the command was issued: `settle` waits for the
  state the action was for (the droplet off, the volume attached), read from the resource itself.

pydo is an extra (`pip install classimage[cloud]`): validating and rendering need no cloud client,
and pydo brings azure-core, azure-identity and msrest with it.

The token comes from DIGITALOCEAN_TOKEN only (never a flag, never written anywhere); the API's
address from DIGITALOCEAN_API_URL, as doctl's, default https://api.digitalocean.com.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

TOKEN = "DIGITALOCEAN_TOKEN"
API_URL = "DIGITALOCEAN_API_URL"
DEFAULT_API = "https://api.digitalocean.com"
RETRIES = 6
PER_PAGE = 200
# Seconds between two reads of a state that is changing (an action, a droplet shutting down).
POLL = 2.0
# "pending event": Terraform's provider retries attach and detach for 5 minutes on it
# (digitalocean/volume/resource_volume_attachment.go); backoff from the first to at most the last.
PENDING_FOR = 300.0
PENDING_BACKOFF = (2.0, 30.0)
# After an uncertain create: how long a new resource may take to show in DigitalOcean's lists
# (a droplet just made is listed only "after couple of seconds": api-v2 #202).
LISTED_WITHIN = 20.0
SAFE_METHODS = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS"})

JSON = dict[str, Any]
# What a custom-scoped token needs for the verbs (the scopes the API description lists for the
# operations classimage uses: ../shared/reference/digitalocean-behaviour.md, item 10).
SCOPES = (
    "droplet",
    "actions",
    "block_storage",
    "block_storage_action",
    "block_storage_snapshot",
    "reserved_ip",
    "firewall",
    "tag",
    "snapshot",
    "image",
    "domain",
    "ssh_key",
    "sizes",
    "regions",
)


class CloudError(Exception):
    """DigitalOcean refused or failed; the message says what to change."""


class PendingEvent(CloudError):
    """DigitalOcean has another action in progress on the droplet: try again in a moment."""


class Uncertain(CloudError):
    """A request that changes something failed in a way that does not say whether it was carried
    out (a 5xx answer, or none): look before doing it again."""


class NotFound(CloudError):
    """The resource is not there (404)."""


class TimedOut(CloudError):
    """A state did not come about in the time given."""


def token() -> str:
    found = os.environ.get(TOKEN, "").strip()
    if not found:
        raise CloudError(
            f"no DigitalOcean API token: set {TOKEN} to a personal access token with read and "
            "write scope (control panel > API > Generate New Token), e.g. `export "
            f"{TOKEN}=dop_v1_...`; it is read from the environment only, never written anywhere"
        )
    return found


def endpoint() -> str:
    url = os.environ.get(API_URL, "").strip().rstrip("/") or DEFAULT_API
    if not url.lower().startswith("https://"):  # every request carries the token
        raise CloudError(
            f"{API_URL} is {url!r}: classimage sends your token to DigitalOcean's API over HTTPS only; "
            "give an https:// address, or unset it for DigitalOcean's own"
        )
    return url


# What a refusal means for the instructor, by a phrase of DigitalOcean's message.
HINTS = (
    (
        "droplet limit",
        "delete droplets you do not need, or ask DigitalOcean to raise your droplet limit "
        "(control panel > Settings > Team); the class's droplet keeps running meanwhile",
    ),
    ("size is not available", "choose another droplet.size, or another droplet.region, in the spec"),
    ("positive value for ports", "this is a bug in classimage's firewall rules: please report it"),
    ("pending event", "DigitalOcean is still busy with this droplet: run the same command again in a minute"),
    ("region", "choose a region that offers what the spec asks for (droplet.region)"),
    ("image", "the course's snapshot cannot make this droplet: run `classimage build` for this spec"),
    ("volume", "check the course's volume: it must be in the droplet's region and attached to no other droplet"),
    ("ssh", "check droplet.ssh_keys: each must be the fingerprint or id of a key in your account"),
    ("reserved ip", "you may have reached the limit of reserved IPs (3 by default): release one you do not need"),
)


def message_of(body: str) -> str:
    try:
        found = json.loads(body).get("message", "") if body else ""
    except (ValueError, AttributeError):
        found = ""
    return str(found or body[:200])


def explain(what: str, status: int | None, body: str, retry_after: str | None = None) -> str:
    """A refusal, as what to change."""
    message = message_of(body)
    if status == 401:
        return (
            f"DigitalOcean refused the token while {what} (401 Unauthorized): set {TOKEN} to a valid "
            "personal access token (control panel > API)"
        )
    if status == 403:
        return (
            f"the token may not do this ({what}: 403 Forbidden): make a token with read and write scope "
            f"(or custom scopes covering {', '.join(SCOPES)}) and set {TOKEN} to it"
        )
    if status == 404:
        return (
            f"DigitalOcean has no such resource any more ({what}: 404 {message}): it was deleted meanwhile; "
            "run the same command again (it looks afresh at what exists)"
        )
    if status == 429:
        wait = f" (DigitalOcean says retry after {retry_after} s)" if retry_after else ""
        return (
            f"DigitalOcean's rate limit is used up while {what}{wait}: its limit is 5,000 requests an hour; "
            "wait a few minutes and run the same command again (it finishes what is half done)"
        )
    if status is not None and status >= 500:
        return (
            f"DigitalOcean's API failed while {what} ({status}: {message}): try again later; running the "
            "same command again finishes what is half done"
        )
    hint = next((fix for phrase, fix in HINTS if phrase in message.lower()), "")
    return f"DigitalOcean refused {what} ({status}: {message})" + (f": {hint}" if hint else "")


def _retry_policy() -> Any:
    """pydo's retries, made safe: a request is repeated only when repeating cannot change anything
    twice (see the module's docstring)."""
    from azure.core.pipeline.policies import RetryPolicy

    class Policy(RetryPolicy):
        def is_retry(self, settings: dict[str, Any], response: Any) -> bool:
            status = response.http_response.status_code
            if status < 400 or not settings["total"]:
                return False
            if status == 429:  # refused before anything was done, Retry-After or not
                return True
            if response.http_request.method.upper() not in SAFE_METHODS:
                return False  # azure-core would repeat a POST answered 500, 503 or 504
            return status in (500, 502, 503, 504) or bool(response.http_response.headers.get("Retry-After"))

    return Policy(
        retry_total=RETRIES,
        retry_status=RETRIES,
        retry_backoff_factor=0.5,
        retry_backoff_max=30,
        retry_on_methods=SAFE_METHODS,
    )


class DigitalOcean:
    """A session with DigitalOcean's API for one command."""

    def __init__(self, api_token: str | None = None, url: str | None = None, log: Callable[[str], None] | None = None):
        try:
            import pydo
        except ImportError:
            raise CloudError("the cloud commands need DigitalOcean's client: pip install 'classimage[cloud]'") from None
        self.url = url or endpoint()
        self.token = api_token or token()  # status tokens are derived from it (cloud.status_token)
        self.requests = 0
        self.changes = 0  # requests that change something (not GET)
        self.method = "GET"  # of the request last sent
        self.status: int | None = None  # of the answer last received
        self.log = log or (lambda message: None)
        self.client = pydo.Client(
            token=self.token,
            endpoint=self.url,
            retry_policy=_retry_policy(),
            raw_request_hook=self._counted,
            raw_response_hook=self._answered,
            user_agent="classimage",
        )

    def _counted(self, request: Any) -> None:
        self.requests += 1
        self.method = request.http_request.method.upper()
        self.status = None
        if self.method != "GET":
            self.changes += 1

    def _answered(self, response: Any) -> None:
        self.status = response.http_response.status_code

    def call(self, what: str, operation: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run a pydo operation; a refusal becomes CloudError (what to change), PendingEvent,
        NotFound or, for a request that may have been carried out, Uncertain."""
        from azure.core.exceptions import HttpResponseError, ServiceRequestError, ServiceResponseError

        try:
            answer = operation(*args, **kwargs)
        except HttpResponseError as error:
            response = error.response
            body = response.text() if response is not None else ""
            # azure-core's HttpResponse has headers; its typing protocol does not say so
            retry_after = response.headers.get("Retry-After") if response is not None else None  # type: ignore[attr-defined]
            raise self.refusal(what, error.status_code, body, retry_after) from None
        except ServiceResponseError as error:  # sent, and no answer: it may have been done
            if self.method not in SAFE_METHODS:
                raise Uncertain(f"no answer from DigitalOcean's API while {what}: {error}") from None
            raise CloudError(f"cannot reach DigitalOcean's API at {self.url} while {what}: {error}") from None
        except ServiceRequestError as error:
            raise CloudError(f"cannot reach DigitalOcean's API at {self.url} while {what}: {error}") from None
        # pydo returns some refusals (404, and 400 for a few creates) as results: the status says
        if self.status is not None and self.status >= 400:
            raise self.refusal(what, self.status, json.dumps(answer) if isinstance(answer, dict) else str(answer))
        return answer

    def refusal(self, what: str, status: int | None, body: str, retry_after: str | None = None) -> CloudError:
        text = explain(what, status, body, retry_after)
        if status == 404:
            return NotFound(text)
        if status == 422 and "pending event" in message_of(body).lower():
            return PendingEvent(text)
        if status is not None and status >= 500 and self.method not in SAFE_METHODS:
            return Uncertain(text)
        return CloudError(text)

    def pages(self, what: str, operation: Callable[..., Mapping[str, Any]], key: str, **kwargs: Any) -> Iterator[JSON]:
        """Every item of a paginated list."""
        page = 1
        while True:
            answer = self.call(what, operation, per_page=PER_PAGE, page=page, **kwargs)
            items = answer.get(key) or []
            yield from items
            if len(items) < PER_PAGE or not (answer.get("links") or {}).get("pages", {}).get("next"):
                return
            page += 1

    # -- changing things safely ------------------------------------------------------------------

    def patiently(self, request: Callable[[], Any]) -> Any:
        """`request`, posted again with backoff while DigitalOcean answers that the droplet it
        concerns "already has a pending event" (nothing was done)."""
        busy_until = time.monotonic() + PENDING_FOR
        backoff = PENDING_BACKOFF[0]
        while True:
            try:
                return request()
            except PendingEvent:
                if time.monotonic() > busy_until:
                    raise
                time.sleep(backoff)
                backoff = min(backoff * 2, PENDING_BACKOFF[1])

    def create(self, what: str, post: Callable[[], JSON], find: Callable[[], JSON | None]) -> JSON:
        """Make something once: after an answer that may hide a success (Uncertain), `find` looks
        for it (for as long as DigitalOcean may take to list it) before it is posted again."""
        for attempt in range(1, RETRIES + 1):
            try:
                return self.patiently(post)
            except Uncertain as error:
                if attempt == RETRIES:
                    raise
                self.log(f"  {error}; looking for it before trying again")
                deadline = time.monotonic() + LISTED_WITHIN
                while True:
                    found = find()
                    if found is not None:
                        return found
                    if time.monotonic() >= deadline:
                        break
                    time.sleep(POLL)
        raise AssertionError("not reached")

    def settle(
        self,
        what: str,
        done: Callable[[], bool],
        act: Callable[[], JSON | None],
        timeout: float = 600,
    ) -> None:
        """Bring about a state: unless `done()` already says it holds, post the action `act` (again
        after "pending event", with backoff, or after the action errored), then read the state until
        it holds. The state, not the action: DigitalOcean completes some actions before their effect."""
        deadline = time.monotonic() + timeout
        busy_until = time.monotonic() + PENDING_FOR
        backoff = PENDING_BACKOFF[0]
        action: JSON | None = None
        errored = 0
        while not done():
            if time.monotonic() > deadline:
                raise TimedOut(f"{what} did not happen within {timeout:.0f} s: run the same command again later")
            if action is None:
                try:
                    action = act() or {"status": "unknown"}
                except PendingEvent:
                    if time.monotonic() > busy_until:
                        raise
                    time.sleep(backoff)
                    backoff = min(backoff * 2, PENDING_BACKOFF[1])
                    continue
                except Uncertain:  # it may have been done: the state says
                    action = {"status": "unknown"}
            time.sleep(POLL)
            if action.get("id") is not None and action.get("status") == "in-progress":
                action = self.action(action["id"])
            if action.get("status") == "errored":
                errored += 1
                if errored >= 3:
                    raise CloudError(
                        f"{what} failed at DigitalOcean (action {action['id']} errored {errored} times): "
                        "try again later, or see the control panel's history"
                    )
                action = None

    def delete(self, what: str, operation: Callable[..., Any], *args: Any) -> None:
        """Deleting what is gone already is done."""
        with contextlib.suppress(NotFound):
            self.call(what, operation, *args)

    def action(self, action_id: int) -> JSON:
        return self.call("reading an action", self.client.actions.get, action_id)["action"]

    def until(self, what: str, done: Callable[[], bool], timeout: float) -> bool:
        """Read a state until it holds (True) or `timeout` seconds pass (False)."""
        deadline = time.monotonic() + timeout
        while not done():
            if time.monotonic() > deadline:
                return False
            time.sleep(POLL)
        return True

    # -- what classimage reads and changes ---------------------------------------------------------

    def account_keys(self) -> list[JSON]:
        return list(self.pages("listing your SSH keys", self.client.ssh_keys.list, "ssh_keys"))

    def sizes(self) -> list[JSON]:
        """DigitalOcean's droplet sizes, asked once a command (up prices the class, then checks the size)."""
        if not hasattr(self, "_sizes"):
            self._sizes = list(self.pages("listing droplet sizes", self.client.sizes.list, "sizes"))
        return self._sizes

    def droplets(self, tag: str) -> list[JSON]:
        return list(self.pages(f"listing droplets tagged {tag}", self.client.droplets.list, "droplets", tag_name=tag))

    def droplet(self, droplet_id: int) -> JSON:
        return self.call("reading a droplet", self.client.droplets.get, droplet_id)["droplet"]

    def create_droplet(self, body: JSON) -> JSON:
        return self.call(f"creating droplet {body['name']}", self.client.droplets.create, body)["droplet"]

    def destroy_droplet(self, droplet_id: int) -> None:
        self.delete(f"destroying droplet {droplet_id}", self.client.droplets.destroy, droplet_id)

    def droplet_action(self, droplet_id: int, kind: str) -> JSON:
        return self.call(
            f"{kind} of droplet {droplet_id}", self.client.droplet_actions.post, droplet_id, {"type": kind}
        )["action"]

    def volumes(self, region: str | None = None) -> list[JSON]:
        where = {"region": region} if region else {}
        what = f"listing volumes in {region}" if region else "listing volumes"
        return list(self.pages(what, self.client.volumes.list, "volumes", **where))

    def volume(self, volume_id: str) -> JSON:
        return self.call("reading a volume", self.client.volumes.get, volume_id)["volume"]

    def create_volume(self, body: JSON) -> JSON:
        return self.call(f"creating volume {body['name']}", self.client.volumes.create, body)["volume"]

    def delete_volume(self, volume_id: str) -> None:
        self.delete(f"deleting volume {volume_id}", self.client.volumes.delete, volume_id)

    def volume_action(self, volume_id: str, body: JSON) -> JSON:
        return self.call(
            f"{body['type']} of volume {volume_id}", self.client.volume_actions.post_by_id, volume_id, body
        )["action"]

    def volume_snapshots(self) -> list[JSON]:
        return list(
            self.pages("listing volume snapshots", self.client.snapshots.list, "snapshots", resource_type="volume")
        )

    def snapshot_volume(self, volume_id: str, body: JSON) -> JSON:
        return self.call("snapshotting the class's volume", self.client.volume_snapshots.create, volume_id, body)[
            "snapshot"
        ]

    def delete_snapshot(self, snapshot_id: str) -> None:
        self.delete(f"deleting snapshot {snapshot_id}", self.client.snapshots.delete, snapshot_id)

    def droplet_snapshots(self) -> list[JSON]:
        return list(
            self.pages("listing droplet snapshots", self.client.snapshots.list, "snapshots", resource_type="droplet")
        )

    def reserved_ips(self) -> list[JSON]:
        return list(self.pages("listing reserved IPs", self.client.reserved_ips.list, "reserved_ips"))

    def reserved_ip(self, ip: str) -> JSON:
        return self.call(f"reading reserved IP {ip}", self.client.reserved_ips.get, ip)["reserved_ip"]

    def create_reserved_ip(self, body: JSON) -> JSON:
        return self.call("reserving an IP address", self.client.reserved_ips.create, body)["reserved_ip"]

    def reserved_ip_action(self, ip: str, body: JSON) -> JSON:
        return self.call(f"{body['type']} of reserved IP {ip}", self.client.reserved_ips_actions.post, ip, body)[
            "action"
        ]

    def delete_reserved_ip(self, ip: str) -> None:
        # still assigned to a droplet being destroyed, it may be busy for a moment
        self.patiently(lambda: self.delete(f"releasing reserved IP {ip}", self.client.reserved_ips.delete, ip))

    def tags(self) -> list[JSON]:
        return list(self.pages("listing tags", self.client.tags.list, "tags"))

    def create_tag(self, name: str) -> JSON:
        return self.call(f"creating tag {name}", self.client.tags.create, {"name": name})["tag"]

    def delete_tag(self, name: str) -> None:
        self.delete(f"deleting tag {name}", self.client.tags.delete, name)

    def firewalls(self) -> list[JSON]:
        return list(self.pages("listing firewalls", self.client.firewalls.list, "firewalls"))

    def create_firewall(self, body: JSON) -> JSON:
        return self.call(f"creating firewall {body['name']}", self.client.firewalls.create, body)["firewall"]

    def delete_firewall(self, firewall_id: str) -> None:
        self.delete(f"deleting firewall {firewall_id}", self.client.firewalls.delete, firewall_id)

    def domains(self) -> list[JSON]:
        return list(self.pages("listing your domains", self.client.domains.list, "domains"))

    def records(self, domain: str, name: str) -> list[JSON]:
        return list(
            self.pages(
                f"listing DNS records of {domain}",
                self.client.domains.list_records,
                "domain_records",
                domain_name=domain,
                name=name,
                type="A",
            )
        )

    def create_record(self, domain: str, body: JSON) -> JSON:
        return self.call(f"creating a DNS record in {domain}", self.client.domains.create_record, domain, body)[
            "domain_record"
        ]

    def update_record(self, domain: str, record_id: int, body: JSON) -> JSON:
        return self.call(
            f"updating a DNS record in {domain}", self.client.domains.update_record, domain, record_id, body
        )["domain_record"]

    def delete_record(self, domain: str, record_id: int) -> None:
        self.call(f"deleting a DNS record in {domain}", self.client.domains.delete_record, domain, record_id)
