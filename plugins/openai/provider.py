"""``OpenAIProvider``: a Loom model served by an OpenAI-compatible service, through ``AsyncOpenAI``.

Every method is ``async`` (chat and completions are async generators), so the scheduler runs them on
the event loop. All models of one instance share its client (:mod:`.clients`), whose own retries
try again after timeouts, connection errors and 5xx (never a 429, and never after a chunk has been
passed on). Keys are read from the environment on each call and never leave the client's headers.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import functools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, ClassVar, NamedTuple, TypeVar
from urllib.parse import urlsplit

import msgspec
from loom.sdk import (
    AuthenticationFailed,
    Capability,
    ConfigError,
    Embeddings,
    ImageJob,
    InvalidRequest,
    LoomError,
    ModelSpec,
    Provider,
    ProviderError,
    RerankScores,
    RunContext,
    TextChunk,
    VisionScores,
    tracing,
)
from loom.sdk import params as policy
from loom.sdk.protocols import ToolCallDelta
from loom.sdk.types import ChatCompletionRequest, CompletionRequest, TokenLogprob
from msgspec import Struct

from . import prompts
from .clients import Client, client_for
from .errors import Upstream, attempts_of, from_exception, missing_key, safe_url
from .options import Instance, ModelOptions, PluginOptions
from .profiles import ModelParameters, resolve

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


class _Ranked(Struct):
    index: int
    relevance_score: float


class _RerankUsage(Struct):
    total_tokens: int | None = None


class _RerankAnswer(Struct):
    """What vLLM, llama-server, Jina, Cohere and Loom answer ``POST /rerank`` with."""

    results: list[_Ranked]
    usage: _RerankUsage | None = None


class _Image(Struct):
    b64_json: str | None = None
    url: str | None = None


class _ImagesAnswer(Struct):
    data: list[_Image]


class _ModelId(Struct):
    id: str


class _ModelList(Struct):
    data: list[_ModelId] = []


_EXTRAS_BUT_SEED = ("negative_prompt", "steps", "guidance_scale")


class _Session(NamedTuple):
    """What one call talks to the service with."""

    client: Any  # openai.AsyncOpenAI
    opts: dict[str, Any]  # per-request options of the typed calls
    post_opts: dict[str, Any]  # the same for client.post
    secrets: tuple[str, ...]  # what error messages must never contain
    key: str | None  # the key this call sends (for fetching an image URL from the service itself)
    upstream: Upstream  # who the call goes to, for error messages (never holds the key)


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
        #: What the model takes (its parameter profile), and what its service refused since.
        self.params = ModelParameters(
            spec.id, *resolve(self.options.profile, self.remote_model, self.options.parameters)
        )
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
        #: What the upstream call's span says (when the daemon traces it).
        self._span_attributes = {
            "gen_ai.system": "openai",
            "gen_ai.request.model": self.remote_model,
            "server.address": urlsplit(self.upstream.url).hostname or "",
            "loom.instance": self.instance_name,
        }

    # --- the client ---------------------------------------------------------------------------

    def client(self):
        """The instance's shared ``AsyncOpenAI`` client (:mod:`.clients`).

        Raises AuthenticationFailed naming the variable when the instance's key is not set.
        """
        self._current = self._clients.get(self.upstream)
        return self._current.openai

    def session(self, ctx: RunContext | None = None) -> _Session:
        """What one call uses: the instance's shared client, or (when the instance takes
        per-request keys and ``ctx`` brings one) a copy of it that sends the caller's key; the
        copy shares the connection pool and lives only for this call."""
        header = self.instance.user_key_header
        user_key = ctx.credentials.get(header.lower()) if header and ctx is not None else None
        if user_key is None and header is not None and self.instance.api_key is None:
            raise self._missing_key()  # keys come only with requests, and this one brought none
        try:
            shared = self._clients.get(self.upstream, need_key=user_key is None)
        except AuthenticationFailed as e:
            if e.code == "provider_key_missing" and header is not None:
                raise self._missing_key() from None
            raise
        self._current = shared
        if user_key is None:
            key = self.instance.api_key.get() if self.instance.api_key else None
            return _Session(shared.openai, shared.opts, shared.post_opts, shared.secrets, key, self.upstream)
        upstream = dataclasses.replace(self.upstream, key_env=f"the {header} header")
        secrets = (*shared.secrets, user_key)
        return _Session(shared.openai.with_options(api_key=user_key), {}, {}, secrets, user_key, upstream)

    def parameter_profile(self) -> dict[str, Any]:
        """The model's parameter profile and what its service refused since start-up (shown by
        ``GET /admin/providers``)."""
        return self.params.describe()

    def upstream_key(self) -> dict[str, Any] | None:
        """The per-request key this model takes (read by the daemon when a job is submitted):
        ``{"header", "prefix", "required"}`` (``required``: the instance has no key of its own,
        or its variable is unset, so a job of this model cannot run without the client's), or
        None when the instance takes no keys per request."""
        header = self.instance.user_key_header
        if header is None:
            return None
        prefix = self.instance.user_key_prefix
        if prefix is None:
            prefix = "sk-" if header.lower() == "x-openai-api-key" else ""
        own = self.instance.api_key.get() if self.instance.api_key is not None else None
        return {"header": header, "prefix": prefix or None, "required": not own}

    def _missing_key(self) -> AuthenticationFailed:
        header = self.instance.user_key_header
        if header is None:
            return missing_key(self.upstream)
        own = f", or set the environment variable {self.upstream.key_env}" if self.upstream.key_env else ""
        return AuthenticationFailed(
            f"The model '{self.spec.id}' needs an API key for instance '{self.instance_name}': "
            f"send yours in the {header} header{own}",
            code="provider_key_missing",
        )

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

    def _error(self, e: BaseException, session: _Session) -> BaseException:
        mapped = from_exception(e, session.upstream, session.secrets, attempts_of(e))
        return mapped if mapped is not None else e

    async def _request(self, make: Callable[[], Awaitable[T]], session: _Session) -> T:
        """``make()``, its errors as Loom's (the client has done its retries). When the daemon
        traces the call, the request is a span of its own: until the service answered (for a
        stream, until its headers came)."""
        with tracing.span("upstream call", self._span_attributes) as span:
            try:
                return await make()
            except Exception as e:
                error = self._error(e, session)
                span.set_attribute("error.type", type(error).__name__)
                raise error from None

    async def _post(self, path: str, body: dict, type_: type[T], session: _Session) -> T:
        """POST ``body`` as JSON to ``path`` of the service; decode what Loom reads of the answer.

        Through ``AsyncOpenAI.post``, the package's call for any endpoint: its base URL, headers,
        timeout and error classes, without building and validating typed models on the hot path
        (that costs more than the HTTP round trip to a local upstream).
        """
        import httpx

        client, opts = session.client, session.post_opts
        payload = {"content": msgspec.json.encode(body)} if _post_takes_content() else {"body": body}
        raw = await self._request(lambda: client.post(path, cast_to=httpx.Response, options=opts, **payload), session)
        return self._decode(raw, type_)

    def _decode(self, raw, type_: type[T]) -> T:
        try:
            return msgspec.json.decode(raw.content, type=type_)
        except msgspec.MsgspecError as e:
            raise ProviderError(
                f"instance '{self.instance_name}' answered model '{self.spec.id}' with something Loom cannot read: {e}"
            ) from None

    async def _stream(
        self, create: Callable[[], Awaitable[Any]], piece_of, session: _Session
    ) -> AsyncIterator[TextChunk]:
        """Pass a stream through chunk by chunk; usage and the finish reason come last."""
        stream = await self._request(create, session)
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
            raise self._error(e, session) from None
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

    def _stream_args(self, session: _Session) -> dict:
        usage = {"stream_options": {"include_usage": True}} if self.instance.stream_usage else {}
        return {"stream": True, **usage, **session.opts}

    async def _adapted(
        self,
        body: dict[str, Any],
        own: bool,
        send: Callable[[dict[str, Any]], Awaitable[T]],
        added: frozenset[str] = frozenset(),
    ) -> T:
        """``send(body)`` with ``body`` adapted to the model's profile; a refusal of a parameter
        the profile did not foresee is learnt and the call sent once more without it, unless a
        client asked for that parameter (``own`` False and not one of Loom's ``added``): then
        the service's 400 stands."""
        sent = self.params.adapt(body, own=own)
        try:
            return await send(sent)
        except InvalidRequest as e:
            explicit = frozenset() if own else frozenset(body) - added
            retry = self.params.learn(e, sent, explicit)
            if retry is None:
                raise
        return await send(retry)

    async def _chat_text(self, messages: list[dict], session: _Session, **params) -> str:
        """One of Loom's own chat calls (describe, score, translate): plain, adapted to the model."""
        body = {"model": self.remote_model, "messages": messages, **params}
        answer = await self._adapted(body, True, lambda b: self._post("/chat/completions", b, _TextAnswer, session))
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
        """Image parts go to the service as they came (data URIs). A pipeline's call (``ctx.job_id``)
        is adapted to the model's profile; a client's goes as sent (a ``max_tokens`` renamed where
        the model takes ``max_completion_tokens``)."""
        ctx.check()
        params = self._chat_params(request)
        session = self.session(ctx)
        own = ctx.job_id is not None
        if not request.stream:
            # A plain answer is one chunk: one upstream response instead of an event per token.
            answer = await self._adapted(
                params, own, lambda b: self._post("/chat/completions", b, _TextAnswer, session)
            )
            yield self._single(answer, chat=True)
            return
        client = session.client
        # Loom's own additions (stream_options) are left out once the service refused them.
        stream_args = {k: v for k, v in self._stream_args(session).items() if k not in self.params.learnt}

        async def opened(body: dict[str, Any]):
            body = dict(body)
            extra = {k: body.pop(k) for k in ("top_k", "min_p", "repeat_penalty") if k in body}
            return await self._request(
                lambda: client.chat.completions.create(**body, extra_body=extra or None), session
            )

        stream = await self._adapted({**params, **stream_args}, own, opened, frozenset(stream_args))

        async def create():
            return stream

        async for chunk in self._stream(create, _chat_piece, session):
            ctx.check()
            yield chunk

    async def complete(self, prompt: str, request: CompletionRequest, ctx: RunContext) -> AsyncIterator[TextChunk]:
        ctx.check()
        params: dict[str, Any] = {"model": self.remote_model, "prompt": prompt}
        params["max_tokens"] = request.max_tokens
        _copy(params, request, "temperature", "top_p", "stop", "seed", "presence_penalty", "frequency_penalty", "user")
        # Load tools' extras go as sent (vLLM and llama-server take them; a service that does not
        # refuses them); the typed client takes them only as extra_body.
        extra: dict[str, Any] = {}
        _copy(extra, request, "min_tokens", "ignore_eos")
        session = self.session(ctx)
        if not request.stream:
            answer = await self._post("/completions", {**params, **extra}, _TextAnswer, session)
            yield self._single(answer, chat=False)
            return
        client = session.client
        create = lambda: client.completions.create(  # noqa: E731
            **params, **self._stream_args(session), extra_body=extra or None
        )
        async for chunk in self._stream(create, lambda c: TextChunk(text=c.text) if c.text else None, session):
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
        answer = await self._post("/embeddings", body, _EmbeddingAnswer, self.session(ctx))
        vectors = [_floats(v.embedding) for v in sorted(answer.data, key=lambda v: v.index)]
        tokens = answer.usage.prompt_tokens if answer.usage and answer.usage.prompt_tokens else 0
        return Embeddings(vectors=vectors, prompt_tokens=tokens)

    # --- rerank -------------------------------------------------------------------------------

    async def rerank(self, query: str, documents: list[str], ctx: RunContext) -> RerankScores:
        """``POST /rerank`` in the shape vLLM, llama-server, Jina and Cohere share; the answer's
        results (sorted by score there) are put back in the documents' order."""
        ctx.check()
        if not documents:
            raise InvalidRequest("documents must hold at least one document", param="documents")
        body = {"model": self.remote_model, "query": query, "documents": documents}
        answer = await self._post("/rerank", body, _RerankAnswer, self.session(ctx))
        scores: dict[int, float] = {r.index: r.relevance_score for r in answer.results}
        if sorted(scores) != list(range(len(documents))):
            raise ProviderError(
                f"instance '{self.instance_name}' ranked documents {sorted(scores)} of {len(documents)} "
                f"for model '{self.spec.id}'"
            )
        tokens = answer.usage.total_tokens if answer.usage and answer.usage.total_tokens else 0
        return RerankScores(scores=[scores[i] for i in range(len(documents))], prompt_tokens=tokens)

    # --- images -------------------------------------------------------------------------------

    async def generate_images(self, job: ImageJob, ctx: RunContext) -> list[bytes]:
        """PNG bytes, whether the service answered with base64 or with URLs (fetched here).

        What is sent follows the model's options, as the services take it: ``size`` only when
        ``send_size`` (and one of ``image_sizes`` when they are listed), ``seed`` only when
        ``send_seed``, and at most ``max_n`` images per request (several requests for more).
        """
        ctx.check()
        session = self.session(ctx)
        o = self.options
        params: dict[str, Any] = {"model": self.remote_model, "prompt": job.prompt}
        if o.send_size:
            width, height = o.image_size(job.width, job.height)
            params["size"] = f"{width}x{height}"
        if o.image_response_format not in (None, "omit"):
            params["response_format"] = o.image_response_format
        # Loom's extensions go through as asked (a service that lacks one refuses it, 400);
        # ``seed`` only where the model takes it.
        names = ("seed", *_EXTRAS_BUT_SEED) if o.send_seed else _EXTRAS_BUT_SEED
        extra = {k: getattr(job, k) for k in names if getattr(job, k) is not None}
        if o.stream_images and job.partial_images and job.n == 1:
            return [_as_png(await self._streamed_image(job, params, extra, session, ctx), self.spec.id)]
        per_request = o.max_n if o.send_n else 1
        batches = [min(per_request, job.n - start) for start in range(0, job.n, per_request)]
        answers = await asyncio.gather(
            *(self._images(job, {**params, **({"n": n} if o.send_n else {})}, extra, session) for n in batches)
        )
        items = [item for answer in answers for item in answer.data]
        images = await asyncio.gather(*(self._image_bytes(item, session) for item in items))
        return [_as_png(data, self.spec.id) for data in images]

    async def _images(self, job: ImageJob, params: dict, extra: dict, session: _Session) -> _ImagesAnswer:
        """One request to the service's generations (or, with an init image, edits) endpoint."""
        if job.init_image is None:
            return await self._post("/images/generations", {**params, **extra}, _ImagesAnswer, session)
        files = {"image": ("image.png", job.init_image, prompts.mime_of(job.init_image))}
        if job.mask is not None:
            files["mask"] = ("mask.png", job.mask, prompts.mime_of(job.mask))
        edit = session.client.images.with_raw_response.edit
        raw = await self._request(lambda: edit(**files, **params, extra_body=extra or None, **session.opts), session)
        return self._decode(raw, _ImagesAnswer)

    async def _streamed_image(
        self, job: ImageJob, params: dict, extra: dict, session: _Session, ctx: RunContext
    ) -> bytes:
        """One image from the service's streamed answer (``stream_images``): each partial image
        it sends is passed on as a preview, the completed one is the image."""
        images = session.client.images
        args = {**params, "stream": True, "partial_images": job.partial_images, "extra_body": extra or None}
        if job.init_image is None:
            stream = await self._request(lambda: images.generate(**args, **session.opts), session)
        else:
            files = {"image": ("image.png", job.init_image, prompts.mime_of(job.init_image))}
            if job.mask is not None:
                files["mask"] = ("mask.png", job.mask, prompts.mime_of(job.mask))
            stream = await self._request(lambda: images.edit(**files, **args, **session.opts), session)
        final = None
        try:
            async for event in stream:
                if event.type.endswith(".partial_image"):
                    ctx.preview(base64.b64decode(event.b64_json), event.partial_image_index)
                elif event.type.endswith(".completed"):
                    final = base64.b64decode(event.b64_json)
        except LoomError:
            raise
        except Exception as e:
            raise self._error(e, session) from None
        finally:
            await stream.close()
        if final is None:
            raise ProviderError(
                f"instance '{self.instance_name}' ({self.upstream.url}) ended the image stream of model "
                f"'{self.spec.id}' before its completed event"
            )
        return final

    async def _image_bytes(self, item: _Image, session: _Session) -> bytes:
        if item.b64_json:
            return base64.b64decode(item.b64_json)
        if not item.url:
            raise ProviderError(f"{self._who()} answered an image with neither b64_json nor url")
        if item.url.startswith("data:"):
            return base64.b64decode(item.url.partition(",")[2])
        try:
            return await self._fetch(item.url, session)
        except Exception as e:
            raise self._error(e, session) from None

    async def _fetch(self, url: str, session: _Session) -> bytes:
        import httpx

        headers = {}
        # The key (the instance's, or the caller's own) goes only back to the service itself
        # (e.g. another Loom's /v1/files/...).
        base = urlsplit(self.instance.base_url)
        there = urlsplit(url)
        if (there.scheme, there.netloc) == (base.scheme, base.netloc) and session.key:
            headers["Authorization"] = f"Bearer {session.key}"
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
        return await self._chat_text(prompts.describe_messages(image, prompt, detail), self.session(ctx), **params)

    async def score(self, image: bytes, text: str, ctx: RunContext) -> VisionScores:
        """The vision model's own judgement, asked for as JSON: an LLM's rating of how well the
        image matches the text (``clip``, 0..1) and how good it looks (``aesthetic``, 0..10). It
        is not a CLIP embedding similarity, and scores from different models do not compare."""
        ctx.check()
        answer = await self._chat_text(
            prompts.score_messages(image, text),
            self.session(ctx),
            response_format=prompts.score_format(self.options.score_format),
            temperature=0,
        )
        return prompts.parse_scores(answer, self.spec.id)

    # --- translation --------------------------------------------------------------------------

    async def translate(self, texts: list[str], source: str, target: str, ctx: RunContext) -> list[str]:
        """One chat call per text (at most eight at once); blank texts come back unchanged."""
        ctx.check()
        gate = asyncio.Semaphore(_TRANSLATE_PARALLEL)
        session = self.session(ctx)

        async def one(text: str) -> str:
            if not text.strip():
                return text
            async with gate:
                return await self._chat_text(prompts.translate_messages(text, source, target), session, temperature=0)

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
        per_request = self.instance.user_key_header is not None
        shared = None
        try:
            shared = self._clients.get(self.upstream, need_key=not per_request)
            client = shared.openai.with_options(timeout=min(self.instance.timeout, 10.0), max_retries=0)
            raw = await client.models.with_raw_response.list(**shared.opts)
        except Exception as e:
            secrets = shared.secrets if shared is not None else ()
            error = self._error(e, _Session(None, {}, {}, secrets, None, self.upstream))
            if isinstance(error, AuthenticationFailed) and per_request:
                # Keys come with the requests: a service that answers "no key" is up.
                return {"upstream_models": [], "keys": f"per request ({self.instance.user_key_header})"}
            raise error from None
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
