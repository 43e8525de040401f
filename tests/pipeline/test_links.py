"""nbgitpuller launch links and the hub's pages: correct for JupyterLab and classic, every part
encoded, and they read back to what they were made from."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import CASES, EXAMPLES, cli
from classimage.pipeline import links, spec
from classimage.pipeline.model import ContentRepo

HUB = "https://hub.example.edu"


@pytest.mark.parametrize("app", ["jupyterlab", "classic"])
@pytest.mark.parametrize("repo", [
    ContentRepo("https://github.com/org/notes", None, None),
    ContentRepo("https://github.com/org/notes.git", "week-1/intro", "Week 1/Start Here #1 & more.ipynb"),
    ContentRepo("https://gitlab.example.edu:8443/geo/data", "main", "données/été ✓.ipynb"),
    ContentRepo("https://github.com/org/a%20b", "x", "a?b=c&d=%41.ipynb"),
])
def test_links_round_trip(repo, app):
    link = links.launch(HUB, repo, app)
    assert link.startswith(f"{HUB}/hub/user-redirect/git-pull?repo=")
    assert " " not in link and "#" not in link and link.isascii()
    assert links.parse(link) == links.Parsed(repo=repo.url, branch=repo.branch, open=repo.open, app=app)


def test_urlpath_follows_the_default_app():
    repo = ContentRepo("https://github.com/org/notes", None, "Start.ipynb")
    assert links.urlpath(repo, "jupyterlab") == "lab/tree/notes/Start.ipynb"
    assert links.urlpath(repo, "classic") == "tree/notes/Start.ipynb"


TEXT = st.text(st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=30)


@settings(max_examples=300, deadline=None)
@given(st.text(st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="/"), min_size=1, max_size=20),
       st.none() | TEXT, st.none() | TEXT.filter(lambda t: not t.startswith("/")), st.sampled_from(["jupyterlab", "classic"]))
def test_any_link_reads_back(name, branch, opened, app):
    repo = ContentRepo(f"https://example.org/org/{name}", branch, opened)
    assert links.parse(links.launch(HUB, repo, app)) == links.Parsed(repo.url, branch, opened, app)


def test_badge_and_html_escape_the_course_name():
    link = links.launch(HUB, ContentRepo("https://github.com/org/notes", None, None), "jupyterlab")
    assert links.markdown(link, "Geo [101]") == f"[![Open in Geo \\[101\\]]({links.BADGE})]({link})"
    snippet = links.html_snippet(link, '<b>"Geo" & co</b>')
    assert "<b>" not in snippet and "&lt;b&gt;&quot;Geo&quot; &amp; co&lt;/b&gt;" in snippet
    assert f'href="{link.replace("&", "&amp;")}"' in snippet


def test_links_command_text_and_json():
    spec_file = CASES / "tljh" / "signup-https-classic" / "spec.yaml"
    text = cli("links", str(spec_file))
    assert text.returncode == 0, text.stderr.decode()
    out = text.stdout.decode()
    assert "hub: https://hub.geo101.example.edu" in out
    assert "authorize users:  https://hub.geo101.example.edu/hub/authorize" in out
    data = json.loads(cli("links", str(spec_file), "--json").stdout)
    (item,) = data["content"]
    assert links.parse(item["link"]) == links.Parsed(
        "https://github.com/org/notes.git", "week-1/intro", "Week 1/Start Here #1 & more.ipynb", "classic")
    assert data["pages"]["sign up"] == "https://hub.geo101.example.edu/hub/signup"


def test_links_need_a_hub_address():
    no_https = cli("links", str(EXAMPLES[-1]))  # underworld: no hostname yet
    assert no_https.returncode == 2 and b"pass the hub's address with --hub" in no_https.stderr
    given = cli("links", str(EXAMPLES[-1]), "--hub", "http://203.0.113.7")
    assert given.returncode == 0 and b"http://203.0.113.7/hub/user-redirect/git-pull?repo=" in given.stdout
    bad = cli("links", str(EXAMPLES[-1]), "--hub", "javascript:alert(1)")
    assert bad.returncode == 2 and b"is not a hub address" in bad.stderr


def test_the_first_repository_is_pulled_at_sign_in():
    course = spec.load_file(EXAMPLES[-1]).spec
    path = links.gitpull_path(course.content[0], course.hub.default_app)
    assert links.parse(HUB + "/hub/user-redirect" + path).open == "StartHere.ipynb"
