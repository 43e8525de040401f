"""Two hub names, one Unix user (issue 16, item 4): TLJH 2.0.0 runs hub user NAME as the Unix user
`generate_system_username("jupyter-" + NAME)`, which shortens names of 26 characters or more to 26
plus five hex digits of a hash, and reuses a Unix user that exists. These tests run TLJH's own
`tljh/normalize.py`, from the vendored release archive.

- name_collision / shortening: the attack itself, a second hub name for an admin's Unix user, found
  by brute force; the schema and the hub refuse both names.
- the property: every name the course schema accepts, and every name the hub's
  `Authenticator.username_pattern` lets sign up (after JupyterHub lower-cases it), is a Unix user of
  its own: TLJH keeps it whole, useradd takes it, two different names never share one.

CLASSIMAGE_NAME_EXAMPLES sets how many cases each property generates (default 2000); the counts are
reported at the end of the run."""

from __future__ import annotations

import importlib.util
import itertools
import json
import os
import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis_jsonschema import from_schema

from hubprocess import tljh_source
from classimage import resources
from classimage.pipeline import schemaerrors, spec, tljh
from classimage.pipeline.problems import SpecError

EXAMPLES = int(os.environ.get("CLASSIMAGE_NAME_EXAMPLES", "2000"))
USERNAME = resources.schema()["$defs"]["username"]
SCHEMA = schemaerrors.Validator(USERNAME)
HUB = re.compile(tljh.username_pattern())
# useradd(8), CAVEATS: letters, digits, underscores and dashes (not first), at most 32 characters.
# Debian's and Ubuntu's adduser keep to lower case (NAME_REGEX ^[a-z][-a-z0-9_]*$): the stricter.
UNIX = re.compile(r"[a-z][-a-z0-9_]{0,31}")
COUNTS = {"schema names": 0, "schema pairs": 0, "hub names": 0, "hub pairs": 0, "any text": 0}
SETTINGS = settings(max_examples=EXAMPLES, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.filter_too_much])


def tljh_normalize():
    path = tljh_source() / "tljh" / "normalize.py"
    module_spec = importlib.util.spec_from_file_location("tljh_normalize", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module


NORMALIZE = tljh_normalize()


def unix_user(name: str) -> str:
    """The Unix user TLJH's UserCreatingSpawner runs hub user `name` as."""
    return NORMALIZE.generate_system_username(tljh.UNIX_PREFIX + name)


def schema_accepts(name: str) -> bool:
    return SCHEMA.is_valid(name)


def hub_accepts(typed: str) -> str | None:
    """The hub name a signup or sign-in as `typed` becomes, if the hub lets it in: JupyterHub
    lower-cases it (Authenticator.normalize_username), then matches username_pattern."""
    name = typed.lower()
    return name if HUB.match(name) else None


def count(kind: str) -> None:
    COUNTS[kind] += 1


def assert_own_unix_user(name: str) -> None:
    unix = unix_user(name)
    assert unix == tljh.UNIX_PREFIX + name, (name, unix)  # TLJH keeps it whole
    assert UNIX.fullmatch(unix), unix  # useradd takes it


# -- the attack -----------------------------------------------------------------------------------

def test_name_collision_shortening_gives_an_admins_unix_user_to_a_second_name_and_both_are_refused():
    victim = "course-instructor-01"  # an admin's name that the schema accepted before (up to 64 characters)
    target = unix_user(victim)
    assert target != tljh.UNIX_PREFIX + victim  # shortened, with a hash
    attacker = next(name for name in (f"course-instructor-{i:x}" for i in itertools.count())
                    if name != victim and unix_user(name) == target)
    assert attacker != victim and unix_user(attacker) == unix_user(victim)  # TLJH: one Unix user, two hub names
    for name in (victim, attacker):
        assert not schema_accepts(name) and hub_accepts(name) is None, name
    with pytest.raises(SpecError) as refused:
        spec.load_bytes(json.dumps({"course": {"name": "C", "slug": "c1"}, "hub": {"admins": [victim]}}).encode(),
                        "spec.yaml")
    (problem,) = refused.value.problems
    assert "hub.admins[0]" in problem.format("spec.yaml") and "at most 17" in problem.format("spec.yaml")


def test_name_collision_starts_at_18_characters():
    """The schema's limit is TLJH's own: 17 characters stay whole, 18 do not."""
    assert unix_user("a" * 17) == "jupyter-" + "a" * 17
    assert unix_user("a" * 18) != "jupyter-" + "a" * 18
    assert schema_accepts("a" * 17) and not schema_accepts("a" * 18)
    assert hub_accepts("a" * 17) and not hub_accepts("a" * 18)


# -- the property ---------------------------------------------------------------------------------

@SETTINGS
@given(name=from_schema(USERNAME))
def test_every_name_the_schema_accepts_is_a_unix_user_of_its_own(name):
    if not schema_accepts(name):  # hypothesis-jsonschema reads `$` as Python does (a final line break)
        return
    count("schema names")
    assert_own_unix_user(name)
    assert hub_accepts(name) == name  # and the hub lets it sign in


@SETTINGS
@given(first=from_schema(USERNAME), second=from_schema(USERNAME))
def test_two_names_the_schema_accepts_are_two_unix_users(first, second):
    if not (schema_accepts(first) and schema_accepts(second)) or first == second:
        return
    count("schema pairs")
    assert unix_user(first) != unix_user(second)


HUB_NAMES = st.from_regex(tljh.username_pattern(), fullmatch=True)
# A good name with one character more, before or after: a line break (Python's `$` matches before a
# final one), what useradd refuses, what lower-case makes into two characters (U+0130).
EDGES = "\n\r\t .$/:@A\u0130\u0131\u212a\x00-_0"
NEAR_MISSES = st.builds(lambda name, extra, after: name + extra if after else extra + name, HUB_NAMES,
                        st.sampled_from(EDGES), st.booleans())
# What a person may type at the signup form: any case, any character, any length.
TYPED = st.one_of(HUB_NAMES, HUB_NAMES.map(str.upper), NEAR_MISSES, st.text(max_size=40),
                  st.text(alphabet="abcXYZ019_-.$/ \n\u0130\u0131", max_size=30))


@SETTINGS
@given(first=TYPED, second=TYPED)
def test_two_names_the_hub_lets_in_are_two_unix_users(first, second):
    names = [hub_accepts(typed) for typed in (first, second)]
    for name in names:
        if name is not None:
            count("hub names")
            assert_own_unix_user(name)
            assert schema_accepts(name)  # the hub's rule and the schema's are one rule
    if None not in names and names[0] != names[1]:
        count("hub pairs")
        assert unix_user(names[0]) != unix_user(names[1])


@SETTINGS
@given(text=st.one_of(st.text(max_size=30), TYPED))
def test_the_schema_and_the_hub_pattern_accept_the_same_names(text):
    count("any text")
    assert schema_accepts(text) == (HUB.match(text) is not None)


def test_name_property_counts(record_property):
    """Last in this file: how many cases the properties above generated, for the run's summary."""
    if COUNTS["any text"]:
        record_property("figure", f"name property, {EXAMPLES} examples each: " + json.dumps(COUNTS))
