"""The course as The Littlest JupyterHub's own settings: config.yaml, a jupyterhub_config.d file for
what config.yaml has no key for, and the bootstrap's flags. Follows TLJH's interface (docs/design.md
and TLJH 2.0.0's source); the schema of the release the spec pins checks the result before anything
is written.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

import jsonschema
import yaml

from classimage import __version__, resources
from classimage.droplet import provision
from classimage.pipeline import links, network, templating
from classimage.pipeline.model import Auth, Spec

PREFIX = "/opt/tljh"
CONFIG_DIR = f"{PREFIX}/config"
CONFIG_YAML = f"{CONFIG_DIR}/config.yaml"
CONFIG_D = f"{CONFIG_DIR}/jupyterhub_config.d"
CLASSIMAGE_CONFIG = f"{CONFIG_D}/classimage.py"
# TLJH makes these 0700 but keeps the mode of a folder that exists: classimage, writing first, must too.
PRIVATE_DIRS = (CONFIG_DIR, CONFIG_D)
STATE = f"{PREFIX}/state"
PROXY_SECRET = f"{STATE}/traefik-api.secret"  # the hub and proxy's shared secret, made at install
PROXY_RULES = f"{STATE}/rules/rules.toml"  # the hub writes it: routes, and a hash of the proxy secret
DATABASE = f"sqlite:///{STATE}/jupyterhub.sqlite"  # the hub's (TLJH runs it in the state folder)
FIRST_USE_PASSWORDS = f"{STATE}/passwords.dbm"  # FirstUseAuthenticator's
ACCOUNTS_RECORD = f"{STATE}/classimage-admins.json"  # the admins' accounts classimage made, and their passwords
# TLJH's UserCreatingSpawner runs hub user NAME as the Unix user jupyter-NAME (useradd: home in /home),
# shortened with a hash from 26 characters on (tljh/normalize.py): names of at most 17 map one to one.
UNIX_PREFIX = "jupyter-"
HOMES = "/home"
PASSWD = "/etc/passwd"
GROUP_FILE = "/etc/group"
ADMINS_GROUP = "jupyterhub-admins"  # TLJH's: its admins' Unix users, which sudo trusts
CLASS_GROUPS = ("jupyterhub-users", ADMINS_GROUP)  # every Unix user TLJH makes is in the first
INSTALLER_LOG = f"{PREFIX}/installer.log"  # TLJH's own install log
# Drop-ins for TLJH's units (classimage's, beside TLJH's unit files): start only on the class's data.
HUB_UNIT_DROPIN = "/etc/systemd/system/jupyterhub.service.d/classimage-data.conf"
PROXY_UNIT_DROPIN = "/etc/systemd/system/traefik.service.d/classimage-data.conf"
HUB_PYTHON = f"{PREFIX}/hub/bin/python3"
USER_ENV = f"{PREFIX}/user"
USER_BIN = f"{USER_ENV}/bin"
PUBLIC_HUB_API = "http://127.0.0.1/hub/api"  # the hub's API through the proxy on port 80
HUB_HEALTH = "http://127.0.0.1:15001/hub/health"  # the hub itself (TLJH's hub_port): answers once its database is made
# The releases classimage knows, each with its config schema (converted from tljh/config_schema.py).
# A commit is checked against the newest release's.
SCHEMAS = {"2.0.0": "tljh-2.0.0.schema.json"}
NEWEST = "2.0.0"

NATIVE = "nativeauthenticator.NativeAuthenticator"
FIRST_USE = "firstuseauthenticator.FirstUseAuthenticator"


class InvalidTljhConfig(Exception):
    """classimage produced settings TLJH would reject: a bug in classimage, never in the spec."""


RELEASE = re.compile(r"^[0-9]+\.[0-9]+\.[0-9]+$")


def is_commit(version: str) -> bool:
    return re.fullmatch(r"[0-9a-f]{40}", version) is not None


def schema(version: str) -> dict:
    """TLJH's config schema for `version`: its own for a release classimage knows, else (a commit)
    the newest release's."""
    return resources.schema(SCHEMAS.get(version, SCHEMAS[NEWEST]))


