"""DigitalOcean's API, through its official client pydo: the one module that talks to it. Its
answers come back as plain dicts (DigitalOcean's own JSON); its refusals as CloudError, worded as
what to change. Requests that fail for a moment (429, 5xx) are retried with backoff by pydo's
pipeline (honouring Retry-After); every request is counted.

pydo is an extra (`pip install classimage[cloud]`): validating and rendering need no cloud client,
and pydo brings azure-core, azure-identity and msrest with it.

The token comes from DIGITALOCEAN_TOKEN only (never a flag, never written anywhere); the API's
address from DIGITALOCEAN_API_URL, as doctl's, default https://api.digitalocean.com.
"""

from __future__ import annotations

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

JSON = dict[str, Any]


class CloudError(Exception):
    """DigitalOcean refused or failed; the message says what to change."""


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
        "(control panel > Settings > Team)",
    ),
    ("size is not available", "choose another droplet.size, or another droplet.region, in the spec"),
    ("region", "choose a region that offers what the spec asks for (droplet.region)"),
    ("volume", "check the course's volume: it must be in the droplet's region and attached to no other droplet"),
    ("ssh", "check droplet.ssh_keys: each must be the fingerprint or id of a key in your account"),
    ("reserved ip", "you may have reached the limit of reserved IPs (3 by default): release one you do not need"),
)


