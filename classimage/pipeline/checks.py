"""The rules a JSON Schema cannot state: duplicates, pip's own requirement grammar, an IP address
where Let's Encrypt needs a name, durations and sizes too small to be meant, the limits of the TLJH
release the spec pins. They run on data that may still be invalid, so every lookup is guarded."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable, Iterator

import jsonschema

from classimage import resources
from classimage.pipeline import environment, model, sizing, tljh, units
from classimage.pipeline.problems import Problem, short
from classimage.pipeline.yamlsource import Document, format_path


def problems(document: Document) -> list[Problem]:
    """Every problem the checks below find, in their order (a report lists them by line)."""
    return [problem for check in CHECKS for problem in check(document)]


def _at(document: Document, path: tuple, message: str, fix: str = "", warning: bool = False) -> Problem:
    return Problem(document.line(path), format_path(path), message, fix, warning)


def _about(document: Document, path: tuple, message: str, fix: str) -> Problem:
    """A warning about a key that may be left out: at its line, or at none (a key to add)."""
    line = document.line(path) if _present(document.data, path) else 0
    return Problem(line, format_path(path), message, fix, warning=True)


# Listed twice: harmless to pip or apt, but always a slip in a course spec.
LISTS: list[tuple[tuple[str, ...], Callable[[str], str]]] = [
    (("hub", "admins"), str),
    (("hub", "auth", "allowed_users"), str),
    (("environment", "apt"), str),
    (("environment", "conda", "packages"), environment.conda_name),
    (("environment", "pip"), environment.pip_name),
]


def _listed_twice(document: Document) -> Iterator[Problem]:
    for path, key in LISTS:
        seen: dict = {}
        for item_path, item in document.strings(path):
            name = key(item)
            if name in seen:
                message = f"{short(item)} is listed twice (also line {document.line(seen[name])})"
                yield _at(document, item_path, message, "remove one of them")
            else:
                seen[name] = item_path


def _pip_requirements(document: Document) -> Iterator[Problem]:
    for item_path, item in document.strings(("environment", "pip")):
        problem = environment.requirement_problem(item)
        if problem:
            yield _at(document, item_path, *problem)


def _https_hostname(document: Document) -> Iterator[Problem]:
    hostname = document.get(("https", "hostname"))
    if isinstance(hostname, str):
        try:
            ipaddress.ip_address(hostname)
        except ValueError:
            return
        yield _at(
            document,
            ("https", "hostname"),
            f"{short(hostname)} is an IP address; Let's Encrypt only certifies DNS names",
            "point a DNS name (an A record) at the droplet and write that name here, or remove `https:` "
            "to serve plain HTTP",
        )
    elif hostname is None:
        yield _about(
            document,
            ("https",),
            "no hostname: the hub will serve plain HTTP at the droplet's IP address, "
            "and passwords cross the network unencrypted",
            "point a DNS name's A record at the droplet, then add `https:` with its `hostname` and an `email`",
        )


def _tljh_version(document: Document) -> list[Problem]:
    version = document.get(("tljh", "version"))
    if version is None:
        version = resources.schema()["properties"]["tljh"]["properties"]["version"]["default"]
    return _tljh_release(document, version) if isinstance(version, str) else []


def _durations(document: Document) -> Iterator[Problem]:
    for path, shortest, longest, fix in (
        (("hub", "idle_timeout"), 60, 365 * 86400, "use at least 1m and at most 365d, e.g. 30m"),
        (("hub", "auth", "lockout", "duration"), 1, 30 * 86400, "use at most 30d, e.g. 10m"),
    ):
        duration = document.get(path)
        try:
            seconds = units.seconds(duration) if isinstance(duration, str) else None
        except ValueError:
            continue  # the schema's pattern reports it
        if seconds is not None and seconds < shortest:
            yield _at(
                document,
                path,
                f"{duration!r} is shorter than {'a minute' if shortest == 60 else 'a second'}; students "
                "would lose their servers while reading"
                if shortest == 60
                else f"{duration!r} is no time at all",
                fix,
            )
        elif seconds is not None and seconds > longest:
            yield _at(document, path, f"{duration!r} is longer than anyone waits", fix)


def _memory(document: Document) -> Iterator[Problem]:
    memory = document.get(MEMORY_LIMIT)
    if not isinstance(memory, str):
        return
    try:
        size = units.memory_bytes(memory)
    except ValueError:
        return  # the schema's pattern reports it
    if size < 128 << 20:
        yield _at(
            document, MEMORY_LIMIT, f"{memory!r} is too little for a notebook server", "use at least 256M, e.g. 1G"
        )
    elif size > 1 << 40:
        yield _at(
            document,
            MEMORY_LIMIT,
            f"{memory!r} is more memory than any droplet has",
            "give what one student's server may use, e.g. 2G",
        )


def _content_folders(document: Document) -> Iterator[Problem]:
    folders: dict = {}
    content = document.data.get("content")
    for i, repo in enumerate(content if isinstance(content, list) else []):
        url = repo.get("url") if isinstance(repo, dict) else None
        if not isinstance(url, str):
            continue
        folder = model.ContentRepo(url=url, branch=None, open=None).folder
        if folder in folders:
            yield _at(
                document,
                ("content", i, "url"),
                f"pulls into the folder {folder!r}, like the repository on line {document.line(folders[folder])}",
                "list each repository once",
            )
        else:
            folders[folder] = ("content", i, "url")


def _sizing(document: Document) -> Iterator[Problem]:
    values = (_value(document.data, path) for path in (SIZE, MEMORY_LIMIT, CPU_LIMIT, STUDENTS))
    for where, message, fix in sizing.problems(*values):
        yield _about(document, tuple(where.split(".")), message, fix)


def _storage(document: Document) -> Iterator[Problem]:
    storage = _value(document.data, STORAGE_TYPE)
    if storage == "none":
        yield _about(
            document,
            STORAGE_TYPE,
            "the class's data (students' work, their accounts and passwords) lives on the droplet's own disk, "
            "and goes with the droplet: a new droplet starts an empty class",
            "set storage.type to auto, and `classimage up` keeps it on a volume of its own",
        )
    elif storage == "auto":
        slug = document.get(("course", "slug"))
        yield _about(
            document,
            STORAGE_TYPE,
            "with the user data pasted into the control panel, the class's data (students' work, their accounts "
            "and passwords) may live on the droplet's own disk, and go with it",
            f"set storage.type to volume and attach a volume named {slug if isinstance(slug, str) else 'SLUG'}-data "
            "when you create the droplet, or let `classimage up` make both",
        )


def _bootstrap_url(document: Document) -> Iterator[Problem]:
    url = document.get(("tljh", "bootstrap_url"))
    if isinstance(url, str) and url.startswith("http://"):
        yield _at(
            document,
            ("tljh", "bootstrap_url"),
            "is plain http: anyone on the path can change what runs as root",
            "use an https:// URL",
            warning=True,
        )


SIZE, MEMORY_LIMIT, CPU_LIMIT = ("droplet", "size"), ("hub", "memory_limit"), ("hub", "cpu_limit")
STUDENTS, STORAGE_TYPE = ("course", "students"), ("storage", "type")
# The keys of the warnings about a class on one droplet (its size, its data's disk): not said for
# the z2jh target, whose students each have a pod and a volume of their own.
DROPLET_ONLY = frozenset(format_path(path) for path in (SIZE, MEMORY_LIMIT, CPU_LIMIT, STORAGE_TYPE))


def _present(data, path: tuple) -> bool:
    for key in path:
        if not isinstance(data, dict) or key not in data:
            return False
        data = data[key]
    return True


def _value(data, path: tuple):
    """The value at `path` as the spec will have it (the schema's default where it is left out), or
    None where it is not of the schema's type (the schema reports that)."""
    if _present(data, path):
        value = data
        for key in path:
            value = value[key]
    else:
        node = resources.schema()
        for key in path:
            node = node.get("properties", {}).get(key, {})
        value = node.get("default")
    kinds: dict[tuple, type | tuple[type, ...]] = {
        SIZE: str,
        MEMORY_LIMIT: str,
        STORAGE_TYPE: str,
        STUDENTS: int,
        CPU_LIMIT: (int, float),
    }
    if value is None or isinstance(value, bool) or not isinstance(value, kinds[path]):
        return None
    if path == MEMORY_LIMIT:
        try:
            units.memory_bytes(str(value))
        except ValueError:
            return None
    return value


def _tljh_release(document: Document, version: str) -> list[Problem]:
    """What the pinned TLJH release takes: a release classimage has the schema of (or a commit),
    and spec values its schema accepts where they land (its `tljh-config` refuses every later
    change to a config.yaml that breaks its schema)."""
    where = ("tljh", "version")
    if version not in tljh.SCHEMAS and not tljh.is_commit(version):
        return (
            [
                Problem(
                    document.line(where),
                    format_path(where),
                    f"{short(version)} is a TLJH release this classimage does not know",
                    f"write {' or '.join(map(repr, tljh.SCHEMAS))}, or pin a 40-character commit",
                )
            ]
            if tljh.RELEASE.fullmatch(version)
            else []
        )
    cpu = document.get(("hub", "cpu_limit"))
    if isinstance(cpu, (int, float)) and not isinstance(cpu, bool):
        validator = jsonschema.Draft7Validator(tljh.schema(version))
        if any(True for _ in validator.iter_errors({"limits": {"cpu": cpu}})):
            path = ("hub", "cpu_limit")
            return [
                Problem(
                    document.line(path),
                    format_path(path),
                    f"TLJH {version} takes whole CPU cores (its limits.cpu is an integer), not {cpu}",
                    "write a whole number such as 1 or 2, or null for no limit",
                )
            ]
    return []


# The checks, in the order a report lists what they find on one line.
CHECKS: list[Callable[[Document], Iterable[Problem]]] = [
    _listed_twice,
    _pip_requirements,
    _https_hostname,
    _tljh_version,
    _durations,
    _memory,
    _content_folders,
    _sizing,
    _storage,
    _bootstrap_url,
]
