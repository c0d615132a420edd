"""``HaikuPipeline``: write (and retry), save, illustrate; each model call is one durable step."""

from __future__ import annotations

from typing import Any, ClassVar

from loom.sdk import ProviderError
from loom.sdk.pipelines import Pipeline, PipelineContext

from .haiku import parse_haiku, syllables
from .params import HaikuParams

SYSTEM = (
    "You are a poet who writes haiku: three short lines of about 5, 7 and 5 syllables. "
    "Reply with the three lines of the haiku only: no title, no quotes, no commentary."
)


def messages(topic: str, problems: list[str]) -> list[dict[str, str]]:
    request = f"Write a haiku about {topic}."
    if problems:
        request += f" Your last answer was not usable: {problems[-1]}. Reply with exactly three lines."
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": request}]


def illustration_prompt(topic: str, lines: list[str]) -> str:
    return f"An ink-wash illustration of {topic}, for the haiku: {' / '.join(lines)}"


class HaikuPipeline(Pipeline):
    name: ClassVar[str] = "haiku"
    Params: ClassVar[type[HaikuParams]] = HaikuParams
    description: ClassVar[str] = "Write a haiku about a topic with the chat model, check its three lines, illustrate it"

    async def run(self, params: HaikuParams, ctx: PipelineContext) -> dict[str, Any]:
        chat_model = ctx.model_for("chat", params.chat_model)
        image_model = ctx.model_for("image", params.image_model) if params.illustrate else None
        units = params.attempts + (1 if params.illustrate else 0)
        problems: list[str] = []
        lines: list[str] | None = None
        attempt = 0
        for attempt in range(1, params.attempts + 1):
            ctx.check()
            ctx.progress(100 * (attempt - 1) / units, "writing", f"attempt {attempt} of {params.attempts}")
            seed = None if params.seed is None else params.seed + attempt - 1
            prompt = messages(params.topic, problems)
            text = await ctx.step(
                f"write-{attempt}",
                lambda prompt=prompt, seed=seed: ctx.chat(
                    chat_model,
                    prompt,
                    max_tokens=64,
                    temperature=params.temperature,
                    seed=seed,
                ),
            )
            lines, problem = parse_haiku(text)
            if lines is not None:
                break
            problems.append(problem)
            ctx.emit("rejected", {"attempt": attempt, "text": text, "problem": problem})
        if lines is None:
            raise ProviderError(
                f"{chat_model} did not write a three-line haiku in {params.attempts} attempts ({problems[-1]})"
            )
        poem = "\n".join(lines)
        ctx.emit("haiku", {"lines": lines, "attempt": attempt})

        async def save_text() -> str:
            return ctx.save_artifact("haiku.txt", (poem + "\n").encode(), {"topic": params.topic, "model": chat_model})

        text_path = await ctx.step("save-text", save_text)
        image_path = None
        if image_model is not None:
            ctx.progress(100 * params.attempts / units, "illustrating", image_model)
            prompt_text = illustration_prompt(params.topic, lines)

            async def illustrate() -> str:
                png = await ctx.generate_image(
                    image_model, prompt_text, width=params.width, height=params.height, seed=params.seed
                )
                return ctx.save_artifact("haiku.png", png, {"model": image_model, "prompt": prompt_text})

            image_path = await ctx.step("illustrate", illustrate)
        ctx.progress(100, "done")
        return {
            "topic": params.topic,
            "haiku": lines,
            "text": poem,
            "syllables": [syllables(line) for line in lines],
            "attempts": attempt,
            "chat_model": chat_model,
            "image_model": image_model,
            "text_path": text_path,
            "image": image_path,
        }
