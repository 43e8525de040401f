"""The first minute of a lecture, as the students' browsers live it: each student an asyncio client
with cookies of its own (aiohttp), doing over HTTP what a browser does with the hub's pages and
their JavaScript. Opening the course's launch link:

  the login form (the link's `next` kept) -> the hub's redirects -> "Server not running" (its
  Launch button, or its timed redirect when implicit_spawn_seconds is set) -> the spawn-pending page
  and its progress stream, until ready -> nbgitpuller's page and its event stream, until the pull
  finished -> its redirect to the notebook (JupyterLab's page) -> a kernel for the notebook (a
  session, as JupyterLab makes one) -> code run over the kernel's websocket, and what it prints.

Every page a student sees is kept with its status, so a test can say that nobody saw an error page.
`Usage` samples what the droplet's processes use meanwhile, from the host's /proc (the droplet's
PID namespace), without running anything inside the droplet.

Used by tests/booted/test_class_start.py and benchmarks/storm.py; independent of pytest."""

from __future__ import annotations

import asyncio
import json
import math
import os
import re
import threading
import time
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import quote, urlsplit

import aiohttp
from yarl import URL

from hubclient import body_data, execute_request, kernel_said

# How long a student waits for one answer before giving up on it (a browser waits longer; a
# student does not): one request, and the longest silence in an event stream.
PATIENCE = 120


class StudentFailed(Exception):
    pass


@dataclass
class Seen:
    """One page or API answer a student got: when (seconds after the click), its status, where."""

    at: float
    status: int
    method: str
    url: str
    title: str = ""


@dataclass
class Outcome:
    name: str
    clicked: float = 0.0  # monotonic time of the click on the launch link
    steps: dict[str, float] = field(default_factory=dict)  # step -> seconds after the click
    seen: list[Seen] = field(default_factory=list)
    printed: str = ""
    error: str | None = None
    clicks: int = 1  # the launch link; each button a student had to press adds one

    @property
    def seconds(self) -> float | None:
        return self.steps.get("result")

    @property
    def error_pages(self) -> list[Seen]:
        """Pages and answers a student would read as an error (4xx, 5xx)."""
        return [page for page in self.seen if page.status >= 400]


