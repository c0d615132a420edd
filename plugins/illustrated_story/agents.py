"""The character and background agents of seed 002: each reads the story and describes one thing.

The character agent describes the main character as a prompt for an image model, standing alone
on a plain backdrop, so the picture can be cut out; the background agent describes the setting
with nobody in it. Each answer is read as one line; an unusable answer (empty, or a model that
refuses) falls back to a description built from the story, noted in the result.
"""

from __future__ import annotations

from loom.sdk.storykit.writing import excerpt, first_sentences, one_line

CHARACTER_SUFFIX = "full body, standing, centred, alone, on a plain white background, no scenery"
BACKGROUND_SUFFIX = "wide landscape, no people, no characters"

_CHARACTER_SYSTEM = (
    "You are the character agent. Read the story and describe its main character for an image "
    "generation model: species or kind, age, build, face, hair, clothing, colours, pose and "
    "expression. One character only, no setting. At most 50 words. Answer with the description only."
)
_BACKGROUND_SYSTEM = (
    "You are the background agent. Read the story and describe its main setting for an image "
    "generation model: the place, landscape or room, time of day, weather, lighting, colours and "
    "mood. No people or characters in it. At most 50 words. Answer with the description only."
)


def _messages(system: str, story: str) -> list[dict[str, str]]:
    return [{"role": "system", "content": system}, {"role": "user", "content": f"Story:\n{excerpt(story, 3000)}"}]


def character_messages(story: str) -> list[dict[str, str]]:
    return _messages(_CHARACTER_SYSTEM, story)


def background_messages(story: str) -> list[dict[str, str]]:
    return _messages(_BACKGROUND_SYSTEM, story)


def read(answer: str) -> str | None:
    text = one_line(answer, 500)
    return text if len(text.split()) >= 3 else None


def fallback_character(title: str, story: str) -> str:
    return f"the main character of the story '{title}': {first_sentences(story, 1, 200)}"


def fallback_background(title: str, story: str) -> str:
    return f"the setting of the story '{title}': {first_sentences(story, 2, 240)}"


def character_prompt(description: str, style: str | None) -> str:
    return ", ".join(x for x in (description.rstrip(". "), style, CHARACTER_SUFFIX) if x)


def background_prompt(description: str, style: str | None) -> str:
    return ", ".join(x for x in (description.rstrip(". "), style, BACKGROUND_SUFFIX) if x)
