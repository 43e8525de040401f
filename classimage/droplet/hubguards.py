"""The sign-in guards of both hubs classimage configures: a droplet's (its jupyterhub_config.d file
imports this from /usr/local/lib/classimage) and a cluster's (hub.extraFiles mounts it, hub.extraConfig
imports it). Shipped as it is, run by the hub's Python; the package never imports it.

No admin's name is ever signed up or claimed by a first sign-in, whatever the hub's database holds;
a name outside the course's rule is refused with a message; approving, un-approving and discarding
are POSTs (JupyterHub checks their XSRF token) that set a state and never touch an admin; only
admins whose accounts classimage made (its record) are admins, and the hub's API makes no other."""

from __future__ import annotations

import dbm
import json
import os
import secrets

import bcrypt
import nativeauthenticator
from firstuseauthenticator import FirstUseAuthenticator
from jupyterhub import apihandlers
from jupyterhub.apihandlers.shares import ServerShareAPIHandler, ServerShareCodeAPIHandler
from jupyterhub.apihandlers.users import UserAPIHandler, UserListAPIHandler, UserTokenListAPIHandler
from jupyterhub.auth import Authenticator
from jupyterhub.handlers import BaseHandler
from jupyterhub.scopes import needs_scope
from nativeauthenticator.handlers import (
    AuthorizationAreaHandler,
    ChangePasswordAdminHandler,
    DiscardHandler,
    LocalBase,
    SignUpHandler,
)
from nativeauthenticator.handlers import LoginHandler as NativeLogin
from nativeauthenticator.orm import UserInfo
from tornado import web
from tornado.escape import url_escape
from traitlets import Set, Unicode

NATIVE, FIRST_USE = "native", "first-use"
NAME_RULE = "a name of at most 17 lower-case letters, digits, - and _, starting with a letter or digit"


def made_by_classimage(record: str) -> frozenset:
    """The names whose accounts classimage made (hub-accounts' record)."""
    try:
        with open(record, encoding="utf-8") as handle:
            return frozenset(json.load(handle))
    except (OSError, ValueError, TypeError):
        return frozenset()


def configure(c, method: str, admins, record: str, username_pattern: str) -> None:
    """The guards on the hub's config `c` (the authenticators' own sections still apply)."""
    c.CourseNames.course_admins = set(admins)
    c.Authenticator.username_pattern = username_pattern
    c.Authenticator.admin_users = set(admins) & made_by_classimage(record)
    if method == NATIVE:
        c.JupyterHub.authenticator_class = CourseNativeAuthenticator
        # Neither TLJH nor the chart adds them: the hub's pages would have no "Authorize Users" link.
        c.JupyterHub.template_paths = [os.path.join(os.path.dirname(nativeauthenticator.__file__), "templates")]
    else:
        c.JupyterHub.authenticator_class = CourseFirstUseAuthenticator


class CourseNames(Authenticator):
    """What both authenticators refuse."""

    course_admins = Set(Unicode(), config=True, help="The course's admins: nobody signs up as or first-uses them.")

    def refusal(self, name: str) -> str | None:
        """Why nobody may take `name` (normalized), or None."""
        if name in self.course_admins:
            return "The name %s belongs to this course's instructors: choose another." % name
        if not self.validate_username(name):
            return "Choose " + NAME_RULE + "."
        return None


def _not_an_admin(handler, name: str, what: str = "nobody approves, discards or resets it here") -> None:
    """Refuse `what` for an admin's name: the spec's to change (hub.admins), or nobody's."""
    if handler.authenticator.normalize_username(name) in handler.authenticator.course_admins:
        raise web.HTTPError(403, "%s is an admin of this course: %s.", name, what)


class SignUp(SignUpHandler):
    """NativeAuthenticator's signup, refusing admins' names and unsafe names with a message."""

    async def post(self):
        name = self.authenticator.normalize_username(self.get_body_argument("username", "", strip=False))
        problem = self.authenticator.refusal(name) if self.authenticator.enable_signup else None
        if problem is None:
            return await super().post()
        page = await self.render_template(
            "signup.html",
            ask_email=self.authenticator.ask_email_on_signup,
            alert="alert-danger",
            result_message=problem,
            two_factor_auth=self.authenticator.allow_2fa,
            recaptcha_key=self.authenticator.recaptcha_key,
            tos=self.authenticator.tos,
        )
        self.finish(page)


