"""http(s) image URLs in chat messages: fetched with a guard against server-side request forgery.

A small HTTP server on loopback serves images, redirects, a file that is not an image, one over
the size limit and one too slow. The shared mock daemon (default config) refuses loopback; a
daemon with ``allow_private = true`` fetches, re-checks redirects and keeps its limits.
"""

from __future__ import annotations

import io
import ipaddress
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
from loom.daemon.image_fetch import kind_of
from PIL import Image

from tests.conftest import Daemon, write_config


def png(colour=(200, 30, 30), size=(24, 16)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, colour).save(buf, "PNG")
    return buf.getvalue()


class Handler(BaseHTTPRequestHandler):
    routes: dict = {}

    def do_GET(self):
        route = self.routes.get(self.path)
        if route is None:
            self.send_response(404)
            self.end_headers()
            return
        status, headers, body, delay = route
        time.sleep(delay)
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def images():
    big = png(size=(600, 600)) + b"\0" * 300_000
    Handler.routes = {
        "/red.png": (200, {"Content-Type": "image/png"}, png(), 0),
        "/hop": (302, {"Location": "/red.png"}, b"", 0),
        "/hop2": (302, {"Location": "/hop"}, b"", 0),
        "/hop3": (302, {"Location": "/hop2"}, b"", 0),
        "/text": (200, {"Content-Type": "image/png"}, b"this is not an image", 0),
        "/big.png": (200, {"Content-Type": "image/png"}, big, 0),
        "/slow.png": (200, {"Content-Type": "image/png"}, png(), 3.0),
    }
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


ALLOWING = """
[daemon]
host = "127.0.0.1"

[daemon.image_urls]
allow_private = true
max_bytes = 200000
timeout = 1.5
max_redirects = 2

[[models]]
id = "mock-vision"
provider = "mock"
capabilities = ["vision", "chat"]
"""


@pytest.fixture(scope="module")
def allowing(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("image-urls")
    d = Daemon(write_config(tmp / "loom.toml", ALLOWING), tmp / "data").start()
    yield d
    d.stop()


def ask(daemon: Daemon, url: str, model: str = "mock-vision") -> httpx.Response:
    content = [{"type": "text", "text": "What is this?"}, {"type": "image_url", "image_url": {"url": url}}]
    body = {"model": model, "messages": [{"role": "user", "content": content}], "max_tokens": 30}
    return httpx.post(f"{daemon.url}/v1/chat/completions", json=body, timeout=30)


def refusal(r: httpx.Response, *words: str) -> str:
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["code"] == "invalid_image_url" and error["param"] == "messages[0].content[1].image_url.url", error
    for word in words:
        assert word in error["message"], error["message"]
    return error["message"]


def test_loopback_and_private_addresses_are_refused_by_default(mock_daemon, images):
    refusal(ask(mock_daemon, f"{images}/red.png"), "127.0.0.1", "loopback", "allow_private")
    port = images.rsplit(":", 1)[1]
    refusal(ask(mock_daemon, f"http://localhost:{port}/red.png"), "resolves to", "loopback")
    refusal(ask(mock_daemon, "http://10.1.2.3/x.png"), "private")
    refusal(ask(mock_daemon, "http://169.254.169.254/latest/meta-data"), "link-local")
    refusal(ask(mock_daemon, "http://[::1]/x.png"), "loopback")
    refusal(ask(mock_daemon, "ftp://example.com/x.png"), "http, https")


def test_fetched_when_allowed_and_redirects_are_followed_within_the_limit(allowing, images):
    r = ask(allowing, f"{images}/red.png")
    assert r.status_code == 200, r.text
    assert "I see 1 image" in r.json()["choices"][0]["message"]["content"]
    assert ask(allowing, f"{images}/hop2").status_code == 200
    refusal(ask(allowing, f"{images}/hop3"), "more than 2 redirects")


def test_size_time_status_and_content_are_checked(allowing, images):
    refusal(ask(allowing, f"{images}/big.png"), "limit is 200000")
    refusal(ask(allowing, f"{images}/slow.png"), "1.5 s")
    refusal(ask(allowing, f"{images}/missing.png"), "HTTP 404")
    refusal(ask(allowing, f"{images}/text"), "not an image")


def test_a_redirect_into_the_private_network_is_refused(mock_daemon, images):
    """The default daemon may fetch public hosts only; a public URL redirecting to loopback is
    re-checked at the hop. (No public host is reachable here, so the first hop is checked the same
    way: the redirect target is what the refusal names.)"""
    refusal(ask(mock_daemon, f"{images}/hop"), "loopback")


def test_the_daemons_own_files_are_read_from_disk(mock_daemon):
    made = httpx.post(
        f"{mock_daemon.url}/v1/images/generations",
        json={"model": "mock-image", "prompt": "a fox", "size": "32x32", "response_format": "url"},
    ).json()
    r = ask(mock_daemon, made["data"][0]["url"])
    assert r.status_code == 200, r.text


def test_responses_input_images_are_fetched_the_same_way(mock_daemon, allowing, images):
    body = {
        "model": "mock-vision",
        "input": [{"role": "user", "content": [{"type": "input_image", "image_url": f"{images}/red.png"}]}],
    }
    refused = httpx.post(f"{mock_daemon.url}/v1/responses", json=body)
    assert refused.status_code == 400 and refused.json()["error"]["param"] == "input[0].content[0].image_url"
    ok = httpx.post(f"{allowing.url}/v1/responses", json=body, timeout=30)
    assert ok.status_code == 200 and "I see 1 image" in ok.json()["output"][0]["content"][0]["text"]


@pytest.mark.parametrize(
    ("address", "kind"),
    [
        ("127.0.0.1", "loopback"),
        ("::1", "loopback"),
        ("::ffff:127.0.0.1", "loopback"),
        ("10.0.0.1", "private"),
        ("192.168.1.1", "private"),
        ("172.16.0.1", "private"),
        ("169.254.169.254", "link-local"),
        ("fe80::1", "link-local"),
        ("0.0.0.0", "unspecified"),
        ("100.64.0.1", "non-public"),
        ("8.8.8.8", None),
        ("2606:4700::1111", None),
    ],
)
def test_address_kinds(address, kind):
    assert kind_of(ipaddress.ip_address(address)) == kind
