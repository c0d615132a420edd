"""The ``story_to_image`` pipeline (seed 001): a story into a picture, with retrieval.

The story is embedded (a CLIP text embedding); the most similar past images (the same space:
text finds pictures) and stories are retrieved; the chat model turns the story into one image
prompt, keeping the visual style of the retrieved pictures' prompts; the image model draws it.
The result lists what was retrieved and the guidance used. The picture and the story are then
stored in the indices. With ``rerank``, more candidates are retrieved and a rerank model keeps
the ones whose text is most relevant to the story.
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from loom.sdk.errors import Cancelled, LoomError
from loom.sdk.pipelines import Pipeline, PipelineContext
from loom.sdk.storykit import media, memory
from loom.sdk.storykit.params import Seed, Side, Steps, Temperature, TopK
from msgspec import Meta, Struct

from .guidance import image_guidance, image_prompt_messages, read_prompt


class StoryToImageParams(Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    """A story to illustrate."""

    story: Annotated[str, Meta(min_length=1, max_length=20_000)]
    #: Style words to add ("watercolour, soft light").
    style: Annotated[str, Meta(max_length=500)] | None = None
    #: How many similar past images, and past stories, to retrieve as guidance.
    k: TopK = 3
    width: Side = 512
    height: Side = 512
    steps: Steps | None = None
    negative_prompt: Annotated[str, Meta(max_length=2000)] | None = None
    seed: Seed | None = None
    temperature: Temperature = 0.7
    llm_model: str | None = None
    image_model: str | None = None
    embedding_model: str | None = None
    #: Rerank the retrieved items by relevance to the story with the ``[routes] rerank`` model
    #: (or ``rerank_model``, which implies it).
    rerank: bool = False
    rerank_model: str | None = None
    #: Store the picture and the story in the retrieval indices.
    remember: bool = True


class StoryToImage(Pipeline):
    """Story -> picture: retrieve similar past images and stories, prompt in their style, draw."""

    name = "story_to_image"
    Params = StoryToImageParams
    description = "Illustrate a story, with similar past images and stories retrieved (FAISS) as style guidance."

    async def run(self, p: StoryToImageParams, ctx: PipelineContext) -> dict[str, Any]:
        llm = ctx.model_for("chat", p.llm_model)
        image_model = ctx.model_for("image", p.image_model)
        emb, retrieval_error = memory.try_embedding_model(ctx, p.embedding_model)
        reranker = memory.rerank_model(ctx, p.rerank, p.rerank_model)
        models = {"llm": llm, "image": image_model, "embedding": emb, "rerank": reranker}
        ctx.progress(0, "starting")

        vector = None
        if emb is not None:
            ctx.progress(10, "embedding", f"text embedding with {emb}")
            try:
                vector = await memory.embed_text(ctx, "embed-story", emb, p.story)
            except Cancelled:
                raise
            except LoomError as e:
                retrieval_error = f"{type(e).__name__}: {e.message}"
        ctx.progress(20, "retrieving", f"top {p.k} similar images and stories")
        collections = [memory.IMAGES, memory.STORIES]
        depth = p.k * memory.RERANK_DEPTH if reranker else p.k
        hits, error = await memory.try_recall(ctx, "retrieve", emb, vector, collections, depth)
        retrieval_error = retrieval_error or error
        if reranker is not None and hits:
            ctx.progress(28, "reranking", f"{len(hits)} candidates with {reranker}")
            hits, error = await memory.try_rerank(ctx, "rerank", reranker, p.story, hits, p.k * len(collections))
            retrieval_error = retrieval_error or error
        guidance = image_guidance(hits)
        ctx.emit("retrieved", {"items": hits, "guidance": guidance})

        ctx.progress(35, "prompting", f"{llm} writes the image prompt with {len(guidance)} guiding prompt(s)")

        async def prompt_step() -> dict[str, Any]:
            kw: dict[str, Any] = {"max_tokens": 120, "temperature": p.temperature}
            if p.seed is not None:
                kw["seed"] = p.seed
            answer = await ctx.chat(llm, image_prompt_messages(p.story, p.style, guidance), **kw)
            prompt, used = read_prompt(answer, p.story, p.style)
            return {"prompt": prompt, "from_model": used}

        prompted = await ctx.step("prompt", prompt_step)

        ctx.progress(55, "generating image", image_model)

        async def draw() -> dict[str, Any]:
            png = await ctx.generate_image(
                image_model,
                prompted["prompt"],
                width=p.width,
                height=p.height,
                seed=p.seed,
                steps=p.steps,
                negative_prompt=p.negative_prompt,
            )
            meta = {"kind": "image", "prompt": prompted["prompt"], "seed": p.seed, "model": image_model}
            return {"path": ctx.save_artifact("image.png", png, meta)}

        image = await ctx.step("image", draw)

        ctx.progress(85, "saving")

        async def save() -> str:
            record = {
                "story": p.story,
                "prompt": prompted["prompt"],
                "guidance": guidance,
                "retrieved": hits,
                "image": image["path"],
                "models": models,
            }
            return ctx.save_artifact("story_to_image.json", msgspec.json.encode(record), {"kind": "record"})

        record_path = await ctx.step("save", save)
        memory_result = None
        if p.remember and emb is not None:
            ctx.progress(92, "indexing", "remembering the picture and the story")
            story_item: dict[str, Any] = {
                "collection": memory.STORIES,
                "model": emb,
                "text": p.story,
                "meta": {"image": image["path"], "image_prompt": prompted["prompt"]},
            }
            if vector is not None:
                story_item["vector"] = vector
            memory_result = await memory.remember(
                ctx,
                "remember",
                [
                    {
                        "collection": memory.IMAGES,
                        "model": emb,
                        "kind": "image",
                        "text": prompted["prompt"],
                        "image": ctx.read_artifact(image["path"]),
                        "path": image["path"],
                        "meta": {"prompt": prompted["prompt"], "story": p.story[:2000]},
                    },
                    story_item,
                ],
            )
        ctx.progress(100, "done")
        return {
            "image": {"path": image["path"], "url": media.url(image["path"])},
            "prompt": prompted["prompt"],
            "prompt_from_model": prompted["from_model"],
            "guidance": guidance,
            "retrieved": hits,
            "retrieval_error": retrieval_error,
            "models": models,
            "files": {"json": {"path": record_path, "url": media.url(record_path)}},
            "memory": memory_result,
            "output_dir": ctx.output_dir,
        }
