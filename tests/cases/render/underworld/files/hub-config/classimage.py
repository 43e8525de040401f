# Written by classimage. TLJH loads the files in jupyterhub_config.d after
# config.yaml, for settings config.yaml has no key for.
import html
import json
import os

from tornado import web

# The course's admins. Their accounts are classimage's to make (hub-accounts, from the hashes of the
# passwords the instructor set): no admin's name can ever be signed up or claimed by a first sign-in,
# whether its account exists, was deleted in the admin panel, or was never made.
ADMINS = frozenset(['instructor'])
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


import nativeauthenticator
from jupyterhub.scopes import needs_scope
from nativeauthenticator import NativeAuthenticator
from nativeauthenticator.handlers import AuthorizationAreaHandler, DiscardHandler, LocalBase, SignUpHandler
from nativeauthenticator.orm import UserInfo
from tornado.escape import url_escape

# TLJH does not add NativeAuthenticator's templates; without them the hub's pages have no
# "Authorize Users" or "Change Password" links.
c.JupyterHub.template_paths = [os.path.join(os.path.dirname(nativeauthenticator.__file__), "templates")]


def _refusal(authenticator, name):
    """Why nobody may sign up as `name` (normalized), or None."""
    if name in ADMINS:
        return "The name %s belongs to this course's instructors: choose another." % name
    if not authenticator.validate_username(name):
        return "Choose " + NAME_RULE + "."
    return None


def _not_an_admin(handler, name):
    if handler.authenticator.normalize_username(name) in ADMINS:
        raise web.HTTPError(403, "%s is an admin of this course: nobody approves or discards it here.", name)


class SignUp(SignUpHandler):
    """NativeAuthenticator's signup, refusing admins' names and unsafe names with a message."""

    async def post(self):
        name = self.authenticator.normalize_username(self.get_body_argument("username", "", strip=False))
        problem = _refusal(self.authenticator, name) if self.authenticator.enable_signup else None
        if problem is None:
            return await super().post()
        page = await self.render_template(
            "signup.html", ask_email=self.authenticator.ask_email_on_signup, alert="alert-danger",
            result_message=problem, two_factor_auth=self.authenticator.allow_2fa,
            recaptcha_key=self.authenticator.recaptcha_key, tos=self.authenticator.tos)
        self.finish(page)


# NativeAuthenticator's approval page, its buttons made forms: its links change approvals on a GET,
# for which JupyterHub checks no XSRF token; a form's POST carries one. Admins' rows have none.
APPROVALS = """{% extends "page.html" %}{% block main %}<div class="container"><h1>Authorization area</h1>
<table class="table"><thead><tr><th>Username</th>{% if ask_email %}<th>Email</th>{% endif %}<th>Is authorized?</th>
<th></th><th></th><th></th></tr></thead><tbody>{% for user in users %}{% set path = user.username|urlencode %}
<tr id="{{ user.username }}"{% if user.is_authorized %} class="success"{% endif %}><td>{{ user.username }}</td>
{% if ask_email %}<td>{{ user.email }}</td>{% endif %}<td>{{ "Yes" if user.is_authorized else "No" }}</td>
{% if user.username in admins %}<td>admin</td><td></td><td></td>{% else %}
<td><form method="post" action="{{ base_url }}authorize/{{ path }}"><input type="hidden" name="_xsrf" value="{{ xsrf }}">
<input type="hidden" name="authorized" value="{{ 'no' if user.is_authorized else 'yes' }}"><button type="submit"
class="btn btn-jupyter">{{ "Unauthorize" if user.is_authorized else "Authorize" }}</button></form></td>
<td><a class="btn btn-jupyter" href="{{ base_url }}change-password/{{ path }}" role="button">Change password</a></td>
<td>{% if not user.is_authorized %}<form method="post" action="{{ base_url }}discard/{{ path }}">
<input type="hidden" name="_xsrf" value="{{ xsrf }}"><button type="submit" class="btn btn-jupyter">Discard</button>
</form>{% endif %}</td>{% endif %}</tr>{% endfor %}</tbody></table></div>{% endblock %}"""


class Approvals(AuthorizationAreaHandler):
    @needs_scope("admin:users")
    async def get(self):
        template = self.settings["jinja2_env"].from_string(APPROVALS)
        namespace = dict(self.template_namespace, users=self.db.query(UserInfo).all(), admins=ADMINS,
                         ask_email=self.authenticator.ask_email_on_signup)
        self.finish(await template.render_async(**namespace))


class Approve(LocalBase):
    """POST authorized=yes|no: approve or un-approve a student (a GET changes nothing: 405)."""

    @needs_scope("admin:users")
    async def post(self, name):
        _not_an_admin(self, name)
        wanted = self.get_body_argument("authorized")
        if wanted not in ("yes", "no"):
            raise web.HTTPError(400, "authorized must be yes or no")
        row = UserInfo.find(self.db, name)
        if row is None:
            raise web.HTTPError(404, "no signup named %s", name)
        row.is_authorized = wanted == "yes"
        self.db.commit()
        self.redirect(self.hub.base_url + "authorize#" + url_escape(name, plus=False))


class Discard(DiscardHandler):
    """POST: NativeAuthenticator's discard of an unapproved signup (a GET changes nothing: 405)."""

    async def get(self, name):
        raise web.HTTPError(405, "discard with the button on the Authorize Users page")

    @needs_scope("admin:users")
    async def post(self, name):
        _not_an_admin(self, name)
        await DiscardHandler.get(self, name)


class CourseNativeAuthenticator(NativeAuthenticator):
    """NativeAuthenticator (configured as c.NativeAuthenticator by TLJH), except that no admin's
    name and no name outside the pattern is ever signed up, and approving, un-approving and
    discarding are POSTs that never touch an admin."""

    def create_user(self, username, password, **kwargs):
        if _refusal(self, self.normalize_username(username)):
            return None
        return super().create_user(username, password, **kwargs)

    def get_handlers(self, app):
        ours = {"/signup": SignUp, "/authorize": Approvals, "/authorize/([^/]*)": Approve,
                "/discard/([^/]*)": Discard}
        return [(route, ours.get(route, handler)) for route, handler in super().get_handlers(app)]


c.JupyterHub.authenticator_class = CourseNativeAuthenticator
c.Authenticator.admin_users = set(ADMINS & _made_by_classimage())

# Pull the course repository into each student's home and open it whenever their server starts.
c.Spawner.default_url = '/git-pull?repo=https%3A%2F%2Fgithub.com%2Funderworld-geodynamics-cloud%2Funderworld-cloud-droplet&targetpath=underworld-cloud-droplet&urlpath=lab%2Ftree%2Funderworld-cloud-droplet%2FStartHere.ipynb'

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
PREPARING = ('Underworld Geodynamics' + " is being prepared: the server is still installing the course's "
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
