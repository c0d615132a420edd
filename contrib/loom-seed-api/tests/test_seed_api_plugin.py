"""The plugin as Loom sees it: found through its entry point, its routes pass the conformance
check, its options are decoded strictly."""

from __future__ import annotations

import json
import subprocess
import sys

import loom_seed_api
import msgspec
import pytest
from loom.sdk.testing import route_problems
from loom_seed_api.options import SeedApiOptions


def test_routes_pass_the_conformance_check():
    assert route_problems(loom_seed_api) == []
    assert route_problems(loom_seed_api, options=SeedApiOptions(seeds=["001"], flux_prefix="")) == []


def test_loom_plugins_lists_the_routes():
    out = subprocess.run(
        [sys.executable, "-m", "loom.daemon.cli", "plugins", "--json"], capture_output=True, text=True, check=True
    )
    plugin = {p["name"]: p for p in json.loads(out.stdout)["plugins"]}["seed_api"]
    assert plugin["distribution"] == "loom-seed-api" and plugin["hooks"] == ["register_routes"]
    assert {"/api/beam-search", "/generate-story", "/generate", "/socket.io", "/", "/flux/generate"} <= set(
        plugin["routes"]
    )


def test_options_are_strict():
    only = msgspec.convert({"seeds": ["004"], "flux_prefix": ""}, SeedApiOptions)
    assert only.flux_prefix == ""
    with pytest.raises(msgspec.ValidationError, match="seed 002's /generate/"):
        msgspec.convert({"flux_prefix": ""}, SeedApiOptions)
    with pytest.raises(msgspec.ValidationError, match="Object contains unknown field `seed`"):
        msgspec.convert({"seed": ["004"]}, SeedApiOptions)
    with pytest.raises(msgspec.ValidationError):
        msgspec.convert({"seeds": ["005"]}, SeedApiOptions)


def test_a_seeds_front_end_is_served_from_loom(tmp_path):
    from loom.sdk.testing import LoomServer
    from seed_helpers import CONFIG

    public = tmp_path / "public"
    public.mkdir()
    (public / "demo.html").write_text("<script src='demo.js'></script><p>Beam search demo</p>")
    (public / "demo.js").write_text("const WS_URL = `ws://${window.location.host}`;")
    config = CONFIG.replace(
        "[plugins.seed_api.seed004]",
        f'[plugins.seed_api]\nstatic = {{ "/demo" = "{public}" }}\n\n[plugins.seed_api.seed004]',
    )
    with LoomServer(config, tmp_path / "loom") as loom:
        import httpx

        page = httpx.get(f"{loom.url}/demo/demo.html")
        assert page.status_code == 200 and "Beam search demo" in page.text
        assert "window.location.host" in httpx.get(f"{loom.url}/demo/demo.js").text
        assert httpx.get(f"{loom.url}/demo/").status_code in (200, 404)  # html_mode: index.html if any
        assert httpx.get(f"{loom.url}/api/providers/status").status_code == 200  # the API beside it
