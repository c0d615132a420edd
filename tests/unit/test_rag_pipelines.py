"""The retrieval pipelines on a fake context: what is retrieved reaches the prompts and the result,
what is made is remembered, and retrieval failing degrades instead of failing the job."""

from __future__ import annotations

import asyncio
import base64

import msgspec
import pytest
from loom.plugins.retrieval import ImageToStory, StoryToImage
from loom.plugins.story import Story
from loom.sdk.errors import CapabilityNotSupported, ProviderError
from loom.sdk.storykit.memory import embedding_model
from loom.sdk.testing import FakePipelineContext, make_png

PICTURE = "data:image/png;base64," + base64.b64encode(make_png(32, 32, seed=1)).decode()
STORY = "Title: The Lantern\n\nA girl found a lantern in the attic. It glowed whenever she was brave. She kept it."


def run(pipeline, ctx, **params):
    return asyncio.run(pipeline.run(msgspec.convert(params, pipeline.Params), ctx))


def seed_memory(ctx: FakePipelineContext, model: str = "fake-vision") -> None:
    """Two past items whose vectors are exactly what the fake embeds for the query texts."""

    async def fill():
        [story_vec] = await ctx.embed(model, ["A lantern that glows in the dark attic."])
        await ctx.rag_add(
            "stories",
            story_vec,
            model=model,
            text="An old lantern glowed in the attic.",
            meta={"title": "Old Lantern", "image_prompt": "storybook watercolour, warm lamplight"},
        )
        await ctx.rag_add(
            "images",
            story_vec,
            model=model,
            kind="image",
            text="a lantern",
            path="output/old/image.png",
            meta={"prompt": "ink drawing of a lantern, sepia tones"},
        )

    asyncio.run(fill())
    ctx.calls.clear()


def test_story_to_image_uses_retrieved_prompts_as_style_guidance_and_lists_them():
    ctx = FakePipelineContext(default_reply="A glowing lantern in a dusty attic, warm light, watercolour.")
    seed_memory(ctx)
    result = run(StoryToImage(), ctx, story="A lantern that glows in the dark attic.", width=64, height=64, k=2)
    assert [(h["collection"], h["score"]) for h in result["retrieved"]] == [("images", 1.0), ("stories", 1.0)]
    assert result["guidance"] == ["ink drawing of a lantern, sepia tones", "storybook watercolour, warm lamplight"]
    prompt_call = ctx.calls_to("chat")[0]["messages"][1]["content"]
    assert "ink drawing of a lantern" in prompt_call and "storybook watercolour" in prompt_call
    assert ctx.calls_to("generate_image")[0]["prompt"] == result["prompt"]
    # The picture and the story are remembered for the next job.
    images = [item for _, item in ctx.rag[("images", "fake-vision")]]
    stories = [item for _, item in ctx.rag[("stories", "fake-vision")]]
    assert images[-1]["path"] == result["image"]["path"] and images[-1]["kind"] == "image"
    assert stories[-1]["meta"]["image_prompt"] == result["prompt"]
    assert result["memory"]["error"] is None and len(result["memory"]["stored"]) == 2
    assert ("retrieved", {"items": result["retrieved"], "guidance": result["guidance"]}) in ctx.events


def test_image_to_story_writes_from_the_description_with_retrieved_stories_as_context():
    ctx = FakePipelineContext(default_reply=STORY, capabilities={"fake-chat": {"chat"}})  # text only
    seed_memory(ctx)
    result = run(ImageToStory(), ctx, image=PICTURE, k=3, audience="young adult")
    assert {h["collection"] for h in result["retrieved"]} == {"stories", "images"}
    user = ctx.calls_to("chat")[0]["messages"][1]["content"]
    system = ctx.calls_to("chat")[0]["messages"][0]["content"]
    assert "A fake description of the image." in user and "An old lantern glowed in the attic." in user
    assert "young adults" in system
    assert result["title"] == "The Lantern" and result["audience"] == "young adult"
    assert result["image"]["path"].endswith("input.png")
    # The picture is remembered with the vector it was searched with, and the story with its text.
    [_, embedded] = ctx.calls_to("embed")
    assert embedded["inputs"] == [result["story"]]
    picture = ctx.rag[("images", "fake-vision")][-1][1]
    assert picture["meta"]["story"] == result["story"] and picture["path"] == result["image"]["path"]


def test_a_chat_model_with_vision_is_given_the_picture_itself():
    ctx = FakePipelineContext(default_reply=STORY, capabilities={"fake-chat": {"chat", "vision"}})
    seed_memory(ctx)
    result = run(ImageToStory(), ctx, image=PICTURE, k=3)
    assert result["saw_image"] is True
    text, picture = ctx.calls_to("chat")[0]["messages"][1]["content"]
    assert picture["type"] == "image_url" and picture["image_url"]["url"].startswith("data:image/png;base64,")
    assert "attached picture" in text["text"] and "An old lantern glowed in the attic." in text["text"]
    assert "A fake description of the image." not in text["text"]
    # The description is still made: the picture is remembered with it.
    assert result["description"] and ctx.rag[("images", "fake-vision")][-1][1]["text"] == result["description"]


