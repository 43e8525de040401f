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
hubguards.configure(c, 'native', ['alice'], '/opt/tljh/state/classimage-admins.json', '^[a-z0-9][a-z0-9_-]{0,16}\\Z')

# Students' servers reach the internet the way the server does (the course's proxy and CAs).
c.Spawner.environment.update({'http_proxy': 'http://proxy.example.edu:3128', 'https_proxy': 'http://proxy.example.edu:3128', 'HTTP_PROXY': 'http://proxy.example.edu:3128', 'HTTPS_PROXY': 'http://proxy.example.edu:3128', 'no_proxy': 'localhost,127.0.0.1,::1,169.254.169.254', 'NO_PROXY': 'localhost,127.0.0.1,::1,169.254.169.254', 'SSL_CERT_FILE': '/etc/ssl/certs/ca-certificates.crt', 'REQUESTS_CA_BUNDLE': '/etc/ssl/certs/ca-certificates.crt', 'PIP_CERT': '/etc/ssl/certs/ca-certificates.crt', 'CONDA_SSL_VERIFY': '/etc/ssl/certs/ca-certificates.crt'})

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
PREPARING = ('Campus' + " is being prepared: the server is still installing the course's "
             "software. Please come back in a few minutes.")
HUB_OPEN = '/var/lib/classimage/hub-open'


def _wait_until_ready(spawner):
    if not os.path.exists(HUB_OPEN) and not spawner.user.admin:
        raise web.HTTPError(503, PREPARING)


c.Spawner.pre_spawn_hook = _wait_until_ready
if not os.path.exists(HUB_OPEN):
    # JupyterHub puts the announcement into its pages as HTML: the course's name is text.
    c.JupyterHub.template_vars = {"announcement": html.escape(PREPARING)}
    c.NativeAuthenticator.enable_signup = False
