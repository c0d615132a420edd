"""The ``image_to_story`` pipeline (seed 001): a picture into a story, with retrieval.

The image is embedded (a CLIP image embedding), the most similar past stories and images are
retrieved, the vision model describes the picture, and the chat model writes the story with the
retrieved stories as context. A chat model that has vision is given the picture itself (an image
content part), as the seed's LLaVA-NeXT sees it; a text-only one is given the description. The
result lists what was retrieved and says which (``saw_image``). The new story and the picture
(with its description) are then stored in the indices for the jobs after this one. With
``rerank``, more candidates are retrieved and, once the picture is described, a rerank model
keeps the ones whose text is most relevant to the description.
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from loom.sdk.errors import Cancelled, CapabilityNotSupported, LoomError
from loom.sdk.pipelines import Pipeline, PipelineContext
from loom.sdk.storykit import media, memory, writing
from loom.sdk.storykit.params import Audience, Detail, ImageRef, MaxTokens, Seed, TargetWords, Temperature, TopK
from msgspec import Meta, Struct

from .guidance import story_context


class ImageToStoryParams(Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    """A picture to tell a story about."""

    image: ImageRef
    #: Anything the story should do besides following the picture ("a bedtime story about courage").
    prompt: Annotated[str, Meta(max_length=2000)] | None = None
    audience: Audience = "children"
    target_words: TargetWords = 250
    max_tokens: MaxTokens | None = None
    #: How many similar past stories, and past images, to retrieve as context.
    k: TopK = 3
    detail: Detail = "detailed"
    temperature: Temperature = 0.8
    seed: Seed | None = None
    llm_model: str | None = None
    vision_model: str | None = None
    embedding_model: str | None = None
    #: Rerank the retrieved items by relevance to the picture's description with the
    #: ``[routes] rerank`` model (or ``rerank_model``, which implies it).
    rerank: bool = False
    rerank_model: str | None = None
    #: Store the new story and the picture in the retrieval indices.
    remember: bool = True

    def __post_init__(self) -> None:
        media.check_ref(self.image)


class ImageToStory(Pipeline):
    """Picture -> story: describe it, retrieve similar past stories and images, write."""

    name = "image_to_story"
    Params = ImageToStoryParams
    description = "Tell a story about a picture, with similar past stories and images retrieved (FAISS) as context."

    async def run(self, p: ImageToStoryParams, ctx: PipelineContext) -> dict[str, Any]:
        llm = ctx.model_for("chat", p.llm_model)
        vision = ctx.model_for("vision", p.vision_model)
        emb, emb_error = memory.try_embedding_model(ctx, p.embedding_model)
        reranker = memory.rerank_model(ctx, p.rerank, p.rerank_model)
        ctx.progress(0, "starting")
        ctx.progress(5, "reading image")
        image = await media.save_input(ctx, p.image)
        png = ctx.read_artifact(image["path"])

        vector, retrieval_error = None, emb_error
        if emb is not None and (p.k > 0 or p.remember):
            ctx.progress(15, "embedding", f"image embedding with {emb}")
            try:
                vector = await memory.embed_image(ctx, "embed-image", emb, png)
            except Cancelled:
                raise
            except LoomError as e:
                retrieval_error = f"{type(e).__name__}: {e.message}"
        ctx.progress(25, "retrieving", f"top {p.k} similar stories and images")
        collections = [memory.STORIES, memory.IMAGES]
        depth = p.k * memory.RERANK_DEPTH if reranker else p.k
        hits, error = await memory.try_recall(ctx, "retrieve", emb, vector, collections, depth)
        retrieval_error = retrieval_error or error
        ctx.emit("retrieved", {"items": hits})

        ctx.progress(40, "describing", f"{vision}, {p.detail}")

        async def describe() -> str:
            return (await ctx.describe(vision, png, None, p.detail)).strip()

        description = await ctx.step("describe", describe)
        if reranker is not None and hits:
            ctx.progress(50, "reranking", f"{len(hits)} candidates with {reranker}, by the description")
            keep = p.k * len(collections)
            hits, error = await memory.try_rerank(ctx, "rerank", reranker, description, hits, keep)
            retrieval_error = retrieval_error or error
            ctx.emit("reranked", {"items": hits, "model": reranker})

        sees = _has_vision(ctx, llm)
        how = "looking at the picture" if sees else "from the description"
        ctx.progress(60, "writing", f"{llm} writes {how}, with {len(hits)} retrieved item(s) as context")
        prompt = p.prompt or "Write a story about this picture."
        messages = writing.story_messages(
            prompt,
            p.audience,
            p.target_words,
            description=None if sees else description,
            context=story_context(hits),
        )
        if sees:
            messages = _with_picture(messages, media.data_uri(png))
        written = await writing.write_story(
            ctx,
            "write",
            llm,
            messages,
            prompt=prompt,
            target_words=p.target_words,
            max_tokens=p.max_tokens,
            temperature=p.temperature,
            seed=p.seed,
        )
        label, _ = writing.audience(p.audience)

        ctx.progress(85, "saving")

        async def save() -> dict[str, str]:
            meta = {"kind": "story", "title": written["title"], "audience": label, "image": image["path"]}
            record = {
                "title": written["title"],
                "story": written["story"],
                "description": description,
                "image": image["path"],
                "retrieved": hits,
                "audience": label,
                "saw_image": sees,
                "models": {"llm": llm, "vision": vision, "embedding": emb, "rerank": reranker},
            }
            return {
                "text": ctx.save_artifact(
                    "story.txt", writing.story_text(written["title"], written["story"]).encode(), meta
                ),
                "json": ctx.save_artifact("story.json", msgspec.json.encode(record), meta),
            }

        files = await ctx.step("save", save)
        memory_result = None
        if p.remember and emb is not None:
            ctx.progress(92, "indexing", "remembering the story and the picture")
            items: list[dict[str, Any]] = [
                {
                    "collection": memory.STORIES,
                    "model": emb,
                    "text": written["story"],
                    "path": files["text"],
                    "meta": {"title": written["title"], "image": image["path"], "description": description[:2000]},
                }
            ]
            meta = {"description": description[:2000], "story": written["story"][:2000], "title": written["title"]}
            picture = {
                "collection": memory.IMAGES,
                "model": emb,
                "kind": "image",
                "text": description,
                "path": image["path"],
                "meta": meta,
            }
            items.append({**picture, "vector": vector} if vector is not None else {**picture, "image": png})
            memory_result = await memory.remember(ctx, "remember", items)
        ctx.progress(100, "done", f"{written['words']} words")
        return {
            "title": written["title"],
            "story": written["story"],
            "words": written["words"],
            "description": description,
            "saw_image": sees,
            "retrieved": hits,
            "retrieval_error": retrieval_error,
            "image": {**image, "url": media.url(image["path"])},
            "audience": label,
            "models": {"llm": llm, "vision": vision, "embedding": emb, "rerank": reranker},
            "files": {k: {"path": v, "url": media.url(v)} for k, v in files.items()},
            "memory": memory_result,
            "output_dir": ctx.output_dir,
        }


def _has_vision(ctx: PipelineContext, model: str) -> bool:
    """Whether the chat model can look at images itself (it serves the vision capability)."""
    try:
        ctx.model_for("vision", model)
    except CapabilityNotSupported:
        return False
    return True


def _with_picture(messages: list[dict], uri: str) -> list[dict]:
    """The story request with the picture attached to its user message, as a vision model takes it."""
    system, user = messages
    text = f"The story is inspired by the attached picture: follow what it shows.\n\n{user['content']}"
    content = [{"type": "text", "text": text}, {"type": "image_url", "image_url": {"url": uri}}]
    return [system, {"role": "user", "content": content}]
