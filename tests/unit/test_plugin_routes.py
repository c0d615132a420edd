"""The register_routes hook: a plugin's Litestar handlers served by the daemon (in process, through
Litestar's TestClient), its RouteContext starting and following a real job on the mock models,
the key guard over plugin routes, and the paths start-up refuses."""

from __future__ import annotations

import types

import pytest
from litestar import Request, get, post
from litestar.di import NamedDependency
from litestar.testing import TestClient
from loom.daemon.app import create_app
from loom.daemon.config import decode_config
from loom.sdk import hookimpl
from loom.sdk.errors import NotFound, PluginError
from loom.sdk.routes import RouteContext, route_claims
from loom.sdk.testing import route_problems

MODELS = [
    {"id": "mock-chat", "provider": "mock", "capabilities": ["chat", "embedding"]},
    {"id": "mock-image", "provider": "mock", "capabilities": ["image"]},
    {"id": "mock-vision", "provider": "mock", "capabilities": ["vision"]},
]


def raw_config(tmp_path, **daemon):
    return {
        "daemon": {"data_dir": str(tmp_path / "data"), **daemon},
        "routes": {"chat": "mock-chat", "image": "mock-image", "vision": "mock-vision"},
        "models": MODELS,
    }


def acme_plugin():
    module = types.ModuleType("acme_routes")

    @hookimpl
    def register_routes(register, loom, options):
        @post("/acme/story", include_in_schema=False)
        async def story(request: Request) -> dict:
            data = await request.json()
            job = await loom.start_job("story", {"prompt": data["prompt"], "target_words": 40})
            events = [e async for e in loom.follow(job["id"])]
            done = loom.get_job(job["id"])
            return {"types": [e.type for e in events], "ids": [e.id for e in events], "job": done}

        @get("/acme/image", include_in_schema=False)
        async def image() -> dict:
            png = await loom.generate_image("a red square", width=64, height=32)
            rel = loom.save_file(png)
            scores = await loom.score(loom.read_file(rel), "a red square")
            return {"path": rel, "file": str(loom.file_path(rel)), "clip": scores.clip, "url": loom.file_url(rel)}

        @get("/acme/injected", include_in_schema=False)
        async def injected(loom: NamedDependency[RouteContext]) -> dict:
            assert isinstance(loom, RouteContext)
            return {"pipelines": loom.pipelines(), "models": [m["id"] for m in loom.models()]}

        @get("/acme/open", opt={"public": True}, include_in_schema=False)
        async def open_route() -> dict:
            return {"open": True}

        for handler in (story, image, injected, open_route):
            register(handler)

    module.register_routes = register_routes
    return module


def claiming(*paths: str):
    module = types.ModuleType("claims")

    @hookimpl
    def register_routes(register):
        for path in paths:

            @get(path, include_in_schema=False)
            async def handler() -> dict:
                return {}

            register(handler)

    module.register_routes = register_routes
    return module


def test_a_plugin_route_starts_and_follows_a_job(tmp_path):
    app = create_app(decode_config(raw_config(tmp_path)), extra_plugins={"acme": acme_plugin()})
    with TestClient(app, timeout=60) as c:
        r = c.post("/acme/story", json={"prompt": "a turtle"})
        assert r.status_code == 201, r.text
        body = r.json()
        assert body["job"]["state"] == "succeeded" and body["job"]["result"]["story"]
        assert body["types"][-1] == "state" and "progress" in body["types"]
        assert body["ids"] == list(range(1, len(body["ids"]) + 1))  # every event, in order, once
        image = c.get("/acme/image").json()
        assert image["path"].startswith("images/") and image["file"].endswith(".png")
        assert 0.0 <= image["clip"] <= 1.0 and image["url"] == f"/v1/files/{image['path']}"
        assert c.get(image["url"]).status_code == 200
        injected = c.get("/acme/injected").json()
        assert "story" in injected["pipelines"] and "mock-chat" in injected["models"]


def test_plugin_routes_sit_behind_the_key_guard(tmp_path, monkeypatch):
    monkeypatch.setenv("T_ROUTES_KEY", "user-key-1")
    raw = raw_config(tmp_path, api_keys=[{"key": {"env": "T_ROUTES_KEY"}}])
    app = create_app(decode_config(raw), extra_plugins={"acme": acme_plugin()})
    with TestClient(app) as c:
        assert c.get("/acme/injected").status_code == 401
        assert c.get("/acme/injected", headers={"Authorization": "Bearer user-key-1"}).status_code == 200
        assert c.get("/acme/open").json() == {"open": True}  # opt public: its own credential


def test_two_plugins_claiming_one_path_stop_start_up(tmp_path):
    extra = {"one": claiming("/acme/x"), "two": claiming("/acme/x/")}
    with pytest.raises(PluginError, match=r"'/acme/x' is registered by two plugins: 'one' and 'two'"):
        create_app(decode_config(raw_config(tmp_path)), extra_plugins=extra)


@pytest.mark.parametrize("path", ["/v1/acme", "/admin/acme", "/ui/x", "/health", "/docs/x", "/metrics"])
def test_a_path_of_looms_own_stops_start_up(tmp_path, path):
    with pytest.raises(PluginError, match=r"plugin 'bad' registered routes Loom refuses: .*Loom's own"):
        create_app(decode_config(raw_config(tmp_path)), extra_plugins={"bad": claiming(path)})


def test_a_route_loom_serves_outside_the_reserved_prefixes_stops_start_up(tmp_path, monkeypatch):
    import loom.sdk.routes as routes

    # As if /health were not reserved: Loom's own /health still refuses the claim.
    monkeypatch.setattr(routes, "RESERVED_PREFIXES", ("/v1",))
    with pytest.raises(PluginError, match=r"plugin 'bad' registered a route Loom serves itself: '/health'"):
        create_app(decode_config(raw_config(tmp_path)), extra_plugins={"bad": claiming("/health")})


def test_the_conformance_check():
    assert route_problems(acme_plugin()) == []
    assert route_problems(claiming("/v1/chat/x")) == ["path '/v1/chat/x' is Loom's own (everything under /v1 is)"]
    assert route_problems(claiming()) == ["register_routes registers no route"]
    claims, problems = route_claims(["not a handler"])
    assert claims == [] and "not a Litestar route handler" in problems[0]


def test_follow_of_an_unknown_job_is_not_found(tmp_path):
    from loom.daemon.api.plugin_routes import DaemonRouteContext
    from loom.daemon.services import build_services

    services = build_services(decode_config(raw_config(tmp_path)))
    loom = DaemonRouteContext(
        runner=services.runner,
        registry=services.registry,
        router=services.router,
        routes=services.routes,
        files=services.files,
        records=services.records,
    )
    assert loom.get_job("nope") is None
    with pytest.raises(NotFound):
        loom.read_file("loom.db")  # the daemon's state is never a file a plugin can read
