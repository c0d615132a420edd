"""ModelRouter: fallbacks, health, queue-depth fallback, runtime switching and its persistence."""

from __future__ import annotations

import asyncio
import json

import msgspec
import pytest
from loom.daemon.config import decode_config
from loom.daemon.models import build_registry
from loom.daemon.plugin_manager import PluginInfo
from loom.daemon.routing import ModelRouter
from loom.daemon.scheduler import Scheduler
from loom.sdk import Capability, Embeddings, Provider, ProviderError, TextChunk
from loom.sdk.errors import CapabilityNotSupported, InvalidRequest, ModelNotFound, QueueFull
from loom.sdk.protocols import RerankScores


class Behaviour:
    """What each fake model does next, per model id: "ok", an exception, or an asyncio.Event to
    wait on (to hold a slot)."""

    def __init__(self) -> None:
        self.plan: dict[str, list] = {}
        self.calls: list[str] = []

    def next(self, model: str):
        queue = self.plan.get(model)
        return queue.pop(0) if queue else "ok"


BEHAVIOUR = Behaviour()


class FakeRemote(Provider):
    name = "fake"
    capabilities = frozenset(Capability)
    local = False

    async def _act(self):
        BEHAVIOUR.calls.append(self.spec.id)
        step = BEHAVIOUR.next(self.spec.id)
        if isinstance(step, asyncio.Event):
            await step.wait()
        elif isinstance(step, BaseException):
            raise step

    async def embed(self, inputs, ctx):
        await self._act()
        return Embeddings(vectors=[[1.0]] * len(inputs))

    async def chat(self, request, ctx):
        await self._act()
        yield TextChunk(text=f"{self.spec.id}:1")
        step = BEHAVIOUR.next(self.spec.id + "/after-first")
        if isinstance(step, BaseException):
            raise step
        yield TextChunk(text=f"{self.spec.id}:2", finish_reason="stop")

    complete = chat

    async def generate_images(self, job, ctx):
        return []

    async def describe(self, *a):
        return ""

    async def score(self, *a):
        return None

    async def translate(self, texts, source, target, ctx):
        return texts

    async def rerank(self, query, documents, ctx):
        return RerankScores(scores=[0.0] * len(documents))


CONFIG = """
[[models]]
id = "local"
provider = "fake"
aliases = ["loc"]
capabilities = ["chat", "embedding"]
fallbacks = ["remote-a", "remote-b"]
concurrency = 1
max_queue = 1

[[models]]
id = "remote-a"
provider = "fake"
capabilities = ["chat", "embedding", "vision"]

[[models]]
id = "remote-b"
provider = "fake"
capabilities = ["chat", "embedding"]

[[models]]
id = "imager"
provider = "fake"
capabilities = ["image"]
fallbacks = ["imager-2"]

[[models]]
id = "imager-2"
provider = "fake"
capabilities = ["image"]
"""


def make_router(tmp_path=None, text: str = CONFIG) -> ModelRouter:
    import tomllib

    config = decode_config(tomllib.loads(text))
    infos = {"fakeplugin": PluginInfo(name="fakeplugin", module="tests", version=None)}
    registry = build_registry(config, {"fake": ("fakeplugin", FakeRemote)}, [], infos)
    router = ModelRouter(registry, Scheduler(config, registry))
    if tmp_path is not None:
        router.load(tmp_path / "routing.json")
    return router


@pytest.fixture(autouse=True)
def fresh_behaviour():
    BEHAVIOUR.plan.clear()
    BEHAVIOUR.calls.clear()


def ids(entries) -> list[str]:
    return [e.id for e in entries]


def embed_call(provider, ctx):
    return provider.embed(["x"], ctx)


async def chat_text(router: ModelRouter, name: str) -> tuple[str, list[str]]:
    def call(provider, ctx):
        return provider.chat(None, ctx)

    entry, chunks = await router.stream(name, Capability.CHAT, call)
    return entry.id, [c.text async for c in chunks]


# --- choosing ---------------------------------------------------------------------------------


