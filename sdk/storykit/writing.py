"""Writing stories with any chat model: the audience, length control, and reading the answer.

Seed 000 sent a prompt and an *audience type* to a GPT-2 story model. Here the audience is one of
three presets (children, young adult, adult; common spellings such as "kids" or "ya" too) or the
user's own words, turned into guidance in the system prompt. Length is asked for in words and
enforced twice: ``max_tokens`` bounds the generation (about 1.5 tokens a word, plus room for a
title), and the answer is cut back to whole sentences, so a story that hit the limit mid-sentence
or ran far past its target ends cleanly. Weak models wander, so the answer is read leniently: a
title line in any common form, lead-ins such as "Sure! Here is a story:", code fences.
"""

from __future__ import annotations

import re
from typing import Any

from ..errors import ProviderError
from ..pipelines import PipelineContext

AUDIENCES: dict[str, str] = {
    "children": (
        "for children aged 5 to 9: simple words and short sentences, a warm and gentle tone, a clear "
        "beginning, middle and end, and a kind lesson; nothing frightening or violent"
    ),
    "young adult": (
        "for young adults aged 12 to 17: a relatable young protagonist, vivid and emotionally honest "
        "writing, themes of identity, friendship and courage, and a quick pace"
    ),
    "adult": ("for adult readers: rich vocabulary, nuanced characters, subtext, and mature themes handled with craft"),
}
_ALIASES = {
    "child": "children",
    "children": "children",
    "kids": "children",
    "kid": "children",
    "young adult": "young adult",
    "young adults": "young adult",
    "young_adult": "young adult",
    "young-adult": "young adult",
    "ya": "young adult",
    "teen": "young adult",
    "teens": "young adult",
    "teenagers": "young adult",
    "adult": "adult",
    "adults": "adult",
    "grown-ups": "adult",
}

#: Tokens a word takes, generously (English averages about 1.3 with BPE tokenizers).
TOKENS_PER_WORD = 1.5
TITLE_TOKENS = 32
_LABELLED = re.compile(r"^(?:#{1,6}\s*)?(?:\*\*|__)?\s*title\s*(?:\*\*|__)?\s*[:\-–]\s*(.+)$", re.I)
_HEADING = re.compile(r"^#{1,6}\s+(.+)$")
_BOLD = re.compile(r"^(?:\*\*|__)(.+?)(?:\*\*|__)$")
_LEAD_IN = re.compile(r"^\s*(sure|certainly|of course|here(?:'s| is| are)|okay|ok)\b[^\n]*[:!.]\s*$", re.I)
_FENCE = re.compile(r"^```[a-zA-Z]*\s*$", re.M)
_SENTENCE_END = re.compile(r"[.!?…][\"'”’)\]]*(?=\s|$)")
_WORD = re.compile(r"\b[\w'’-]+\b")
_ANSWER_LABEL = re.compile(r"^(?:\*\*)?\s*(prompt|motto|description|answer|image prompt)\s*:\s*(?:\*\*)?\s*", re.I)


def audience(value: str) -> tuple[str, str]:
    """(the audience's label, the guidance to write for it); free text is taken as it is."""
    text = " ".join(value.split())
    key = _ALIASES.get(text.casefold())
    if key is not None:
        return key, AUDIENCES[key]
    return text, f"for this audience: {text}; choose words, themes and tone that suit it"


def max_tokens_for(target_words: int) -> int:
    return int(target_words * TOKENS_PER_WORD) + TITLE_TOKENS


def word_count(text: str) -> int:
    return len(_WORD.findall(text))


def story_messages(
    prompt: str,
    audience_value: str,
    target_words: int,
    *,
    description: str | None = None,
    context: list[str] | None = None,
    extra: str | None = None,
) -> list[dict[str, str]]:
    """System and user messages asking for one titled story."""
    _, guidance = audience(audience_value)
    system = (
        f"You are a storyteller. Write one original short story {guidance}. "
        f"It must be about {target_words} words long. Begin with a line 'Title: <title>', then a blank "
        "line, then the story as plain prose. No notes, headings or explanations."
    )
    user = prompt.strip()
    if description:
        user = f"The story is inspired by a picture. What the picture shows: {description.strip()}\n\n{user}"
    if context:
        examples = "\n".join(f"{i}. {c}" for i, c in enumerate(context, 1))
        user += (
            "\n\nEarlier stories about similar things, for consistency of style and world (take inspiration; "
            f"do not copy them):\n{examples}"
        )
    if extra:
        user += f"\n\n{extra.strip()}"
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]


_SMALL = {"a", "an", "the", "to", "of", "and", "or", "in", "on", "at", "for", "with", "who", "that", "is"}


