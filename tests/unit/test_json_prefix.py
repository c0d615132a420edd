"""The conformance kit's JSON prefix check (loom.sdk.testing.json_prefix): every prefix of a JSON
document is one, and text that no continuation can make JSON is not."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from loom.sdk.testing.json_prefix import completed

SCALARS = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text()
VALUES = st.recursive(SCALARS, lambda inner: st.lists(inner) | st.dictionaries(st.text(), inner), max_leaves=12)


@settings(max_examples=150, deadline=None)
@given(value=VALUES, indent=st.sampled_from([None, 2]), ascii_only=st.booleans())
def test_every_prefix_of_a_json_document_is_one(value, indent, ascii_only):
    text = json.dumps(value, indent=indent, ensure_ascii=ascii_only)
    for end in range(len(text) + 1):
        completed(text[:end])
    assert completed(text) == value


@pytest.mark.parametrize(
    "text",
    [
        '{"a": 1 x',
        '{"a" 1',
        '{"a": tx',
        '{"a": 1,}',
        "}",
        '{"a": [1}',
        '{"a": "\\q',
        '{"a": 01',
        '{"a": 1.e',
        "{,",
        "[1,,",
        '{"a": nulx',
        '{"a": --1',
        '{"a": 1}}',
        "Sure! Here is a person: {",
    ],
)
def test_text_no_continuation_makes_json_is_refused(text):
    with pytest.raises(ValueError, match="not the start of a JSON document"):
        completed(text)


def test_a_cut_off_object_completes_to_an_object():
    assert completed('{"name": "Once upon a ti') == {"name": "Once upon a ti"}
    assert isinstance(completed('{"name": "Ann", "age": 4'), dict)
