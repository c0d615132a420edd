"""Providers for the worker tests, imported by worker processes by name
(``worker_providers:Probe``, with this folder on their ``PYTHONPATH``): a plain module, so a worker imports nothing of pytest.

``Probe`` does what its inputs say: stream slowly, report progress, raise any error, hang
ignoring cancellation, or crash its own process.
"""

from __future__ import annotations

import os
import signal
import time
from typing import ClassVar

from loom.sdk import errors
from loom.sdk.previews import preview_steps
from loom.sdk.protocols import Embeddings, ImageJob, Provider, RunContext, TextChunk
from loom.sdk.types import Capability, ChatCompletionRequest
from msgspec import Struct


class ProbeOptions(Struct, frozen=True, kw_only=True):
    token_seconds: float = 0.0
    mb: int = 10
    fail_load: str = ""


class ProbePluginOptions(Struct, frozen=True, kw_only=True):
    greeting: str = "hello"


class Probe(Provider):
    name: ClassVar[str] = "probe"
    capabilities: ClassVar[frozenset[Capability]] = frozenset(
        {Capability.CHAT, Capability.EMBEDDING, Capability.IMAGE, Capability.TRANSLATION}
    )
    Options = ProbeOptions

    def estimate_bytes(self) -> int:
        return self.options.mb * 2**20

    def load(self, device: str) -> None:
        if self.options.fail_load == "oom":
            raise MemoryError("failed to allocate 10 GiB")
        if self.options.fail_load:
            raise errors.ProviderError(self.options.fail_load, param="model")
        self.device = device

    def chat(self, request: ChatCompletionRequest, ctx: RunContext):
        text = request.messages[-1].text()
        if text == "crash":
            os.kill(os.getpid(), signal.SIGSEGV)
        n = request.max_tokens or 5
        for i in range(n):
            ctx.check()
            if self.options.token_seconds:
                time.sleep(self.options.token_seconds)
            yield TextChunk(text=f"{i} ")
        yield TextChunk(finish_reason="length", completion_tokens=n)

    def embed(self, inputs: list[str], ctx: RunContext) -> Embeddings:
        first = inputs[0] if inputs else ""
        if first == "hang":
            while True:  # ignores cancellation: only killing the process ends it
                time.sleep(0.05)
        if first == "credentials":  # what reached the worker of a request's upstream keys
            return Embeddings(vectors=[[float(len(ctx.credentials))]])
        if first == "plugin":
            return Embeddings(vectors=[[float(len(self.spec.plugin_options.greeting))]])
        if first.startswith("raise:"):
            kind = first.partition(":")[2]
            if kind == "QueueFull":
                raise errors.QueueFull("busy upstream", retry_after=7.0)
            if kind == "InvalidRequest":
                raise errors.InvalidRequest("bad input", param="input", code="bad_code")
            if kind == "OutOfMemoryError":
                raise OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
            raise ValueError("broken provider")
        return Embeddings(vectors=[[float(len(t))] for t in inputs], prompt_tokens=len(inputs))

    def generate_images(self, job: ImageJob, ctx: RunContext) -> list[bytes]:
        steps = job.steps or 3
        shown = preview_steps(steps, job.partial_images)
        for i in range(steps):
            time.sleep(0.01)
            ctx.progress(i + 1, steps, "denoising")
            if i + 1 in shown:
                ctx.preview(f"preview {i + 1}/{steps}".encode(), shown.index(i + 1))
        return [b"\x89PNG" + bytes([i]) for i in range(job.n)]

    def translate(self, texts: list[str], source: str, target: str, ctx: RunContext) -> list[str]:
        return [f"{target}:{t}" for t in texts]

    def memory_bytes(self) -> int:
        return self.estimate_bytes()


class OutOfMemoryError(RuntimeError):
    """Named like torch's: recognised as out of memory by its class name."""
