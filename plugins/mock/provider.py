"""``MockProvider``: a deterministic stand-in for every capability, with no weights.

Outputs come from a SHA-256 digest of the request and its seed (see :mod:`.determinism`), so the
daemon, pipelines and clients can be tested end to end. Options simulate latency, load time,
memory use, failures and out-of-memory loads.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, ClassVar

from loom.sdk import (
    Capability,
    Embeddings,
    ImageJob,
    InvalidRequest,
    ModelSpec,
    OutOfMemory,
    Provider,
    ProviderError,
    RerankScores,
    RunContext,
    TextChunk,
    VisionScores,
)
from loom.sdk.calls import Chat, Complete
from loom.sdk.previews import preview_steps
from loom.sdk.types import (
    ChatCompletionRequest,
    CompletionRequest,
    JSONObjectFormat,
    JSONSchemaFormat,
)

from . import drawing, jsongen, tools
from .determinism import bucket, rng, seed_part
from .images import decode_image, decode_image_uri, image_stats, is_image_data_uri, summary
from .options import MockOptions
from .relevance import relevance, words
from .text import chat_reply, continuation, cut, cut_at, word_count
from .vectors import image_vector, text_vector
from .vision import description, scores

if TYPE_CHECKING:
    from PIL.Image import Image

_SLICE_S = 0.01  # sleeps are cut into slices this long so cancellation lands quickly


def _sleep(seconds: float, ctx: RunContext | None) -> None:
    deadline = time.monotonic() + seconds
    while True:
        if ctx is not None:
            ctx.check()
        left = deadline - time.monotonic()
        if left <= 0:
            return
        time.sleep(min(_SLICE_S, left))


class MockProvider(Provider):
    name: ClassVar[str] = "mock"
    capabilities: ClassVar[frozenset[Capability]] = frozenset(Capability)
    Options: ClassVar[type[MockOptions]] = MockOptions
    local: ClassVar[bool] = True
    deterministic: ClassVar[bool] = True
    #: Sampling knobs and log probabilities mean nothing to the mock: they are refused (or, with
    #: compat = "lenient", ignored) like on any provider without them.
    parameters: ClassVar[frozenset[str]] = frozenset(
        {"response_format", "presence_penalty", "frequency_penalty", "tools"}
    )
    #: No weights and no native code: a worker process would only add its start-up to each load.
    #: A model can still ask for one (``executor = "subprocess"``), as the crash tests do.
    executor: ClassVar[str | None] = "inprocess"

    def __init__(self, spec: ModelSpec) -> None:
        super().__init__(spec)
        self.options: MockOptions = spec.options if spec.options is not None else MockOptions()
        self.device: str | None = None  # set while loaded
        self.loads = 0  # how many times load() succeeded; tests assert on reloads
        self._call_count = itertools.count(1)  # numbers calls for ``fail_every``

    # --- lifecycle ----------------------------------------------------------------------------

    def estimate_bytes(self) -> int:
        return int(self.options.memory_mb * 2**20)

    def memory_bytes(self) -> int:
        return self.estimate_bytes() if self.device is not None else 0

    def load(self, device: str) -> None:
        if self.options.oom_on_load:
            raise OutOfMemory(f"mock model {self.spec.id!r} does not fit on {device} (oom_on_load is set)")
        _sleep(self.options.load_seconds, None)
        self.device = device
        self.loads += 1

    def unload(self) -> None:
        self.device = None

    def blocking(self, call: Any) -> bool:
        """Chat and completions with no simulated latency are a hash and a few string operations,
        quicker than the hop to a worker thread and back: they run on the event loop. Anything
        that sleeps, decodes an image or draws one takes a thread as before."""
        if self.options.latency_ms or self.options.token_latency_ms:
            return True
        if isinstance(call, Chat):
            return call.request.has_images()
        return not isinstance(call, Complete)

    # --- shared behaviour ---------------------------------------------------------------------

    def _begin(self, ctx: RunContext, key: tuple[Any, ...], *, latency: bool = True) -> None:
        """The per-call latency, then the deterministic failure check for ``key``."""
        if latency:
            _sleep(self.options.latency_ms / 1000, ctx)
        else:
            ctx.check()
        # No rate, no failure: the digest is only worth computing when some inputs fail.
        if self.options.fail_rate and bucket("fail", *key) < self.options.fail_rate * 1000:
            raise ProviderError(self.options.fail_message)
        every = self.options.fail_every
        if every and next(self._call_count) % every == 0:  # next() on a count is atomic under the GIL
            raise ProviderError(self.options.fail_message)

    def _stream(
        self, tokens: list[str], finish: str, prompt_tokens: int, ctx: RunContext, stop: str | None = None
    ) -> Iterator[TextChunk]:
        delay = self.options.token_latency_ms / 1000
        for token in tokens:
            if delay:
                _sleep(delay, ctx)
            else:
                ctx.check()
            yield TextChunk(text=token)
        ctx.check()
        yield TextChunk(
            finish_reason=finish, prompt_tokens=prompt_tokens, completion_tokens=len(tokens), stop_sequence=stop
        )

    # --- text ---------------------------------------------------------------------------------

    def chat(self, request: ChatCompletionRequest, ctx: RunContext) -> Iterator[TextChunk]:
        key: tuple[Any, ...] = ("chat", request.messages, request.response_format, seed_part(request.seed))
        if request.tools:
            key += (request.tools, request.tool_choice, request.parallel_tool_calls)
        self._begin(ctx, key)
        prompt_tokens = sum(word_count(m.text()) for m in request.messages)
        if tools.wants_call(request):
            yield from self._calls(request, key, prompt_tokens, ctx)
            return
        users = [m for m in request.messages if m.role == "user"]
        question = tools.last_tool_result(request) or (users or request.messages)[-1].text()
        images = [
            summary(image_stats(decode_image_uri(url, param="messages")))
            for m in request.messages
            for url in m.images()
        ]
        fmt = request.response_format
        if self.options.reply is not None:
            reply = self.options.reply
        elif isinstance(fmt, JSONSchemaFormat):
            reply = jsongen.dumps(jsongen.from_schema(fmt.json_schema.schema, rng(*key)))
        elif isinstance(fmt, JSONObjectFormat):
            reply = jsongen.dumps(jsongen.free_object(question, rng(*key)))
        else:
            reply = chat_reply(question, images, rng(*key))
        tokens, finish, stop = cut_at(reply, request.token_limit(), request.stop_list())
        yield from self._stream(tokens, finish, prompt_tokens, ctx, stop)

    def _calls(self, request: ChatCompletionRequest, key: tuple, prompt_tokens: int, ctx: RunContext):
        """Tool calls streamed piece by piece; each piece counts as a token."""
        delay = self.options.token_latency_ms / 1000
        limit = request.token_limit()
        sent = 0
        for call in tools.call_deltas(request, rng(*key, "tools")):
            for piece in call:
                if limit is not None and sent >= limit:
                    ctx.check()
                    yield TextChunk(finish_reason="length", prompt_tokens=prompt_tokens, completion_tokens=sent)
                    return
                _sleep(delay, ctx)
                yield TextChunk(tool_calls=[piece])
                sent += 1
        ctx.check()
        yield TextChunk(finish_reason="tool_calls", prompt_tokens=prompt_tokens, completion_tokens=sent)

    def complete(self, prompt: str, request: CompletionRequest, ctx: RunContext) -> Iterator[TextChunk]:
        # ``echo`` is the daemon's job: only the continuation is produced here.
        key = ("complete", prompt, seed_part(request.seed))
        self._begin(ctx, key)
        tokens, finish, stop = cut_at(continuation(rng(*key)), request.max_tokens, request.stop_list())
        yield from self._stream(tokens, finish, word_count(prompt), ctx, stop)

    # --- embeddings ---------------------------------------------------------------------------

    def embed(self, inputs: list[str], ctx: RunContext) -> Embeddings:
        self._begin(ctx, ("embed", inputs))
        dims = self.options.dimensions
        vectors: list[list[float]] = []
        prompt_tokens = 0
        for item in inputs:
            ctx.check()
            if is_image_data_uri(item):
                vectors.append(image_vector(decode_image_uri(item, param="input"), dims))
            else:
                vectors.append(text_vector(item, dims))
                prompt_tokens += word_count(item)  # images count no tokens
        return Embeddings(vectors=vectors, prompt_tokens=prompt_tokens)

    # --- images -------------------------------------------------------------------------------

    def generate_images(self, job: ImageJob, ctx: RunContext) -> list[bytes]:
        drawing.validate_size(job.width, job.height)
        if job.n < 1:
            raise InvalidRequest(f"n must be at least 1, got {job.n}", param="n")
        init = decode_image(job.init_image, param="image") if job.init_image is not None else None
        mask = decode_image(job.mask, param="mask") if job.mask is not None else None
        key = ("image", job.prompt, job.negative_prompt, job.width, job.height, job.init_image, job.mask, job.strength)
        self._begin(ctx, (*key, seed_part(job.seed)), latency=False)  # the latency is spread over the steps
        steps = job.steps or 4

        def picture(index: int) -> Image:
            # Image i of seed s is image 0 of seed s + i, as in diffusers: the daemon may split an
            # n-image request into items with consecutive seeds and gets the same images.
            r = rng(*key, seed_part(None), index) if job.seed is None else rng(*key, seed_part(job.seed + index), 0)
            img = drawing.draw(job.prompt, job.width, job.height, r)
            return drawing.blend(img, init, job.strength, mask) if init is not None else img

        # Previews (of the first image) show it coming into focus at evenly spaced steps.
        shown = preview_steps(steps, job.partial_images)
        first = picture(0) if shown else None
        for step in range(steps):
            _sleep(self.options.latency_ms / 1000 / steps, ctx)
            ctx.progress(step + 1, steps, "denoising")
            if first is not None and step + 1 in shown:
                ctx.preview(drawing.to_png(drawing.unfocused(first, (step + 1) / steps)), shown.index(step + 1))
        images: list[bytes] = []
        for index in range(job.n):
            ctx.check()
            img = first if index == 0 and first is not None else picture(index)
            images.append(drawing.to_png(img))
        return images

    # --- vision -------------------------------------------------------------------------------

    def describe(self, image: bytes, prompt: str | None, detail: str, max_tokens: int | None, ctx: RunContext) -> str:
        self._begin(ctx, ("describe", image, prompt, detail))
        img = decode_image(image, param="image")
        tokens, _ = cut(description(img, image_stats(img), prompt, detail), max_tokens, [])
        return "".join(tokens)

    def score(self, image: bytes, text: str, ctx: RunContext) -> VisionScores:
        self._begin(ctx, ("score", image, text))
        img = decode_image(image, param="image")
        return scores(image, image_stats(img), text)

    # --- rerank -------------------------------------------------------------------------------

    def rerank(self, query: str, documents: list[str], ctx: RunContext) -> RerankScores:
        if not documents:
            raise InvalidRequest("documents must hold at least one document", param="documents")
        self._begin(ctx, ("rerank", query, documents))
        out: list[float] = []
        for document in documents:
            ctx.check()
            out.append(relevance(query, document))
        tokens = sum(len(words(t)) for t in (query, *documents) if not is_image_data_uri(t))
        return RerankScores(scores=out, prompt_tokens=tokens)

    # --- translation --------------------------------------------------------------------------

    def translate(self, texts: list[str], source: str, target: str, ctx: RunContext) -> list[str]:
        languages = self.options.languages
        for param, code in (("source", source), ("target", target)):
            if code not in languages:
                examples = ", ".join(languages[:6]) + (", ..." if len(languages) > 6 else "")
                raise InvalidRequest(
                    f"{param} language {code!r} is not supported by {self.spec.id!r}; "
                    f"supported: {examples} ({len(languages)} in all)",
                    param=param,
                )
        self._begin(ctx, ("translate", texts, source, target))
        # Reversed word order, tagged with the target: visibly changed, and deterministic.
        return [f"[{target}] " + " ".join(reversed(t.split())) if t.strip() else t for t in texts]