def test_candidates_are_the_model_then_its_fallbacks_in_order():
    router = make_router()
    assert ids(router.candidates("local", Capability.CHAT)) == ["local", "remote-a", "remote-b"]
    assert ids(router.candidates("loc", Capability.EMBEDDING)) == ["local", "remote-a", "remote-b"]
    with pytest.raises(ModelNotFound):
        router.candidates("nope", Capability.CHAT)
    with pytest.raises(CapabilityNotSupported):
        router.candidates("local", Capability.IMAGE)


def test_unhealthy_models_are_skipped_unless_nothing_else_is_left():
    router = make_router()
    router.healthy["local"] = False
    assert ids(router.candidates("local", Capability.CHAT)) == ["remote-a", "remote-b"]
    router.healthy.update({"remote-a": False, "remote-b": False})
    assert ids(router.candidates("local", Capability.CHAT)) == ["local", "remote-a", "remote-b"]


# --- falling back -----------------------------------------------------------------------------


async def test_run_falls_back_on_provider_errors_and_raises_the_last():
    router = make_router()
    BEHAVIOUR.plan = {"local": [ProviderError("boom")]}
    entry, _ = await router.run("local", Capability.EMBEDDING, embed_call)
    assert entry.id == "remote-a" and BEHAVIOUR.calls == ["local", "remote-a"]

    BEHAVIOUR.calls.clear()
    BEHAVIOUR.plan = {m: [ProviderError(f"{m} down")] for m in ("local", "remote-a", "remote-b")}
    with pytest.raises(ProviderError, match="remote-b down"):
        await router.run("local", Capability.EMBEDDING, embed_call)
    assert BEHAVIOUR.calls == ["local", "remote-a", "remote-b"]


async def test_a_client_error_is_not_a_reason_to_fall_back():
    router = make_router()
    BEHAVIOUR.plan = {"local": [InvalidRequest("bad input")]}
    with pytest.raises(InvalidRequest):
        await router.run("local", Capability.EMBEDDING, embed_call)
    assert BEHAVIOUR.calls == ["local"]


async def test_stream_falls_back_only_before_the_first_chunk():
    router = make_router()
    BEHAVIOUR.plan = {"local": [ProviderError("no")]}
    assert await chat_text(router, "local") == ("remote-a", ["remote-a:1", "remote-a:2"])

    BEHAVIOUR.plan = {"local/after-first": [ProviderError("cut")]}
    entry, chunks = await router.stream("local", Capability.CHAT, lambda p, ctx: p.chat(None, ctx))
    assert entry.id == "local"
    assert (await chunks.__anext__()).text == "local:1"
    with pytest.raises(ProviderError, match="cut"):
        await chunks.__anext__()


async def test_a_full_queue_falls_back():
    router = make_router()
    hold = asyncio.Event()
    BEHAVIOUR.plan = {"local": [hold, hold]}
    first = asyncio.create_task(router.run("local", Capability.EMBEDDING, embed_call))
    second = asyncio.create_task(router.run("local", Capability.EMBEDDING, embed_call))
    await asyncio.sleep(0.01)  # one runs, one waits: max_queue = 1 is reached
    entry, _ = await router.run("local", Capability.EMBEDDING, embed_call)
    assert entry.id == "remote-a"
    hold.set()
    assert [(await t)[0].id for t in (first, second)] == ["local", "local"]


async def test_fallback_on_queue_sends_requests_past_n_waiting_to_the_fallback():
    router = make_router()
    entry = router.registry.get("local")
    entry.config = msgspec.structs.replace(entry.config, fallback_on_queue=0)
    hold = asyncio.Event()
    BEHAVIOUR.plan = {"local": [hold]}
    running = asyncio.create_task(router.run("local", Capability.EMBEDDING, embed_call))
    await asyncio.sleep(0.01)
    # N = 0: nothing may wait for "local", so the next request goes straight to the fallback.
    served, _ = await router.run("local", Capability.EMBEDDING, embed_call)
    assert served.id == "remote-a"
    hold.set()
    assert (await running)[0].id == "local"
    # A free slot: the first choice serves again.
    assert (await router.run("local", Capability.EMBEDDING, embed_call))[0].id == "local"


