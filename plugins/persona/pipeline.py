"""The ``persona`` pipeline (seed 003's AI-Persona): a name, a description and a motto tone into
an image and a motto, upserted by name.

As in the seed: the persona is looked up by name; an image is generated from the name and the
descriptive prompt; the chat model writes a motto from the prompt in the motto tone; then the
persona is upserted: created with its attributes if new, otherwise the new image is added to it.
Every motto is kept (the motto history), the latest is the persona's motto. Images get a lasting
copy under ``images/personas/`` (job retention does not delete them) besides the job's own
folder. ``GET /v1/personas`` and ``GET /v1/personas/{name}`` list them with their images.
"""

from __future__ import annotations

import time
from typing import Annotated, Any
from urllib.parse import quote

import msgspec
from loom.sdk.pipelines import Pipeline, PipelineContext
from loom.sdk.storykit import media, memory
from loom.sdk.storykit.params import Seed, Side, Steps, Temperature
from msgspec import Meta, Struct

from .mottos import fallback_motto, motto_messages, read_motto

COLLECTION = "personas"  # the record collection GET /v1/personas reads


class PersonaParams(Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    """A persona to create, or to add an image and a motto to."""

    #: The persona's name: the upsert key (compared case- and space-insensitively).
    name: Annotated[str, Meta(min_length=1, max_length=100, pattern=r"\S")]
    #: What the persona looks like and who they are.
    prompt: Annotated[str, Meta(min_length=1, max_length=2000)]
    #: The motto's tone: inspirational, humorous, sarcastic, wise, rebellious, friendly,
    #: mysterious, professional, poetic, dramatic, or your own words.
    motto_tone: Annotated[str, Meta(min_length=1, max_length=100)] = "inspirational"
    width: Side = 512
    height: Side = 512
    steps: Steps | None = None
    negative_prompt: Annotated[str, Meta(max_length=2000)] | None = None
    seed: Seed | None = None
    temperature: Temperature = 0.9
    image_model: str | None = None
    llm_model: str | None = None
    embedding_model: str | None = None
    #: Store the image in the ``images`` retrieval index.
    remember: bool = True


class Persona(Pipeline):
    """Persona image + motto in a tone, upserted by name with image and motto history (seed 003)."""

    name = "persona"
    Params = PersonaParams
    description = "Create or extend a persona by name: a new image and a motto in the given tone; history kept."

    async def run(self, p: PersonaParams, ctx: PipelineContext) -> dict[str, Any]:
        name = " ".join(p.name.split())
        image_model = ctx.model_for("image", p.image_model)
        llm = ctx.model_for("chat", p.llm_model)
        ctx.progress(0, "starting")

        ctx.progress(5, "looking up", f"persona {name!r}")

        async def lookup() -> dict[str, Any]:
            found = ctx.record_get(COLLECTION, name)
            return {"existed": found is not None, "images": len((found or {}).get("data", {}).get("images", []))}

        before = await ctx.step("lookup", lookup)

        ctx.progress(20, "generating image", image_model)
        image_prompt = f"portrait of {name}, {p.prompt}"

        async def draw() -> dict[str, Any]:
            png = await ctx.generate_image(
                image_model,
                image_prompt,
                width=p.width,
                height=p.height,
                seed=p.seed,
                steps=p.steps,
                negative_prompt=p.negative_prompt,
            )
            path = ctx.save_artifact("persona.png", png, {"kind": "persona", "persona": name, "prompt": image_prompt})
            return {"path": path, "kept": ctx.keep_artifact(path, COLLECTION), "created_at": time.time()}

        image = await ctx.step("image", draw)

        ctx.progress(60, "writing motto", f"{llm}, {p.motto_tone}")

        async def motto_step() -> dict[str, Any]:
            kw: dict[str, Any] = {"max_tokens": 60, "temperature": p.temperature}
            if p.seed is not None:
                kw["seed"] = p.seed
            motto = read_motto(await ctx.chat(llm, motto_messages(name, p.prompt, p.motto_tone), **kw))
            return {
                "motto": motto or fallback_motto(name, p.prompt),
                "from_model": motto is not None,
                "created_at": time.time(),
            }

        motto = await ctx.step("motto", motto_step)

        ctx.progress(80, "saving")

        async def save() -> dict[str, str]:
            meta = {"kind": "motto", "persona": name, "motto_tone": p.motto_tone}
            record = {
                "name": name,
                "prompt": p.prompt,
                "motto_tone": p.motto_tone,
                "motto": motto["motto"],
                "image": image["path"],
                "kept_image": image["kept"],
            }
            return {
                "motto": ctx.save_artifact("motto.txt", motto["motto"].encode() + b"\n", meta),
                "json": ctx.save_artifact("persona.json", msgspec.json.encode(record), {**meta, "kind": "record"}),
            }

        files = await ctx.step("save", save)

        ctx.progress(90, "upserting", f"persona {name!r}")

        async def upsert() -> dict[str, Any]:
            # Entries are built from stored step results, so a retried upsert appends nothing twice.
            image_entry = {
                "path": image["kept"],
                "artifact": image["path"],
                "job_id": ctx.job_id,
                "prompt": image_prompt,
                "seed": p.seed,
                "created_at": image["created_at"],
            }
            motto_entry = {
                "motto": motto["motto"],
                "tone": p.motto_tone,
                "prompt": p.prompt,
                "job_id": ctx.job_id,
                "created_at": motto["created_at"],
            }
            fields = {"prompt": p.prompt, "motto_tone": p.motto_tone, "motto": motto["motto"]}
            if not before["existed"]:
                fields["name"] = name  # the name as first written is the persona's display name
            record = ctx.record_upsert(
                COLLECTION, name, fields=fields, append={"images": [image_entry], "mottos": [motto_entry]}
            )
            data = record["data"]
            return {
                "created": record["created"],
                "images": len(data.get("images", [])),
                "mottos": len(data.get("mottos", [])),
            }

        upserted = await ctx.step("upsert", upsert)

        memory_result: dict[str, Any] | None = None
        if p.remember:
            ctx.progress(95, "indexing", "remembering the image for retrieval")
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
                            "image": ctx.read_artifact(image["path"]),
                            "text": image_prompt,
                            "path": image["kept"],
                            "meta": {"prompt": image_prompt, "persona": name, "motto": motto["motto"]},
                        }
                    ],
                )
        ctx.progress(100, "done", "new persona" if upserted["created"] else f"image {upserted['images']} added")
        return {
            "name": name,
            "created": upserted["created"],
            "existed_before": before["existed"],
            "motto": motto["motto"],
            "motto_tone": p.motto_tone,
            "motto_from_model": motto["from_model"],
            "image": {
                "path": image["kept"],
                "url": media.url(image["kept"]),
                "artifact": image["path"],
                "artifact_url": media.url(image["path"]),
            },
            "images_count": upserted["images"],
            "mottos_count": upserted["mottos"],
            "persona_url": f"/v1/personas/{quote(name)}",
            "models": {"image": image_model, "llm": llm},
            "files": {k: {"path": v, "url": media.url(v)} for k, v in files.items()},
            "memory": memory_result,
            "output_dir": ctx.output_dir,
        }
