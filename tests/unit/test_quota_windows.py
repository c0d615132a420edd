"""The quota windows on a fake clock: a place frees itself 60 s after it was taken, tokens leave
the window as they age, overrides replace the default field by field."""

from __future__ import annotations

import pytest
from loom.daemon.config import QuotaOverride, QuotasConfig
from loom.daemon.quotas import Quotas, Refused, duration, tokens_of
from loom.sdk.protocols import TextChunk


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_requests_leave_the_window_after_a_minute():
    clock = Clock()
    q = Quotas(QuotasConfig(requests_per_minute=2), clock)
    first = q.admit("a")
    assert first.headers["x-ratelimit-remaining-requests"] == "1"
    clock.now += 10
    assert q.admit("a").headers["x-ratelimit-reset-requests"] == "50s"
    with pytest.raises(Refused) as refused:
        q.admit("a")
    assert (
        refused.value.retry_after == pytest.approx(50)
        and refused.value.headers["x-ratelimit-remaining-requests"] == "0"
    )
    q.admit("b")  # another principal's window
    clock.now += 50
    assert q.admit("a").headers["x-ratelimit-remaining-requests"] == "0"


def test_tokens_and_places():
    clock = Clock()
    q = Quotas(QuotasConfig(tokens_per_minute=100, max_concurrent=1), clock)
    place = q.admit("a")
    with pytest.raises(Refused, match="1 request at once"):
        q.admit("a")
    assert place.meter is not None
    place.meter([TextChunk(text="", prompt_tokens=30, completion_tokens=80), TextChunk(text="x")])
    place.release()
    with pytest.raises(Refused, match="100 tokens per minute") as refused:
        q.admit("a")
    assert refused.value.headers["x-ratelimit-remaining-tokens"] == "0"
    assert refused.value.headers["x-ratelimit-reset-tokens"] == "1m0s"
    clock.now += 61
    assert q.admit("a").headers["x-ratelimit-remaining-tokens"] == "100"


def test_overrides_replace_the_default_field_by_field():
    q = Quotas(
        QuotasConfig(requests_per_minute=5, max_concurrent=2, principals={"ops": QuotaOverride(max_concurrent=0)})
    )
    assert (q.limits("ops").requests_per_minute, q.limits("ops").max_concurrent) == (5, 0)
    assert q.limits("anyone").max_concurrent == 2
    assert not Quotas(QuotasConfig()).enabled and Quotas(QuotasConfig()).admit("a").headers == {}


def test_durations_and_tokens_as_openai_and_the_models_give_them():
    assert [duration(s) for s in (0.02, 1, 59.2, 360)] == ["20ms", "1s", "1m0s", "6m0s"]
    assert tokens_of(TextChunk(text="hi")) == 0 and tokens_of(TextChunk(text="", completion_tokens=3)) == 3
