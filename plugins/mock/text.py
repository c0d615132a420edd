"""Deterministic text for chat and completions, and the token bookkeeping around it.

A "token" is a whitespace-led word: ``pieces("a b")`` is ``["a", " b"]``. Joining the pieces gives
the text back exactly, so streaming piece by piece and cutting at a limit or stop string agree.
"""

from __future__ import annotations

import random
import re

VOCABULARY = [
    "the",
    "model",
    "considers",
    "a",
    "quiet",
    "river",
    "under",
    "morning",
    "light",
    "while",
    "small",
    "birds",
    "gather",
    "near",
    "old",
    "stone",
    "bridges",
    "and",
    "distant",
    "hills",
    "fade",
    "into",
    "soft",
    "blue",
    "haze",
    "every",
    "answer",
    "here",
    "is",
    "generated",
    "by",
    "a",
    "deterministic",
    "mock",
    "so",
    "tests",
    "can",
    "rely",
    "on",
    "it",
    "across",
    "runs",
    "machines",
    "and",
    "processes",
    "without",
    "any",
    "weights",
    "memory",
    "or",
    "network",
    "access",
    "patterns",
    "repeat",
    "only",
    "when",
    "seeds",
    "and",
    "inputs",
    "repeat",
    "too",
]

_PIECE = re.compile(r"\s*\S+|\s+\Z")


def pieces(text: str) -> list[str]:
    """Split ``text`` into tokens; ``"".join(pieces(t)) == t``."""
    return _PIECE.findall(text)


def word_count(text: str) -> int:
    return len(text.split())


def words(r: random.Random, count: int) -> list[str]:
    return [r.choice(VOCABULARY) for _ in range(count)]


def sentences(r: random.Random, count: int) -> str:
    """``count`` words as capitalised sentences of 5 to 12 words."""
    out: list[str] = []
    remaining = count
    while remaining > 0:
        n = min(remaining, r.randint(5, 12))
        ws = words(r, n)
        out.append(" ".join(ws).capitalize() + ".")
        remaining -= n
    return " ".join(out)


def snippet(text: str, limit: int = 8) -> str:
    """The first ``limit`` words of ``text``, marked when cut."""
    ws = text.split()
    return " ".join(ws[:limit]) + (" ..." if len(ws) > limit else "")


def chat_reply(question: str, images: list[str], r: random.Random) -> str:
    """A reply to the last user message; ``images`` are short descriptions of attached images."""
    head = f"Mock reply to '{snippet(question)}':" if question.strip() else "Mock reply:"
    if images:
        seen = "; ".join(images)
        head += f" I see {len(images)} image{'s' if len(images) > 1 else ''}: {seen}."
    return f"{head} {sentences(r, r.randint(12, 32))}"


def continuation(r: random.Random) -> str:
    """A raw-prompt continuation, longer than the default 16 tokens so limits are exercised."""
    return " " + sentences(r, r.randint(24, 64))


def cut(text: str, max_tokens: int | None, stops: list[str]) -> tuple[list[str], str]:
    """The tokens a model would emit for ``text`` under ``max_tokens`` and ``stops``, and why it
    stopped: "stop" (end of text or a stop string, which is not emitted) or "length"."""
    tokens, finish, _ = cut_at(text, max_tokens, stops)
    return tokens, finish


def cut_at(text: str, max_tokens: int | None, stops: list[str]) -> tuple[list[str], str, str | None]:
    """:func:`cut`, and the stop string the text ended at (None: it ended otherwise)."""
    tokens = pieces(text)
    finish = "stop"
    if max_tokens is not None and len(tokens) > max_tokens:
        tokens, finish = tokens[:max_tokens], "length"
    emitted = "".join(tokens)
    # A stop string only counts if it appears in what was generated before the limit hit.
    hits = [(emitted.find(s), s) for s in stops if s and s in emitted]
    if hits:
        at, stop = min(hits, key=lambda hit: hit[0])
        return pieces(emitted[:at]), "stop", stop
    return tokens, finish, None
