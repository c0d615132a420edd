"""Provider calls are data: each survives a msgpack round trip as the ProviderCall union and
applies to the provider method its tag names."""

from __future__ import annotations

import msgspec
import pytest

from loom.sdk import calls
from loom.sdk.protocols import ImageJob, RunContext
from loom.sdk.types import Capability, ChatCompletionRequest, ChatMessage, CompletionRequest

CHAT = ChatCompletionRequest(model="m", messages=[ChatMessage(role="user", content="hi")], seed=3)
EXAMPLES = [
    calls.Chat(request=CHAT),
    calls.Complete(prompt="Once", request=CompletionRequest(model="m", prompt="Once")),
    calls.Embed(inputs=["a", "b"]),
    calls.GenerateImages(job=ImageJob(prompt="a fox", width=64, height=32, n=2, seed=1)),
    calls.Describe(image=b"\x89PNG", prompt="what?", detail="brief", max_tokens=9),
    calls.Score(image=b"\x89PNG", text="a fox"),
    calls.Translate(texts=["Good morning"], source="eng_Latn", target="fra_Latn"),
]


@pytest.mark.parametrize("call", EXAMPLES, ids=lambda c: c.method)
def test_round_trip_and_apply(call):
    wire = msgspec.msgpack.encode(call)
    back = msgspec.msgpack.decode(wire, type=calls.ProviderCall)
    assert back == call and type(back) is type(call)

    seen = {}

    class Recorder:
        def __getattr__(self, name):
            def method(*args):
                seen[name] = args
                return "result"

            return method

    ctx = RunContext()
    assert back.apply(Recorder(), ctx) == "result"
    assert list(seen) == [call.method]
    assert seen[call.method] == (*call.args(), ctx)


def test_every_capability_has_methods():
    assert set(calls.CAPABILITY_METHODS) == set(Capability)
    assert calls.CAPABILITY_METHODS[Capability.VISION] == ("describe", "score")
