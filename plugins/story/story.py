"""The ``story`` pipeline (seed 000): a prompt and an audience into a titled story of a set length.

Any chat model serves it (the seed's GPT-2 class transformers model as well as SmolLM2 or a
remote one). The story is saved as ``story.txt`` and ``story.json`` in the job's dated output
folder and remembered in the ``stories`` retrieval index, so later story and image jobs can
draw on it.
"""

from __future__ import annotations

from typing import Any

import msgspec
from loom.sdk.pipelines import Pipeline, PipelineContext
from loom.sdk.storykit import memory, writing
from loom.sdk.storykit.params import Audience, MaxTokens, Prompt, Seed, TargetWords, Temperature
from msgspec import Struct


class StoryParams(Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    """A story for an audience, about ``target_words`` long."""

    prompt: Prompt
    audience: Audience = "children"
    target_words: TargetWords = 250
    max_tokens: MaxTokens | None = None
    temperature: Temperature = 0.8
    seed: Seed | None = None
    #: The chat model; None uses ``[routes].chat``.
    model: str | None = None
    #: The model whose embeddings index the story; None prefers a CLIP-class vision model.
    embedding_model: str | None = None
    #: Store the finished story in the ``stories`` retrieval index.
    remember: bool = True


class Story(Pipeline):
    """A titled story for an audience (children, young adult, adult or free text), with length control."""

    name = "story"
    Params = StoryParams
    description = (
        "Write a titled story for an audience (children, young adult, adult or your words) at a target length."
    )

    async def run(self, p: StoryParams, ctx: PipelineContext) -> dict[str, Any]:
        model = ctx.model_for("chat", p.model)
        label, _ = writing.audience(p.audience)
        ctx.progress(0, "starting")
        ctx.progress(10, "writing", f"{model} writes for {label}, about {p.target_words} words")
        messages = writing.story_messages(p.prompt, p.audience, p.target_words)
        written = await writing.write_story(
            ctx,
            "write",
            model,
            messages,
            prompt=p.prompt,
            target_words=p.target_words,
            max_tokens=p.max_tokens,
            temperature=p.temperature,
            seed=p.seed,
        )

        ctx.progress(80, "saving")

        async def save() -> dict[str, str]:
            record = {
                "title": written["title"],
                "story": written["story"],
                "prompt": p.prompt,
                "audience": label,
                "target_words": p.target_words,
                "words": written["words"],
                "model": model,
            }
            meta = {"kind": "story", "title": written["title"], "audience": label}
            return {
                "text": ctx.save_artifact(
                    "story.txt", writing.story_text(written["title"], written["story"]).encode(), meta
                ),
                "json": ctx.save_artifact("story.json", msgspec.json.encode(record), meta),
            }

        files = await ctx.step("save", save)
        memory_result: dict[str, Any] | None = None
        if p.remember:
            ctx.progress(90, "indexing", "remembering the story for retrieval")
            emb, error = memory.try_embedding_model(ctx, p.embedding_model)
            memory_result = {"stored": [], "error": error}
            if emb is not None:
                memory_result = await memory.remember(
                    ctx,
                    "remember",
                    [
                        {
                            "collection": memory.STORIES,
                            "model": emb,
                            "text": written["story"],
                            "path": files["text"],
                            "meta": {"title": written["title"], "prompt": p.prompt, "audience": label},
                        }
                    ],
                )
        ctx.progress(100, "done", f"{written['words']} words")
        return {
            "title": written["title"],
            "story": written["story"],
            "words": written["words"],
            "target_words": p.target_words,
            "trimmed": written["trimmed"],
            "audience": label,
            "model": model,
            "files": {k: {"path": v, "url": f"/v1/files/{v}"} for k, v in files.items()},
            "memory": memory_result,
            "output_dir": ctx.output_dir,
        }
