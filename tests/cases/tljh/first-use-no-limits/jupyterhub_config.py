# Written by classimage. TLJH loads the files in jupyterhub_config.d after
# config.yaml, for settings config.yaml has no key for.
import html
import json
import os

from tornado import web

# The course's admins. Their accounts are classimage's to make (hub-accounts, from the hashes of the
# passwords the instructor set): no admin's name can ever be signed up or claimed by a first sign-in,
# whether its account exists, was deleted in the admin panel, or was never made.
ADMINS = frozenset(['host'])
# The names TLJH maps one to one onto Unix users (jupyter-NAME; it shortens longer ones with a hash,
# so two hub names could share one Unix user): the course schema's rule for names.
c.Authenticator.username_pattern = '^[a-z0-9][a-z0-9_-]{0,16}\\Z'
NAME_RULE = "a name of at most 17 lower-case letters, digits, - and _, starting with a letter or digit"
RECORD = '/opt/tljh/state/classimage-admins.json'


def _made_by_classimage():
    """The names whose accounts classimage made (its record beside the hub's database). Only those
    become admins: a name a student held before it was listed in hub.admins never does."""
    try:
        with open(RECORD, encoding="utf-8") as handle:
            return frozenset(json.load(handle))
    except (OSError, ValueError, TypeError):
        return frozenset()


import dbm

from firstuseauthenticator import FirstUseAuthenticator


class CourseFirstUseAuthenticator(FirstUseAuthenticator):
    """FirstUseAuthenticator (configured as c.FirstUseAuthenticator by TLJH), except that an
    admin's name is never claimed by a first sign-in (an admin deleted in the admin panel loses
    their password here: the name stays closed), and a name outside the pattern is refused before
    any password is kept for it."""

    async def authenticate(self, handler, data):
        name = self.normalize_username(data["username"])
        if not self.validate_username(name):
            handler.custom_login_error = "Sign in with " + NAME_RULE + "."
            return None
        if name in ADMINS:
            # No await between this look and the parent's: nothing else runs in between.
            with dbm.open(self.dbm_path, "c", 0o600) as passwords:
                if name.encode() not in passwords:
                    return None
        return await super().authenticate(handler, data)


c.JupyterHub.authenticator_class = CourseFirstUseAuthenticator

# Pull the course repository into each student's home and open it whenever their server starts.
c.Spawner.default_url = '/git-pull?repo=https%3A%2F%2Fgitlab.example.edu%3A8443%2Fgeo%2Fdata&targetpath=data&urlpath=lab%2Ftree%2Fdata'

# A server starting is mostly CPU (about 2.5 s each): when a whole class clicks at once they share
# the droplet's cores, and the last ones answer the hub long after JupyterHub's default 30 s (30
# clicks in 10 s on 2 busy cores: 24 of 30 spawns failed "didn't respond in 30 seconds", each
# student shown an error page; docs/design.md, "A class's first minute"). Waiting costs nothing.
c.Spawner.http_timeout = 120

# Traefik checks its API's password (TLJH's random secret, on localhost) at each request the hub
# makes while it waits for a student's route: at TLJH's bcrypt cost 12 (0.26 s of CPU), 2 of 30
# students' spawns failed (docs/design.md, "A class's first minute"); cost 4 takes 0.01 s. The
# file traefik reads keeps its old hash across restarts: this replaces it.
import bcrypt
from tljh.configurer import load_config

API = load_config()["traefik_api"]
API_USER = API["username"] + ":" + bcrypt.hashpw(API["password"].encode(), bcrypt.gensalt(4)).decode()
c.TraefikProxy.extra_dynamic_config = {"http": {"middlewares": {"auth_api": {"basicAuth": {"users": [API_USER]}}}}}

# The provisioning status, for anyone (a health check) to read at /services/classimage-status/:
# states and times only. The hub runs it; TLJH may have listed its own services already.
c.JupyterHub.services.append({'name': 'classimage-status', 'url': 'http://127.0.0.1:15003', 'display': False, 'command': ['/usr/local/sbin/classimage-provision', 'serve-status', '--port', '15003']})

# Until classimage has installed the course's software and made the admins' accounts, the hub says
# the class is being prepared, lets no one claim a name, and starts no student's server. The last
# provisioning steps open the class and restart the hub.
PREPARING = ('Workshop' + " is being prepared: the server is still installing the course's "
             "software. Please come back in a few minutes.")
HUB_OPEN = '/var/lib/classimage/hub-open'


def _wait_until_ready(spawner):
    if not os.path.exists(HUB_OPEN) and not spawner.user.admin:
        raise web.HTTPError(503, PREPARING)


c.Spawner.pre_spawn_hook = _wait_until_ready
if not os.path.exists(HUB_OPEN):
    # JupyterHub puts the announcement into its pages as HTML: the course's name is text.
    c.JupyterHub.template_vars = {"announcement": html.escape(PREPARING)}
    # FirstUseAuthenticator keeps the first password typed for a name in its database: keep every
    # name out of that database (admins too) until the admins' passwords are in place.
    c.FirstUseAuthenticator.create_users = False
    c.Authenticator.admin_users = set()
    c.Authenticator.allowed_users = set()
else:
    c.Authenticator.admin_users = set(ADMINS & _made_by_classimage())
