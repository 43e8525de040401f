"""A student's or instructor's browser, for tests against a hub through its proxy: cookies,
JupyterHub 5's xsrf tokens, the NativeAuthenticator forms, the REST API, what nbgitpuller's page does
in JavaScript (an EventSource on its API, with the values the page carries), and a kernel's
websocket (execute code, read what it prints)."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import html
import http.client
import http.cookiejar
import json
import re
import socket
import sqlite3
import ssl
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from html.parser import HTMLParser
from pathlib import Path


ATTACKER = "https://attacker.example"  # another site, whose page a signed-in instructor opens


class Page:
    def __init__(self, code: int | None, body: str, headers, url: str):
        self.code, self.body, self.headers, self.url = code, body, headers, url

    def __repr__(self) -> str:
        return f"<{self.code} {self.url}: {self.body[:300]!r}>"


class _ToAddress(http.client.HTTPSConnection):
    """HTTPS to a name (its SNI, the name its certificate must carry) at a given address: what a
    browser does once the name's DNS record points there."""

    def __init__(self, host: str, *, address: str, **kwargs):
        super().__init__(host, **kwargs)
        self.address = address

    def connect(self) -> None:
        sock = socket.create_connection((self.address, self.port), self.timeout)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)  # type: ignore[attr-defined]


class _HTTPSToAddress(urllib.request.HTTPSHandler):
    def __init__(self, context: ssl.SSLContext, address: str):
        super().__init__(context=context)
        self.context, self.address = context, address

    def https_open(self, req):
        return self.do_open(functools.partial(_ToAddress, address=self.address), req, context=self.context)


