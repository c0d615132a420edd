"""Chat messages (and tools) rendered into the prompt text a GGUF model was trained on.

Loom renders chat prompts itself rather than through ``Llama.create_chat_completion``: its chat
handlers take ``tools`` only to hand them to the template, never parse calls back, and know no
``required``. The template comes from ``options.chat_template``, else the GGUF's own
(``tokenizer.chat_template``, rendered by llama-cpp-python's ``Jinja2ChatFormatter`` exactly as
its handler would), else a named ``chat_format``.

A template that uses ``tools`` gets them, with assistant ``tool_calls`` and ``tool`` messages in
the shape Hugging Face templates expect. Any other template (SmolLM2's ChatML, the named formats)
gets the tools described in a system message and earlier calls and results written as text, in
the ``<tool_call>`` form the call grammar (:mod:`.grammars`) produces (both from
:mod:`loom.sdk.toolcalls`).

Imported from ``load`` on (it imports llama_cpp's chat formats).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from llama_cpp import llama_chat_format
from loom.sdk import CapabilityNotSupported, InvalidRequest, ProviderError, toolcalls
from loom.sdk.types import ChatCompletionRequest
from msgspec import Struct


class Prompt(Struct, frozen=True, kw_only=True):
    """A rendered chat prompt: text to tokenize, and where the generation ends."""

    text: str
    #: Tokenize with a BOS token in front (False when the template wrote its own).
    add_bos: bool
    #: Stop strings the chat format adds (its end-of-turn marker).
    stop: list[str] = []
    #: Token ids that end the turn as soon as they are sampled.
    stop_token_ids: list[int] = []


class ChatTemplate:
    """One model's chat format: ``render(request)`` gives the :class:`Prompt`."""

    def __init__(self, formatter: Callable[..., Any], *, knows_tools: bool, name: str) -> None:
        self._formatter = formatter
        #: Whether the template itself lays out tools (uses the ``tools`` variable).
        self.knows_tools = knows_tools
        self.name = name

    @classmethod
    def jinja(cls, template: str, *, bos: str, eos: str, eos_id: int, name: str) -> ChatTemplate:
        formatter = llama_chat_format.Jinja2ChatFormatter(
            template=template, eos_token=eos, bos_token=bos, stop_token_ids=[eos_id] if eos_id >= 0 else None
        )
        return cls(formatter, knows_tools="tools" in template, name=name)

    @classmethod
    def named(cls, chat_format: str) -> ChatTemplate:
        """One of llama-cpp-python's named formats ("chatml", "llama-2", ...)."""
        try:
            handler = llama_chat_format.get_chat_completion_handler(chat_format)
        except Exception as e:
            raise ProviderError(f"llamacpp: unknown chat_format {chat_format!r}: {e}") from None
        formatter = inspect.getclosurevars(handler).nonlocals.get("chat_formatter")
        if formatter is None:
            raise ProviderError(
                f"llamacpp: chat_format {chat_format!r} is a handler of its own, not a prompt format; "
                "set options.chat_template to a Jinja chat template instead"
            )
        return cls(formatter, knows_tools=False, name=chat_format)

    @classmethod
    def of_model(cls, model: Any, chat_format: str | None, chat_template: str | None) -> ChatTemplate:
        """The template for a loaded model (llama-cpp-python's ``LlamaModel``), chosen as
        llama-cpp-python's ``Llama`` would (options first)."""
        if chat_template is None and chat_format is not None:
            return cls.named(chat_format)
        template = chat_template or model.metadata().get("tokenizer.chat_template")
        if template is None:
            return cls.named("llama-2")  # llama-cpp-python's own fallback
        eos_id, bos_id = model.token_eos(), model.token_bos()
        eos = model.token_get_text(eos_id) if eos_id != -1 else ""
        bos = model.token_get_text(bos_id) if bos_id != -1 else ""
        source = "options.chat_template" if chat_template else "the GGUF's chat template"
        return cls.jinja(template, bos=bos, eos=eos, eos_id=eos_id, name=source)

    def render(self, request: ChatCompletionRequest) -> Prompt:
        if request.has_images():
            raise CapabilityNotSupported("llamacpp models do not read images", param="messages")
        tools = request.callable_tools()
        if self.knows_tools:
            messages: list = toolcalls.template_messages(request.messages)
            kwargs = {"tools": toolcalls.tool_specs(tools)} if tools else {}
        else:
            messages = toolcalls.with_tools_prompt(toolcalls.text_messages(request.messages), request)
            kwargs = {}
        try:
            result = self._formatter(messages=messages, **kwargs)
        except Exception as e:  # jinja2 errors, raise_exception() of a template refusing a turn
            raise InvalidRequest(
                f"the chat template ({self.name}) refused these messages: {e}", param="messages"
            ) from None
        stop = result.stop if isinstance(result.stop, list) else [result.stop] if result.stop else []
        ids = getattr(self._formatter, "stop_token_ids", None) or set()
        return Prompt(text=result.prompt, add_bos=not result.added_special, stop=stop, stop_token_ids=sorted(ids))
