"""What one llama.cpp generation needs, as plain data: prompt, grammar and sampling parameters.

A request becomes a :class:`Generation` here (the prompt rendered by :mod:`.chat_prompt`, the
grammar by :mod:`.grammars`); the batch loop (:mod:`.batching`, started by
:meth:`.engine.Runtime.start`) decodes it as one sequence among others, and the provider turns the
text into tool calls (:class:`loom.sdk.toolcalls.ToolCallParser`) when ``tools`` is set. Nothing
here touches a model.
"""

from __future__ import annotations

import random

from loom.sdk import InvalidRequest
from loom.sdk.params import DEFAULT_TEMPERATURE, DEFAULT_TOP_P
from loom.sdk.types import ChatCompletionRequest, CompletionRequest
from msgspec import Struct

from .chat_prompt import ChatTemplate
from .grammars import chat_grammar

#: OpenAI's sampling defaults (:mod:`loom.sdk.params`) apply when a request leaves them out.
#: llama.cpp's own top_k=40 and min_p=0.05 stay on unless asked otherwise: they are not OpenAI
#: parameters, and small local models ramble without them.
DEFAULT_TOP_K = 40
DEFAULT_MIN_P = 0.05


class Sampling(Struct, frozen=True, kw_only=True):
    temperature: float = DEFAULT_TEMPERATURE
    top_p: float = DEFAULT_TOP_P
    top_k: int = DEFAULT_TOP_K
    min_p: float = DEFAULT_MIN_P
    repeat_penalty: float = 1.0
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    #: token id -> bias added to its logit.
    logit_bias: dict[int, float] | None = None
    #: The uint32 seed llama.cpp samples with (see :func:`sampling_seed`).
    seed: int = 0
    #: Whether the request came with a seed (the engine then reproduces the prompt's evaluation).
    seeded: bool = False


class Generation(Struct, frozen=True, kw_only=True):
    """One generation: a prompt, where it may end, how to sample, and what to report."""

    #: Chat: the rendered prompt, tokenized with special tokens. Completions: the raw prompt,
    #: tokenized the way ``Llama.create_completion`` does.
    text: str
    chat: bool
    add_bos: bool = True
    max_tokens: int | None = None
    stop: list[str] = []
    #: Of ``stop``, the request's own stop strings (the others are the chat template's).
    own_stop: list[str] = []
    stop_token_ids: list[int] = []
    #: GBNF the sampled text must follow, or None.
    grammar: str | None = None
    sampling: Sampling = Sampling()
    #: Log probabilities of each generated token and this many alternatives; None: none.
    logprobs: int | None = None
    #: Parse tool calls out of the text.
    tools: bool = False
    #: The end (end tokens, the template's stop tokens) cannot come before this many tokens;
    #: ``ignore_eos``: not before ``max_tokens`` (vLLM's and llama-server's parameters).
    min_tokens: int = 0
    ignore_eos: bool = False
    #: The prompt's named prefix (``prompt_cache_key``): its state is kept on disk across restarts.
    cache_key: str | None = None


def sampling_seed(seed: int | None) -> int:
    """The uint32 seed llama.cpp samples with: the client's, or a fresh random one.

    Always passed explicitly: left out, llama-cpp-python derives each seed from the previous one,
    which repeats the same sequence after every restart.
    """
    random_seed = 0xFFFFFFFF  # llama.cpp's LLAMA_DEFAULT_SEED means "random": never send it
    if seed is None:
        return random.randrange(random_seed)
    value = seed & 0xFFFFFFFF  # OpenAI seeds are any int; wrap negatives and big ones
    return value - 1 if value == random_seed else value


def sampling(request: ChatCompletionRequest | CompletionRequest) -> Sampling:
    def given(value, default):
        return default if value is None else value

    chat = request if isinstance(request, ChatCompletionRequest) else None
    bias = chat.logit_bias if chat else None
    return Sampling(
        temperature=given(request.temperature, DEFAULT_TEMPERATURE),
        top_p=given(request.top_p, DEFAULT_TOP_P),
        top_k=given(chat.top_k, DEFAULT_TOP_K) if chat else DEFAULT_TOP_K,
        min_p=given(chat.min_p, DEFAULT_MIN_P) if chat else DEFAULT_MIN_P,
        repeat_penalty=given(chat.repeat_penalty, 1.0) if chat else 1.0,
        presence_penalty=request.presence_penalty or 0.0,
        frequency_penalty=request.frequency_penalty or 0.0,
        logit_bias={int(k): v for k, v in bias.items()} if bias else None,
        seed=sampling_seed(request.seed),
        seeded=request.seed is not None,
    )


def plan_chat(template: ChatTemplate, request: ChatCompletionRequest) -> Generation:
    """The generation for a chat request; raises InvalidRequest / UnsupportedParameter for what
    cannot be served, before anything runs."""
    prompt = template.render(request)
    grammar = chat_grammar(request)
    if template.knows_tools and request.tool_mode() == "auto" and request.response_format is None:
        # The model's own tool template taught it how to call; let it choose freely, and read
        # the calls from what it writes. A forced call is still sampled under the call grammar.
        grammar = None
    min_tokens, ignore_eos = request.min_tokens or 0, bool(request.ignore_eos)
    if (min_tokens or ignore_eos) and grammar is not None:
        # A grammar ends where it is complete; holding the end off then leaves nothing to sample.
        raise InvalidRequest(
            "llamacpp: min_tokens and ignore_eos cannot be combined with response_format or a forced tool call",
            param="min_tokens" if min_tokens else "ignore_eos",
        )
    return Generation(
        text=prompt.text,
        chat=True,
        add_bos=prompt.add_bos,
        max_tokens=request.token_limit(),
        stop=request.stop_list() + prompt.stop,
        own_stop=request.stop_list(),
        stop_token_ids=prompt.stop_token_ids,
        grammar=grammar,
        sampling=sampling(request),
        logprobs=(request.top_logprobs or 0) if request.logprobs else None,
        tools=request.tool_mode() != "none",
        min_tokens=min_tokens,
        ignore_eos=ignore_eos,
        cache_key=request.prompt_cache_key,
    )


def plan_completion(prompt: str, request: CompletionRequest) -> Generation:
    return Generation(
        text=prompt,
        chat=False,
        max_tokens=request.max_tokens,
        stop=request.stop_list(),
        own_stop=request.stop_list(),
        sampling=sampling(request),
        min_tokens=request.min_tokens or 0,
        ignore_eos=bool(request.ignore_eos),
    )