def config(spec: Spec, https: bool = True) -> dict:
    """config.yaml's content; `https=False`: without the HTTPS settings (see `config_yaml`)."""
    hub = spec.hub
    result: dict = {
        "users": {"admin": list(hub.admins)},
        "user_environment": {"default_app": hub.default_app},
        "auth": _auth(hub.auth),
    }
    if hub.auth.method == "allowed-users":
        result["users"]["allowed"] = list(hub.auth.allowed_users)
    limits: dict = {}
    if hub.memory_limit is not None:
        limits["memory"] = hub.memory_limit
    if hub.cpu_limit is not None:
        limits["cpu"] = int(hub.cpu_limit) if float(hub.cpu_limit).is_integer() else hub.cpu_limit
    if limits:
        result["limits"] = limits
    # Never services.cull.users: with NativeAuthenticator, culling a user deletes their password.
    idle = hub.idle_seconds
    result["services"] = {"cull": {"enabled": True, "timeout": idle} if idle else {"enabled": False}}
    if spec.https.enabled and https:
        letsencrypt: dict[str, Any] = {"email": spec.https.email, "domains": [spec.https.hostname]}
        if spec.https.staging:
            letsencrypt["staging"] = True
        result["https"] = {"enabled": True, "letsencrypt": letsencrypt}
    check(result, spec.tljh.version)
    return result


def _auth(auth: Auth) -> dict:
    if auth.method == "signup":
        return {
            "type": NATIVE,
            NATIVE.rsplit(".", 1)[1]: {
                # JupyterHub 5 refuses everyone without an allow rule; NativeAuthenticator still
                # requires an admin's approval before anyone but an admin can sign in.
                "allow_all": True,
                "open_signup": False,
                "ask_email_on_signup": auth.ask_email,
                "minimum_password_length": auth.min_password_length,
                "check_common_password": True,
                # NativeAuthenticator documents lockout defaults it does not apply: set them.
                "allowed_failed_logins": auth.lockout.failed_logins,
                "seconds_before_next_try": auth.lockout.seconds,
            },
        }
    # TLJH defaults FirstUseAuthenticator.create_users to false: only names already in the hub's
    # database could sign in. A first-use class lets any new name in; an allowed-users class, only
    # the listed names (which the hub puts in its database).
    return {
        "type": FIRST_USE,
        FIRST_USE.rsplit(".", 1)[1]: {
            "min_password_length": auth.min_password_length,
            "create_users": auth.method == "first-use",
        },
    }


def public_hub_api(spec: Spec) -> tuple[str, str | None]:
    """The hub's API through the proxy, as students reach it, from the droplet itself, and the name to
    connect by (curl's --resolve). With HTTPS on, TLJH's traefik only redirects port 80 to HTTPS, so
    it is port 443, by the hub's name (the certificate Let's Encrypt issues, once it has, is served
    for that name)."""
    hostname = spec.https.hostname
    if hostname is None:
        return PUBLIC_HUB_API, None
    return f"https://{hostname}/hub/api", f"{hostname}:443:127.0.0.1"


def problems(settings: dict, version: str) -> list[str]:
    """What TLJH `version` would refuse in `settings`: its schema (which tljh-config applies to
    every later change), and the rules its code enforces at hub start."""
    rules = schema(version)
    # TLJH's schema lists every top-level key but `auth` (free-form) and cannot refuse unknown ones
    # (its additionalProperties sits inside `properties`), so classimage refuses them itself.
    known = set(rules["properties"]) - {"additionalProperties"} | {"auth"}
    found = [f"{key}: not a TLJH setting" for key in sorted(set(settings) - known)]
    validator = jsonschema.Draft7Validator(rules, format_checker=jsonschema.Draft7Validator.FORMAT_CHECKER)
    found += [f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(settings)]
    for name in settings.get("auth", {}):
        if name != "type" and not name[:1].isupper():
            found.append(f"auth.{name}: TLJH refuses lower-case keys under auth (hub fails to start)")
    return found


def check(settings: dict, version: str) -> None:
    found = problems(settings, version)
    if found:
        raise InvalidTljhConfig("; ".join(found))


