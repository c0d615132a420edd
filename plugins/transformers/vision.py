"""TransformersVisionProvider: describing images with captioning and image-text-to-text models.

Two kinds of model load through ``AutoModelForImageTextToText``:

* captioners (BLIP): no chat template; the caption continues the prompt, if one is given;
* chat-style models (BLIP-2 chat variants, LLaVA, Qwen-VL, ...): their processor has a chat
  template; the image and an instruction (by ``detail``, or the request's prompt) go in one turn.

Both also answer ``/v1/chat/completions`` with image parts. Scoring (CLIP, aesthetics) is the
openclip provider's job; asked of this one it is a 400.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, ClassVar

from loom.sdk import (
    Capability,
    CapabilityNotSupported,
    InvalidRequest,
    ModelSpec,
    RunContext,
    TextChunk,
    VisionScores,
)
from loom.sdk.torchutil import TorchProvider
from loom.sdk.torchutil.images import image_from_uri, open_image
from loom.sdk.types import ChatCompletionRequest, ImagePart, TextPart

from .options import VisionOptions
from .text import refuse_unsupported

#: Tokens a description may take, by ``detail``, when neither request nor options say.
DETAIL_TOKENS = {"brief": 30, "normal": 80, "detailed": 250}
#: The instruction chat-style models get when the request has no prompt.
DETAIL_PROMPTS = {
    "brief": "Describe this image in one short sentence.",
    "normal": "Describe this image.",
    "detailed": "Describe this image in detail: the subjects, the setting, the colours, the light and the mood.",
}
CHAT_MAX_TOKENS = 256


class TransformersVisionProvider(TorchProvider):
    name: ClassVar[str] = "transformers-vision"
    capabilities: ClassVar[frozenset[Capability]] = frozenset({Capability.VISION, Capability.CHAT})
    Options: ClassVar[type[VisionOptions]] = VisionOptions
    # generate() takes temperature, top_p, seed and stop only: JSON output and penalties are
    # refused by the daemon's policy table before the call (refuse_unsupported stays as a guard).
    parameters: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, spec: ModelSpec) -> None:
        super().__init__(spec)
        self._engine: Any = None
        self._model: Any = None
        self._processor: Any = None
        self._chat_style = False

    # --- life cycle -------------------------------------------------------------------------------

    def _import_runtime(self) -> None:
        from . import engine

        self._engine = engine

    def _prepare(self) -> None:
        from transformers import AutoModelForImageTextToText

        self._engine.import_architecture(AutoModelForImageTextToText, self.options, self.source())

    def _build(self, device: str, dtype: Any) -> None:
        from transformers import AutoModelForImageTextToText, AutoProcessor

        e, source = self._engine, self.source()
        self._processor = AutoProcessor.from_pretrained(source.location, **e.tokenizer_kwargs(self.options, source))
        model = AutoModelForImageTextToText.from_pretrained(
            source.location, **e.load_kwargs(self.options, source, device, dtype)
        )
        self._model = e.place(model, device, self.options)
        self._chat_style = bool(getattr(self._processor, "chat_template", None))

    def _modules(self) -> list[Any]:
        return [self._model]

    def _drop(self) -> None:
        self._model = self._processor = None

    @property
    def _tokenizer(self) -> Any:
        return getattr(self._processor, "tokenizer", self._processor)

    # --- vision -----------------------------------------------------------------------------------

    def describe(self, image: bytes, prompt: str | None, detail: str, max_tokens: int | None, ctx: RunContext) -> str:
        self.loaded_device()
        img = open_image(image, param="image")
        wanted = max_tokens or self.options.max_new_tokens or DETAIL_TOKENS.get(detail, DETAIL_TOKENS["normal"])
        if self._chat_style:
            text = prompt or DETAIL_PROMPTS.get(detail, DETAIL_PROMPTS["normal"])
            turn = {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": text}]}
            inputs = self._chat_inputs([turn], [img])
        else:
            inputs = self._caption_inputs(img, prompt)
        # Descriptions are greedy: the same image gets the same words.
        chunks = self._stream(inputs, wanted, self._engine.sampling(0, None), None, [], ctx, "prompt")
        words = "".join(c.text for c in chunks).strip()
        if prompt and not self._chat_style:
            words = f"{prompt.strip()} {words}".strip()  # a captioner continues the prompt
        return words

    def score(self, image: bytes, text: str, ctx: RunContext) -> VisionScores:
        ctx.check()
        raise CapabilityNotSupported(
            f"model {self.spec.id!r} describes images but does not score them; score with an openclip model",
            param="model",
        )

    # --- chat with images -------------------------------------------------------------------------

    def chat(self, request: ChatCompletionRequest, ctx: RunContext) -> Iterator[TextChunk]:
        self.loaded_device()
        refuse_unsupported(request, self.spec.id)
        images = [
            image_from_uri(url, param="messages") if url.startswith("data:") else _remote(url)
            for m in request.messages
            for url in m.images()
        ]
        if self._chat_style:
            turns = [_turn(m) for m in request.messages]
            inputs = self._chat_inputs(turns, images)
        else:
            if not images:
                raise InvalidRequest(
                    f"model {self.spec.id!r} is an image captioner: send an image in the messages", param="messages"
                )
            inputs = self._caption_inputs(images[-1], None)  # a captioner cannot follow instructions
        wanted = request.token_limit() or CHAT_MAX_TOKENS
        sample = self._engine.sampling(request.temperature, request.top_p)
        return self._stream(inputs, wanted, sample, request.seed, request.stop_list(), ctx, "messages")

    # --- shared -----------------------------------------------------------------------------------

    def _chat_inputs(self, turns: list[dict], images: list[Any]) -> Any:
        try:
            text = self._processor.apply_chat_template(turns, add_generation_prompt=True)
        except Exception as e:
            raise InvalidRequest(
                f"the chat template of model {self.spec.id!r} refused these messages: {e}", param="messages"
            ) from None
        return self._processor(images=images or None, text=text, return_tensors="pt")

    def _caption_inputs(self, img: Any, prompt: str | None) -> Any:
        return self._processor(images=img, text=prompt or None, return_tensors="pt")

    def _stream(
        self, inputs: Any, wanted: int, sample: dict, seed: int | None, stops: list[str], ctx: RunContext, param: str
    ) -> Iterator[TextChunk]:
        device = self.loaded_device()
        inputs = inputs.to(device)
        if "pixel_values" in inputs and self._dtype is not None:
            inputs["pixel_values"] = inputs["pixel_values"].to(self._dtype)
        ids = inputs.get("input_ids")
        prompt_tokens = int(ids.shape[1]) if ids is not None else 0
        new_tokens = self._engine.budget(self._model, prompt_tokens, wanted, param)
        return self._engine.stream_generate(
            self._model,
            self._tokenizer,
            dict(inputs),
            prompt_tokens=prompt_tokens,
            max_new_tokens=new_tokens,
            sample=sample,
            seed=seed,
            stop=stops,
            ctx=ctx,
            lock=self._lock,
            name=f"{self.name} model {self.spec.id!r}",
            set_pad=False,
        )


def _turn(message: Any) -> dict:
    """An OpenAI message as a processor chat turn: image placeholders and text, in order."""
    role = "system" if message.role == "developer" else message.role
    if isinstance(message.content, str) or message.content is None:
        return {"role": role, "content": [{"type": "text", "text": message.content or ""}]}
    parts = []
    for part in message.content:
        if isinstance(part, ImagePart):
            parts.append({"type": "image"})
        elif isinstance(part, TextPart):
            parts.append({"type": "text", "text": part.text})
    return {"role": role, "content": parts}


def _remote(url: str) -> Any:
    raise InvalidRequest("image parts must be data URIs: Loom does not fetch remote images", param="messages")
