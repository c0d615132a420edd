"""The haiku pipeline against loom.sdk.testing's FakePipelineContext: no daemon needed."""

from __future__ import annotations

import asyncio

import loom_haiku
import msgspec
import pytest
from loom.sdk import Cancelled, ProviderError
from loom.sdk.testing import FakePipelineContext, pipeline_problems, png_size
from loom_haiku import HaikuParams, HaikuPipeline

GOOD = "An old silent pond\nA frog jumps into the pond\nSplash! Silence again"


def run(params: HaikuParams, ctx: FakePipelineContext) -> dict:
    # Through msgspec, as the daemon decodes a request body: constraints apply.
    params = msgspec.convert(msgspec.to_builtins(params), HaikuParams)
    return asyncio.run(HaikuPipeline().run(params, ctx))


def test_declared_and_registered_as_loom_expects():
    assert pipeline_problems(HaikuPipeline, plugin=loom_haiku) == []


def test_params_are_strict():
    params = msgspec.json.decode(b'{"topic": "the sea", "seed": 3}', type=HaikuParams)
    assert params.attempts == 3 and params.illustrate
    with pytest.raises(msgspec.ValidationError, match="topc"):
        msgspec.json.decode(b'{"topc": "the sea"}', type=HaikuParams)
    with pytest.raises(msgspec.ValidationError, match=r"\$\.width"):
        msgspec.json.decode(b'{"topic": "x", "width": 100}', type=HaikuParams)  # not a multiple of 8


def test_writes_saves_and_illustrates():
    ctx = FakePipelineContext(replies=[GOOD], routes={"chat": "poet", "image": "painter"})
    result = run(HaikuParams(topic="a pond", seed=11, width=64, height=48), ctx)
    assert result["haiku"] == GOOD.splitlines() and result["syllables"] == [5, 7, 5]
    assert result["chat_model"] == "poet" and result["image_model"] == "painter" and result["attempts"] == 1
    (chat,) = ctx.calls_to("chat")
    assert chat["model"] == "poet" and chat["seed"] == 11 and "a pond" in chat["messages"][-1]["content"]
    (image,) = ctx.calls_to("generate_image")
    assert image["model"] == "painter" and "Splash! Silence again" in image["prompt"] and image["seed"] == 11
    assert ctx.read_artifact(result["text_path"]).decode() == GOOD + "\n"
    assert png_size(ctx.read_artifact(result["image"])) == (64, 48)
    assert ctx.progress_log[-1][:2] == (100, "done")
    assert ("haiku", {"lines": GOOD.splitlines(), "attempt": 1}) in ctx.events


def test_retries_with_feedback_then_gives_up():
    ctx = FakePipelineContext(replies=["Just one line about a pond", GOOD])
    result = run(HaikuParams(topic="a pond", illustrate=False), ctx)
    assert result["attempts"] == 2 and result["image"] is None and not ctx.calls_to("generate_image")
    second = ctx.calls_to("chat")[1]["messages"][-1]["content"]
    assert "1 non-empty lines, a haiku has 3" in second
    assert [e for e, _ in ctx.events] == ["rejected", "haiku"]

    ctx = FakePipelineContext(default_reply="no haiku here")
    with pytest.raises(ProviderError, match="did not write a three-line haiku in 2 attempts"):
        run(HaikuParams(topic="a pond", attempts=2), ctx)


def test_resume_redoes_no_finished_step():
    ctx = FakePipelineContext(replies=["not a haiku", GOOD])
    first = run(HaikuParams(topic="rain", seed=1), ctx)
    assert ctx.ran_steps == ["write-1", "write-2", "save-text", "illustrate"]
    again = ctx.resume()
    assert run(HaikuParams(topic="rain", seed=1), again) == first
    assert again.ran_steps == [] and again.calls == []


def test_cancelled_job_stops():
    ctx = FakePipelineContext(replies=[GOOD])
    ctx.cancel()
    with pytest.raises(Cancelled):
        run(HaikuParams(topic="rain"), ctx)
    assert ctx.calls == []


def test_named_models_win_over_routes():
    ctx = FakePipelineContext(replies=[GOOD], routes={"chat": "poet"})
    result = run(HaikuParams(topic="x", chat_model="bard", image_model="ink"), ctx)
    assert (result["chat_model"], result["image_model"]) == ("bard", "ink")
