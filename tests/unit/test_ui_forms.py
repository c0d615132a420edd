"""The web UI's pipeline forms: fields from a Params schema, a posted form back to the JSON the
API decodes (the beam search's real schema)."""

from __future__ import annotations

import msgspec
import pytest
from loom.daemon.ui.forms import fields_of, params_from_form
from loom.plugins.beam_search import BeamSearchParams
from loom.sdk.errors import InvalidRequest

MODELS = {"": ["m-chat", "m-image"], "chat": ["m-chat"], "image": ["m-image"]}


def fields():
    return fields_of(msgspec.json.schema(BeamSearchParams), MODELS)


def test_fields_follow_the_schema():
    by_name = {f.name: f for f in fields()}
    assert by_name["prompt"].kind == "textarea" and by_name["prompt"].required
    assert by_name["beam_width"].kind == "integer" and (
        by_name["beam_width"].minimum,
        by_name["beam_width"].maximum,
    ) == (1, 16)
    assert by_name["width"].step == "8" and by_name["width"].value == "512"
    assert by_name["alpha"].kind == "number" and by_name["alpha"].value == "0.7"
    assert by_name["refine"].kind == "choice" and by_name["refine"].choices == ["alternate", "both"]
    assert by_name["seed"].kind == "integer" and by_name["seed"].nullable and by_name["seed"].value == ""
    assert by_name["image_model"].kind == "model" and by_name["image_model"].choices == ["m-image"]
    assert by_name["llm_model"].choices == ["m-chat"]
    assert not by_name["alpha"].required


def test_a_posted_form_decodes_as_the_api_would():
    fs = fields()
    body = params_from_form(fs, {"prompt": "a pear", "beam_width": "3", "alpha": "0.5", "seed": "", "refine": "both"})
    assert body == {"prompt": "a pear", "beam_width": 3, "alpha": 0.5, "refine": "both"}
    params = msgspec.json.decode(msgspec.json.encode(body), type=BeamSearchParams)
    assert params.seed is None and params.keep_top == 2
    assert {f.name: f.value for f in fs}["beam_width"] == "3"  # shown again as typed


def test_bad_numbers_and_json_name_their_field():
    with pytest.raises(InvalidRequest) as e:
        params_from_form(fields(), {"prompt": "x", "beam_width": "four"})
    assert e.value.param == "beam_width"


def test_booleans_and_json_fields():
    schema = {
        "type": "object",
        "properties": {
            "flag": {"type": "boolean", "default": True},
            "tags": {"type": "array", "items": {"type": "string"}},
        },
    }
    fs = fields_of(schema, {})
    assert [f.kind for f in fs] == ["boolean", "json"] and fs[0].value == "true"
    assert params_from_form(fs, {"tags": '["a"]'}) == {"flag": False, "tags": ["a"]}
    with pytest.raises(InvalidRequest) as e:
        params_from_form(fs, {"tags": "[oops"})
    assert e.value.param == "tags"