# NativeAuthenticator's approval page, its buttons made forms: its links change approvals on a GET,
# for which JupyterHub checks no XSRF token; a form's POST carries one. Admins' rows have none.
APPROVALS = """{% extends "page.html" %}{% block main %}<div class="container"><h1>Authorization area</h1>
<table class="table"><thead><tr><th>Username</th>{% if ask_email %}<th>Email</th>{% endif %}<th>Is authorized?</th>
<th></th><th></th><th></th></tr></thead><tbody>{% for user in users %}{% set path = user.username|urlencode %}
<tr id="{{ user.username }}"{% if user.is_authorized %} class="success"{% endif %}><td>{{ user.username }}</td>
{% if ask_email %}<td>{{ user.email }}</td>{% endif %}<td>{{ "Yes" if user.is_authorized else "No" }}</td>
{% if user.username in admins %}<td>admin</td><td></td><td></td>{% else %}
<td><form method="post" action="{{ base_url }}authorize/{{ path }}">
<input type="hidden" name="_xsrf" value="{{ xsrf }}">
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
        namespace = dict(
            self.template_namespace,
            users=self.db.query(UserInfo).all(),
            admins=self.authenticator.course_admins,
            ask_email=self.authenticator.ask_email_on_signup,
        )
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


class SetPassword(ChangePasswordAdminHandler):
    """An admin sets a student's password (one who lost theirs), never an admin's: an admin changes
    their own with the old one, or the instructor sets it with `classimage admin-password`. Any admin,
    or a page of a student's server the instructor opens (same origin as the hub), could otherwise
    take the instructor's account."""

    async def get(self, name):
        _not_an_admin(self, name)
        return await super().get(name)

    async def post(self, name):
        _not_an_admin(self, name)
        return await super().post(name)


def _no_new_admin(handler, names) -> None:
    """hub.admins is the whole list of admins: the hub's API makes no other name one (a TA, or a page
    of a student's server the instructor opens, would otherwise make its student an admin, and TLJH
    gives admins sudo at their next server start)."""
    admins = handler.authenticator.course_admins
    strangers = sorted({handler.authenticator.normalize_username(name) for name in names} - admins)
    if strangers:
        raise web.HTTPError(
            403,
            "only the course's hub.admins are admins: %s is not one (add it to the spec and deploy)",
            ", ".join(strangers),
        )


def _body(handler) -> dict:
    data = handler.get_json_body()
    return data if isinstance(data, dict) else {}


class Users(UserListAPIHandler):
    """POST /hub/api/users: JupyterHub's, making no admin outside hub.admins."""

    async def post(self):
        data = _body(self)
        if data.get("admin"):
            _no_new_admin(self, data.get("usernames") or [])
        return await super().post()


class OneUser(UserAPIHandler):
    """/hub/api/users/NAME: JupyterHub's, making no admin outside hub.admins, and no admin's account
    deleted, demoted or renamed (a TA, or a page the instructor opens, would lock the instructor out
    until the next deploy)."""

    async def post(self, user_name):
        if _body(self).get("admin"):
            _no_new_admin(self, [user_name])
        return await super().post(user_name)

    async def patch(self, user_name):
        data = _body(self)
        if "roles" in data or "groups" in data:  # the hub's config says them (a TA took the instructor's away)
            raise web.HTTPError(403, "roles and groups come from the hub's settings, not from its API")
        if data.get("admin"):
            _no_new_admin(self, [user_name])
        elif "admin" in data:
            _not_an_admin(self, user_name, "no admin is demoted here")
        if "name" in data:
            names = {self.authenticator.normalize_username(n) for n in (user_name, str(data["name"]))}
            if len(names) > 1 and names & self.authenticator.course_admins:
                raise web.HTTPError(403, "an admin's name is the spec's: no account is renamed into or out of it")
        return await super().patch(user_name)

    async def delete(self, user_name):
        _not_an_admin(self, user_name, "no admin's account is deleted here")
        return await super().delete(user_name)


class Tokens(UserTokenListAPIHandler):
    """POST /hub/api/users/NAME/tokens: no token in an admin's name (an admin's power, kept by whoever
    holds it after every password change: a page the instructor opens would keep one)."""

    async def post(self, user_name):
        _not_an_admin(self, user_name, "no token is made in an admin's name")
        return await super().post(user_name)