class Browser:
    def __init__(self, base: str, headers: dict | None = None, *, trust: str | None = None,
                 address: str | None = None):
        """`base`: the hub's URL; `headers`: sent with every request (a proxy's X-Forwarded-For, say).
        For https://NAME, `trust`: the root (PEM) its certificate must chain to, and `address`: where
        NAME resolves (the DNS record the test stands in for)."""
        self.base = base.rstrip("/")
        self.headers = dict(headers or {})
        self.address = address
        self.context = ssl.create_default_context(cadata=trust) if trust else None
        self.jar = http.cookiejar.CookieJar()
        handlers: list = [urllib.request.ProxyHandler({}), urllib.request.HTTPCookieProcessor(self.jar)]
        if self.context is not None and address is not None:
            handlers.append(_HTTPSToAddress(self.context, address))
        self.opener = urllib.request.build_opener(*handlers)

    # -- plain HTTP ------------------------------------------------------------------------------

    def request(self, method: str, path: str, *, form: dict | None = None, body: bytes | None = None,
                headers: dict | None = None, timeout: float = 30) -> Page:
        url = path if path.startswith("http") else self.base + path
        data = body
        headers = {**self.headers, **(headers or {})}
        if form is not None:
            form = dict(form)
            token = self.xsrf(urllib.parse.urlsplit(url).path)
            if token:
                form.setdefault("_xsrf", token)
            data = urllib.parse.urlencode(form).encode()
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        request = urllib.request.Request(url, data=data, method=method, headers=headers)
        try:
            with self.opener.open(request, timeout=timeout) as response:
                return Page(response.status, response.read().decode(errors="replace"), response.headers,
                            response.geturl())
        except urllib.error.HTTPError as error:
            return Page(error.code, error.read().decode(errors="replace"), error.headers, error.geturl())
        except urllib.error.URLError as error:
            return Page(None, str(error.reason), {}, url)
        except ConnectionError as error:  # a server starting or stopping: no answer
            return Page(None, str(error), {}, url)

    def get(self, path: str, **kwargs) -> Page:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, form: dict, **kwargs) -> Page:
        return self.request("POST", path, form=form, **kwargs)

    def xsrf(self, path: str) -> str | None:
        """The _xsrf cookie whose path is the longest prefix of `path` (JupyterHub 5 sets one for
        /hub/ and one for each /user/NAME/)."""
        best = None
        for cookie in self.jar:
            if cookie.name == "_xsrf" and path.startswith(cookie.path) and (
                    best is None or len(cookie.path) > len(best.path)):
                best = cookie
        return best.value if best else None

    def api(self, method: str, path: str, data: dict | None = None, timeout: float = 30) -> tuple[int | None, object]:
        headers = {"Accept": "application/json"}
        token = self.xsrf(path)
        if token:
            headers["X-XSRFToken"] = token
        body = None
        if data is not None:
            body = json.dumps(data).encode()
            headers["Content-Type"] = "application/json"
        page = self.request(method, path, body=body, headers=headers, timeout=timeout)
        try:
            return page.code, json.loads(page.body) if page.body else None
        except ValueError:
            return page.code, page.body

    # -- the hub ---------------------------------------------------------------------------------

    def sign_up(self, name: str, password: str) -> Page:
        self.get("/hub/signup")
        return self.post("/hub/signup", {"username": name, "signup_password": password,
                                         "signup_password_confirmation": password})

    def sign_in(self, name: str, password: str) -> Page:
        self.get("/hub/login")
        return self.post("/hub/login", {"username": name, "password": password})

    def is_signed_in(self) -> bool:
        home = self.get("/hub/home")
        return home.code == 200 and "/hub/login" not in home.url

    def set_approval(self, name: str, approved: bool = True) -> Page:
        """The instructor's "Authorize" / "Unauthorize" button (a form, with the page's _xsrf)."""
        self.get("/hub/authorize")
        return self.post(f"/hub/authorize/{urllib.parse.quote(name, safe='')}",
                         {"authorized": "yes" if approved else "no"})

    def discard(self, name: str) -> Page:
        """The instructor's "Discard" button (a form, with the page's _xsrf)."""
        self.get("/hub/authorize")
        return self.post(f"/hub/discard/{urllib.parse.quote(name, safe='')}", {})

    def cross_site(self, method: str, path: str, form: dict | None = None) -> Page:
        """What a page on another site makes this browser send to the hub: a top-level navigation
        (a link, a redirect, an image's URL, or a form the page submits) that carries this
        browser's cookies, as browsers send them on top-level navigations, but no valid _xsrf
        value, which another site can neither read nor compute."""
        headers = {"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "navigate", "Sec-Fetch-Dest": "document",
                   "Sec-Fetch-User": "?1", "Referer": ATTACKER + "/page.html"}
        body = None
        if form is not None:
            headers.update({"Origin": ATTACKER, "Content-Type": "application/x-www-form-urlencoded"})
            body = urllib.parse.urlencode(form).encode()
        return self.request(method, path, body=body, headers=headers)

    def start_server(self, name: str, timeout: float = 120) -> dict:
        self.get("/hub/home")  # sets the hub's _xsrf cookie
        code, body = self.api("POST", f"/hub/api/users/{name}/server")
        assert code in (201, 202, 400), (code, body)  # 400: already running
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            code, model = self.api("GET", f"/hub/api/users/{name}")
            server = (model or {}).get("servers", {}).get("", {}) if code == 200 else {}
            if server.get("ready"):
                self.get(f"/user/{name}/api/status")  # visiting the server sets its own _xsrf cookie
                self.get(f"/user/{name}/lab")
                return server
            if code == 200 and not server.get("pending") and not server:
                raise AssertionError(f"the server of {name} stopped: {model}")
            time.sleep(1)
        raise AssertionError(f"the server of {name} was not ready within {timeout:.0f}s")

    # -- nbgitpuller -----------------------------------------------------------------------------

    def follow_launch_link(self, link: str, timeout: float = 120) -> tuple[Page, list[dict]]:
        """Open a launch link, then do what nbgitpuller's page does in JavaScript: call its API
        (an event stream) with the values the page carries, until the pull finishes or fails."""
        page = self.get(link)
        assert page.code == 200 and "/git-pull" in page.url, page
        data = body_data(page.body)
        query = {"_xsrf": data["xsrf"], "repo": data["repo"], "targetpath": data["targetpath"]}
        if data.get("depth"):
            query["depth"] = data["depth"]
        if data.get("branch"):
            query["branch"] = data["branch"]
        stream = self.get(f"{data['base-url']}git-pull/api?{urllib.parse.urlencode(query)}", timeout=timeout)
        events = [json.loads(line[len("data:"):]) for line in stream.body.splitlines() if line.startswith("data:")]
        return page, events

    # -- a kernel --------------------------------------------------------------------------------

    def execute(self, name: str, code: str, timeout: float = 60) -> str:
        """Start a kernel on NAME's server, run `code`, return what it printed (or its error)."""
        status, kernel = self.api("POST", f"/user/{name}/api/kernels", {"name": "python3"})
        assert status == 201, (status, kernel)
        try:
            return asyncio.run(self._execute(name, kernel["id"], code, timeout))
        finally:
            self.api("DELETE", f"/user/{name}/api/kernels/{kernel['id']}")

    async def _execute(self, name: str, kernel: str, code: str, timeout: float) -> str:
        connection = await self.kernel_channel(name, kernel, timeout)
        try:
            return await run_cell(connection, name, code, timeout)
        finally:
            connection.close()

    async def kernel_channel(self, name: str, kernel: str, timeout: float = 60):
        """The websocket a notebook holds to its kernel (tornado's client), open until closed."""
        from tornado.httpclient import HTTPRequest
        from tornado.netutil import DefaultLoopResolver, OverrideResolver
        from tornado.websocket import websocket_connect

        url = self.base.replace("http", "ws", 1) + f"/user/{name}/api/kernels/{kernel}/channels"
        cookies = "; ".join(f"{c.name}={c.value}" for c in self.jar)
        request = HTTPRequest(url, headers={"Cookie": cookies, "X-XSRFToken": self.xsrf(f"/user/{name}/") or ""},
                              ssl_options=self.context)
        resolver = None
        if self.address is not None:
            host = urllib.parse.urlsplit(self.base).hostname
            resolver = OverrideResolver(resolver=DefaultLoopResolver(), mapping={host: self.address})
        return await asyncio.wait_for(websocket_connect(request, resolver=resolver), timeout)


