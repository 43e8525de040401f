"""Whatever the input, loading a spec either succeeds or reports problems: never another exception."""

from __future__ import annotations

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import EXAMPLES
from classimage.pipeline import artifacts, spec
from classimage.pipeline.problems import SpecError

SCALARS = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=30)
VALUES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
    st.text(max_size=12) | st.sampled_from(["course", "hub", "admins", "environment", "pip", "https"]),
    inner, max_size=4), max_leaves=20)


def outcome(raw: bytes):
    try:
        loaded = spec.load_bytes(raw, "spec.yaml")
    except SpecError as error:
        assert error.problems
        for problem in error.problems:
            assert problem.format("spec.yaml").startswith("spec.yaml")
        return None
    artifacts.render(loaded)  # whatever validates also renders
    return loaded


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_random_bytes(raw):
    outcome(raw)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300))
def test_random_text(text):
    outcome(text.encode("utf-8", "surrogatepass"))


@settings(max_examples=300, deadline=None)
@given(VALUES)
def test_random_yaml_documents(value):
    outcome(yaml.safe_dump(value).encode())


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(EXAMPLES), st.data())
def test_examples_with_one_value_replaced(example, data):
    """Valid specs with one value swapped for anything: the nastiest inputs are nearly valid ones."""
    document = yaml.safe_load(example.read_text())
    node, key = document, None
    while True:
        keys = list(node) if isinstance(node, dict) else list(range(len(node)))
        key = data.draw(st.sampled_from(keys))
        if not isinstance(node[key], (dict, list)) or not node[key] or data.draw(st.booleans()):
            break
        node = node[key]
    node[key] = data.draw(VALUES)
    outcome(yaml.safe_dump(document).encode())