class Shares(ServerShareAPIHandler):
    """/hub/api/shares/OWNER/SERVER: no admin's server is shared (TLJH gives admins sudo in it)."""

    async def post(self, user_name, server_name=None):
        _not_an_admin(self, user_name, "an admin's server is not shared")
        return await super().post(user_name, server_name)

    async def patch(self, user_name, server_name=None):
        _not_an_admin(self, user_name, "an admin's server is not shared")
        return await super().patch(user_name, server_name)


class ShareCodes(ServerShareCodeAPIHandler):
    """/hub/api/share-codes/OWNER/SERVER: no code that shares an admin's server."""

    async def post(self, user_name, server_name=None):
        _not_an_admin(self, user_name, "an admin's server is not shared")
        return await super().post(user_name, server_name)


# Before JupyterHub's own: the hub routes a request to the first pattern that matches, and puts an
# authenticator's routes first. The patterns are JupyterHub 5's own for these handlers.
API_GUARDS = [
    (r"/api/users", Users),
    (r"/api/users/([^/]+)", OneUser),
    (r"/api/users/([^/]+)/tokens", Tokens),
    (r"/api/shares/([^/]+)", Shares),
    (r"/api/shares/([^/]+)/([^/]*)", Shares),
    (r"/api/share-codes/([^/]+)", ShareCodes),
    (r"/api/share-codes/([^/]+)/([^/]*)", ShareCodes),
]


def _with_guards(authenticator: str, handlers, ours: dict) -> list:
    """An authenticator's `handlers` with `ours` in place of its own for the same routes, after the
    API's guards; an authenticator whose routes changed is refused rather than left unguarded."""
    theirs = {route for route, *_ in handlers}
    if not theirs >= set(ours):
        raise RuntimeError("%s's routes changed: classimage's guards do not fit it" % authenticator)
    _guarded_routes_are_the_hubs()
    return API_GUARDS + [(route, ours.get(route, handler)) for route, handler in handlers]


def _guarded_routes_are_the_hubs() -> None:
    """Each guarded pattern is still the one JupyterHub routes to the handler it guards."""
    theirs = {route: handler for route, handler, *_ in apihandlers.default_handlers}
    for route, guard in API_GUARDS:
        if theirs.get(route) not in guard.__mro__[1:]:
            raise RuntimeError("JupyterHub's route %s changed: classimage's guards do not fit it" % route)


# FirstUseAuthenticator's own page sets the signed-in user's password with no old one: a page of a
# classmate's server (the hub's origin) opened while signed in took the account, an admin's included.
OWN_PASSWORD = """{% extends "page.html" %}{% block main %}<div class="container"><form method="post">
<input type="hidden" name="_xsrf" value="{{ xsrf }}"><h2>Change Password</h2>
<div class="form-group"><label for="current">Current password:</label>
<input type="password" class="form-control" name="current_password" id="current" autocomplete="current-password"></div>
<div class="form-group"><label for="new">New password:</label>
<input type="password" class="form-control" name="password" id="new" autocomplete="new-password"></div>
<input type="submit" class="btn btn-jupyter" value="Change Password"></form>
{% if message %}<div class="alert alert-{{ alert }}" role="alert">{{ message }}</div>{% endif %}</div>{% endblock %}"""


class ChangeOwnPassword(BaseHandler):
    """/hub/auth/change-password under first use: the signed-in user's password, given the current one."""

    async def page(self, message: str = "", alert: str = "danger") -> None:
        template = self.settings["jinja2_env"].from_string(OWN_PASSWORD)
        self.finish(await template.render_async(**dict(self.template_namespace, message=message, alert=alert)))

    @web.authenticated
    async def get(self):
        await self.page()

    @web.authenticated
    async def post(self):
        name = self.current_user.name
        current = self.get_body_argument("current_password", "", strip=False)
        with dbm.open(self.authenticator.dbm_path, "c", 0o600) as passwords:
            stored = passwords.get(name.encode())
        if stored is None or not bcrypt.checkpw(current.encode(), stored):
            return await self.page("Your current password is not that one: nothing was changed.")
        said = self.authenticator.reset_password(name, self.get_body_argument("password", "", strip=False))
        await self.page(said, "success" if "success" in said else "danger")


# The browsers a name has signed in from (signed by the hub's cookie secret, unreadable by a page's
# scripts; each with an id of its own): wrong passwords from elsewhere never lock that name out there.
DEVICE_COOKIE, DEVICE_DAYS, DEVICE_NAMES = "classimage-signed-in-here", 365, 20