class _Page(HTMLParser):
    """What a browser reads off a hub page: its forms (action, method, named inputs), its links by
    id, its title and its scripts' text."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.forms: list[dict] = []
        self.links: dict[str, str] = {}
        self.title = ""
        self.scripts: list[str] = []
        self._in: str | None = None

    def handle_starttag(self, tag, attrs):
        values = dict(attrs)
        if tag == "form":
            self.forms.append({"action": values.get("action") or "", "method": (values.get("method") or "get").lower(),
                               "fields": {}})
        elif tag in ("input", "button") and self.forms and values.get("name"):
            self.forms[-1]["fields"][values["name"]] = values.get("value") or ""
        elif tag == "a" and values.get("id") and values.get("href"):
            self.links[values["id"]] = values["href"]
        elif tag in ("title", "script"):
            self._in = tag
            if tag == "script":
                self.scripts.append("")

    def handle_endtag(self, tag):
        if tag == self._in:
            self._in = None

    def handle_data(self, data):
        if self._in == "title":
            self.title += data.strip()
        elif self._in == "script":
            self.scripts[-1] += data


def read_page(text: str) -> _Page:
    page = _Page()
    page.feed(text)
    return page


class Student:
    """One student's browser: its own cookie jar, every answer kept in `outcome.seen`."""

    def __init__(self, base: str, name: str, password: str):
        self.base, self.name, self.password = base.rstrip("/"), name, password
        self.outcome = Outcome(name)
        # unsafe: the hub is addressed by IP here, for which aiohttp otherwise keeps no cookies.
        self.session = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True),
                                             timeout=aiohttp.ClientTimeout(total=PATIENCE),
                                             requote_redirect_url=False)

    async def close(self) -> None:
        await self.session.close()

    def _since(self) -> float:
        return time.monotonic() - self.outcome.clicked if self.outcome.clicked else 0.0

    def step(self, name: str) -> None:
        self.outcome.steps[name] = round(self._since(), 3)

    def xsrf(self, path: str) -> str:
        """The _xsrf cookie of the longest path that is a prefix of `path` (JupyterHub 5 sets one
        for /hub/ and one for each /user/NAME/), as a page's script reads it."""
        best = None
        for cookie in self.session.cookie_jar:
            if cookie.key == "_xsrf" and path.startswith(cookie["path"] or "/"):
                if best is None or len(cookie["path"]) > len(best["path"]):
                    best = cookie
        return best.value if best else ""

    def url(self, path: str) -> URL:
        """As the page wrote it: already encoded (yarl would otherwise encode it again)."""
        return URL(path if path.startswith("http") else self.base + path, encoded=True)

    async def fetch(self, method: str, path: str, **kwargs) -> tuple[aiohttp.ClientResponse, str]:
        """A request as the browser makes it (redirects followed); every answer on the way kept."""
        async with self.session.request(method, self.url(path), **kwargs) as response:
            text = await response.text(errors="replace")
        for hop in [*response.history, response]:
            title = read_page(text).title if hop is response and "html" in response.content_type else ""
            self.outcome.seen.append(Seen(round(self._since(), 3), hop.status, hop.method, str(hop.url), title))
        return response, text

    async def submit(self, page_url: str, text: str, action: str, values: dict) -> tuple[aiohttp.ClientResponse, str]:
        """Fill in and submit the form of the page whose action contains `action`, keeping its
        hidden fields (the _xsrf, a `next`)."""
        here = URL(page_url, encoded=True)
        # A form without an action posts to the page's own address (NativeAuthenticator's signup).
        forms = [(str(here.join(URL(form["action"], encoded=True))) if form["action"] else page_url, form)
                 for form in read_page(text).forms]
        chosen = [(target, form) for target, form in forms if action in target]
        if not chosen:
            raise StudentFailed(f"{self.name}: no form for {action} on {page_url}")
        target, form = chosen[0]
        return await self.fetch(form["method"].upper(), target, data={**form["fields"], **values})

    # -- before the class ----------------------------------------------------------------------

    async def sign_up(self) -> None:
        response, text = await self.fetch("GET", "/hub/signup")
        response, text = await self.submit(str(response.url), text, "signup",
                                           {"username": self.name, "signup_password": self.password,
                                            "signup_password_confirmation": self.password})
        if response.status != 200 or not re.search(r"alert-(info|success)", text):
            raise StudentFailed(f"{self.name}: signup answered {response.status}: {read_page(text).title}")
        self.session.cookie_jar.clear()  # a new browser for the lecture, as a student's would be

    # -- the lecture ---------------------------------------------------------------------------

    async def launch(self, link: str, code: str) -> Outcome:
        """Click `link` and do what the browser does until `code` has run in the notebook's kernel."""
        self.outcome.clicked = time.monotonic()
        try:
            response, text = await self.fetch("GET", link)
            if urlsplit(str(response.url)).path.endswith("/hub/login"):
                response, text = await self.submit(str(response.url), text, "login",
                                                   {"username": self.name, "password": self.password})
                self.step("signed in")
            response, text = await self._until_running(response, text)
            await self._pull(response, text)
            self.outcome.printed = await self._run(code)
            self.step("result")
        except (StudentFailed, aiohttp.ClientError, asyncio.TimeoutError, KeyError, ValueError) as error:
            self.outcome.error = f"{type(error).__name__}: {error}"
        return self.outcome

    async def _until_running(self, response, text):
        """From wherever the login left the student to nbgitpuller's page on their own server."""
        for _ in range(10):
            path = urlsplit(str(response.url)).path
            page = read_page(text)
            if path.startswith(f"/user/{self.name}/git-pull"):
                if response.status != 200:
                    raise StudentFailed(f"nbgitpuller's page answered {response.status}")
                return response, text
            if path.startswith(f"/hub/user/{self.name}/") and "start" in page.links:
                # "Server not running": JupyterHub's timed redirect if the page has one, else the
                # student has to press Launch.
                wait = re.search(r"implicit_spawn_seconds\s*=\s*([0-9.]+)", "\n".join(page.scripts))
                if wait:
                    await asyncio.sleep(float(wait.group(1)))
                else:
                    self.outcome.clicks += 1
                self.step("launch")
                response, text = await self.fetch("GET", str(response.url.join(URL(page.links["start"], encoded=True))))
                continue
            if path.startswith(f"/hub/spawn-pending/{self.name}"):
                self.step("pending")
                await self._follow_progress(page)
                self.step("server ready")
                response, text = await self.fetch("GET", str(response.url))  # the page's reload
                continue
            raise StudentFailed(f"stopped at {response.status} {response.url} ({page.title})")
        raise StudentFailed("redirected in circles")

    async def _follow_progress(self, page: _Page) -> None:
        """The spawn-pending page's EventSource, until an event says ready or failed."""
        found = re.search(r'new EventSource\("([^"]+)"\)', "\n".join(page.scripts))
        if not found:
            raise StudentFailed("the spawn-pending page has no progress stream")
        async for event in self._events(found.group(1)):
            if event.get("failed"):
                raise StudentFailed(f"the spawn failed: {event.get('message')}")
            if event.get("ready"):
                return
        raise StudentFailed("the progress stream ended before the server was ready")

    async def _events(self, path: str):
        """An EventSource: the data of each event, as JSON, until the server ends the stream."""
        headers = {"Accept": "text/event-stream", "Sec-Fetch-Mode": "cors", "Sec-Fetch-Site": "same-origin"}
        timeout = aiohttp.ClientTimeout(total=None, sock_read=PATIENCE)
        async with self.session.get(self.url(path), headers=headers, timeout=timeout) as response:
            self.outcome.seen.append(Seen(round(self._since(), 3), response.status, "GET", str(response.url)))
            if response.status != 200:
                raise StudentFailed(f"event stream {path} answered {response.status}")
            async for line in response.content:
                if line.startswith(b"data:"):
                    yield json.loads(line[len(b"data:"):])

    async def _pull(self, response, text) -> None:
        self.step("puller")
        data = body_data(text)
        query = {"_xsrf": data["xsrf"], "repo": data["repo"], "targetpath": data["targetpath"]}
        for optional in ("depth", "branch", "backup"):
            if data.get(optional):
                query[optional] = data[optional]
        api = data["base-url"] + "git-pull/api?" + "&".join(f"{k}={quote(v, safe='')}" for k, v in query.items())
        async for event in self._events(api):
            if event.get("phase") == "error":
                raise StudentFailed(f"nbgitpuller: {event.get('message')}")
            if event.get("phase") == "finished":
                self.step("pulled")
                break
        else:
            raise StudentFailed("nbgitpuller's stream ended without finishing")
        self.notebook = data["path"]  # where its page sends the student: urlpath
        opened, _ = await self.fetch("GET", data["base-url"] + quote(data["path"], safe="/"))
        if opened.status != 200:
            raise StudentFailed(f"the notebook's page answered {opened.status}")
        self.step("notebook")

    async def _run(self, code: str) -> str:
        """What JupyterLab does to open the notebook and run a cell: a session with a python3
        kernel, then an execute_request over the kernel's websocket."""
        server = f"/user/{self.name}/"
        path = self.notebook.split("/tree/", 1)[-1] if "/tree/" in self.notebook else self.notebook
        headers = {"X-XSRFToken": self.xsrf(server), "Sec-Fetch-Mode": "cors", "Sec-Fetch-Site": "same-origin"}
        model = {"path": path, "name": path.rsplit("/", 1)[-1], "type": "notebook", "kernel": {"name": "python3"}}
        response, text = await self.fetch("POST", server + "api/sessions", json=model, headers=headers)
        if response.status != 201:
            raise StudentFailed(f"no kernel: api/sessions answered {response.status}: {text[:200]}")
        session = json.loads(text)
        self.step("kernel")
        channels = f"{server}api/kernels/{session['kernel']['id']}/channels?session_id={session['id']}"
        async with self.session.ws_connect(self.url(channels), origin=self.base, headers=headers,
                                           timeout=aiohttp.ClientWSTimeout(ws_receive=PATIENCE)) as socket:
            request = execute_request(code, self.name, session["id"])
            await socket.send_json(request)
            printed = []
            async for message in socket:
                if message.type != aiohttp.WSMsgType.TEXT:
                    raise StudentFailed(f"the kernel's websocket closed: {message.type}")
                said = kernel_said(json.loads(message.data), request["header"]["msg_id"])
                if said is None:
                    continue
                if said[0] == "error":
                    raise StudentFailed(f"the cell failed: {said[1]}")
                if said[0] == "idle":
                    return "".join(printed)
                printed.append(said[1])
        raise StudentFailed("the kernel's websocket ended before the cell finished")