async def test_queue_full_on_the_last_choice_is_raised():
    router = make_router()
    hold = asyncio.Event()
    BEHAVIOUR.plan = {"local": [hold, hold], "remote-a": [QueueFull("a full")], "remote-b": [QueueFull("b full")]}
    tasks = [asyncio.create_task(router.run("local", Capability.EMBEDDING, embed_call)) for _ in range(2)]
    await asyncio.sleep(0.01)
    with pytest.raises(QueueFull, match="b full"):
        await router.run("local", Capability.EMBEDDING, embed_call)
    hold.set()
    await asyncio.gather(*tasks)


# --- runtime switching ------------------------------------------------------------------------


async def test_model_switch_sends_its_requests_elsewhere_and_is_undone():
    router = make_router()
    result = router.switch("loc", "remote-b")
    assert result == {
        "model": "local",
        "switched_to": "remote-b",
        "served_by": {"chat": "remote-b", "embedding": "remote-b"},
    }
    assert ids(router.candidates("local", Capability.CHAT)) == ["remote-b", "remote-a"]
    assert (await chat_text(router, "local"))[0] == "remote-b"
    router.switch("local", None)
    assert (await chat_text(router, "local"))[0] == "local"
    assert router.switches() == {"models": {}, "capabilities": {}}


def test_model_switch_covers_only_the_capabilities_the_target_has():
    router = make_router()
    router.switch("remote-a", "local")  # local does chat and embedding, not vision
    assert router.describe_model(router.registry.get("remote-a"))["served_by"] == {
        "chat": "local",
        "embedding": "local",
        "vision": "remote-a",
    }
    with pytest.raises(InvalidRequest, match="can do none"):
        router.switch("local", "imager")
    with pytest.raises(ModelNotFound) as e:
        router.switch("local", "ghost")
    assert e.value.param == "to"


async def test_capability_switch_takes_every_request_of_it_and_a_model_switch_wins():
    router = make_router()
    assert router.switch("chat", "remote-b") == {"capability": "chat", "served_by": "remote-b"}
    assert (await chat_text(router, "remote-a"))[0] == "remote-b"
    # Other capabilities of the same models are untouched.
    assert (await router.run("remote-a", Capability.EMBEDDING, embed_call))[0].id == "remote-a"
    assert router.route_for("chat", "local") == "remote-b"
    assert router.route_for("embedding", "local") == "local"
    router.switch("remote-a", "local")
    assert (await chat_text(router, "remote-a"))[0] == "local"
    with pytest.raises(CapabilityNotSupported):
        router.switch("image", "remote-a")
    with pytest.raises(ModelNotFound, match="no capability named 'paint'"):
        router.switch("paint", "imager")
    router.switch("chat", None)
    assert router.route_for("chat", "local") == "local"


def test_switches_persist_across_a_restart(tmp_path):
    router = make_router(tmp_path)
    router.switch("local", "remote-a")
    router.switch("image", "imager-2")
    saved = json.loads((tmp_path / "routing.json").read_text())
    assert saved == {"version": 1, "models": {"local": "remote-a"}, "capabilities": {"image": "imager-2"}}

    again = make_router(tmp_path)
    assert again.switches() == router.switches()
    again.switch("local", None)
    assert make_router(tmp_path).switches() == {"models": {}, "capabilities": {"image": "imager-2"}}


def test_stale_or_broken_state_never_stops_start_up(tmp_path):
    path = tmp_path / "routing.json"
    path.write_text(
        json.dumps(
            {
                "version": 1,
                "models": {"gone": "local", "local": "ghost", "remote-a": "remote-b"},
                "capabilities": {"chat": "imager", "paint": "local"},
            }
        )
    )
    router = make_router(tmp_path)
    assert router.switches() == {"models": {"remote-a": "remote-b"}, "capabilities": {}}
    assert json.loads(path.read_text())["models"] == {"remote-a": "remote-b"}  # rewritten clean

    path.write_text("{not json")
    assert make_router(tmp_path).switches() == {"models": {}, "capabilities": {}}
    assert (tmp_path / "routing.json.bad").exists()
