"""The course as The Littlest JupyterHub's own settings: config.yaml, a jupyterhub_config.d file for
what config.yaml has no key for, and the bootstrap's flags. Follows TLJH's documented interface
(shared/reference/tljh/CONTRACT.md); TLJH's own schema checks the result before anything is written.
"""

from __future__ import annotations

import jsonschema
import yaml

from classimage import __version__, droplet, links, network, resources, templating
from classimage.model import Auth, Spec

PREFIX = "/opt/tljh"
CONFIG_YAML = f"{PREFIX}/config/config.yaml"
CONFIG_D = f"{PREFIX}/config/jupyterhub_config.d"
STATE = f"{PREFIX}/state"
PROXY_SECRET = f"{STATE}/traefik-api.secret"  # the hub and proxy's shared secret, made at install
HUB_PYTHON = f"{PREFIX}/hub/bin/python3"
USER_BIN = f"{PREFIX}/user/bin"
HUB_API = "http://127.0.0.1:15001/hub/api"
# The provisioning status over HTTP: a hub-managed service, public at /services/classimage-status/.
STATUS_SERVICE = "classimage-status"
STATUS_PORT = 15003
TLJH_SCHEMA = "tljh-config.schema.json"

NATIVE = "nativeauthenticator.NativeAuthenticator"
FIRST_USE = "firstuseauthenticator.FirstUseAuthenticator"

# TLJH's schema lists every top-level key but `auth` (free-form) and cannot refuse unknown ones
# (its additionalProperties sits inside `properties`), so classimage refuses them itself.
_TOP_LEVEL = set(resources.schema(TLJH_SCHEMA)["properties"]) - {"additionalProperties"} | {"auth"}


class InvalidTljhConfig(Exception):
    """classimage produced settings TLJH would reject: a bug in classimage, never in the spec."""


def config(spec: Spec) -> dict:
    """config.yaml's content."""
    hub = spec.hub
    result: dict = {
        "users": {"admin": list(hub.admins)},
        "user_environment": {"default_app": hub.default_app},
        "auth": _auth(hub.auth),
    }
    if hub.auth.method == "allowed-users":
        result["users"]["allowed"] = list(hub.auth.allowed_users)
    limits = {}
    if hub.memory_limit is not None:
        limits["memory"] = hub.memory_limit
    if hub.cpu_limit is not None:
        limits["cpu"] = hub.cpu_limit
    if limits:
        result["limits"] = limits
    # Never services.cull.users: with NativeAuthenticator, culling a user deletes their password.
    idle = hub.idle_seconds
    result["services"] = {"cull": {"enabled": True, "timeout": idle} if idle else {"enabled": False}}
    if spec.https.enabled:
        letsencrypt = {"email": spec.https.email, "domains": [spec.https.hostname]}
        if spec.https.staging:
            letsencrypt["staging"] = True
        result["https"] = {"enabled": True, "letsencrypt": letsencrypt}
    check(result)
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
    return {"type": FIRST_USE, FIRST_USE.rsplit(".", 1)[1]: {"min_password_length": auth.min_password_length}}


def check(settings: dict) -> None:
    """Refuse settings TLJH's schema (or its unwritten rules) would reject."""
    unknown = set(settings) - _TOP_LEVEL
    if unknown:
        raise InvalidTljhConfig(f"unknown TLJH settings: {sorted(unknown)}")
    validator = jsonschema.Draft7Validator(resources.schema(TLJH_SCHEMA),
                                           format_checker=jsonschema.Draft7Validator.FORMAT_CHECKER)
    errors = [f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(settings)]
    for name, traits in settings.get("auth", {}).items():
        if name != "type" and not name[:1].isupper():
            errors.append(f"auth.{name}: TLJH refuses lower-case keys under auth (hub fails to start)")
    if errors:
        raise InvalidTljhConfig("; ".join(errors))


def lockdown() -> dict:
    """config.yaml for Packer's build droplet: a hub nobody can sign up to or sign in to (no
    signup, no admins), so nothing from the build (accounts, approvals) can reach the snapshot."""
    result = {"users": {"admin": []},
              "auth": {"type": NATIVE, NATIVE.rsplit(".", 1)[1]: {"enable_signup": False, "open_signup": False}}}
    check(result)
    return result


def _yaml(settings: dict) -> str:
    header = f"# Written by classimage {__version__}. TLJH's settings for this hub; see `tljh-config show`.\n"
    return header + yaml.safe_dump(settings, sort_keys=True, default_flow_style=False)


def config_yaml(spec: Spec) -> str:
    return _yaml(config(spec))


def lockdown_yaml() -> str:
    return _yaml(lockdown())


def jupyterhub_config(spec: Spec) -> str:
    """A jupyterhub_config.d file: what config.yaml has no key for."""
    first = spec.content[0] if spec.content else None
    return templating.render(
        "jupyterhub_config.py.j2",
        native=spec.hub.auth.method == "signup",
        environment=network.environment(spec),
        status_service={"name": STATUS_SERVICE, "url": f"http://127.0.0.1:{STATUS_PORT}", "display": False,
                        "command": [droplet.RUNNER, "serve-status", "--port", str(STATUS_PORT)]},
        default_url=links.gitpull_path(first, spec.hub.default_app) if first else None,
    )


def bootstrap_args(spec: Spec, with_admins: bool = True) -> list[str]:
    """The bootstrap's flags: the pinned version, the progress page, one --admin per admin
    (names only: no password ever goes into user data; none at all on the build droplet)."""
    args = ["--version", spec.tljh.version, "--show-progress-page"]
    for admin in spec.hub.admins if with_admins else ():
        args += ["--admin", admin]
    return args
