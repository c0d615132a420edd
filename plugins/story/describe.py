"""The ``describe`` pipeline (seeds 000 and 001): an image into a description by a vision model.

The image comes as a data URI or as a file Loom serves; it is copied into the job's folder, so
the output folder holds both sides. ``detail`` is brief, normal or detailed (the seed's
"detailed description" is the default), and ``prompt`` can steer what to describe. The image is
remembered in the ``images`` retrieval index with its description.
"""

from __future__ import annotations

from typing import Annotated, Any

from loom.sdk.pipelines import Pipeline, PipelineContext
from loom.sdk.storykit import media, memory
from loom.sdk.storykit.params import Detail, ImageRef
from msgspec import Meta, Struct


class DescribeParams(Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    """An image to describe."""

    image: ImageRef
    detail: Detail = "detailed"
    #: What to focus on or ask about (e.g. "the people and what they wear").
    prompt: Annotated[str, Meta(max_length=2000)] | None = None
    #: The vision model; None uses ``[routes].vision``.
    model: str | None = None
    embedding_model: str | None = None
    #: Store the image and its description in the ``images`` retrieval index.
    remember: bool = True

    def __post_init__(self) -> None:
        media.check_ref(self.image)


class Describe(Pipeline):
    """Describe an image (data URI or a Loom file) at a detail level with a vision model."""

    name = "describe"
    Params = DescribeParams
    description = "Describe an image (data URI or a file Loom serves) in words, brief, normal or detailed."

    async def run(self, p: DescribeParams, ctx: PipelineContext) -> dict[str, Any]:
        model = ctx.model_for("vision", p.model)
        ctx.progress(0, "starting")
        ctx.progress(10, "reading image")
        image = await media.save_input(ctx, p.image)
        ctx.progress(30, "describing", f"{model}, {p.detail}")

        async def describe() -> str:
            return await ctx.describe(model, ctx.read_artifact(image["path"]), p.prompt, p.detail)

        text = (await ctx.step("describe", describe)).strip()
        ctx.progress(80, "saving")

        async def save() -> str:
            meta = {"kind": "description", "detail": p.detail, "model": model, "image": image["path"]}
            return ctx.save_artifact("description.txt", text.encode() + b"\n", meta)

        path = await ctx.step("save", save)
        memory_result: dict[str, Any] | None = None
        if p.remember:
            ctx.progress(90, "indexing", "remembering the image for retrieval")
            emb, error = memory.try_embedding_model(ctx, p.embedding_model)
            memory_result = {"stored": [], "error": error}
            if emb is not None:
                memory_result = await memory.remember(
                    ctx,
                    "remember",
                    [
                        {
                            "collection": memory.IMAGES,
                            "model": emb,
                            "kind": "image",
                            "text": text,
                            "image": ctx.read_artifact(image["path"]),
                            "path": image["path"],
                            "meta": {"description": text[:2000], "detail": p.detail},
                        }
                    ],
                )
        ctx.progress(100, "done")
        record = {"description": text, "detail": p.detail, "model": model}
        return {
            **record,
            "image": {**image, "url": media.url(image["path"])},
            "files": {"text": {"path": path, "url": media.url(path)}},
            "memory": memory_result,
            "output_dir": ctx.output_dir,
        }
