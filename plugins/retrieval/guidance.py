"""Turning retrieved items into generation context, and stories into image prompts.

For a story (image -> story), retrieved stories are context as they are, and a retrieved image
brings the story or description stored with it. For an image (story -> image), retrieved images
bring the prompts that made them, and retrieved stories the prompt of the picture made for them:
style and prompt guidance, so pictures of related stories look related.
"""

from __future__ import annotations

from typing import Any

from loom.sdk.storykit.writing import excerpt, first_sentences, one_line

CONTEXT_CHARS = 500  # per retrieved item, in a prompt
PROMPT_WORDS = 60


def story_context(hits: list[dict[str, Any]], limit: int = 6) -> list[str]:
    out: list[str] = []
    for h in hits:
        meta = h.get("meta") or {}
        if h.get("collection") == "images":
            text = meta.get("story") or meta.get("description") or h.get("text") or ""
        else:
            text = h.get("text") or ""
        text = excerpt(text, CONTEXT_CHARS)
        if text and text not in out:
            out.append(text)
    return out[:limit]


def image_guidance(hits: list[dict[str, Any]], limit: int = 6) -> list[str]:
    out: list[str] = []
    for h in hits:
        meta = h.get("meta") or {}
        if h.get("collection") == "images":
            prompt = meta.get("prompt") or h.get("text") or ""
        else:
            prompt = meta.get("image_prompt") or ""
        prompt = excerpt(prompt, CONTEXT_CHARS)
        if prompt and prompt not in out:
            out.append(prompt)
    return out[:limit]


def image_prompt_messages(story: str, style: str | None, guidance: list[str]) -> list[dict[str, str]]:
    system = (
        "You turn a story into one prompt for an image generation model: the story's key scene, its "
        "subjects, setting, lighting, colours and visual style, in at most "
        f"{PROMPT_WORDS} words. Answer with the prompt only, on one line."
    )
    user = f"Story:\n{excerpt(story, 3000)}"
    if style:
        user += f"\n\nStyle wanted: {style}"
    if guidance:
        listed = "\n".join(f"- {g}" for g in guidance)
        user += (
            "\n\nPrompts of earlier pictures for similar stories. Keep a consistent visual style with them "
            f"(palette, medium, mood), but describe this story's scene:\n{listed}"
        )
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]


def read_prompt(answer: str, story: str, style: str | None) -> tuple[str, bool]:
    """(the image prompt, whether the model's answer was used); a fallback from the story."""
    prompt = one_line(answer, 600)
    if len(prompt.split()) >= 3:
        return prompt, True
    fallback = first_sentences(story, 2, 400)
    return (f"{fallback} {style}".strip() if style else fallback), False
