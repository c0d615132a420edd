"""``OpenAIProvider``: a Loom model served by an OpenAI-compatible service, through ``AsyncOpenAI``.

Every method is ``async`` (chat and completions are async generators), so the scheduler runs them on
the event loop. All models of one instance share its client (:mod:`.clients`), whose own retries
try again after timeouts, connection errors and 5xx (never a 429, and never after a chunk has been
passed on). Keys are read from the environment on each call and never leave the client's headers.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, ClassVar, TypeVar
from urllib.parse import urlsplit

import msgspec
from msgspec import Struct

from loom.sdk import (
    Capability,
    ConfigError,
    Embeddings,
    ImageJob,
    ModelSpec,
    Provider,
    ProviderError,
    RunContext,
    TextChunk,
    VisionScores,
)
from loom.sdk import params as policy
from loom.sdk.protocols import ToolCallDelta
from loom.sdk.types import ChatCompletionRequest, CompletionRequest, TokenLogprob

from . import prompts
from .clients import Client, client_for
from .errors import Upstream, attempts_of, from_exception, safe_url
from .options import Instance, ModelOptions, PluginOptions

log = logging.getLogger("loom.plugins.openai")
T = TypeVar("T")
_TRANSLATE_PARALLEL = 8


# The few fields Loom reads from plain (non-stream) answers, decoded by msgspec: no pydantic models
# on the hot path, and unknown fields of any service are ignored.
class _Function(Struct):
    name: str = ""
    arguments: str = ""


class _ToolCall(Struct):
    id: str = ""
    function: _Function = msgspec.field(default_factory=_Function)


class _Message(Struct):
    content: str | None = None
    tool_calls: list[_ToolCall] | None = None


class _Logprobs(Struct):
    content: list[TokenLogprob] | None = None


class _Choice(Struct):
    index: int = 0
    message: _Message | None = None
    text: str | None = None
    finish_reason: str | None = None
    logprobs: _Logprobs | None = None


class _Usage(Struct):
    prompt_tokens: int | None = None
    completion_tokens: int | None = None


class _TextAnswer(Struct):
    choices: list[_Choice] = []
    usage: _Usage | None = None


class _Vector(Struct):
    embedding: list[float] | str
    index: int = 0


class _EmbeddingAnswer(Struct):
    data: list[_Vector]
    usage: _Usage | None = None


class _Image(Struct):
    b64_json: str | None = None
    url: str | None = None


class _ImagesAnswer(Struct):
    data: list[_Image]


class _ModelId(Struct):
    id: str


class _ModelList(Struct):
    data: list[_ModelId] = []


class OpenAIProvider(Provider):
    name: ClassVar[str] = "openai"
    capabilities: ClassVar[frozenset[Capability]] = frozenset(Capability)
    Options: ClassVar[type[ModelOptions]] = ModelOptions
    local: ClassVar[bool] = False
    #: Every optional parameter goes to the service as it came (tools untouched, tool-call
    #: deltas back); a service that lacks one refuses it, and that 400 reaches the client.
    parameters: ClassVar[frozenset[str]] = policy.OPTIONAL
    #: What ``size = "auto"`` means: the size every OpenAI-compatible image API accepts.
    default_size: ClassVar[tuple[int, int]] = (1024, 1024)

    def __init__(self, spec: ModelSpec) -> None:
        super().__init__(spec)
        self.options: ModelOptions = spec.options if spec.options is not None else ModelOptions()
        plugin: PluginOptions = spec.plugin_options or PluginOptions()
        self.instance_name = self.options.instance or _only_instance(plugin, spec.id)
        instance = plugin.instances.get(self.instance_name)
        if instance is None:
            have = ", ".join(sorted(plugin.instances)) or "none"
            raise ConfigError(
                f"model {spec.id!r}: options.instance: no instance named {self.instance_name!r} "
                f"in [plugins.openai.instances] (configured: {have})"
            )
        self.instance: Instance = instance
        #: The service's id for this model.
        self.remote_model = self.options.model or instance.model_map.get(spec.id, spec.id)
        self.health_interval = plugin.health_interval
        self.upstream = Upstream(
            model=spec.id,
            instance=self.instance_name,
            url=safe_url(instance.base_url),
            key_env=instance.api_key.env if instance.api_key else None,
            timeout=instance.timeout,
        )
        self._clients = client_for(self.instance_name, instance)
        self._current: Client | None = None

    # --- the client ---------------------------------------------------------------------------

    def client(self):
        """The instance's shared ``AsyncOpenAI`` client (:mod:`.clients`).

        Raises AuthenticationFailed naming the variable when the instance's key is not set.
        """
        self._current = self._clients.get(self.upstream)
        return self._current.openai

    @property
    def _opts(self) -> dict[str, Any]:
        return self._current.opts if self._current else {}

    @property
    def _post_opts(self) -> dict[str, Any]:
        return self._current.post_opts if self._current else {}

    @property
    def _secrets(self) -> tuple[str, ...]:
        return self._current.secrets if self._current else ()

    async def aclose(self) -> None:
        """Close the instance's client (every model on the instance shares it)."""
        await self._clients.aclose()

    # --- calling the service ------------------------------------------------------------------

    def _who(self) -> str:
        return f"instance '{self.instance_name}' ({self.upstream.url})"

    def _error(self, e: BaseException) -> BaseException:
        mapped = from_exception(e, self.upstream, self._secrets, attempts_of(e))
        return mapped if mapped is not None else e

    async def _request(self, make: Callable[[], Awaitable[T]]) -> T:
        """``make()``, its errors as Loom's (the client has done its retries)."""
        try:
            return await make()
        except Exception as e:
            raise self._error(e) from None

    async def _post(self, path: str, body: dict, type_: type[T]) -> T:
        """POST ``body`` as JSON to ``path`` of the service; decode what Loom reads of the answer.

        Through ``AsyncOpenAI.post``, the package's call for any endpoint: its base URL, headers,
        timeout and error classes, without building and validating typed models on the hot path
        (that costs more than the HTTP round trip to a local upstream).
        """
        import httpx

        client = self.client()
        payload = {"content": msgspec.json.encode(body)} if _post_takes_content() else {"body": body}
        raw = await self._request(lambda: client.post(path, cast_to=httpx.Response, options=self._post_opts, **payload))
        return self._decode(raw, type_)

    def _decode(self, raw, type_: type[T]) -> T:
        try:
            return msgspec.json.decode(raw.content, type=type_)
        except msgspec.MsgspecError as e:
            raise ProviderError(
                f"instance '{self.instance_name}' answered model '{self.spec.id}' with something Loom cannot read: {e}"
            ) from None

    async def _stream(self, create: Callable[[], Awaitable[Any]], piece_of) -> AsyncIterator[TextChunk]:
        """Pass a stream through chunk by chunk; usage and the finish reason come last."""
        stream = await self._request(create)
        finish, usage = None, None
        try:
            async for chunk in stream:
                if getattr(chunk, "usage", None) is not None:
                    usage = chunk.usage
                for choice in chunk.choices:
                    if choice.index != 0:
                        continue
                    piece = piece_of(choice)
                    if piece is not None:
                        yield piece
                    finish = choice.finish_reason or finish
        except Exception as e:
            raise self._error(e) from None
        finally:
            await stream.close()
        if finish is None:
            raise ProviderError(
                f"instance '{self.instance_name}' ({self.upstream.url}) ended the stream of model "
                f"'{self.spec.id}' before it finished"
            )
        yield TextChunk(
            finish_reason=finish,
            prompt_tokens=usage.prompt_tokens if usage else None,
            completion_tokens=usage.completion_tokens if usage else None,
        )

    def _stream_args(self) -> dict:
        usage = {"stream_options": {"include_usage": True}} if self.instance.stream_usage else {}
        return {"stream": True, **usage, **self._opts}

    async def _chat_text(self, messages: list[dict], **params) -> str:
        body = {"model": self.remote_model, "messages": messages, **params}
        answer = await self._post("/chat/completions", body, _TextAnswer)
        if not answer.choices or answer.choices[0].message is None:
            raise ProviderError(f"{self._who()} answered model '{self.spec.id}' with no choices")
        return (answer.choices[0].message.content or "").strip()

    # --- text ---------------------------------------------------------------------------------

    def _chat_params(self, req: ChatCompletionRequest) -> dict:
        params: dict[str, Any] = {"model": self.remote_model, "messages": msgspec.to_builtins(req.messages)}
        _copy(
            params,
            req,
            "temperature",
            "top_p",
            "max_tokens",
            "max_completion_tokens",
            "stop",
            "seed",
            "presence_penalty",
            "frequency_penalty",
            "user",
        )
        # The optional parameters pass through as sent (the policy table lets only those the
        # request asks for reach a provider); Loom's own sampling knobs ride in the body too.
        for name in policy.OPTIONAL:
            value = getattr(req, name, None)
            if value is not None and name not in params:
                params[name] = msgspec.to_builtins(value)
        return params

    async def chat(self, request: ChatCompletionRequest, ctx: RunContext) -> AsyncIterator[TextChunk]:
        """Image parts go to the service as they came (data URIs)."""
        ctx.check()
        params = self._chat_params(request)
        if not request.stream:
            # A plain answer is one chunk: one upstream response instead of an event per token.
            yield self._single(await self._post("/chat/completions", params, _TextAnswer), chat=True)
            return
        client = self.client()
        extra = {k: params.pop(k) for k in ("top_k", "min_p", "repeat_penalty") if k in params}
        create = lambda: client.chat.completions.create(**params, **self._stream_args(), extra_body=extra or None)  # noqa: E731
        async for chunk in self._stream(create, _chat_piece):
            ctx.check()
            yield chunk

    async def complete(self, prompt: str, request: CompletionRequest, ctx: RunContext) -> AsyncIterator[TextChunk]:
        ctx.check()
        params: dict[str, Any] = {"model": self.remote_model, "prompt": prompt}
        params["max_tokens"] = request.max_tokens
        _copy(params, request, "temperature", "top_p", "stop", "seed", "presence_penalty", "frequency_penalty", "user")
        if not request.stream:
            yield self._single(await self._post("/completions", params, _TextAnswer), chat=False)
            return
        client = self.client()
        create = lambda: client.completions.create(**params, **self._stream_args())  # noqa: E731
        async for chunk in self._stream(create, lambda c: TextChunk(text=c.text) if c.text else None):
            ctx.check()
            yield chunk

    def _single(self, answer: _TextAnswer, *, chat: bool) -> TextChunk:
        choice = next((c for c in answer.choices if c.index == 0), None)
        if choice is None:
            raise ProviderError(f"{self._who()} answered model '{self.spec.id}' with no choices")
        text = (choice.message.content if choice.message else None) if chat else choice.text
        calls = (choice.message.tool_calls if choice.message else None) or []
        usage = answer.usage
        return TextChunk(
            text=text or "",
            finish_reason=choice.finish_reason or "stop",
            prompt_tokens=usage.prompt_tokens if usage else None,
            completion_tokens=usage.completion_tokens if usage else None,
            tool_calls=[
                ToolCallDelta(index=i, id=c.id, name=c.function.name, arguments=c.function.arguments)
                for i, c in enumerate(calls)
            ]
            or None,
            logprobs=choice.logprobs.content if choice.logprobs is not None else None,
        )

    # --- embeddings ---------------------------------------------------------------------------

    async def embed(self, inputs: list[str], ctx: RunContext) -> Embeddings:
        ctx.check()
        body = {"model": self.remote_model, "input": inputs, "encoding_format": "float"}
        answer = await self._post("/embeddings", body, _EmbeddingAnswer)
        vectors = [_floats(v.embedding) for v in sorted(answer.data, key=lambda v: v.index)]
        tokens = answer.usage.prompt_tokens if answer.usage and answer.usage.prompt_tokens else 0
        return Embeddings(vectors=vectors, prompt_tokens=tokens)

    # --- images -------------------------------------------------------------------------------

    async def generate_images(self, job: ImageJob, ctx: RunContext) -> list[bytes]:
        """PNG bytes, whether the service answered with base64 or with URLs (fetched here)."""
        ctx.check()
        params: dict[str, Any] = {
            "model": self.remote_model,
            "prompt": job.prompt,
            "n": job.n,
            "size": f"{job.width}x{job.height}",
        }
        if self.options.image_response_format is not None:
            params["response_format"] = self.options.image_response_format
        # Loom's extensions go through as asked: a service that lacks one refuses it (400).
        extra = {k: getattr(job, k) for k in ("seed", "negative_prompt", "steps", "guidance_scale")}
        extra = {k: v for k, v in extra.items() if v is not None}
        if job.init_image is None:
            answer = await self._post("/images/generations", {**params, **extra}, _ImagesAnswer)
        else:
            client = self.client()
            files = {"image": ("image.png", job.init_image, prompts.mime_of(job.init_image))}
            if job.mask is not None:
                files["mask"] = ("mask.png", job.mask, prompts.mime_of(job.mask))
            edit = client.images.with_raw_response.edit
            raw = await self._request(lambda: edit(**files, **params, extra_body=extra or None, **self._opts))
            answer = self._decode(raw, _ImagesAnswer)
        images = await asyncio.gather(*(self._image_bytes(item) for item in answer.data))
        return [_as_png(data, self.spec.id) for data in images]

    async def _image_bytes(self, item: _Image) -> bytes:
        if item.b64_json:
            return base64.b64decode(item.b64_json)
        if not item.url:
            raise ProviderError(f"{self._who()} answered an image with neither b64_json nor url")
        if item.url.startswith("data:"):
            return base64.b64decode(item.url.partition(",")[2])
        try:
            return await self._fetch(item.url)
        except Exception as e:
            raise self._error(e) from None

    async def _fetch(self, url: str) -> bytes:
        import httpx

        headers = {}
        # The key goes only back to the service itself (e.g. another Loom's /v1/files/...).
        base = urlsplit(self.instance.base_url)
        there = urlsplit(url)
        if (there.scheme, there.netloc) == (base.scheme, base.netloc) and self.instance.api_key:
            key = self.instance.api_key.get()
            if key:
                headers["Authorization"] = f"Bearer {key}"
        # Not through the instance's client: its headers go to the service only. The transport
        # tries a failed connection again, as often as the instance's calls are tried.
        transport = httpx.AsyncHTTPTransport(retries=self.instance.retries)
        async with httpx.AsyncClient(timeout=self.instance.timeout, follow_redirects=True, transport=transport) as http:
            response = await http.get(url, headers=headers)
        if response.status_code != 200:
            raise ProviderError(
                f"fetching the image of model '{self.spec.id}' at {safe_url(url)}: {response.status_code}"
            )
        return response.content

    # --- vision -------------------------------------------------------------------------------

    async def describe(
        self, image: bytes, prompt: str | None, detail: str, max_tokens: int | None, ctx: RunContext
    ) -> str:
        ctx.check()
        params = {"max_tokens": max_tokens} if max_tokens else {}
        return await self._chat_text(prompts.describe_messages(image, prompt, detail), **params)

    async def score(self, image: bytes, text: str, ctx: RunContext) -> VisionScores:
        """The vision model's own judgement, asked for as JSON: an LLM's rating of how well the
        image matches the text (``clip``, 0..1) and how good it looks (``aesthetic``, 0..10). It
        is not a CLIP embedding similarity, and scores from different models do not compare."""
        ctx.check()
        answer = await self._chat_text(
            prompts.score_messages(image, text),
            response_format=prompts.score_format(self.options.score_format),
            temperature=0,
        )
        return prompts.parse_scores(answer, self.spec.id)

    # --- translation --------------------------------------------------------------------------

    async def translate(self, texts: list[str], source: str, target: str, ctx: RunContext) -> list[str]:
        """One chat call per text (at most eight at once); blank texts come back unchanged."""
        ctx.check()
        gate = asyncio.Semaphore(_TRANSLATE_PARALLEL)

        async def one(text: str) -> str:
            if not text.strip():
                return text
            async with gate:
                return await self._chat_text(prompts.translate_messages(text, source, target), temperature=0)

        return list(await asyncio.gather(*(one(t) for t in texts)))

    # --- health (read by the daemon's provider health monitor) --------------------------------

    def health_key(self) -> str:
        """Models on the same instance share one check."""
        return f"openai/{self.instance_name}"

    def health_info(self) -> dict:
        """What the admin API may show about the instance: never the key, only its variable."""
        key = self.instance.api_key
        return {
            "provider": self.name,
            "instance": self.instance_name,
            "base_url": self.upstream.url,
            "api_key": None if key is None else {"env": key.env, "set": key.get() is not None},
            "timeout_s": self.instance.timeout,
            "retries": self.instance.retries,
        }

    async def check_health(self) -> dict:
        """``GET {base_url}/models`` once, without retries; raises the mapped Loom error."""
        client = self.client().with_options(timeout=min(self.instance.timeout, 10.0), max_retries=0)
        try:
            raw = await client.models.with_raw_response.list(**self._opts)
        except Exception as e:
            raise self._error(e) from None
        listed = self._decode(raw, _ModelList)
        return {"upstream_models": [m.id for m in listed.data]}


