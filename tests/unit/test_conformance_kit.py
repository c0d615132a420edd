"""The conformance kit itself: it passes a good provider and names what is wrong with bad ones."""

from __future__ import annotations

import hashlib
import math
import os
import random
import subprocess
import sys
import textwrap
import types
from collections.abc import AsyncIterator, Iterator

import msgspec
import pytest
from loom.sdk import (
    Capability,
    CapabilityNotSupported,
    Embeddings,
    Provider,
    RunContext,
    TextChunk,
    hookimpl,
)
from loom.sdk.testing import CHECKS, Subject, make_png, png_size, provider_conformance, run_checks
from loom.sdk.testing.checks import Settings, applicable
from loom.sdk.types import TextFormat


class Opts(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    words: int = 40


class Good(Provider):
    """Chat + embeddings done right; the bad providers below each break one rule."""

    name = "good"
    capabilities = frozenset({Capability.CHAT, Capability.EMBEDDING})
    Options = Opts
    deterministic = True

    def __init__(self, spec):
        super().__init__(spec)
        self.loaded = False

    def estimate_bytes(self):
        return 1000

    def load(self, device):
        self.loaded = True

    def unload(self):
        self.loaded = False

    def memory_bytes(self):
        return 1000 if self.loaded else 0

    def reply(self, request) -> list[str]:
        r = random.Random(f"{request.messages[-1].text()}|{request.seed}")
        return [f"w{r.randrange(1000)}" for _ in range(self.options.words)]

    def chat(self, request, ctx) -> Iterator[TextChunk]:
        if request.has_images():
            raise CapabilityNotSupported("no images", param="messages")
        words, limit = self.reply(request), request.token_limit() or 10**6
        if request.response_format is not None and not isinstance(request.response_format, TextFormat):
            words = ['{"name": "Ada", "age": 36}']
        stops = request.stop_list()
        for n, word in enumerate(words[:limit]):
            ctx.check()
            if word in stops:
                yield TextChunk(finish_reason="stop", prompt_tokens=3, completion_tokens=n)
                return
            yield TextChunk(text=word + " ")
        yield TextChunk(
            finish_reason="length" if len(words) > limit else "stop",
            prompt_tokens=3,
            completion_tokens=min(limit, len(words)),
        )

    def embed(self, inputs, ctx) -> Embeddings:
        ctx.check()
        vectors = []
        for text in inputs:
            raw = [b - 127.5 for b in hashlib.sha256(text.encode()).digest()[:8]]
            norm = math.sqrt(sum(x * x for x in raw))
            vectors.append([x / norm for x in raw])
        return Embeddings(vectors=vectors, prompt_tokens=len(inputs))


def failures(cls, **settings) -> dict[str, str]:
    subject = Subject(cls, {}, settings=Settings(deterministic=getattr(cls, "deterministic", False), **settings))
    try:
        subject.load()
        return {k: v for k, v in run_checks(subject).items() if v is not None}
    finally:
        subject.close()


def test_a_good_provider_passes_every_check():
    assert failures(Good) == {}


class AsyncGood(Good):
    """The same provider with async methods, as a remote one has them."""

    name = "async-good"

    async def chat(self, request, ctx) -> AsyncIterator[TextChunk]:
        for chunk in Good.chat(self, request, ctx):
            yield chunk

    async def embed(self, inputs, ctx) -> Embeddings:
        return Good.embed(self, inputs, ctx)


def test_async_methods_are_run_on_an_event_loop():
    assert failures(AsyncGood) == {}


class FinishEveryChunk(Good):
    def chat(self, request, ctx):
        for chunk in Good.chat(self, request, ctx):
            chunk.finish_reason = "stop"
            yield chunk


class NoUsage(Good):
    def chat(self, request, ctx):
        for chunk in Good.chat(self, request, ctx):
            yield TextChunk(text=chunk.text, finish_reason=chunk.finish_reason)


class IgnoresMaxTokens(Good):
    def chat(self, request, ctx):
        return Good.chat(self, msgspec.structs.replace(request, max_tokens=None), ctx)


class IgnoresCancel(Good):
    def chat(self, request, ctx):
        return Good.chat(self, request, RunContext())

    def embed(self, inputs, ctx):
        return Good.embed(self, inputs, RunContext())


class Random(Good):
    def chat(self, request, ctx):
        return Good.chat(self, msgspec.structs.replace(request, seed=random.randrange(10**9)), ctx)


class LongVectors(Good):
    def embed(self, inputs, ctx):
        result = Good.embed(self, inputs, ctx)
        return Embeddings(vectors=[[2 * x for x in v] for v in result.vectors], prompt_tokens=result.prompt_tokens)


class BareException(Good):
    def chat(self, request, ctx):
        if request.has_images():
            raise ValueError("cannot decode image")
        return Good.chat(self, request, ctx)


class LaxOptions(Good):
    class Options(msgspec.Struct):
        words: int = 40


class NoMemory(Good):
    def memory_bytes(self):
        return 0


@pytest.mark.parametrize(
    ("cls", "check", "message"),
    [
        (FinishEveryChunk, "chat.stream", "has finish_reason='stop': only the last may"),
        (NoUsage, "chat.usage", "must carry prompt_tokens > 0"),
        (IgnoresMaxTokens, "chat.max_tokens", "max_tokens=2"),
        (IgnoresCancel, "chat.cancel", "generated text for an already cancelled RunContext"),
        (IgnoresCancel, "embedding.cancel", "expected Cancelled, but nothing was raised"),
        (Random, "chat.deterministic", "the provider claims deterministic = True"),
        (LongVectors, "embedding.vectors", "has length 2.000000; Loom serves unit vectors"),
        (BareException, "chat.errors", "raised ValueError: cannot decode image"),
        (LaxOptions, "provider.options", "forbid_unknown_fields=True"),
        (NoMemory, "lifecycle.memory", "memory_bytes() is 0 after load()"),
    ],
)
def test_each_broken_rule_is_named(cls, check, message):
    found = failures(cls)
    assert check in found, f"{check} passed for {cls.__name__}: {found}"
    assert message in found[check]


def test_cancel_midstream_is_caught():
    class FinishesAnyway(Good):
        def chat(self, request, ctx):
            ctx.check()  # honours a context cancelled before the call, not one cancelled later
            yield from Good.chat(self, request, RunContext())

    assert "kept streaming" in failures(FinishesAnyway)["chat.cancel"]


def test_checks_follow_the_declared_capabilities():
    ids = {c.id for c in applicable(frozenset({Capability.EMBEDDING}), plugin=False)}
    assert ids == {
        "provider.declaration",
        "provider.options",
        "lifecycle.memory",
        "lifecycle.reload",
        "embedding.vectors",
        "embedding.stable",
        "embedding.cancel",
    }
    every = {c.id for c in applicable(frozenset(Capability), plugin=True)}
    assert every == {c.id for c in CHECKS}


def test_registration_check_uses_the_hookspecs():
    plugin = types.ModuleType("misspelt")

    @hookimpl
    def register_provider(register):  # missing "s": pluggy refuses it against the specs
        register(Good)

    plugin.register_provider = register_provider
    assert "register_provider" in failures(Good, plugin=plugin)["plugin.registration"]


def test_pngs_round_trip():
    assert png_size(make_png(7, 5)) == (7, 5)
    with pytest.raises(ValueError, match="not a PNG"):
        png_size(b"GIF89a....")


def test_suite_generates_one_test_per_check_and_skips_with_reasons(tmp_path):
    """The pytest face: parametrised ids, determinism skipped when not claimed, skip_checks."""
    (tmp_path / "test_generated.py").write_text(
        textwrap.dedent("""
        from loom.sdk.testing import ProviderConformance, provider_conformance
        from test_conformance_kit import Good

        class TestGood(ProviderConformance):
            provider = Good
            deterministic = False
            skip_checks = {"embedding.stable": "known: hashes collide"}

        TestAgain = provider_conformance(Good, capabilities=frozenset({"embedding"}))
    """)
    )
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "-v", "-rs", "-p", "no:cacheprovider", str(tmp_path)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": os.path.dirname(__file__)},
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "TestGood::test_conformance[chat.stream] PASSED" in out.stdout
    assert "does not claim deterministic = True" in out.stdout
    assert "embedding.stable: known: hashes collide" in out.stdout
    assert "TestAgain::test_conformance[embedding.vectors] PASSED" in out.stdout
    assert "TestAgain::test_conformance[chat.stream]" not in out.stdout


def test_provider_conformance_refuses_unknown_settings():
    with pytest.raises(TypeError, match="unknown settings"):
        provider_conformance(Good, promt="typo")


def test_the_kit_imports_nothing_heavy():
    """A plugin's tests import the kit; it must not drag in model runtimes or the daemon."""
    heavy = [
        "torch",
        "diffusers",
        "transformers",
        "open_clip",
        "llama_cpp",
        "faiss",
        "numpy",
        "PIL",
        "openai",
        "httpx",
        "loom.daemon",
    ]
    script = f"import sys, loom.sdk.testing; print(','.join(m for m in {heavy!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


# --- what the kit used to let through ------------------------------------------------------------


class IgnoresStopAndSeed(Good):
    name = "ignores-stop-and-seed"

    def reply(self, request) -> list[str]:
        return Good.reply(self, msgspec.structs.replace(request, seed=None, stop=None))

    def chat(self, request, ctx):
        return Good.chat(self, msgspec.structs.replace(request, stop=None, seed=None), ctx)


def test_a_provider_that_ignores_stop_and_seed_fails_those_checks():
    failed = failures(IgnoresStopAndSeed)
    assert "stop=" in failed["chat.stop"] and "seeds 1, 2 and 3" in failed["chat.seeds"]


class IgnoresResponseFormat(Good):
    name = "ignores-response-format"

    def chat(self, request, ctx):
        return Good.chat(self, msgspec.structs.replace(request, response_format=None), ctx)


def test_a_provider_that_claims_response_format_and_ignores_it_fails():
    assert "not JSON" in failures(IgnoresResponseFormat)["chat.response_format"]


class Echo(Provider):
    """A translator that echoes, and a captioner with one stock caption."""

    name = "echo"
    capabilities = frozenset({Capability.TRANSLATION, Capability.VISION})

    def estimate_bytes(self):
        return 10

    def load(self, device):
        pass

    def unload(self):
        pass

    def memory_bytes(self):
        return 10

    def translate(self, texts, source, target, ctx):
        ctx.check()
        for param, code in (("source", source), ("target", target)):
            if code not in ("en", "fr", "de"):
                from loom.sdk import InvalidRequest

                raise InvalidRequest(f"unknown language {code}", param=param)
        return list(texts)

    def describe(self, image, prompt, detail, max_tokens, ctx):
        ctx.check()
        if not image.startswith(b"\x89PNG"):
            raise _invalid()
        return "A picture."

    def score(self, image, text, ctx):
        from loom.sdk import VisionScores

        ctx.check()
        if not image.startswith(b"\x89PNG"):
            raise _invalid()
        return VisionScores(clip=0.5, aesthetic=5.0)


def _invalid():
    from loom.sdk import InvalidRequest

    return InvalidRequest("not an image", param="image")


def test_an_echoing_translator_and_a_stock_captioner_fail():
    failed = failures(Echo)
    assert "returned its input" in failed["translation.translates"]
    assert "must look at the image" in failed["vision.looks"]
    assert set(failed) == {"translation.translates", "vision.looks"}, failed
