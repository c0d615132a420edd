"""The ``translate`` pipeline (seed 000's NLLB-200 translator): a batch of texts in one job.

Language codes are checked twice. At submit, their form: NLLB's ``eng_Latn``, ISO ``en`` /
``eng``, or a tag such as ``en-US`` or ``zh-Hant`` (anything else is a 400 naming the field).
In the job, the model's own list: the provider refuses a code it lacks with an error naming the
field and listing what it takes, and the job fails with that message before any text is
translated. Texts go to the model in batches of ``batch_size``, each a durable step.
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from loom.sdk.pipelines import Pipeline, PipelineContext
from msgspec import Meta, Struct

LANGUAGE_CODE = r"^[A-Za-z]{2,3}(?:[_-][A-Za-z0-9]{2,8}){0,2}$"
Language = Annotated[
    str,
    Meta(
        pattern=LANGUAGE_CODE,
        description="NLLB (eng_Latn), ISO 639 (en, eng) or BCP 47 (en-US) language code",
    ),
]
Text = Annotated[str, Meta(max_length=50_000)]


class TranslateParams(Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    """Texts from ``source`` into ``target``."""

    #: One text, or a batch of texts translated in one job.
    text: Text | Annotated[list[Text], Meta(min_length=1, max_length=1000)]
    source: Language
    target: Language
    #: The translation model; None uses ``[routes].translation``.
    model: str | None = None
    batch_size: Annotated[int, Meta(ge=1, le=256, description="texts per model call")] = 16

    def texts(self) -> list[str]:
        return [self.text] if isinstance(self.text, str) else list(self.text)


class Translate(Pipeline):
    """Translate a batch of texts with an NLLB-class translation model."""

    name = "translate"
    Params = TranslateParams
    description = "Translate one text or a batch between languages with an NLLB-class model (codes checked)."

    async def run(self, p: TranslateParams, ctx: PipelineContext) -> dict[str, Any]:
        model = ctx.model_for("translation", p.model)
        texts = p.texts()
        batches = [texts[i : i + p.batch_size] for i in range(0, len(texts), p.batch_size)]
        ctx.progress(0, "starting", f"{len(texts)} text(s), {p.source} -> {p.target} with {model}")
        out: list[str] = []
        for n, batch in enumerate(batches):
            ctx.progress(5 + 85 * n / len(batches), "translating", f"batch {n + 1} of {len(batches)}")

            async def call(batch=batch) -> list[str]:
                return await ctx.translate(model, batch, p.source, p.target)

            out += await ctx.step(f"batch-{n}", call)
        ctx.progress(92, "saving")
        items = [{"text": t, "translation": r} for t, r in zip(texts, out)]

        async def save() -> dict[str, str]:
            meta = {"kind": "translation", "source": p.source, "target": p.target, "model": model}
            record = {"source": p.source, "target": p.target, "model": model, "items": items}
            return {
                "json": ctx.save_artifact("translations.json", msgspec.json.encode(record), meta),
                "text": ctx.save_artifact("translation.txt", "\n\n".join(out).encode() + b"\n", meta),
            }

        files = await ctx.step("save", save)
        ctx.progress(100, "done", f"{len(out)} translated")
        return {
            "source": p.source,
            "target": p.target,
            "model": model,
            "count": len(out),
            "translations": out,
            "items": items,
            "files": {k: {"path": v, "url": f"/v1/files/{v}"} for k, v in files.items()},
            "output_dir": ctx.output_dir,
        }
