"""Token pieces to text (loom.plugins.llamacpp.textstream): split characters and stop strings."""

from __future__ import annotations

import pytest
from loom.plugins.llamacpp.textstream import TextStream


def feed(stream: TextStream, pieces: list[bytes]) -> list[str]:
    return [stream.push(p) for p in pieces]


def test_a_character_split_across_tokens_waits_for_its_last_byte():
    s = TextStream([])
    snow = "☃".encode()
    assert feed(s, [b"a", snow[:1], snow[1:2], snow[2:], b"b"]) == ["a", "", "", "☃", "b"]
    assert s.finish() == ""


def test_text_is_cut_before_the_stop_string_even_across_tokens():
    s = TextStream(["END"])
    out = feed(s, [b"one E", b"N", b"D two"])
    assert "".join(out) == "one " and s.stopped
    assert s.push(b"more") == "" and s.finish() == ""


def test_the_earliest_stop_string_is_the_one_matched():
    s = TextStream(["two", "one"])
    assert s.matched is None
    assert "".join(feed(s, [b"zero one two"])) == "zero " and s.matched == "one"


def test_held_text_that_is_not_a_stop_is_released():
    s = TextStream(["ab"])
    assert feed(s, [b"xa", b"c"]) == ["x", "ac"]
    assert s.push(b"a") == "" and s.finish() == "a"


def test_the_earliest_stop_wins_and_overlaps_are_held():
    s = TextStream(["aab", "zz"])
    assert "".join(feed(s, [b"a", b"a", b"a", b"b", b"zz"])) == "a"
    assert s.stopped


@pytest.mark.parametrize("stop", [[], [""]])
def test_no_stop_strings_pass_everything(stop):
    s = TextStream(stop)
    assert feed(s, [b"hello", b" world"]) == ["hello", " world"]


def test_an_invalid_byte_becomes_a_replacement_character():
    s = TextStream([])
    assert s.push(b"\xff") == "\ufffd"
    assert s.push(b"\xe2\x98") == "" and s.finish() == "\ufffd"
