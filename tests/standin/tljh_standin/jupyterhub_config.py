# TLJH STAND-IN: TLJH's jupyterhub_config.py, as its contract documents it, for the real JupyterHub.
#
# config.yaml is applied over TLJH's defaults, then every config/jupyterhub_config.d/*.py in sorted
# order (they may override anything); also cleanup_servers = False, hub_port = 15001, the proxy
# (a stand-in for traefik) and the user environment on users' PATH. A config.yaml TLJH would reject
# (its schema, lower-case keys under auth) stops the hub, as TLJH's hub stops on a bad auth key.
# Stand-in differences: no plugins, and a spawner that starts no user servers (TLJH's SystemdSpawner
# makes Unix users and systemd units, which these tests do not need).
import copy
import glob
import os
import sys

from jupyterhub.spawner import Spawner

from tljh_standin import config as tljh_config
from tljh_standin import paths


class StandInSpawner(Spawner):
    async def start(self):
        raise RuntimeError("the TLJH stand-in starts no user servers")

    async def poll(self):
        return 0

    async def stop(self, now=False):
        pass


DEFAULTS = {
    "base_url": "/",
    "auth": {"type": "firstuseauthenticator.FirstUseAuthenticator"},
    "users": {"allowed": [], "banned": [], "admin": [], "extra_user_groups": {}},
    "limits": {"memory": None, "cpu": None},
    "user_environment": {"default_app": "jupyterlab"},
    "services": {"cull": {"enabled": True, "timeout": 600, "every": 60, "concurrency": 5, "users": False,
                          "max_age": 0, "remove_named_servers": False}},
}


def merged(defaults, overrides):
    result = copy.deepcopy(defaults)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(result.get(key), dict):
            result[key] = merged(result[key], value)
        else:
            result[key] = value
    return result


written = tljh_config.load(paths.CONFIG_YAML)
problems = tljh_config.problems(written)
if problems:
    raise ValueError("TLJH stand-in: config.yaml is invalid for TLJH: " + "; ".join(problems))
settings = merged(DEFAULTS, written)

c.JupyterHub.hub_port = 15001
c.JupyterHub.cleanup_servers = False
c.JupyterHub.proxy_class = "tljh_standin.proxy.StandInProxy"
c.JupyterHub.spawner_class = StandInSpawner
c.JupyterHub.db_url = f"sqlite:///{paths.STATE}/jupyterhub.sqlite"
c.JupyterHub.cookie_secret_file = f"{paths.STATE}/jupyterhub_cookie_secret"
c.JupyterHub.base_url = settings["base_url"]
c.Spawner.environment = {"PATH": f"{paths.USER}/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}

users = settings["users"]
c.Authenticator.admin_users = set(users["admin"])
c.Authenticator.allowed_users = set(users["allowed"])
c.Authenticator.blocked_users = set(users["banned"])

auth = settings["auth"]
c.JupyterHub.authenticator_class = auth["type"]
for name, traits in auth.items():
    if name == "type":
        continue
    for trait, value in traits.items():
        if value is not None:
            setattr(c[name], trait, value)
if auth["type"] == DEFAULTS["auth"]["type"] and not users["allowed"]:
    c.FirstUseAuthenticator.allow_all = True

if settings["limits"]["memory"] is not None:
    c.Spawner.mem_limit = settings["limits"]["memory"]
if settings["limits"]["cpu"] is not None:
    c.Spawner.cpu_limit = settings["limits"]["cpu"]
c.Spawner.default_url = "/lab" if settings["user_environment"]["default_app"] == "jupyterlab" else "/tree"

cull = settings["services"]["cull"]
if cull["enabled"]:
    command = [sys.executable, "-m", "jupyterhub_idle_culler", f"--timeout={cull['timeout']}",
               f"--cull-every={cull['every']}", f"--concurrency={cull['concurrency']}", f"--max-age={cull['max_age']}"]
    scopes = ["list:users", "read:users:activity", "read:servers", "delete:servers"]
    if cull["users"]:
        command.append("--cull-users")
        scopes.append("admin:users")
    if cull["remove_named_servers"]:
        command.append("--remove-named-servers")
    c.JupyterHub.services = [{"name": "cull-idle", "command": command}]
    c.JupyterHub.load_roles = [{"name": "idle-culler", "scopes": scopes, "services": ["cull-idle"]}]

for extra in sorted(glob.glob(os.path.join(paths.CONFIG_D, "*.py"))):
    load_subconfig(extra)  # noqa: F821 (traitlets provides it to config files)
