"""nbgitpuller links: the path that pulls a course repository into a student's home and opens it."""

from __future__ import annotations

from urllib.parse import quote, urlencode

from classimage.model import ContentRepo


def urlpath(repo: ContentRepo, default_app: str) -> str:
    """Where nbgitpuller sends the student after pulling, as a URL path (each part encoded)."""
    target = repo.folder + (f"/{repo.open}" if repo.open else "")
    prefix = "lab/tree/" if default_app == "jupyterlab" else "tree/"
    return prefix + quote(target, safe="/")


def gitpull_path(repo: ContentRepo, default_app: str) -> str:
    """`/git-pull?repo=...&branch=...&urlpath=...`, relative to a user's server, every value encoded."""
    query = [("repo", repo.url)]
    if repo.branch:
        query.append(("branch", repo.branch))
    query.append(("urlpath", urlpath(repo, default_app)))
    return "/git-pull?" + urlencode(query, quote_via=quote, safe="")