def explain(what: str, status: int | None, body: str, retry_after: str | None = None) -> str:
    """A refusal, as what to change."""
    try:
        message = json.loads(body).get("message", "") if body else ""
    except ValueError:
        message = ""
    message = message or body[:200]
    if status == 401:
        return (
            f"DigitalOcean refused the token while {what} (401 Unauthorized): set {TOKEN} to a valid "
            "personal access token (control panel > API)"
        )
    if status == 403:
        return (
            f"the token may not do this ({what}: 403 Forbidden): make a token with read and write scope "
            f"and set {TOKEN} to it"
        )
    if status == 429:
        wait = f" (DigitalOcean says retry after {retry_after} s)" if retry_after else ""
        return (
            f"DigitalOcean's rate limit is used up while {what}{wait}: its limit is 5,000 requests an hour; "
            "wait a few minutes and run the same command again (it finishes what is half done)"
        )
    if status is not None and status >= 500:
        return (
            f"DigitalOcean's API failed while {what} ({status}: {message}) after {RETRIES} tries: try again "
            "later; running the same command again finishes what is half done"
        )
    hint = next((fix for phrase, fix in HINTS if phrase in message.lower()), "")
    return f"DigitalOcean refused {what} ({status}: {message})" + (f": {hint}" if hint else "")


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
        self.log = log or (lambda message: None)
        self.client = pydo.Client(
            token=self.token,
            endpoint=self.url,
            retry_total=RETRIES,
            retry_status=RETRIES,
            retry_backoff_factor=0.5,
            retry_backoff_max=30,
            raw_request_hook=self._counted,
            user_agent="classimage",
        )

    def _counted(self, request: Any) -> None:
        self.requests += 1
        if request.http_request.method != "GET":
            self.changes += 1

    def call(self, what: str, operation: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run a pydo operation; a refusal becomes CloudError(what to change)."""
        from azure.core.exceptions import HttpResponseError, ServiceRequestError, ServiceResponseError

        try:
            return operation(*args, **kwargs)
        except HttpResponseError as error:
            response = error.response
            body = response.text() if response is not None else ""
            # azure-core's HttpResponse has headers; its typing protocol does not say so
            retry_after = response.headers.get("Retry-After") if response is not None else None  # type: ignore[attr-defined]
            raise CloudError(explain(what, error.status_code, body, retry_after)) from None
        except (ServiceRequestError, ServiceResponseError) as error:
            raise CloudError(f"cannot reach DigitalOcean's API at {self.url} while {what}: {error}") from None

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

    def wait(self, action: JSON, what: str, timeout: float = 600, poll: float = 2) -> JSON:
        """Until DigitalOcean's action completes (actions go from in-progress to completed)."""
        deadline = time.monotonic() + timeout
        while action["status"] == "in-progress":
            if time.monotonic() > deadline:
                raise CloudError(
                    f"{what} did not finish within {timeout:.0f} s (action {action['id']}); run the "
                    "same command again later"
                )
            time.sleep(poll)
            action = self.call(what, self.client.actions.get, action["id"])["action"]
        if action["status"] != "completed":
            raise CloudError(
                f"{what} failed at DigitalOcean (action {action['id']} {action['status']}): try again, "
                "or see the control panel's history"
            )
        return action

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

    def create_droplet(self, body: JSON) -> tuple[JSON, JSON | None]:
        answer = self.call(f"creating droplet {body['name']}", self.client.droplets.create, body)
        actions = (answer.get("links") or {}).get("actions") or []
        action = (
            self.call("reading an action", self.client.actions.get, actions[0]["id"])["action"] if actions else None
        )
        return answer["droplet"], action

    def destroy_droplet(self, droplet_id: int) -> None:
        self.call(f"destroying droplet {droplet_id}", self.client.droplets.destroy, droplet_id)

    def droplet_action(self, droplet_id: int, kind: str) -> JSON:
        return self.call(
            f"{kind} of droplet {droplet_id}", self.client.droplet_actions.post, droplet_id, {"type": kind}
        )["action"]

    def volumes(self, region: str) -> list[JSON]:
        return list(self.pages(f"listing volumes in {region}", self.client.volumes.list, "volumes", region=region))

    def volume(self, volume_id: str) -> JSON:
        return self.call("reading a volume", self.client.volumes.get, volume_id)["volume"]

    def create_volume(self, body: JSON) -> JSON:
        return self.call(f"creating volume {body['name']}", self.client.volumes.create, body)["volume"]

    def delete_volume(self, volume_id: str) -> None:
        self.call(f"deleting volume {volume_id}", self.client.volumes.delete, volume_id)

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
        self.call(f"deleting snapshot {snapshot_id}", self.client.snapshots.delete, snapshot_id)

    def droplet_snapshots(self) -> list[JSON]:
        return list(
            self.pages("listing droplet snapshots", self.client.snapshots.list, "snapshots", resource_type="droplet")
        )

    def reserved_ips(self) -> list[JSON]:
        return list(self.pages("listing reserved IPs", self.client.reserved_ips.list, "reserved_ips"))

    def create_reserved_ip(self, region: str) -> JSON:
        return self.call("reserving an IP address", self.client.reserved_ips.create, {"region": region})["reserved_ip"]

    def reserved_ip_action(self, ip: str, body: JSON) -> JSON:
        return self.call(f"{body['type']} of reserved IP {ip}", self.client.reserved_ips_actions.post, ip, body)[
            "action"
        ]

    def delete_reserved_ip(self, ip: str) -> None:
        self.call(f"releasing reserved IP {ip}", self.client.reserved_ips.delete, ip)

    def tags(self) -> list[JSON]:
        return list(self.pages("listing tags", self.client.tags.list, "tags"))

    def create_tag(self, name: str) -> None:
        self.call(f"creating tag {name}", self.client.tags.create, {"name": name})

    def delete_tag(self, name: str) -> None:
        self.call(f"deleting tag {name}", self.client.tags.delete, name)

    def firewalls(self) -> list[JSON]:
        return list(self.pages("listing firewalls", self.client.firewalls.list, "firewalls"))

    def create_firewall(self, body: JSON) -> JSON:
        return self.call(f"creating firewall {body['name']}", self.client.firewalls.create, body)["firewall"]

    def delete_firewall(self, firewall_id: str) -> None:
        self.call(f"deleting firewall {firewall_id}", self.client.firewalls.delete, firewall_id)

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