def test_k_zero_retrieves_nothing_but_still_remembers():
    ctx = FakePipelineContext(default_reply=STORY)
    result = run(ImageToStory(), ctx, image=PICTURE, k=0)
    assert result["retrieved"] == [] and len(result["memory"]["stored"]) == 2


class NoEmbeddings(FakePipelineContext):
    async def embed(self, model, inputs):
        raise ProviderError("the embedding server is down")


def test_retrieval_failing_degrades_to_no_context():
    ctx = NoEmbeddings(default_reply=STORY)
    result = run(ImageToStory(), ctx, image=PICTURE)
    assert result["story"].startswith("A girl found a lantern")
    assert result["retrieved"] == [] and "embedding server is down" in result["retrieval_error"]
    assert "embedding server is down" in result["memory"]["error"]
    ctx = NoEmbeddings(default_reply="a lantern, watercolour, warm light")
    result = run(StoryToImage(), ctx, story="A lantern in the attic.", width=64, height=64)
    assert result["image"]["path"] and "down" in result["retrieval_error"]


def test_a_resumed_job_keeps_its_retrieved_context():
    ctx = FakePipelineContext(default_reply=STORY)
    seed_memory(ctx)

    class Crash(Exception):
        pass

    original = ctx.describe

    async def crash(*a, **kw):
        raise Crash()

    ctx.describe = crash
    with pytest.raises(Crash):
        run(ImageToStory(), ctx, image=PICTURE)
    again = ctx.resume()
    again.describe = original
    # Items added meanwhile would change a fresh search; the stored one is reused.
    asyncio.run(again.rag_add("stories", [1.0] * 16, model="fake-vision", text="newcomer"))
    result = run(ImageToStory(), again, image=PICTURE)
    assert "retrieve" not in again.ran_steps and all(h["text"] != "newcomer" for h in result["retrieved"])


def test_story_remembers_itself_unless_told_not_to():
    ctx = FakePipelineContext(default_reply=STORY)
    result = run(Story(), ctx, prompt="a brave girl and a lantern")
    assert result["memory"]["stored"][0]["collection"] == "stories"
    assert ctx.rag[("stories", "fake-vision")][0][1]["meta"]["title"] == "The Lantern"
    ctx = FakePipelineContext(default_reply=STORY)
    assert run(Story(), ctx, prompt="x", remember=False)["memory"] is None and not ctx.rag


class Routes(FakePipelineContext):
    """model_for as the daemon answers it: a named model must have the capability."""

    def __init__(self, embedders: set[str], **kw):
        super().__init__(**kw)
        self.embedders = embedders

    def model_for(self, role, requested=None):
        if requested and role == "embedding" and requested not in self.embedders:
            raise CapabilityNotSupported(f"{requested} cannot embed")
        return super().model_for(role, requested)


def test_the_embedding_model_prefers_a_clip_class_vision_model():
    assert embedding_model(Routes({"fake-vision"})) == "fake-vision"
    assert embedding_model(Routes(set())) == "fake-embedding"  # the vision model cannot embed
    assert embedding_model(Routes({"clip"}), "clip") == "clip"
    with pytest.raises(CapabilityNotSupported):
        embedding_model(Routes(set()), "text-only")


def test_the_daemon_and_the_fake_context_both_implement_the_whole_protocol():
    from loom.daemon.jobs.context import JobContext
    from loom.sdk.pipelines import PipelineContext

    wanted = {n for n in vars(PipelineContext) if not n.startswith("_")} - {"job_id", "output_dir"}
    assert {"rag_add", "rag_search", "record_get", "record_upsert", "keep_artifact"} <= wanted
    for cls in (JobContext, FakePipelineContext):
        missing = {n for n in wanted if not callable(getattr(cls, n, None))}
        assert not missing, f"{cls.__name__} lacks {missing}"
    assert isinstance(FakePipelineContext(), PipelineContext)


def test_image_to_story_reranks_what_it_retrieved_by_the_description():
    """Three candidates per collection are recalled; the reranker (the fake scores word overlap
    with the description) puts the story that shares its words first, though its vector is far."""

    def context() -> FakePipelineContext:
        ctx = FakePipelineContext(default_reply=STORY, capabilities={"fake-chat": {"chat"}})
        seed_memory(ctx)

        async def far_story():
            [vector] = await ctx.embed("fake-vision", ["something else entirely"])
            await ctx.rag_add("stories", vector, model="fake-vision", text="A description of the image")

        asyncio.run(far_story())
        ctx.calls.clear()
        return ctx

    plain = run(ImageToStory(), context(), image=PICTURE, k=1)
    assert [h["text"] for h in plain["retrieved"]] == ["An old lantern glowed in the attic.", "a lantern"]
    ctx = context()
    result = run(ImageToStory(), ctx, image=PICTURE, k=1, rerank=True)
    [call] = ctx.calls_to("rerank")
    assert call["model"] == "fake-rerank" and call["query"] == result["description"]
    assert len(call["documents"]) == 3  # two stories and one picture recalled, k * 3 per collection
    assert [h["text"] for h in result["retrieved"]] == [
        "A description of the image",
        "An old lantern glowed in the attic.",
    ]
    assert result["retrieved"][0]["rerank_score"] > result["retrieved"][1]["rerank_score"]
    assert result["models"]["rerank"] == "fake-rerank"
