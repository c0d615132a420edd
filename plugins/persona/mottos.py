"""Mottos in a tone (seed 003): the tone is a personality flavour for the chat model.

A handful of named tones get fuller guidance; any other tone is used as the user wrote it. The
answer is read as one short line; a model that gives nothing usable gets a plain motto built from
the persona, marked as such in the result.
"""

from __future__ import annotations

from loom.sdk.storykit.writing import excerpt, one_line

TONES: dict[str, str] = {
    "inspirational": "uplifting and hopeful, urging the reader on",
    "humorous": "funny and light, with a playful twist",
    "sarcastic": "dry, ironic and a little cheeky",
    "wise": "calm, thoughtful and timeless, like a proverb",
    "rebellious": "defiant and bold, against the rules",
    "friendly": "warm, casual and welcoming",
    "mysterious": "enigmatic and intriguing, hinting at secrets",
    "professional": "confident, crisp and businesslike",
    "poetic": "lyrical, with an image or a rhythm",
    "dramatic": "grand and intense, larger than life",
}
MAX_WORDS = 20


def tone_guidance(tone: str) -> str:
    key = " ".join(tone.split()).casefold()
    return TONES.get(key, key)


def motto_messages(name: str, prompt: str, tone: str) -> list[dict[str, str]]:
    system = (
        "You write the motto of a social media persona: one short, original phrase in the persona's "
        f"voice, at most {MAX_WORDS} words, in this tone: {tone_guidance(tone)}. "
        "Answer with the motto only, without quotes."
    )
    user = f"Persona: {name}\nWho they are and what they look like: {prompt}"
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]


def read_motto(answer: str) -> str | None:
    text = one_line(answer, 400)
    if len(text.split()) < 2:
        return None
    words = text.split()
    return " ".join(words[:MAX_WORDS]).rstrip(",;:") if len(words) > MAX_WORDS else text


def fallback_motto(name: str, prompt: str) -> str:
    return f"{name}: {excerpt(prompt, 80)}, always."
