"""Provider calls are data: each survives a msgpack round trip as the ProviderCall union and
applies to the provider method its tag names."""

from __future__ import annotations

import msgspec
import pytest
from loom.sdk import calls
from loom.sdk.protocols import ImageJob, RunContext, TextChunk, ToolCallDelta
from loom.sdk.types import Capability, ChatCompletionRequest, CompletionRequest, TokenLogprob, TopLogprob, message

CHAT = ChatCompletionRequest(model="m", messages=[message("user", content="hi")], seed=3)
TOOLS_CHAT = msgspec.convert(
    {
        "model": "m",
        "messages": [
            {"role": "user", "content": "weather?"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [{"id": "c", "type": "function", "function": {"name": "f", "arguments": "{}"}}],
            },
            {"role": "tool", "tool_call_id": "c", "content": "sunny"},
        ],
        "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": {}}}}],
        "tool_choice": {"type": "function", "function": {"name": "f"}},
        "logprobs": True,
        "top_logprobs": 2,
        "logit_bias": {"5": -1.0},
    },
    ChatCompletionRequest,
)
EXAMPLES = [
    calls.Chat(request=CHAT),
    calls.Chat(request=TOOLS_CHAT),
    calls.Complete(prompt="Once", request=CompletionRequest(model="m", prompt="Once")),
    calls.Embed(inputs=["a", "b"]),
    calls.GenerateImages(job=ImageJob(prompt="a fox", width=64, height=32, n=2, seed=1)),
    calls.Describe(image=b"\x89PNG", prompt="what?", detail="brief", max_tokens=9),
    calls.Score(image=b"\x89PNG", text="a fox"),
    calls.Translate(texts=["Good morning"], source="eng_Latn", target="fra_Latn"),
]


@pytest.mark.parametrize("call", EXAMPLES, ids=lambda c: f"{c.method}-{EXAMPLES.index(c)}")
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


def test_the_protocols_and_the_call_structs_agree():
    """The protocols document each method and the structs carry its arguments: checked on import,
    and here, that a drift is refused."""
    assert calls.CAPABILITY_PROTOCOLS[Capability.VISION].__name__ == "VisionProvider"
    for cls in calls.CALLS:
        assert callable(getattr(cls.protocol, cls.__struct_config__.tag))

    class Drifted(calls.Call, frozen=True, tag="describe"):
        image: bytes
        prompt_text: str  # the protocol's parameter is `prompt`
        capability = Capability.VISION
        protocol = calls.CAPABILITY_PROTOCOLS[Capability.VISION]
        returns = str

    saved = calls.CALLS
    try:
        calls.CALLS = (*saved, Drifted)
        with pytest.raises(TypeError, match=r"VisionProvider.describe.* does not match loom.sdk.calls.Drifted"):
            calls._check_protocols()
    finally:
        calls.CALLS = saved


def test_missing_methods_names_what_a_declared_capability_lacks():
    from loom.sdk import Provider

    class Half(Provider):
        name = "half"
        capabilities = frozenset({Capability.VISION, Capability.EMBEDDING})

        def embed(self, inputs, ctx): ...

        def describe(self, image, prompt, detail, max_tokens, ctx): ...

    assert calls.missing_methods(Half) == [(Capability.VISION, "score")]


def test_chunks_with_tool_calls_and_logprobs_cross_a_wire():
    chunk = TextChunk(
        text="Hi",
        tool_calls=[ToolCallDelta(index=0, id="call_1", name="f"), ToolCallDelta(index=0, arguments="{}")],
        logprobs=[
            TokenLogprob(token="Hi", logprob=-0.1, bytes=[72, 105], top_logprobs=[TopLogprob(token="Hi", logprob=-0.1)])
        ],
    )
    assert (
        msgspec.msgpack.decode(msgspec.msgpack.encode(chunk), type=calls.result_type(calls.Chat(request=CHAT))) == chunk
    )