async def run_cell(connection, name: str, code: str, timeout: float = 60) -> str:
    """Run `code` through a kernel's open websocket; what it printed (or its error). A websocket
    the server closed reads as None: the cell's output so far."""
    request = execute_request(code, name, uuid.uuid4().hex)
    await connection.write_message(json.dumps(request))
    printed = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        raw = await asyncio.wait_for(connection.read_message(), deadline - time.monotonic())
        if raw is None:
            break
        said = kernel_said(json.loads(raw), request["header"]["msg_id"])
        if said is None:
            continue
        if said[0] == "idle":
            break
        printed.append(said[1])
    return "".join(printed)


def execute_request(code: str, username: str, session: str) -> dict:
    """A kernel message (protocol 5.3) asking it to run `code`, as a notebook's cell does."""
    return {"header": {"msg_id": uuid.uuid4().hex, "username": username, "session": session,
                       "msg_type": "execute_request", "version": "5.3", "date": ""},
            "parent_header": {}, "metadata": {}, "channel": "shell", "buffers": [],
            "content": {"code": code, "silent": False, "store_history": False, "user_expressions": {},
                        "allow_stdin": False, "stop_on_error": True}}


def kernel_said(message: dict, request_id: str) -> tuple[str, str] | None:
    """What a kernel's message in answer to the request `request_id` says: ("stream", text printed),
    ("error", "Name: value"), ("idle", "") when the cell is done; None for anything else."""
    if message.get("parent_header", {}).get("msg_id") != request_id:
        return None
    kind, content = message["msg_type"], message["content"]
    if kind == "stream":
        return "stream", content["text"]
    if kind == "error":
        return "error", f"{content['ename']}: {content['evalue']}"
    if kind == "status" and content["execution_state"] == "idle":
        return "idle", ""
    return None


class _BodyData(HTMLParser):
    def __init__(self):
        super().__init__()
        self.data: dict[str, str] = {}

    def handle_starttag(self, tag, attrs):
        if tag == "body":  # URL-encoded, as nbgitpuller's page script reads them (decodeURIComponent)
            self.data = {name[len("data-"):]: urllib.parse.unquote(value) for name, value in attrs
                         if name.startswith("data-")}


def body_data(page: str) -> dict[str, str]:
    parser = _BodyData()
    parser.feed(page)
    return parser.data


def wait_for(check, timeout: float, what: str, interval: float = 1):
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout:.0f}s")
        time.sleep(interval)


def signed_in(base: str, name: str, password: str) -> Browser:
    """A new browser that signed in as `name` (or tried to)."""
    browser = Browser(base)
    browser.sign_in(name, password)
    return browser


def approvals(database: Path) -> dict[str, bool]:
    """NativeAuthenticator's table in a hub's SQLite database, read as it is: {name: approved}."""
    with contextlib.closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True)) as db:
        return {name: bool(approved) for name, approved in db.execute("SELECT username, is_authorized FROM users_info")}


def text_of(page: Page) -> str:
    """The page's text, as a reader sees it: no tags, entities read, spaces collapsed."""
    return html.unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", page.body)))
