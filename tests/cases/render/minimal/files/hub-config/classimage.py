# Written by classimage. TLJH loads the files in jupyterhub_config.d after config.yaml, for settings
# config.yaml has no key for.
import html
import os
import sys

from tornado import web

# The sign-in guards, the same module as a cluster's hub runs (classimage/hubguards.py): no admin's
# name can ever be signed up or claimed by a first sign-in, approvals are forms, only the admins whose
# accounts classimage made are admins, and names are the course schema's (TLJH maps longer ones onto
# shared Unix users).
sys.path.insert(0, '/usr/local/lib/classimage')
try:
    import hubguards
finally:
    sys.path.remove('/usr/local/lib/classimage')
hubguards.configure(c, 'native', ['instructor'], '/opt/tljh/state/classimage-admins.json', '^[a-z0-9][a-z0-9_-]{0,16}\\Z')

# The provisioning status, for anyone (a health check) to read at /services/classimage-status/:
# states and times only. The hub runs it; TLJH may have listed its own services already.
c.JupyterHub.services.append({'name': 'classimage-status', 'url': 'http://127.0.0.1:15003', 'display': False, 'command': ['/usr/local/sbin/classimage-provision', 'serve-status', '--port', '15003']})

# Until classimage has installed the course's software and made the admins' accounts, the hub says
# the class is being prepared, lets no one claim a name, and starts no student's server. The last
# provisioning steps open the class and restart the hub.
PREPARING = ('Introduction to Data Analysis' + " is being prepared: the server is still installing the course's "
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
