"""Helpers of the seed pipelines: audiences, length control and lenient reading of stories;
language codes and image references checked at submit; the persona record store and upsert;
what the artefact search indexes."""

from __future__ import annotations

import asyncio
import base64

import msgspec
import pytest
from loom.daemon.jobs.search import body_for
from loom.daemon.records import RecordStore, normalize_key
from loom.plugins.persona import Persona
from loom.plugins.persona.mottos import read_motto, tone_guidance
from loom.plugins.story import Describe, Story, Translate
from loom.sdk.storykit import media, writing
from loom.sdk.testing import FakePipelineContext, make_png


@pytest.mark.parametrize(
    "value, label",
    [
        ("children", "children"),
        ("Kids", "children"),
        ("YA", "young adult"),
        ("young_adult", "young adult"),
        ("adults", "adult"),
        ("retired sailors who love puns", "retired sailors who love puns"),
    ],
)
def test_audience_presets_aliases_and_free_text(value, label):
    got, guidance = writing.audience(value)
    assert got == label
    if label == value and label not in writing.AUDIENCES:
        assert value in guidance
    else:
        assert guidance == writing.AUDIENCES[label]


def test_the_system_prompt_carries_audience_and_length():
    messages = writing.story_messages("a fox", "children", 120)
    assert "aged 5 to 9" in messages[0]["content"] and "about 120 words" in messages[0]["content"]
    assert writing.max_tokens_for(100) == 182


@pytest.mark.parametrize(
    "raw, title",
    [
        ("Title: The Fox\n\nThe fox ran home.", "The Fox"),
        ("# The Fox\nThe fox ran home.", "The Fox"),
        ("**The Fox**\n\nThe fox ran home.", "The Fox"),
        ("**Title:** The Fox\nThe fox ran home.", "The Fox"),
        ("Sure! Here is a story for you:\n\nThe Fox\n\nThe fox ran home.", "The Fox"),
        ("```\nTitle: The Fox\nThe fox ran home.\n```", "The Fox"),
        ("The fox ran home. It was late.", "A clever fox"),  # no title: one from the prompt
    ],
)
def test_stories_are_read_leniently(raw, title):
    parsed = writing.parse_story(raw, "a clever fox!", 100)
    assert parsed["title"] == title and parsed["story"].startswith("The fox ran home.")


def test_a_story_cut_off_mid_sentence_ends_at_its_last_sentence():
    story, trimmed = writing.trim("One day a fox ran. She found a hen. The hen was", 100)
    assert story == "One day a fox ran. She found a hen." and trimmed


def test_a_story_far_over_its_target_is_cut_back_to_whole_sentences():
    body = " ".join(f"Sentence number {i} is here." for i in range(60))  # 300 words
    story, trimmed = writing.trim(body, 100)
    assert trimmed and writing.word_count(story) <= 130 and story.endswith(".")
    assert writing.trim("A short one. Done.", 100) == ("A short one. Done.", False)


@pytest.mark.parametrize("code", ["eng_Latn", "en", "eng", "en-US", "zh-Hant", "fra_Latn", "pt_BR"])
def test_well_formed_language_codes_are_accepted(code):
    msgspec.convert({"text": "hi", "source": code, "target": "fr"}, Translate.Params)


@pytest.mark.parametrize("code", ["english", "e", "12", "en_", "eng Latn", ""])
def test_malformed_language_codes_are_refused_at_submit(code):
    with pytest.raises(msgspec.ValidationError, match=r"\$\.target"):
        msgspec.convert({"text": ["hi"], "source": "en", "target": code}, Translate.Params)


def test_translate_sends_batches_in_order():
    ctx = FakePipelineContext()
    params = msgspec.convert(
        {"text": [f"t{i}" for i in range(5)], "source": "en", "target": "de", "batch_size": 2}, Translate.Params
    )
    result = asyncio.run(Translate().run(params, ctx))
    assert result["translations"] == [f"[de] t{i}" for i in range(5)]
    assert [len(c["texts"]) for c in ctx.calls_to("translate")] == [2, 2, 1]


def test_image_references_are_checked_at_submit():
    good = "data:image/png;base64," + base64.b64encode(make_png(8, 8)).decode()
    media.check_ref(good)
    media.check_ref("http://127.0.0.1:11435/v1/files/output/2025-01-01/ses-1/a.png")
    media.check_ref("images/personas/x.png")
    for bad, reason in [
        ("data:image/png;base64,!!!", "base64"),
        ("data:text/plain;base64," + base64.b64encode(b"hi").decode(), "decoded"),
        ("https://example.com/cat.png", "not fetched"),
        ("../loom.db", "data URI"),
        ("output/../../etc/passwd", "data URI"),
    ]:
        with pytest.raises(ValueError, match=reason):
            media.check_ref(bad)
    with pytest.raises(msgspec.ValidationError):
        msgspec.convert({"image": "https://example.com/cat.png"}, Describe.Params)