def title_from(prompt: str) -> str:
    """A title for a story whose model gave none: the prompt's first words, not ending on "a"."""
    words = re.sub(r"[^\w\s'’-]", " ", prompt).split()[:7]
    while len(words) > 1 and words[-1].casefold() in _SMALL:
        words.pop()
    return " ".join(words).strip().capitalize() or "Untitled"


def parse_story(raw: str, prompt: str, target_words: int) -> dict:
    """``{"title", "story", "words", "trimmed"}`` from a model's answer (the story may be "")."""
    text = _FENCE.sub("", raw.replace("\r\n", "\n")).strip()
    lines = text.split("\n")
    while lines and (not lines[0].strip() or _LEAD_IN.match(lines[0])):
        lines.pop(0)
    title = _title(lines[0], len(lines) > 1) if lines else None
    if title is not None:
        lines.pop(0)
    body = "\n".join(lines).strip()
    body = re.sub(r"\n{3,}", "\n\n", body)
    story, trimmed = trim(body, target_words)
    return {"title": title or title_from(prompt), "story": story, "words": word_count(story), "trimmed": trimmed}


def _title(line: str, more: bool) -> str | None:
    """The title if ``line`` is one: labelled, a heading, bold, or a short line before the rest."""
    s = line.strip()
    m = _LABELLED.match(s) or _HEADING.match(s) or _BOLD.match(s)
    if m is None and more and len(s.split()) <= 10 and not re.search(r"[.!?,;:]$", s):
        return _unwrap(s) or None
    return (_unwrap(m.group(1)) or None) if m else None


def _unwrap(text: str) -> str:
    return text.strip().strip("*_\"'“”").strip()


def trim(body: str, target_words: int) -> tuple[str, bool]:
    """Cut ``body`` back to whole sentences: after the last one when it stops mid-sentence, and
    near 1.3x the target when it ran past 1.6x."""
    trimmed = False
    if word_count(body) > 1.6 * target_words:
        limit = int(1.3 * target_words)
        ends = [m.end() for m in _SENTENCE_END.finditer(body)]
        fitting = [e for e in ends if word_count(body[:e]) <= limit]
        if fitting:
            body, trimmed = body[: fitting[-1]], True
    stripped = body.rstrip()
    if stripped and not _SENTENCE_END.search(stripped[-3:] + " "):
        ends = [m.end() for m in _SENTENCE_END.finditer(stripped)]
        # Only when a cut keeps most of the story: a story of one long sentence stays whole.
        if ends and ends[-1] >= 0.5 * len(stripped):
            body, trimmed = stripped[: ends[-1]], True
    return body.strip(), trimmed


def excerpt(text: str, limit: int = 400) -> str:
    """At most ``limit`` characters, cut at a word."""
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    return text[:limit].rsplit(" ", 1)[0].rstrip(",;:") + "…"


def one_line(text: str, limit: int = 600) -> str:
    """A model's answer as one clean line: fences, labels and wrapping quotes removed."""
    text = _FENCE.sub("", text).strip()
    lines = [ln.strip() for ln in text.split("\n") if ln.strip() and not _LEAD_IN.match(ln)]
    text = " ".join(lines)
    text = _ANSWER_LABEL.sub("", text)
    text = text.strip().strip("\"'“”*").strip()
    return excerpt(text, limit) if len(text) > limit else text


def first_sentences(text: str, n: int = 2, limit: int = 400) -> str:
    ends = [m.end() for m in _SENTENCE_END.finditer(text)]
    cut = text[: ends[n - 1]] if len(ends) >= n else text
    return excerpt(cut, limit)


# --- as a pipeline step -------------------------------------------------------------------------


async def write_story(
    ctx: PipelineContext,
    key: str,
    model: str,
    messages: list[dict],
    *,
    prompt: str,
    target_words: int,
    max_tokens: int | None,
    temperature: float,
    seed: int | None,
) -> dict[str, Any]:
    """One chat call for a story, read leniently; a durable step. An empty story is an error."""

    async def call() -> dict[str, Any]:
        limit = max_tokens or max_tokens_for(target_words)
        kw: dict[str, Any] = {"max_tokens": limit, "temperature": temperature}
        if seed is not None:
            kw["seed"] = seed
        raw = await ctx.chat(model, messages, **kw)
        parsed = parse_story(raw, prompt, target_words)
        if not parsed["story"]:
            raise ProviderError(f"{model} returned no story (its answer was {raw[:120]!r})")
        return {**parsed, "raw": raw}

    return await ctx.step(key, call)


def story_text(title: str, story: str) -> str:
    return f"{title}\n\n{story}\n"
