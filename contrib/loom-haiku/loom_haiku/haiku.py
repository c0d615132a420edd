"""Reading a haiku out of a chat model's answer, and a rough syllable count to report with it."""

from __future__ import annotations

import re

MAX_LINE = 80
_BULLET = re.compile(r"^\s*(?:[-*•>]|\d+[.)])\s+")
_VOWELS = re.compile(r"[aeiouy]+")


def parse_haiku(text: str) -> tuple[list[str] | None, str | None]:
    """(the three lines, None) or (None, what is wrong). Markdown fences, quotes, bullets and a
    lead-in line such as "Here is a haiku:" are forgiven; the rest must be three short lines."""
    text = text.strip().strip("`").strip()
    lines = []
    for raw in text.splitlines():
        line = _BULLET.sub("", raw).strip().strip('"“”*_').strip()
        if line:
            lines.append(line)
    if len(lines) > 3 and lines[0].endswith(":"):
        lines = lines[1:]
    if len(lines) != 3:
        return None, f"it has {len(lines)} non-empty lines, a haiku has 3"
    long = [line for line in lines if len(line) > MAX_LINE]
    if long:
        return None, f"the line {long[0][:40]!r}... is too long for a haiku"
    return lines, None


def syllables(line: str) -> int:
    """Vowel groups per word, less a silent final e: good enough to show 5-7-5 at a glance."""
    total = 0
    for word in re.findall(r"[a-z']+", line.lower()):
        count = len(_VOWELS.findall(word))
        if word.endswith("e") and not word.endswith(("le", "ee")) and count > 1:
            count -= 1
        total += max(1, count)
    return total
