"""The rules a JSON Schema cannot state: duplicates, pip's own requirement grammar, an IP address
where Let's Encrypt needs a name, durations and sizes too small to be meant, the limits of the TLJH
release the spec pins. They run on data that may still be invalid, so every lookup is guarded."""

from __future__ import annotations

import ipaddress

from packaging.requirements import InvalidRequirement, Requirement

import jsonschema

from classimage import environment, model, resources, tljh, units
from classimage.problems import Problem, short
from classimage.yamlsource import Document, format_path


def problems(document: Document) -> list[Problem]:
    data = document.data
    problems: list[Problem] = []

    def at(path, message, fix="", warning=False):
        problems.append(Problem(document.line(path), format_path(path), message, fix, warning))

    # Listed twice: harmless to pip or apt, but always a slip in a course spec.
    for path, key in [(("hub", "admins"), str), (("hub", "auth", "allowed_users"), str),
                      (("environment", "apt"), str), (("environment", "conda", "packages"), environment.conda_name),
                      (("environment", "pip"), environment.pip_name)]:
        seen: dict = {}
        for item_path, item in document.strings(path):
            name = key(item)
            if name in seen:
                at(item_path, f"{short(item)} is listed twice (also line {document.line(seen[name])})",
                   "remove one of them")
            else:
                seen[name] = item_path

    for item_path, item in document.strings(("environment", "pip")):
        try:
            Requirement(item)
        except InvalidRequirement as error:
            reason = str(error).splitlines()[0]
            at(item_path, f"{short(item)} is not a pip requirement: {reason}",
               "write one requirement such as lavavu or jupytext>=1.16; pip options are not allowed here")

    hostname = document.get(("https", "hostname"))
    if isinstance(hostname, str):
        try:
            ipaddress.ip_address(hostname)
            at(("https", "hostname"), f"{short(hostname)} is an IP address; Let's Encrypt only certifies DNS names",
               "point a DNS name (an A record) at the droplet and write that name here, or remove `https:` "
               "to serve plain HTTP")
        except ValueError:
            pass
    elif hostname is None:
        at(("https",), "no https.hostname: the hub will serve plain HTTP at the droplet's IP address, "
           "and passwords cross the network unencrypted",
           "point a DNS name at the droplet and set https.hostname and https.email", warning=True)

    auth = document.get(("hub", "auth"))
    if isinstance(auth, dict):
        method = auth.get("method", "signup")
        for key in ("ask_email", "lockout"):
            if key in auth and method != "signup":
                at(("hub", "auth", key), f"applies only to `method: signup`, not {method}",
                   "remove it, or set `method: signup`")
        if method == "allowed-users" and not auth.get("allowed_users"):
            at(("hub", "auth", "method"), "`allowed-users` needs the list of names",
               "add `allowed_users: [alice, bob]` under `auth:`")
        if auth.get("allowed_users") and method != "allowed-users":
            at(("hub", "auth", "allowed_users"), f"applies only to `method: allowed-users`, not {method}",
               "remove it, or set `method: allowed-users`")

    version = document.get(("tljh", "version"))
    if version is None:
        version = resources.schema()["properties"]["tljh"]["properties"]["version"]["default"]
    if isinstance(version, str):
        problems.extend(_tljh_release(document, version))

    idle = document.get(("hub", "idle_timeout"))
    try:
        if isinstance(idle, str) and idle != "never" and units.seconds(idle) < 60:
            at(("hub", "idle_timeout"), f"{idle!r} is shorter than a minute; students would lose their "
               "servers while reading", "use at least 1m, e.g. 30m")
    except ValueError:
        pass  # the schema's pattern reports it
    memory = document.get(("hub", "memory_limit"))
    if isinstance(memory, str):
        try:
            if units.memory_bytes(memory) < 128 << 20:
                at(("hub", "memory_limit"), f"{memory!r} is too little for a notebook server",
                   "use at least 256M, e.g. 1G")
        except ValueError:
            pass  # the schema's pattern reports it

    folders: dict = {}
    content = data.get("content")
    for i, repo in enumerate(content if isinstance(content, list) else []):
        if not isinstance(repo, dict):
            continue
        opened = repo.get("open")
        if isinstance(opened, str) and ".." in opened.split("/"):
            at(("content", i, "open"), f"{short(opened)} leaves the repository",
               "write a path inside the repository, without ..")
        url = repo.get("url")
        if isinstance(url, str):
            folder = model.ContentRepo(url=url, branch=None, open=None).folder
            if folder in folders:
                at(("content", i, "url"), f"pulls into the folder {folder!r}, like the repository on line "
                   f"{document.line(folders[folder])}", "list each repository once")
            else:
                folders[folder] = ("content", i, "url")

    url = document.get(("tljh", "bootstrap_url"))
    if isinstance(url, str) and url.startswith("http://"):
        at(("tljh", "bootstrap_url"), "is plain http: anyone on the path can change what runs as root",
           "use an https:// URL", warning=True)
    return problems


def _tljh_release(document: Document, version: str) -> list[Problem]:
    """What the pinned TLJH release takes: a release classimage has the schema of (or a commit),
    and spec values its schema accepts where they land (its `tljh-config` refuses every later
    change to a config.yaml that breaks its schema)."""
    where = ("tljh", "version")
    if version not in tljh.SCHEMAS and not tljh.is_commit(version):
        return [Problem(document.line(where), format_path(where), f"{short(version)} is a TLJH release this "
                        f"classimage does not know", f"write {' or '.join(map(repr, tljh.SCHEMAS))}, or pin a "
                        "40-character commit")] if tljh.RELEASE.match(version) else []
    cpu = document.get(("hub", "cpu_limit"))
    if isinstance(cpu, (int, float)) and not isinstance(cpu, bool):
        validator = jsonschema.Draft7Validator(tljh.schema(version))
        if any(True for _ in validator.iter_errors({"limits": {"cpu": cpu}})):
            path = ("hub", "cpu_limit")
            return [Problem(document.line(path), format_path(path), f"TLJH {version} takes whole CPU cores "
                            f"(its limits.cpu is an integer), not {cpu}",
                            "write a whole number such as 1 or 2, or null for no limit")]
    return []
