"""TransformersTextProvider: chat, completions and embeddings from any causal language model.

GPT-2 class story models (no chat template) and instruction-tuned models (with one) alike: a
model's own chat template is used when it has one, ``options.chat_template`` when set, and a
plain "User: ... / Assistant:" transcript otherwise. Text streams token by token through
transformers' ``TextIteratorStreamer``. torch and transformers are imported by ``load``.

Tools go to the chat template (``apply_chat_template(..., tools=...)``) when it lays them out, and
into a system message otherwise; calls are parsed out of the generated text
(:mod:`loom.sdk.toolcalls`). Nothing constrains sampling here, so a forced call (``tool_choice``
required or named) is refused: the llamacpp provider serves those with a grammar.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from typing import Any, ClassVar

from loom.sdk import (
    Capability,
    CapabilityNotSupported,
    Embeddings,
    InvalidRequest,
    RunContext,
    TextChunk,
    UnsupportedParameter,
    toolcalls,
)
from loom.sdk.torchutil.images import is_image_uri
from loom.sdk.types import ChatCompletionRequest, CompletionRequest, TextFormat

from .base import AutoModelProvider
from .options import TextOptions

#: Without a chat template a turn is written "Role: text"; generation stops where the model
#: starts writing the next user turn itself.
_TRANSCRIPT_STOPS = ["\nUser:", "\nSystem:"]
EMBED_MAX_TOKENS = 2048


class TransformersTextProvider(AutoModelProvider):
    """A causal LM (``AutoModelForCausalLM``) on CPU or one GPU."""

    name: ClassVar[str] = "transformers"
    capabilities: ClassVar[frozenset[Capability]] = frozenset(
        {Capability.CHAT, Capability.COMPLETION, Capability.EMBEDDING}
    )
    Options: ClassVar[type[TextOptions]] = TextOptions
    parameters: ClassVar[frozenset[str]] = frozenset({"tools", "top_k", "min_p", "repeat_penalty"})
    auto_class = "AutoModelForCausalLM"

    # --- chat and completions ---------------------------------------------------------------------

    def chat(self, request: ChatCompletionRequest, ctx: RunContext) -> Iterator[TextChunk]:
        self.loaded_device()
        refuse_unsupported(request, self.spec.id)
        if request.has_images():
            raise CapabilityNotSupported(
                f"model {self.spec.id!r} reads text only; send images to a vision model", param="messages"
            )
        if request.tool_mode() in ("required", "named"):
            raise UnsupportedParameter(
                f"transformers model {self.spec.id!r} cannot force a tool call (tool_choice "
                f"{'required' if request.tool_choice == 'required' else 'naming a function'}): nothing constrains "
                'its sampling; use tool_choice "auto", or a llamacpp model',
                param="tool_choice",
            )
        text, templated = self._chat_text(request)
        chunks = self._generate(
            text,
            add_special_tokens=not templated,
            max_tokens=request.token_limit(),
            request=request,
            stops=request.stop_list() + ([] if templated else _TRANSCRIPT_STOPS),
            ctx=ctx,
            param="messages",
        )
        if request.tool_mode() == "none":
            return chunks
        return toolcalls.parse_stream(chunks, lambda: f"call_{secrets.token_hex(12)}")

    def complete(self, prompt: str, request: CompletionRequest, ctx: RunContext) -> Iterator[TextChunk]:
        self.loaded_device()
        refuse_unsupported(request, self.spec.id)
        return self._generate(
            prompt,
            add_special_tokens=True,
            max_tokens=request.max_tokens,
            request=request,
            stops=request.stop_list(),
            ctx=ctx,
            param="prompt",
        )

    def _chat_text(self, request: ChatCompletionRequest) -> tuple[str, bool]:
        """The prompt text and whether a chat template made it."""
        template = self.options.chat_template or getattr(self._tokenizer, "chat_template", None)
        tools = request.callable_tools()
        if template and "tools" in template:
            turns: list[dict[str, Any]] = toolcalls.template_messages(request.messages)
            kwargs = {"tools": toolcalls.tool_specs(tools)} if tools else {}
        else:
            turns = toolcalls.with_tools_prompt(toolcalls.text_messages(request.messages), request)
            kwargs = {}
        if template:
            try:
                text = self._tokenizer.apply_chat_template(
                    turns, chat_template=template, tokenize=False, add_generation_prompt=True, **kwargs
                )
            except Exception as e:  # jinja2 errors, e.g. a template that refuses a system turn
                raise InvalidRequest(
                    f"the chat template of model {self.spec.id!r} refused these messages: {e}", param="messages"
                ) from None
            return text, True
        lines = [f"{t['role'].capitalize()}: {t['content']}" for t in turns]
        return "\n".join(lines) + "\nAssistant:", False

    def _generate(
        self,
        text: str,
        *,
        add_special_tokens: bool,
        max_tokens: int | None,
        request: ChatCompletionRequest | CompletionRequest,
        stops: list[str],
        ctx: RunContext,
        param: str,
    ) -> Iterator[TextChunk]:
        e, device, tok = self._engine, self.loaded_device(), self._tokenizer
        encoded = tok(text, return_tensors="pt", add_special_tokens=add_special_tokens)
        prompt_tokens = int(encoded["input_ids"].shape[1])
        if prompt_tokens == 0:
            # An empty prompt: start from the beginning-of-text token, as GPT-2 was trained to.
            start = tok.bos_token_id if tok.bos_token_id is not None else tok.eos_token_id
            encoded = tok.pad([{"input_ids": [start]}], return_tensors="pt")
            prompt_tokens = 1
        new_tokens = e.budget(self._model, prompt_tokens, max_tokens or self.options.max_new_tokens, param)
        return e.stream_generate(
            self._model,
            tok,
            dict(encoded.to(device)),
            prompt_tokens=prompt_tokens,
            max_new_tokens=new_tokens,
            sample=e.sampling(
                request.temperature,
                request.top_p,
                top_k=getattr(request, "top_k", None),
                min_p=getattr(request, "min_p", None),
                repetition_penalty=getattr(request, "repeat_penalty", None),
            ),
            seed=request.seed,
            stop=stops,
            ctx=ctx,
            lock=self._lock,
            name=f"{self.name} model {self.spec.id!r}",
        )

    # --- embeddings -------------------------------------------------------------------------------

    def embed(self, inputs: list[str], ctx: RunContext) -> Embeddings:
        device = self.loaded_device()
        if any(is_image_uri(i) for i in inputs):
            raise CapabilityNotSupported(f"model {self.spec.id!r} embeds text only, not images", param="input")
        limit = min(self._engine.context_limit(self._model) or EMBED_MAX_TOKENS, EMBED_MAX_TOKENS)
        with self._lock:
            vectors, tokens = self._engine.embed_texts(
                self._model,
                self._tokenizer,
                inputs,
                device=device,
                max_length=limit,
                pooling="mean",
                batch_size=16,
                ctx=ctx,
                hidden_states=True,
            )
        return Embeddings(vectors=vectors, prompt_tokens=tokens)


def refuse_unsupported(request: ChatCompletionRequest | CompletionRequest, model_id: str) -> None:
    """Parameters a transformers model cannot honour are refused, never dropped."""
    for param in ("presence_penalty", "frequency_penalty"):
        if getattr(request, param, None):
            raise UnsupportedParameter(f"{param} is not supported by transformers model {model_id!r}", param=param)
    fmt = getattr(request, "response_format", None)
    if fmt is not None and not isinstance(fmt, TextFormat):
        raise UnsupportedParameter(
            f"transformers model {model_id!r} cannot constrain its output to JSON (response_format)",
            param="response_format",
        )