def lockdown(version: str) -> dict:
    """config.yaml for Packer's build droplet: a hub nobody can sign up to or sign in to (no
    signup, no admins), so nothing from the build (accounts, approvals) can reach the snapshot."""
    result = {
        "users": {"admin": []},
        "auth": {"type": NATIVE, NATIVE.rsplit(".", 1)[1]: {"enable_signup": False, "open_signup": False}},
    }
    check(result, version)
    return result


def _yaml(settings: dict) -> str:
    header = f"# Written by classimage {__version__}. TLJH's settings for this hub; see `tljh-config show`.\n"
    return header + yaml.safe_dump(settings, sort_keys=True, default_flow_style=False)


def config_yaml(spec: Spec, https: bool = True) -> str:
    """config.yaml as written. The hub-config step writes it without HTTPS, and hub-reload with it,
    once the class's data is in place: TLJH's installer starts traefik at once, which asks Let's
    Encrypt for a certificate into the droplet's own disk, and on a replacement droplet whose class's
    data (with Let's Encrypt's account and certificate) is not mounted yet that is a new order for a
    certificate the class has (Let's Encrypt allows five of the same a week), validated against the
    old droplet while the name still points there."""
    return _yaml(config(spec, https))


def lockdown_yaml(version: str) -> str:
    return _yaml(lockdown(version))


def username_pattern() -> str:
    """The course schema's rule for hub names, as JupyterHub's `Authenticator.username_pattern`
    (Python's `re.match`, whose `$` also matches before a final line break: `\\Z` instead)."""
    pattern = resources.schema()["$defs"]["username"]["pattern"]
    if not (pattern.startswith("^") and pattern.endswith("$")):
        raise ValueError(f"the schema's name pattern must be anchored at both ends: {pattern}")
    return pattern[:-1] + "\\Z"


def jupyterhub_config(spec: Spec) -> str:
    """A jupyterhub_config.d file: what config.yaml has no key for."""
    first = spec.content[0] if spec.content else None
    return templating.render(
        "jupyterhub_config.py.j2",
        admins=sorted(spec.hub.admins),
        username_pattern=username_pattern(),
        record=ACCOUNTS_RECORD,
        method=accounts_method(spec),
        guards_folder=provision.LIB,
        native=spec.hub.auth.method == "signup",
        first_use=spec.hub.auth.method != "signup",
        environment=network.environment(spec),
        hub_open=provision.HUB_OPEN,
        course=spec.course.name,
        status_service={
            "name": provision.SERVICE,
            "url": f"http://127.0.0.1:{provision.SERVICE_PORT}",
            "display": False,
            "command": [provision.RUNNER, "serve-status", "--port", str(provision.SERVICE_PORT)],
        },
        default_url=links.gitpull_path(first, spec.hub.default_app) if first else None,
    )


def accounts_method(spec: Spec) -> str:
    """Where the hub keeps its accounts, in the words of hubaccounts.py and hubguards.py: NativeAuthenticator's
    table (signup) or FirstUseAuthenticator's passwords (first-use, allowed-users)."""
    return "native" if spec.hub.auth.method == "signup" else "first-use"


def accounts_plan(spec: Spec, hashes: Mapping[str, str | None]) -> str:
    """What classimage/droplet/hubaccounts.py makes on the droplet: the admins' accounts, with the hashes
    of their passwords (None: reserved, with a password nobody knows)."""
    plan = {
        "method": accounts_method(spec),
        "database": DATABASE,
        "passwords": FIRST_USE_PASSWORDS,
        "record": ACCOUNTS_RECORD,
        "passwd": PASSWD,
        "homes": HOMES,
        "unix_prefix": UNIX_PREFIX,
        "group_file": GROUP_FILE,
        "admins_group": ADMINS_GROUP,
        "admins": {name: hashes.get(name) for name in spec.hub.admins},
    }
    return json.dumps(plan, indent=2) + "\n"


def bootstrap_args(spec: Spec) -> list[str]:
    """The bootstrap's flags: the pinned version. No --admin: config.yaml names the admins already
    (TLJH keeps it), and their accounts are classimage's to make (hubaccounts.py). Not TLJH's
    --show-progress-page: classimage serves its own page (TLJH's fetches a favicon from GitHub,
    fatally, and outlives a failed install on port 80)."""
    return ["--version", spec.tljh.version]
