"""The torch providers driven directly, as the scheduler drives them: cancellation, stop strings,
progress, load errors. Each loads a tiny saved model by path in this process."""

from __future__ import annotations

import threading

import msgspec
import pytest

pytest.importorskip("torch")

from loom.sdk import Cancelled, ImageJob, InvalidRequest, ModelSpec, ProviderError, RunContext
from loom.sdk.types import ChatCompletionRequest, CompletionRequest


def make(cls, **options):
    opts = msgspec.convert(options, cls.Options)
    return cls(ModelSpec(id=f"test-{cls.name}", provider=cls.name, options=opts, capabilities=cls.capabilities))


@pytest.fixture(scope="module")
def gpt2(tiny_models):
    from loom.plugins.transformers import TransformersTextProvider

    provider = make(TransformersTextProvider, model=str(tiny_models["gpt2"]))
    provider.load("cpu")
    yield provider
    provider.unload()


@pytest.fixture(scope="module")
def sd(tiny_models):
    from loom.plugins.diffusers import DiffusersProvider

    provider = make(DiffusersProvider, model=str(tiny_models["sd"]))
    provider.load("cpu")
    yield provider
    provider.unload()


def completion(**kw) -> CompletionRequest:
    return msgspec.convert({"model": "m", "prompt": "Once", "max_tokens": 12, "seed": 4, **kw}, CompletionRequest)


def text_of(chunks) -> tuple[str, str | None]:
    chunks = list(chunks)
    return "".join(c.text for c in chunks), chunks[-1].finish_reason


def test_stop_string_cuts_the_text(gpt2):
    full, finish = text_of(gpt2.complete("Once", completion(), RunContext()))
    assert finish == "length" and len(full) >= 3
    stop = full[1:3]
    cut, finish = text_of(gpt2.complete("Once", completion(stop=[stop]), RunContext()))
    assert cut == full[: full.index(stop)] and finish == "stop"


def test_cancelling_a_stream_stops_generation(gpt2):
    ctx = RunContext()
    chunks = gpt2.complete("Once", completion(max_tokens=200), ctx)
    next(chunks)
    ctx.cancel()
    with pytest.raises(Cancelled):
        list(chunks)
    assert not [t for t in threading.enumerate() if t.name == "loom-generate"]


def test_chat_without_template_uses_a_transcript(tiny_models):
    from loom.plugins.transformers import TransformersTextProvider

    provider = make(TransformersTextProvider, model=str(tiny_models["gpt2"]), chat_template="{{ nope(")
    provider.load("cpu")
    try:
        request = msgspec.convert(
            {"model": "m", "messages": [{"role": "user", "content": "hi"}]}, ChatCompletionRequest
        )
        with pytest.raises(InvalidRequest):  # a broken template is the request's 400, not a 500
            provider.chat(request, RunContext())
        provider._tokenizer.chat_template = None
        provider.options = msgspec.structs.replace(provider.options, chat_template=None)
        assert provider._chat_text(request) == ("User: hi\nAssistant:", False)
    finally:
        provider.unload()


@pytest.mark.parametrize(
    "key, family, source, target, model_target",
    [
        ("nllb", "nllb", "en", "fr", "fra_Latn"),
        ("m2m100", "m2m100", "eng_Latn", "fra_Latn", "fr"),
        ("marian", "marian", "eng", "fr-FR", "fr"),
    ],
)
def test_translation_families_take_any_spelling_of_a_language(tiny_models, key, family, source, target, model_target):
    from loom.plugins.transformers import TransformersTranslationProvider

    provider = make(TransformersTranslationProvider, model=str(tiny_models[key]), num_beams=1, max_new_tokens=6)
    provider.load("cpu")
    try:
        languages = provider.family()
        assert languages.name == family and languages.targets.lookup(target) == model_target
        out = provider.translate(["Hello world. The sea is calm.", ""], source, target, RunContext())
        assert len(out) == 2 and out[1] == ""
        with pytest.raises(InvalidRequest) as e:
            provider.translate(["Hello."], source, "tlh", RunContext())  # Klingon: no model has it
        assert e.value.param == "target"
    finally:
        provider.unload()


def test_diffusion_reports_each_step(sd):
    steps = []
    sd.generate_images(
        ImageJob(prompt="x", width=64, height=64, steps=3, seed=1),
        RunContext(on_progress=lambda done, total, _: steps.append((done, total))),
    )
    assert steps == [(1, 3), (2, 3), (3, 3)]


def test_cancelled_diffusion_stops_at_the_next_step(sd):
    ctx = RunContext(on_progress=lambda done, total, _: (seen.append(done), ctx.cancel()))
    seen: list[int] = []
    with pytest.raises(Cancelled):
        sd.generate_images(ImageJob(prompt="x", width=64, height=64, steps=6, seed=1), ctx)
    assert seen == [1]


def test_unloaded_provider_says_so(tiny_models):
    from loom.plugins.diffusers import DiffusersProvider

    provider = make(DiffusersProvider, model=str(tiny_models["sd"]))
    with pytest.raises(ProviderError, match="not loaded"):
        provider.generate_images(ImageJob(prompt="x", width=64, height=64), RunContext())


def test_a_folder_that_is_not_a_model_is_a_provider_error(tmp_path):
    from loom.plugins.transformers import TransformersTranslationProvider

    provider = make(TransformersTranslationProvider, model=str(tmp_path))
    with pytest.raises(ProviderError) as e:
        provider.load("cpu")
    assert "test-transformers-translation" in e.value.message and str(tmp_path) in e.value.message


def test_cuda_asked_for_without_cuda_is_a_provider_error(tiny_models):
    import torch
    from loom.plugins.transformers import TransformersTextProvider

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    provider = make(TransformersTextProvider, model=str(tiny_models["gpt2"]))
    with pytest.raises(ProviderError, match="CUDA is not available"):
        provider.load("cuda")


def test_a_cpu_model_sets_torchs_threads(tiny_models):
    import torch
    from loom.plugins.transformers import TransformersTextProvider
    from loom.sdk.threads import runtime_threads

    before = torch.get_num_threads()
    opts = msgspec.convert({"model": str(tiny_models["gpt2"])}, TransformersTextProvider.Options)
    try:
        for threads, expected in ((1, 1), (None, runtime_threads())):
            spec = ModelSpec(id="t", provider="transformers", options=opts, threads=threads)
            provider = TransformersTextProvider(spec)
            provider.load("cpu")
            provider.unload()
            assert torch.get_num_threads() == expected
    finally:
        torch.set_num_threads(before)
