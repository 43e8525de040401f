"""nbgitpuller links: what pulls a course repository into a student's home and opens it, and the
hub's own pages an instructor shares. Every value is URL-encoded; `parse` reads a link back."""

from __future__ import annotations

import html
import re
from dataclasses import dataclass
from urllib.parse import parse_qs, quote, unquote, urlencode, urlsplit

from classimage.pipeline.model import ContentRepo, Spec

BADGE = "https://img.shields.io/badge/open%20in-the%20class%20hub-F37726?logo=jupyter"
_HUB = re.compile(r"^https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?(/[A-Za-z0-9._~%+-]+)*/?$")
PREFIX = {"jupyterlab": "lab/tree/", "classic": "tree/"}


class LinkError(Exception):
    pass


def urlpath(repo: ContentRepo, default_app: str) -> str:
    """Where nbgitpuller sends the student after pulling, as a URL path (each part encoded)."""
    target = repo.folder + (f"/{repo.open}" if repo.open else "")
    return PREFIX[default_app] + quote(target, safe="/")


def gitpull_path(repo: ContentRepo, default_app: str) -> str:
    """`/git-pull?repo=...&branch=...&targetpath=...&urlpath=...`, relative to a user's server,
    every value encoded. The target folder is named explicitly: left to itself, nbgitpuller names
    it after the URL as written (`course.git` for .../course.git), not where urlpath opens."""
    query = [("repo", repo.url)]
    if repo.branch:
        query.append(("branch", repo.branch))
    query.append(("targetpath", repo.folder))
    query.append(("urlpath", urlpath(repo, default_app)))
    return "/git-pull?" + urlencode(query, quote_via=quote, safe="")


def hub_url(spec: Spec, given: str | None = None) -> str:
    """The hub's address: `given`, else https://HOSTNAME from the spec."""
    if given:
        if not _HUB.fullmatch(given):
            raise LinkError(
                f"{given!r} is not a hub address: give http(s)://HOST[:PORT][/PATH], e.g. http://203.0.113.7"
            )
        return given.rstrip("/")
    if spec.https.hostname:
        return f"https://{spec.https.hostname}"
    raise LinkError("the spec has no https.hostname: pass the hub's address with --hub, e.g. --hub http://203.0.113.7")


def launch(hub: str, repo: ContentRepo, default_app: str) -> str:
    """The link a student clicks: sign in if needed, then pull and open."""
    return f"{hub}/hub/user-redirect{gitpull_path(repo, default_app)}"


@dataclass(frozen=True)
class Parsed:
    repo: str
    branch: str | None
    open: str | None
    app: str


def parse(link: str) -> Parsed:
    """The repository, branch, file and interface a launch link names."""
    parts = urlsplit(link)
    query = parse_qs(parts.query, keep_blank_values=True)
    repo = query["repo"][0]
    path = query["urlpath"][0]
    app = next(name for name, prefix in PREFIX.items() if path.startswith(prefix))
    target = unquote(path[len(PREFIX[app]) :])
    folder = query["targetpath"][0]
    opened = target[len(folder) + 1 :] if target.startswith(folder + "/") else None
    return Parsed(repo=repo, branch=query.get("branch", [None])[0], open=opened, app=app)


def markdown(link: str, course: str) -> str:
    alt = re.sub(r"([\[\]\\])", r"\\\1", f"Open in {course}")
    return f"[![{alt}]({BADGE})]({link})"


def html_snippet(link: str, course: str) -> str:
    return (
        f'<a href="{html.escape(link)}"><img src="{html.escape(BADGE)}" alt="{html.escape("Open in " + course)}"></a>'
    )


def hub_pages(hub: str) -> dict[str, str]:
    return {
        "sign up": f"{hub}/hub/signup",
        "authorize users": f"{hub}/hub/authorize",
        "admin": f"{hub}/hub/admin",
        "sign in": f"{hub}/hub/login",
    }


def everything(spec: Spec, hub: str) -> dict:
    """All of a course's links (what `classimage links --json` prints)."""
    content = []
    for repo in spec.content:
        link = launch(hub, repo, spec.hub.default_app)
        content.append(
            {
                "repo": repo.url,
                "branch": repo.branch,
                "open": repo.open,
                "link": link,
                "markdown": markdown(link, spec.course.name),
                "html": html_snippet(link, spec.course.name),
            }
        )
    return {"hub": hub, "pages": hub_pages(hub), "content": content}