def _browsers(handler) -> list[tuple[str, list[str]]]:
    """(id, names, most recent last) of every valid copy of the cookie this request carries: a page on
    the hub's origin can add copies of its own (another path or domain), and tornado reads only one."""
    found = []
    secret = handler.settings["cookie_secret"]
    for header in handler.request.headers.get_list("Cookie"):
        for part in header.split(";"):
            key, _, value = part.strip().partition("=")
            if key != DEVICE_COOKIE:
                continue
            decoded = web.decode_signed_value(secret, DEVICE_COOKIE, value.strip('"'), max_age_days=DEVICE_DAYS)
            if decoded:
                browser, *names = decoded.decode(errors="replace").split()
                found.append((browser, names))
    return found


class Login(NativeLogin):
    """NativeAuthenticator's sign-in, whose "not authorized yet" answer checked the password of a
    pending account outside the lockout (guessed without limit, then used once approved): here it is
    said only when the authenticator's own counted check found it."""

    async def post(self):
        data = {argument: self.get_argument(argument, strip=False) for argument in self.request.arguments}
        user = await self.login_user(data)
        if user:
            self._jupyterhub_user = user
            return self.redirect(self.get_next_url(user))
        name = data.get("username", "")
        error = "Invalid username or password."
        if getattr(self, "classimage_pending", False):
            error = "User %s has not been authorized by an administrator yet." % name
        self.finish(await self._render(login_error=error, username=name))


class CourseNativeAuthenticator(CourseNames, nativeauthenticator.NativeAuthenticator):
    """Wrong passwords lock a name out everywhere but in the browsers it has signed in from, each of
    which counts its own. By name alone (NativeAuthenticator's way) anyone kept the instructor out by
    sending wrong passwords; by client address, a student's server, which reaches the hub directly,
    chose an address with each guess and guessed without limit."""

    async def authenticate(self, handler, data):
        name = self.normalize_username(data["username"])
        found = _browsers(handler) if handler is not None else []
        browser = next((b for b, names in found if name in names), None)
        tries = "%s here %s" % (name, browser) if browser else name
        if self.allowed_failed_logins and self.is_blocked(tries):
            return None
        user = self.get_user(name)
        valid = (
            user is not None
            and user.is_valid_password(data["password"])
            and (not user.has_2fa or user.is_valid_token(data.get("2fa")))
        )
        if valid and user.is_authorized:
            self.successful_login(tries)
            if handler is not None:
                browser, names = next(((b, n) for b, n in found if b == browser), found[0] if found else (None, []))
                names = ([n for n in names if n != name] + [name])[-DEVICE_NAMES:]
                value = " ".join([browser or secrets.token_hex(8), *names])
                handler._set_cookie(DEVICE_COOKIE, value, path=handler.hub.base_url, expires_days=DEVICE_DAYS)
            return name
        if valid and handler is not None:
            handler.classimage_pending = True  # the right password of a signup not approved yet
        self.add_login_attempt(tries)
        return None

    def create_user(self, username, password, **kwargs):
        if self.refusal(self.normalize_username(username)):
            return None
        return super().create_user(username, password, **kwargs)

    def get_handlers(self, app):
        ours = {
            "/signup": SignUp,
            "/authorize": Approvals,
            "/authorize/([^/]*)": Approve,
            "/discard/([^/]*)": Discard,
            "/change-password/([^/]+)": SetPassword,
            "/login": Login,
        }
        return _with_guards("NativeAuthenticator", super().get_handlers(app), ours)


class CourseFirstUseAuthenticator(CourseNames, FirstUseAuthenticator):
    """An admin deleted in the admin panel loses their password here: the name stays closed."""

    def get_handlers(self, app):
        return _with_guards(
            "FirstUseAuthenticator", super().get_handlers(app), {"/auth/change-password": ChangeOwnPassword}
        )

    async def authenticate(self, handler, data):
        name = self.normalize_username(data["username"])
        if not self.validate_username(name):
            if handler is not None:
                handler.custom_login_error = "Sign in with " + NAME_RULE + "."
            return None
        if name in self.course_admins:
            # No await between this look and the parent's: nothing else runs in between.
            with dbm.open(self.dbm_path, "c", 0o600) as passwords:
                if name.encode() not in passwords:
                    return None
        return await super().authenticate(handler, data)