class Instructor:
    """The course's admin in a browser: the Authorize Users page's buttons."""

    def __init__(self, base: str, name: str, password: str):
        self.student = Student(base, name, password)

    async def sign_in(self) -> None:
        """Sign in, on to the Authorize Users page (signed out, it answers 403, not the login)."""
        response, text = await self.student.fetch("GET", "/hub/login?next=%2Fhub%2Fauthorize")
        response, text = await self.student.submit(str(response.url), text, "login",
                                                   {"username": self.student.name,
                                                    "password": self.student.password})
        if not urlsplit(str(response.url)).path.endswith("/hub/authorize"):
            raise StudentFailed(f"the instructor could not sign in: {read_page(text).title}")

    async def approve(self, names: list[str]) -> None:
        """Press "Authorize" for each of `names` on the page, one after the other as a person does."""
        for name in names:
            response, text = await self.student.fetch("GET", "/hub/authorize")
            response, text = await self.student.submit(str(response.url), text, f"/authorize/{quote(name)}",
                                                       {"authorized": "yes"})
            if response.status != 200:
                raise StudentFailed(f"approving {name} answered {response.status}")

    async def close(self) -> None:
        await self.student.close()


async def class_start(base: str, link: str, names: list[str], password: str, code: str,
                      window: float, deadline: float) -> list[Outcome]:
    """Every student clicks `link` once, the clicks spread evenly over `window` seconds; a student
    with no result `deadline` seconds after the click has given up."""
    students = [Student(base, name, password) for name in names]

    async def one(index: int, student: Student) -> Outcome:
        await asyncio.sleep(window * index / (len(students) - 1) if len(students) > 1 else 0)
        try:
            return await asyncio.wait_for(student.launch(link, code), deadline)
        except asyncio.TimeoutError:
            student.outcome.error = f"no result {deadline:.0f} s after the click (last: {student.outcome.steps})"
            return student.outcome

    try:
        return list(await asyncio.gather(*(one(i, s) for i, s in enumerate(students))))
    finally:
        await asyncio.gather(*(s.close() for s in students))


