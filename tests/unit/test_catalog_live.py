"""ModelCatalog in a running daemon: the registry, the scheduler and the router follow the config
file; a removed model's queued work fails, its running work finishes, its switches go."""

from __future__ import annotations

import asyncio
import tomllib

import pytest
from loom.daemon.catalog.live import ModelCatalog
from loom.daemon.config import decode_config
from loom.daemon.models import build_registry
from loom.daemon.plugin_manager import PluginInfo
from loom.daemon.routing import ModelRouter
from loom.daemon.scheduler import Scheduler
from loom.sdk import Capability
from loom.sdk.errors import InvalidRequest, Unavailable

from tests.unit.test_routing import BEHAVIOUR, CONFIG, FakeRemote, embed_call


@pytest.fixture(autouse=True)
def fresh_behaviour():
    BEHAVIOUR.plan.clear()
    BEHAVIOUR.calls.clear()


@pytest.fixture
async def catalog(tmp_path):
    path = tmp_path / "loom.toml"
    path.write_text("# keep me\n" + CONFIG)
    config = decode_config(tomllib.loads(path.read_text()))
    infos = {"fakeplugin": PluginInfo(name="fakeplugin", module="tests", version=None)}
    providers = {"fake": ("fakeplugin", FakeRemote)}
    registry = build_registry(config, providers, [], infos)
    scheduler = Scheduler(config, registry)
    router = ModelRouter(registry, scheduler)
    await scheduler.start()
    yield ModelCatalog(
        config, path, registry=registry, scheduler=scheduler, router=router, providers=providers, plugins=infos
    )
    await scheduler.stop()


async def test_removing_a_model_fails_its_queue_lets_running_work_finish_and_drops_its_switches(catalog):
    registry, scheduler, router = catalog.registry, catalog.scheduler, catalog.router
    router.switch("remote-b", "local")
    hold = asyncio.Event()
    BEHAVIOUR.plan["local"] = [hold]
    entry = registry.get("local")
    running = asyncio.create_task(scheduler.run(entry, embed_call))
    await asyncio.sleep(0.05)
    queued = asyncio.create_task(scheduler.run(entry, embed_call))
    await asyncio.sleep(0.05)

    removal = asyncio.create_task(catalog.remove("local"))
    with pytest.raises(Unavailable, match="model 'local' was removed"):
        await queued
    assert not removal.done()  # waiting for the running call
    hold.set()
    await running  # it finished normally
    summary = await removal
    assert summary["removed"] == ["local"]
    assert "local" not in registry and "loc" not in registry
    assert router.switches() == {"models": {}, "capabilities": {}}
    text = catalog.config_path.read_text()
    assert text.startswith("# keep me\n") and 'id = "local"' not in text


async def test_a_removal_that_breaks_a_fallback_changes_nothing(catalog):
    before = catalog.config_path.read_text()
    with pytest.raises(InvalidRequest, match=r"\$\.models\[0\]\.fallbacks: no model named 'remote-a' \(nothing"):
        await catalog.remove("remote-a")
    assert catalog.config_path.read_text() == before
    assert "remote-a" in catalog.registry


async def test_reload_adds_changes_and_removes(catalog):
    path = catalog.config_path
    text = path.read_text().replace(
        'id = "remote-b"\nprovider = "fake"\ncapabilities = ["chat", "embedding"]',
        'id = "remote-b"\nprovider = "fake"\ncapabilities = ["chat"]',
    )
    text = text.replace('fallbacks = ["imager-2"]\n', "").replace(
        '[[models]]\nid = "imager-2"\nprovider = "fake"\ncapabilities = ["image"]\n', ""
    )
    path.write_text(text + '\n[[models]]\nid = "extra"\nprovider = "fake"\ncapabilities = ["translation"]\n')
    assert await catalog.reload() == {
        "added": ["extra"],
        "removed": ["imager-2"],
        "changed": ["imager", "remote-b"],
        "restart_needed": [],
    }
    assert catalog.registry.get("remote-b").capabilities == {Capability.CHAT}
    assert (await catalog.scheduler.run(catalog.registry.get("extra"), embed_call)).vectors == [[1.0]]
    assert "imager-2" not in catalog.registry
    assert await catalog.reload() == {"added": [], "removed": [], "changed": [], "restart_needed": []}
