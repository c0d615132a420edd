"""``OllamaProvider``: chat, completions and embeddings from a running Ollama, over httpx.

The generation methods are ``async`` so the daemon runs them on its event loop, never on a
device's worker thread: Ollama, not Loom, holds the weights. Streams are Ollama's NDJSON lines;
between lines the RunContext is checked, and leaving the stream closes the HTTP response, which
stops Ollama's generation.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import AsyncIterator, Callable
from contextlib import contextmanager
from typing import Any, ClassVar

import httpx
import msgspec
from loom.sdk import (
    Capability,
    ConfigError,
    Embeddings,
    LoomError,
    ModelSpec,
    Provider,
    ProviderError,
    ProviderTimeout,
    RunContext,
    TextChunk,
    Unavailable,
)
from loom.sdk.types import ChatCompletionRequest, CompletionRequest

from . import protocol
from .options import OllamaOptions, PluginOptions, resolve_host

log = logging.getLogger("loom.ollama")


class OllamaProvider(Provider):
    name: ClassVar[str] = "ollama"
    capabilities: ClassVar[frozenset[Capability]] = frozenset(
        {Capability.CHAT, Capability.COMPLETION, Capability.EMBEDDING}
    )
    Options: ClassVar[type[OllamaOptions]] = OllamaOptions
    local: ClassVar[bool] = False
    #: Ollama samples with ``options.seed``: the same request and seed give the same text.
    deterministic: ClassVar[bool] = True

    def __init__(self, spec: ModelSpec) -> None:
        super().__init__(spec)
        if not isinstance(spec.options, OllamaOptions):
            try:
                self.options = msgspec.convert(spec.options or {}, OllamaOptions)
            except msgspec.ValidationError as e:
                raise ConfigError(f"model {spec.id!r}: {e}") from None
        plugin = spec.plugin_options if isinstance(spec.plugin_options, PluginOptions) else PluginOptions()
        self.base_url = resolve_host(self.options.host or plugin.host)
        self.timeout = self.options.timeout or plugin.timeout
        self._resident_bytes = 0

    # --- lifecycle: Ollama loads and frees the weights; Loom asks it to --------------------------

    def estimate_bytes(self) -> int:
        return 0  # held by the Ollama process, not by Loom

    def memory_bytes(self) -> int:
        """What Ollama reported for the model after load() (``/api/ps``); 0 if it did not say."""
        return self._resident_bytes

    def load(self, device: str) -> None:
        """Have Ollama load the model now (a generate request without a prompt does that)."""
        body: dict[str, Any] = {"model": self.options.model, "stream": False}
        if self.options.keep_alive is not None:
            body["keep_alive"] = self.options.keep_alive
        with self._errors(), httpx.Client(base_url=self.base_url, timeout=self.timeout) as client:
            self._check(client.post("/api/generate", json=body))
            ps = client.get("/api/ps")
            self._resident_bytes = _resident_size(ps.json(), self.options.model) if ps.status_code == 200 else 0

    def unload(self) -> None:
        """Ask Ollama to free the model (``keep_alive: 0``); an Ollama that is gone is no error."""
        self._resident_bytes = 0
        try:
            with httpx.Client(base_url=self.base_url, timeout=min(self.timeout, 30.0)) as client:
                client.post("/api/generate", json={"model": self.options.model, "keep_alive": 0, "stream": False})
        except httpx.HTTPError as e:
            log.warning("ollama: could not unload %s at %s: %s", self.options.model, self.base_url, e)

    # --- generation -----------------------------------------------------------------------------

    async def chat(self, request: ChatCompletionRequest, ctx: RunContext) -> AsyncIterator[TextChunk]:
        body = protocol.chat_body(request, self.options)
        async for chunk in self._stream("/api/chat", body, ctx, lambda d: (d.get("message") or {}).get("content")):
            yield chunk

    async def complete(self, prompt: str, request: CompletionRequest, ctx: RunContext) -> AsyncIterator[TextChunk]:
        body = protocol.generate_body(prompt, request, self.options)
        async for chunk in self._stream("/api/generate", body, ctx, lambda d: d.get("response")):
            yield chunk

    async def _stream(
        self, path: str, body: dict, ctx: RunContext, text_of: Callable[[dict], str | None]
    ) -> AsyncIterator[TextChunk]:
        ctx.check()
        done: dict | None = None
        with self._errors():
            async with (
                httpx.AsyncClient(base_url=self.base_url, timeout=self.timeout) as client,
                client.stream("POST", path, json=body) as response,
            ):
                if response.status_code != 200:
                    await response.aread()
                    self._check(response)
                async for line in response.aiter_lines():
                    if not line.strip():
                        continue
                    data = _decode_line(line)
                    if data.get("done"):
                        done = data
                        break
                    text = text_of(data)
                    if text:
                        yield TextChunk(text=text)
                        ctx.check()  # Cancelled leaves the stream, which closes the response
        if done is None:
            raise ProviderError("ollama: the stream ended before Ollama said it was done")
        yield TextChunk(
            finish_reason=protocol.finish_reason(done),
            prompt_tokens=int(done.get("prompt_eval_count") or 0),
            completion_tokens=int(done.get("eval_count") or 0),
        )

    async def embed(self, inputs: list[str], ctx: RunContext) -> Embeddings:
        ctx.check()
        body: dict[str, Any] = {"model": self.options.model, "input": inputs, "truncate": True}
        if self.options.keep_alive is not None:
            body["keep_alive"] = self.options.keep_alive
        if self.options.num_ctx is not None:
            body["options"] = {"num_ctx": self.options.num_ctx}
        with self._errors():
            async with httpx.AsyncClient(base_url=self.base_url, timeout=self.timeout) as client:
                response = await client.post("/api/embed", json=body)
        self._check(response)
        data = response.json()
        vectors = data.get("embeddings")
        if not isinstance(vectors, list) or len(vectors) != len(inputs):
            raise ProviderError(f"ollama: /api/embed returned {len(vectors or [])} vectors for {len(inputs)} inputs")
        ctx.check()
        return Embeddings(vectors=[_unit(v) for v in vectors], prompt_tokens=int(data.get("prompt_eval_count") or 0))

    # --- errors ---------------------------------------------------------------------------------

    def _check(self, response: httpx.Response) -> None:
        if response.status_code == 200:
            return
        try:
            message = str(response.json().get("error") or response.text)
        except (ValueError, AttributeError):
            message = response.text or response.reason_phrase
        raise protocol.error_for(response.status_code, message, self.options.model)

    @contextmanager
    def _errors(self):
        """httpx's failures as Loom's: not running -> Unavailable, slow -> ProviderTimeout."""
        try:
            yield
        except LoomError:
            raise
        except httpx.ConnectError as e:
            raise Unavailable(f"ollama is not reachable at {self.base_url} (is `ollama serve` running?): {e}") from e
        except httpx.TimeoutException as e:
            raise ProviderTimeout(f"ollama did not answer within {self.timeout:g}s: {e}") from e
        except httpx.HTTPError as e:
            raise ProviderError(f"ollama: {type(e).__name__}: {e}") from e


def _decode_line(line: str) -> dict:
    try:
        data = json.loads(line)
    except ValueError:
        raise ProviderError(f"ollama: not a JSON line in the stream: {line[:80]!r}") from None
    if not isinstance(data, dict):
        raise ProviderError(f"ollama: unexpected stream line: {line[:80]!r}")
    if data.get("error"):
        raise ProviderError(f"ollama: {data['error']}")  # failed mid-stream
    return data


def _unit(vector: list[float]) -> list[float]:
    """Ollama's /api/embed already normalises; dividing again costs little and guarantees it."""
    norm = math.sqrt(sum(x * x for x in vector))
    return [float(x) / norm for x in vector] if norm else [float(x) for x in vector]


def _resident_size(ps: dict, model: str) -> int:
    names = {model, f"{model}:latest"}
    for entry in ps.get("models") or []:
        if entry.get("name") in names or entry.get("model") in names:
            return int(entry.get("size") or 0)
    return 0