@functools.cache
def _post_takes_content() -> bool:
    """Whether ``AsyncOpenAI.post`` takes ready-made bytes (newer releases): msgspec encodes faster."""
    import inspect

    import openai

    return "content" in inspect.signature(openai.AsyncOpenAI.post).parameters


def _only_instance(plugin: PluginOptions, model_id: str) -> str:
    if len(plugin.instances) == 1:
        return next(iter(plugin.instances))
    have = ", ".join(sorted(plugin.instances)) or "none"
    raise ConfigError(
        f"model {model_id!r}: options.instance is required when [plugins.openai.instances] has "
        f"other than one instance (configured: {have})"
    )


def _chat_piece(choice: Any) -> TextChunk | None:
    """One streamed choice of the ``openai`` package as a TextChunk: text, tool-call pieces
    (index, id and name as the service sent them) and log probabilities."""
    delta = choice.delta
    if delta is None:
        return None
    calls = [
        ToolCallDelta(
            index=c.index,
            id=c.id,
            name=c.function.name if c.function else None,
            arguments=(c.function.arguments or "") if c.function else "",
        )
        for c in delta.tool_calls or ()
    ]
    logprobs = None
    if choice.logprobs is not None and choice.logprobs.content is not None:
        logprobs = msgspec.convert([lp.model_dump() for lp in choice.logprobs.content], list[TokenLogprob])
    if not delta.content and not calls and logprobs is None:
        return None
    return TextChunk(text=delta.content or "", tool_calls=calls or None, logprobs=logprobs)


def _copy(params: dict, request, *names: str) -> None:
    for name in names:
        value = getattr(request, name)
        if value is not None:
            params[name] = value


def _floats(vector: list[float] | str) -> list[float]:
    if isinstance(vector, str):  # a service that answers base64 whatever was asked
        import numpy as np

        return np.frombuffer(base64.b64decode(vector), dtype=np.float32).tolist()
    return vector


def _as_png(data: bytes, model: str) -> bytes:
    if data.startswith(b"\x89PNG"):
        return data
    import io

    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as img:
            out = io.BytesIO()
            img.save(out, format="PNG")
            return out.getvalue()
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise ProviderError(f"model '{model}' answered an image Loom cannot read: {e}") from None
