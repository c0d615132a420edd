"""Reading a haiku out of what a chat model says."""

from __future__ import annotations

import pytest
from loom_haiku.haiku import parse_haiku, syllables

HAIKU = ["An old silent pond", "A frog jumps into the pond", "Splash! Silence again"]


@pytest.mark.parametrize(
    "text",
    [
        "\n".join(HAIKU),
        "```\n" + "\n".join(HAIKU) + "\n```",
        "Here is a haiku about a pond:\n\n" + "\n".join(HAIKU),
        "\n".join(f"- {line}" for line in HAIKU),
        "\n".join(f'"{line}"' for line in HAIKU),
        "\n\n".join(HAIKU) + "\n",
    ],
)
def test_forgiving_about_wrapping(text):
    assert parse_haiku(text) == (HAIKU, None)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("A frog jumps into the pond", "1 non-empty lines"),
        ("one\ntwo\nthree\nfour", "4 non-empty lines"),
        ("short\n" + "word " * 30 + "\nshort", "too long"),
    ],
)
def test_refuses_what_is_not_three_short_lines(text, problem):
    lines, why = parse_haiku(text)
    assert lines is None and problem in why


def test_syllables_roughly_five_seven_five():
    assert [syllables(line) for line in HAIKU] == [5, 7, 5]
