# Written by classimage. TLJH loads the files in jupyterhub_config.d after config.yaml, for settings
# config.yaml has no key for.
import html
import os
import sys

from tornado import web

# The sign-in guards, the same module as a cluster's hub runs (classimage/droplet/hubguards.py): no admin's
# name can ever be signed up or claimed by a first sign-in, approvals are forms, only the admins whose
# accounts classimage made are admins, and names are the course schema's (TLJH maps longer ones onto
# shared Unix users).
sys.path.insert(0, '/usr/local/lib/classimage')
try:
    import hubguards
finally:
    sys.path.remove('/usr/local/lib/classimage')
hubguards.configure(c, 'first-use', ['host'], '/opt/tljh/state/classimage-admins.json', '^[a-z0-9][a-z0-9_-]{0,16}\\Z')

# Pull the course repository into each student's home and open it whenever their server starts.
c.Spawner.default_url = '/git-pull?repo=https%3A%2F%2Fgitlab.example.edu%3A8443%2Fgeo%2Fdata&targetpath=data&urlpath=lab%2Ftree%2Fdata'

# A server starting is mostly CPU (about 2.5 s each): when a whole class clicks at once they share
# the droplet's cores, and the last ones answer the hub long after JupyterHub's default 30 s (30
# clicks in 10 s on 2 busy cores: 24 of 30 spawns failed "didn't respond in 30 seconds", each
# student shown an error page; with 120 s, once 1 of 30 in CI; docs/design.md, "A class's first
# minute"). Waiting costs nothing: 300 s, when a student would give up anyway.
c.Spawner.http_timeout = 300

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
