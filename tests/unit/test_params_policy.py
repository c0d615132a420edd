"""The parameter policy table (loom.sdk.params): consistent with the wire types, the providers and
README, and what "asks for something" means."""

from __future__ import annotations

import re
import tomllib

import msgspec
import pytest
from loom.daemon.config import ImageURLs
from loom.plugins.llamacpp import LlamaCppProvider
from loom.plugins.mock import MockProvider
from loom.plugins.openai import OpenAIProvider
from loom.sdk import params
from loom.sdk.protocols import Provider
from loom.sdk.responses import CreateResponseRequest
from loom.sdk.types import ChatCompletionRequest

from tests.conftest import ROOT


def test_every_row_names_real_fields():
    chat = {f.name for f in msgspec.structs.fields(ChatCompletionRequest)}
    responses = {f.name for f in msgspec.structs.fields(CreateResponseRequest)}
    for row in params.TABLE:
        if row.chat:
            assert row.chat in chat, row
        if row.responses:
            assert row.responses.split(".")[0] in responses, row
    # ...and every request field has a row (nothing is accepted without a policy).
    named_chat = {row.chat for row in params.TABLE}
    named_responses = {row.responses.split(".")[0] for row in params.TABLE if row.responses}
    assert chat - named_chat == set()
    assert responses - named_responses - {"reasoning", "text"} == set()


def test_providers_declare_only_optional_parameters():
    for cls in (Provider, MockProvider, LlamaCppProvider, OpenAIProvider):
        assert cls.parameters <= params.OPTIONAL, cls


def request(**fields) -> ChatCompletionRequest:
    return msgspec.convert(
        {"model": "m", "messages": [{"role": "user", "content": "x"}], **fields}, ChatCompletionRequest
    )


@pytest.mark.parametrize(
    "fields",
    [
        {"logprobs": False},
        {"logit_bias": {}},
        {"presence_penalty": 0.0},
        {"modalities": ["text"]},
        {"repeat_penalty": 1.0},
        {"response_format": {"type": "text"}},
        {"metadata": {"a": "b"}, "store": True, "user": "u", "service_tier": "auto"},
    ],
)
def test_values_that_ask_nothing_pass_everywhere(fields):
    assert params.asked(request(**fields), frozenset()) == []


def test_asked_lists_unhonoured_parameters_in_table_order_with_companions():
    req = request(top_k=3, logprobs=True, top_logprobs=2, tools=[{"type": "function", "function": {"name": "f"}}])
    assert params.asked(req, frozenset()) == ["tools", "logprobs", "top_logprobs", "top_k"]
    # Honouring tools and logprobs covers tool_choice, parallel_tool_calls and top_logprobs.
    req = request(
        tools=[{"type": "function", "function": {"name": "f"}}], tool_choice="auto", logprobs=True, top_logprobs=1
    )
    assert params.asked(req, frozenset({"tools", "logprobs"})) == []


def test_readme_holds_the_table_and_a_decodable_image_urls_example():
    readme = (ROOT / "README.md").read_text()
    table = re.search(r"<!-- params-table[^>]*-->\n(.*?)\n<!-- /params-table -->", readme, re.DOTALL).group(1)
    assert table == params.markdown_table(), "README's parameter table is stale: paste params.markdown_table()"
    block = re.search(r"```toml\n(\[daemon\.image_urls\].*?)```", readme, re.DOTALL).group(1)
    msgspec.convert(tomllib.loads(block)["daemon"]["image_urls"], ImageURLs, strict=True)
