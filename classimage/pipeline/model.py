"""The course spec as one typed, immutable model. Field names are the schema's keys (a test holds
the two together); derived values are properties, so nothing is stored twice."""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass
from typing import Literal

from classimage.pipeline import units


@dataclass(frozen=True)
class CourseInfo:
    name: str
    slug: str
    students: int | None  # at once, at the busiest: for sizing only (not in the spec's digest)


@dataclass(frozen=True)
class Lockout:
    failed_logins: int
    duration: str

    @property
    def seconds(self) -> int:
        return units.seconds(self.duration) or 0


@dataclass(frozen=True)
class Auth:
    method: Literal["signup", "first-use", "allowed-users"]
    ask_email: bool
    min_password_length: int
    lockout: Lockout
    allowed_users: tuple[str, ...]


@dataclass(frozen=True)
class Hub:
    admins: tuple[str, ...]
    default_app: Literal["jupyterlab", "classic"]
    idle_timeout: str
    memory_limit: str | None
    cpu_limit: float | None
    auth: Auth

    @property
    def idle_seconds(self) -> int | None:
        return units.seconds(self.idle_timeout)


@dataclass(frozen=True)
class Conda:
    channels: tuple[str, ...]
    packages: tuple[str, ...]


@dataclass(frozen=True)
class Environment:
    apt: tuple[str, ...]
    conda: Conda
    pip: tuple[str, ...]
    python: str | None
    post_build: str | None
    from_repo: str | None  # as written; its files are read (and merged in) when the spec loads


@dataclass(frozen=True)
class Https:
    hostname: str | None
    email: str | None
    staging: bool

    @property
    def enabled(self) -> bool:
        return self.hostname is not None


@dataclass(frozen=True)
class ContentRepo:
    url: str
    branch: str | None
    open: str | None

    @property
    def folder(self) -> str:
        """The folder nbgitpuller clones into: the URL's last part without `.git`."""
        name = self.url.rstrip("/").rsplit("/", 1)[-1]
        return name[:-4] if name.endswith(".git") else name


@dataclass(frozen=True)
class Droplet:
    region: str
    size: str
    image: Literal["ubuntu-24-04-x64", "ubuntu-22-04-x64", "debian-12-x64", "debian-11-x64"]
    snapshot_regions: tuple[str, ...]
    ssh_keys: tuple[str, ...]


@dataclass(frozen=True)
class Storage:
    type: Literal["auto", "volume", "device", "none"]
    size_gigabytes: int
    device: str | None
    keep_backups: int


@dataclass(frozen=True)
class Network:
    proxy: str | None
    ca_certificates: tuple[str, ...]  # PEM text; files named in the spec are read when it loads


@dataclass(frozen=True)
class Tljh:
    version: str
    bootstrap_url: str


@dataclass(frozen=True)
class Workflows:
    classimage: str | None  # a pinned source; None: the commit of the classimage that renders them


@dataclass(frozen=True)
class Z2jh:
    """The z2jh target's own settings (classimage/pipeline/z2jh.py); the droplet target reads none of them."""

    image: str | None
    home_gigabytes: int
    memory_guarantee: str
    cpu_guarantee: float


@dataclass(frozen=True)
class Spec:
    course: CourseInfo
    hub: Hub
    environment: Environment
    https: Https
    content: tuple[ContentRepo, ...]
    droplet: Droplet
    storage: Storage
    network: Network
    tljh: Tljh
    workflows: Workflows
    z2jh: Z2jh


def build(cls: type, data: dict):
    """Make `cls` from validated, defaulted data: nested dataclasses from mappings, tuples from
    lists, absent optional keys as None."""
    hints = typing.get_type_hints(cls)
    values = {}
    for field in dataclasses.fields(cls):
        values[field.name] = _convert(hints[field.name], data.get(field.name))
    return cls(**values)


def _convert(hint, value):
    if value is None:
        return None
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return build(hint, value)
    origin = typing.get_origin(hint)
    if origin is tuple:
        (item, _ellipsis) = typing.get_args(hint)
        return tuple(_convert(item, v) for v in value)
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in typing.get_args(hint) if a is not type(None)]
        return _convert(inner[0], value)
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value  # str, int, bool, Literal: as validated
