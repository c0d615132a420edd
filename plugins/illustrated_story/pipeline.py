"""The ``illustrated_story`` pipeline (seed 002's Story Agent): a story and one merged picture.

Sequential agents, as in the seed: the story agent writes the story; the character agent and the
background agent each read it and describe their part; the image model draws the character (on a
plain backdrop) and the background; the character is cut out and merged into the background.

Progress follows the seed's session: ``pending`` 0%, ``generating_story`` 10% -> 30% (story) ->
40% (character and background agents), ``generating_images`` 50% -> 90%, (``indexing`` 95%), ``completed`` 100%.

Graceful degradation, as in the seed: when an image cannot be made the story is still delivered,
with what exists (a character without a background, or no pictures) and the errors noted under
``errors``; ``degraded`` says so. An agent that gives no usable description falls back to one
drawn from the story. Only a story that cannot be written fails the job.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from loom.sdk.errors import Cancelled, LoomError
from loom.sdk.pipelines import Pipeline, PipelineContext
from loom.sdk.storykit import media, memory, writing
from loom.sdk.storykit.params import Audience, MaxTokens, Prompt, Seed, Side, Steps, TargetWords, Temperature
from msgspec import Meta, Struct

from . import agents, compositing


class IllustratedStoryParams(Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    """A story with its character merged into its setting in one picture."""

    prompt: Prompt
    audience: Audience = "children"
    target_words: TargetWords = 300
    max_tokens: MaxTokens | None = None
    temperature: Temperature = 0.8
    #: Style words for both pictures ("storybook watercolour").
    style: Annotated[str, Meta(max_length=300)] | None = None
    width: Side = 512
    height: Side = 512
    steps: Steps | None = None
    negative_prompt: Annotated[str, Meta(max_length=2000)] | None = None
    #: The character's height as a share of the picture's.
    character_scale: Annotated[float, Meta(ge=0.2, le=1.0)] = 0.75
    #: Where the character stands (the seed put it on the right half).
    position: Literal["left", "center", "right"] = "right"
    seed: Seed | None = None
    llm_model: str | None = None
    image_model: str | None = None
    embedding_model: str | None = None
    #: Store the story and the merged picture in the retrieval indices.
    remember: bool = True


def _error(stage: str, e: LoomError) -> dict[str, str]:
    return {"stage": stage, "type": type(e).__name__, "message": e.message}


class IllustratedStory(Pipeline):
    """Story agent, character agent, background agent, two images merged into one (seed 002)."""

    name = "illustrated_story"
    Params = IllustratedStoryParams
    description = (
        "Story agent, then character and background agents; their images merged into one picture "
        "(character cut out over the background); the story is delivered even if images fail."
    )

    async def run(self, p: IllustratedStoryParams, ctx: PipelineContext) -> dict[str, Any]:
        llm = ctx.model_for("chat", p.llm_model)
        image_model = ctx.model_for("image", p.image_model)
        label, _ = writing.audience(p.audience)
        errors: list[dict[str, str]] = []
        ctx.progress(0, "pending")

        # Phase 1: the story (10-30%), then the agents that read it (30-40%).
        ctx.progress(10, "generating_story", f"story agent ({llm})")
        messages = writing.story_messages(p.prompt, p.audience, p.target_words)
        written = await writing.write_story(
            ctx,
            "story",
            llm,
            messages,
            prompt=p.prompt,
            target_words=p.target_words,
            max_tokens=p.max_tokens,
            temperature=p.temperature,
            seed=p.seed,
        )
        title, story = written["title"], written["story"]
        ctx.progress(30, "generating_story", "story written; character agent")
        character = await self.agent(
            ctx, "character", llm, agents.character_messages(story), agents.fallback_character(title, story), p, errors
        )
        ctx.progress(40, "generating_story", "background agent")
        background = await self.agent(
            ctx,
            "background",
            llm,
            agents.background_messages(story),
            agents.fallback_background(title, story),
            p,
            errors,
        )

        async def save_story() -> dict[str, str]:
            meta = {"kind": "story", "title": title, "audience": label}
            return {"text": ctx.save_artifact("story.txt", writing.story_text(title, story).encode(), meta)}

        files = await ctx.step("save-story", save_story)

        # Phase 2: the pictures (50-90%).
        ctx.progress(50, "generating_images", "character image")
        prompts = {
            "character": agents.character_prompt(character["description"], p.style),
            "background": agents.background_prompt(background["description"], p.style),
        }
        images: dict[str, str | None] = {"character": None, "background": None, "combined": None, "mask": None}
        images["character"] = await self.draw(ctx, "character", image_model, prompts["character"], p, errors)
        ctx.progress(70, "generating_images", "background image")
        images["background"] = await self.draw(ctx, "background", image_model, prompts["background"], p, errors)
        merge: dict[str, Any] | None = None
        if images["character"] and images["background"]:
            ctx.progress(85, "generating_images", "merging the character into the background")
            merge = await self.merge(ctx, images["character"], images["background"], p, errors)
            if merge is not None:
                images["combined"], images["mask"] = merge["combined"], merge["mask"]
        ctx.progress(90, "generating_images", "pictures done" if images["combined"] else "pictures incomplete")

        async def save_record() -> str:
            record = {
                "title": title,
                "prompt": p.prompt,
                "story_text": story,
                "audience": label,
                "character_description": character["description"],
                "background_description": background["description"],
                "images": [
                    {"image_type": kind, "path": images[kind], "prompt_used": prompts.get(kind)}
                    for kind in ("character", "background", "combined")
                    if images[kind]
                ],
                "errors": errors,
            }
            return ctx.save_artifact("story.json", msgspec.json.encode(record), {"kind": "record", "title": title})

        files["json"] = await ctx.step("save-record", save_record)
        memory_result = await self.remember(ctx, p, title, story, files["text"], images["combined"], prompts)
        degraded = bool(errors) and not images["combined"]
        ctx.progress(
            100,
            "completed",
            "story and picture ready"
            if not degraded
            else "story delivered; " + "; ".join(f"{e['stage']}: {e['message']}" for e in errors),
        )
        return {
            "title": title,
            "story": story,
            "words": written["words"],
            "audience": label,
            "character_description": character["description"],
            "background_description": background["description"],
            "agents": {"character": character["from_model"], "background": background["from_model"]},
            "images": {k: ({"path": v, "url": media.url(v)} if v else None) for k, v in images.items()},
            "prompts": prompts,
            "composite": {k: merge[k] for k in ("method", "box", "coverage")} if merge else None,
            "degraded": degraded,
            "errors": errors,
            "models": {"llm": llm, "image": image_model},
            "files": {k: {"path": v, "url": media.url(v)} for k, v in files.items()},
            "memory": memory_result,
            "output_dir": ctx.output_dir,
        }

    async def agent(
        self,
        ctx: PipelineContext,
        name: str,
        llm: str,
        messages: list[dict],
        fallback: str,
        p: IllustratedStoryParams,
        errors: list[dict[str, str]],
    ) -> dict[str, Any]:
        async def call() -> dict[str, Any]:
            kw: dict[str, Any] = {"max_tokens": 120, "temperature": min(p.temperature, 0.7)}
            if p.seed is not None:
                kw["seed"] = p.seed
            text = agents.read(await ctx.chat(llm, messages, **kw))
            return {"description": text or fallback, "from_model": text is not None}

        try:
            return await ctx.step(f"{name}-agent", call)
        except Cancelled:
            raise
        except LoomError as e:  # the LLM went away after the story: describe from the story instead
            errors.append(_error(f"{name} agent", e))
            return {"description": fallback, "from_model": False}

    async def draw(
        self,
        ctx: PipelineContext,
        name: str,
        model: str,
        prompt: str,
        p: IllustratedStoryParams,
        errors: list[dict[str, str]],
    ) -> str | None:
        async def call() -> str:
            seed = None if p.seed is None else (p.seed + (1 if name == "background" else 0)) % 2**31
            png = await ctx.generate_image(
                model,
                prompt,
                width=p.width,
                height=p.height,
                seed=seed,
                steps=p.steps,
                negative_prompt=p.negative_prompt,
            )
            return ctx.save_artifact(f"{name}.png", png, {"kind": name, "image_type": name, "prompt": prompt})

        try:
            return await ctx.step(f"{name}-image", call)
        except Cancelled:
            raise
        except LoomError as e:
            errors.append(_error(f"{name} image", e))
            return None

    async def merge(
        self,
        ctx: PipelineContext,
        character: str,
        background: str,
        p: IllustratedStoryParams,
        errors: list[dict[str, str]],
    ) -> dict[str, Any] | None:
        async def call() -> dict[str, Any]:
            out = compositing.composite(
                ctx.read_artifact(character),
                ctx.read_artifact(background),
                width=p.width,
                height=p.height,
                scale=p.character_scale,
                position=p.position,
            )
            meta = {"kind": "combined", "image_type": "combined", "method": out.method, "box": list(out.box)}
            return {
                "combined": ctx.save_artifact("combined.png", out.png, meta),
                "mask": ctx.save_artifact("mask.png", out.mask_png, {"kind": "mask"}),
                "cutout": ctx.save_artifact("character-cutout.png", out.cutout_png, {"kind": "cutout"}),
                "method": out.method,
                "box": list(out.box),
                "coverage": out.coverage,
            }

        try:
            return await ctx.step("merge", call)
        except Cancelled:
            raise
        except (LoomError, OSError, ValueError) as e:  # a picture Pillow cannot read
            errors.append({"stage": "merge", "type": type(e).__name__, "message": str(e)})
            return None

    async def remember(
        self,
        ctx: PipelineContext,
        p: IllustratedStoryParams,
        title: str,
        story: str,
        story_path: str,
        combined: str | None,
        prompts: dict[str, str],
    ) -> dict[str, Any] | None:
        if not p.remember:
            return None
        emb, error = memory.try_embedding_model(ctx, p.embedding_model)
        if emb is None:
            return {"stored": [], "error": error}
        ctx.progress(95, "indexing", "remembering the story and the picture")
        items: list[dict[str, Any]] = [
            {
                "collection": memory.STORIES,
                "model": emb,
                "text": story,
                "path": story_path,
                "meta": {"title": title, "image": combined},
            }
        ]
        if combined:
            items.append(
                {
                    "collection": memory.IMAGES,
                    "model": emb,
                    "kind": "image",
                    "image": ctx.read_artifact(combined),
                    "text": f"{prompts['character']}; {prompts['background']}",
                    "path": combined,
                    "meta": {"prompt": prompts["background"], "story": story[:2000], "title": title},
                }
            )
        return await memory.remember(ctx, "remember", items)
