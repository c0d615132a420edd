"""Fixtures for the web UI tests: a real browser (Debian's chromium driven by Playwright; no
browser is downloaded) against a live daemon on the mock models.

Skipped, with the reason, where chromium or the playwright package is missing; ``make test``
installs both.
"""

from __future__ import annotations

import os
import shutil

import httpx
import pytest

from tests.conftest import Daemon, write_config
from tests.integration.jobs_support import beam_config

CHROMIUM = os.environ.get("LOOM_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
USER_KEY, ADMIN_KEY = "ui-user-key-1", "ui-admin-key-1"
#: What a hostile user might type; every page must show it as text.
HOSTILE = "<script>window.__pwned=1</script><img src=x onerror=\"window.__pwned=2\"> a red apple & 'pear'"

try:
    from playwright.sync_api import sync_playwright
except ImportError:  # pragma: no cover - make test installs it
    sync_playwright = None

if sync_playwright is None:
    pytest.skip("the playwright package is not installed (pip install playwright)", allow_module_level=True)
if CHROMIUM is None:
    pytest.skip("chromium is not installed (apt-get install chromium)", allow_module_level=True)


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        yield b
        b.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    pg = context.new_page()
    pg.set_default_timeout(20_000)
    # A page that runs injected script would set window.__pwned or open a dialog; both fail tests.
    dialogs: list[str] = []
    pg.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    yield pg
    assert not dialogs, f"a page opened a dialog: {dialogs}"
    context.close()


# The beam-search roles on the mock, an image model slow enough to watch progress, and one
# mock model with a memory footprint to load and unload.
EXTRA_MODELS = """
[[models]]
id = "ui-heavy"
provider = "mock"
capabilities = ["chat"]
options = { memory_mb = 32 }
"""


@pytest.fixture(scope="module")
def ui_daemon(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ui")
    d = Daemon(write_config(tmp / "loom.toml", beam_config(slow_ms=250) + EXTRA_MODELS), tmp / "data").start()
    yield d
    d.stop()


@pytest.fixture(scope="module")
def keyed_ui_daemon(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ui-keyed")
    cfg = beam_config().replace(
        '[daemon]\nhost = "127.0.0.1"\n',
        '[daemon]\nhost = "127.0.0.1"\n\n[[daemon.api_keys]]\nkey = { env = "T_UI_USER" }\n\n'
        '[[daemon.api_keys]]\nkey = { env = "T_UI_ADMIN" }\nrole = "admin"\n',
    )
    d = Daemon(
        write_config(tmp / "loom.toml", cfg), tmp / "data", env={"T_UI_USER": USER_KEY, "T_UI_ADMIN": ADMIN_KEY}
    ).start()
    yield d
    d.stop()


@pytest.fixture(scope="module")
def api(ui_daemon):
    with httpx.Client(base_url=ui_daemon.url, timeout=30) as c:
        yield c


def click_and_wait(page, selector: str) -> None:
    """Click something that loads a new page (htmx swaps the body in place), and wait until the
    new one is in: a new page may look like the old one (the same form, the same notice)."""
    page.evaluate("document.querySelector('main').dataset.stale = 'yes'")
    page.click(selector)
    page.wait_for_selector("main:not([data-stale])", state="attached")