async def sign_up_all(base: str, names: list[str], password: str) -> None:
    students = [Student(base, name, password) for name in names]
    try:
        await asyncio.gather(*(s.sign_up() for s in students))
    finally:
        await asyncio.gather(*(s.close() for s in students))


def percentile(values: list[float], share: float) -> float:
    """The nearest-rank percentile (p50, p95) of `values`."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(len(ordered) * share) - 1)]


# -- what the droplet uses --------------------------------------------------------------------------

TICKS = os.sysconf("SC_CLK_TCK")


@dataclass
class Process:
    pid: int
    uid: int
    name: str  # comm
    argv: str
    cpu: float  # seconds, its own
    waited: float  # seconds of the children it reaped
    rss: int
    pss: int
    uss: int


def processes(leader: int) -> list[Process]:
    """Every process in the PID namespace of the droplet whose init is `leader` (a host PID), read
    from the host's /proc: memory from smaps_rollup (PSS: shared pages split among their users,
    USS: its own), CPU from stat."""
    namespace = os.readlink(f"/proc/{leader}/ns/pid")
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            if os.readlink(f"/proc/{entry}/ns/pid") != namespace:
                continue
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            status = dict(line.split(":", 1) for line in Path(f"/proc/{entry}/status").read_text().splitlines()
                          if ":" in line)
            rollup = {}
            for line in Path(f"/proc/{entry}/smaps_rollup").read_text().splitlines()[1:]:
                parts = line.split()
                if len(parts) == 3 and parts[2] == "kB":
                    rollup[parts[0].rstrip(":")] = int(parts[1]) * 1024
            argv = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
            name = Path(f"/proc/{entry}/comm").read_text().strip()
        except (OSError, ValueError, IndexError):
            continue  # gone meanwhile
        found.append(Process(int(entry), int(status["Uid"].split()[0]), name, argv,
                             (int(fields[11]) + int(fields[12])) / TICKS, (int(fields[13]) + int(fields[14])) / TICKS,
                             rollup.get("Rss", 0), rollup.get("Pss", 0),
                             rollup.get("Private_Clean", 0) + rollup.get("Private_Dirty", 0)))
    return found


def is_hub(process: Process) -> bool:
    return "-m jupyterhub -f" in process.argv or process.argv.endswith("-m jupyterhub")


def host_cpu() -> float:
    """Seconds of CPU the whole machine has spent busy (all cores), from /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(values) - values[3] - values[4]) / TICKS  # less idle and iowait