def test_describe_reads_a_loom_file_by_url():
    ctx = FakePipelineContext()
    ctx.artifacts["output/old/pic.png"] = make_png(16, 16)
    params = msgspec.convert(
        {"image": "http://localhost:1/v1/files/output/old/pic.png", "detail": "brief"}, Describe.Params
    )
    result = asyncio.run(Describe().run(params, ctx))
    assert result["description"] == "A fake description of the image."
    assert ctx.calls_to("describe")[0]["detail"] == "brief"
    assert ctx.artifacts[result["image"]["path"]] == make_png(16, 16)


def test_story_length_control_reaches_the_model():
    ctx = FakePipelineContext(default_reply="Title: T\n\nA story.")
    asyncio.run(Story().run(msgspec.convert({"prompt": "x", "target_words": 100}, Story.Params), ctx))
    asyncio.run(Story().run(msgspec.convert({"prompt": "x", "max_tokens": 40}, Story.Params), ctx.resume()))
    assert [c["max_tokens"] for c in ctx.calls_to("chat")] == [182]  # the resume reused the stored step
    fresh = FakePipelineContext(default_reply="Title: T\n\nA story.")
    asyncio.run(Story().run(msgspec.convert({"prompt": "x", "max_tokens": 40}, Story.Params), fresh))
    assert fresh.calls_to("chat")[0]["max_tokens"] == 40


# --- personas ---------------------------------------------------------------------------------


def test_mottos_are_read_as_one_short_line():
    assert read_motto('Motto: "Build the future, one bolt at a time."') == "Build the future, one bolt at a time."
    assert read_motto("ok") is None
    assert len(read_motto(" ".join(["word"] * 40)).split()) == 20
    assert "ironic" in tone_guidance("Sarcastic") and tone_guidance("like a pirate") == "like a pirate"


def test_record_store_upserts_by_normalised_key_and_keeps_history(tmp_path):
    store = RecordStore(tmp_path / "records.db")
    first = store.upsert(
        "personas",
        "Ada  Lovelace",
        fields={"name": "Ada Lovelace", "motto": "a"},
        append={"images": [{"path": "1.png"}], "mottos": [{"motto": "a"}]},
    )
    assert first["created"] and first["key"] == "ada lovelace" == normalize_key(" ADA lovelace ")
    second = store.upsert(
        "personas",
        "ada lovelace",
        fields={"motto": "b"},
        append={"images": [{"path": "2.png"}], "mottos": [{"motto": "b"}]},
    )
    assert not second["created"] and second["data"]["motto"] == "b" and second["data"]["name"] == "Ada Lovelace"
    assert [i["path"] for i in second["data"]["images"]] == ["1.png", "2.png"]
    # A retried upsert appends nothing twice.
    store.upsert("personas", "Ada Lovelace", append={"images": [{"path": "2.png"}]})
    assert len(store.get("personas", "ADA LOVELACE")["data"]["images"]) == 2
    store.upsert("personas", "Grace", fields={"name": "Grace"})
    assert [r["key"] for r in store.list("personas")] == ["grace", "ada lovelace"]
    assert store.get("personas", "nobody") is None
    store.close()
    assert RecordStore(tmp_path / "records.db").get("personas", "ada lovelace")["data"]["motto"] == "b"


def test_persona_upsert_adds_an_image_and_keeps_the_motto_history():
    ctx = FakePipelineContext(default_reply="Stay curious, stay kind.")
    params = {"name": "Robo", "prompt": "a friendly green robot", "width": 64, "height": 64}
    first = asyncio.run(Persona().run(msgspec.convert(params, Persona.Params), ctx))
    assert first["created"] and first["images_count"] == 1 and first["image"]["path"].startswith("images/personas/")
    second_ctx = FakePipelineContext(default_reply="Bolts before breakfast.", job_id="job-2")
    second_ctx.records = ctx.records
    second = asyncio.run(
        Persona().run(
            msgspec.convert({**params, "name": " robo ", "motto_tone": "humorous"}, Persona.Params), second_ctx
        )
    )
    assert not second["created"] and second["existed_before"] and second["images_count"] == 2
    record = ctx.records[("personas", "robo")]["data"]
    assert [m["motto"] for m in record["mottos"]] == ["Stay curious, stay kind.", "Bolts before breakfast."]
    assert [m["tone"] for m in record["mottos"]] == ["inspirational", "humorous"]
    assert record["motto"] == "Bolts before breakfast." and record["motto_tone"] == "humorous"
    system = second_ctx.calls_to("chat")[0]["messages"][0]["content"]
    assert "funny" in system


def test_the_search_body_holds_names_meta_params_and_text_but_no_data_uris():
    body = body_for(
        "story.txt",
        "text/plain",
        b"The lighthouse keeper slept.",
        {"title": "Night"},
        {"prompt": "a lighthouse", "image": "data:image/png;base64,AAAA", "k": 3},
    )
    assert "story.txt" in body and "Night" in body and "a lighthouse" in body and "keeper slept" in body
    assert "base64" not in body
    assert "\x89PNG" not in body_for("a.png", "image/png", b"\x89PNG...", None, None)