@dataclass
class Sample:
    at: float
    droplet_cpu: float  # cumulative CPU seconds of the droplet's processes and their reaped children
    droplet_pss: int
    hub_cpu: float
    hub_pss: int
    proxy_cpu: float  # traefik's
    host_cpu: float


class Usage(threading.Thread):
    """Samples the droplet's and its hub's CPU and memory every `interval` seconds until stopped."""

    def __init__(self, leader: int, interval: float = 1.0):
        super().__init__(daemon=True)
        self.leader, self.interval = leader, interval
        self.samples: list[Sample] = []
        self.stopped = threading.Event()

    def sample(self) -> Sample:
        found = processes(self.leader)
        hub = [p for p in found if is_hub(p)]
        return Sample(time.monotonic(), sum(p.cpu + p.waited for p in found), sum(p.pss for p in found),
                      sum(p.cpu + p.waited for p in hub), sum(p.pss for p in hub),
                      sum(p.cpu for p in found if p.name == "traefik"), host_cpu())

    def run(self) -> None:
        while not self.stopped.is_set():
            self.samples.append(self.sample())
            self.stopped.wait(self.interval)

    def stop(self) -> None:
        self.stopped.set()
        self.join()
        self.samples.append(self.sample())

    def summary(self) -> dict:
        """Average and peak cores used (over each interval) by the droplet, its hub, its proxy and
        the whole machine; peak memory (PSS) of the droplet and the hub."""
        pairs = list(zip(self.samples, self.samples[1:], strict=False))

        def cores(key: str) -> tuple[float, float]:
            rates = [(getattr(b, key) - getattr(a, key)) / (b.at - a.at) for a, b in pairs if b.at > a.at]
            span = self.samples[-1].at - self.samples[0].at
            mean = (getattr(self.samples[-1], key) - getattr(self.samples[0], key)) / span if span else 0.0
            return mean, max(rates, default=0.0)

        return {"seconds": self.samples[-1].at - self.samples[0].at,
                "droplet_cores": cores("droplet_cpu"), "hub_cores": cores("hub_cpu"), "proxy_cores": cores("proxy_cpu"),
                "host_cores": cores("host_cpu"),
                "droplet_pss_peak": max(s.droplet_pss for s in self.samples),
                "hub_pss_peak": max(s.hub_pss for s in self.samples)}
