"""Signed, expiring file URLs and CORS on a live daemon with keys (issue 24, seed 003).

A browser's ``<img src>`` sends no key: the URLs answers carry are signed for ``[storage]
url_ttl`` and open without one; altered, moved to another file, or expired they are a 403 in
OpenAI's error shape. ``[daemon.cors]`` lets the named origins call the API and no other."""

from __future__ import annotations

import json
import time
from urllib.parse import parse_qs, urlsplit

import httpx
import openai
import pytest
from loom.daemon.storage.signing import URLSigner, load_secret

from tests.conftest import MOCK_CONFIG, Daemon, write_config

KEY = "user-key-signed"
ORIGIN = "https://personas.example.com"
CONFIG = MOCK_CONFIG.replace(
    '[daemon]\nhost = "127.0.0.1"\n',
    '[daemon]\nhost = "127.0.0.1"\n\n[[daemon.api_keys]]\nkey = { env = "T_SIGNED_KEY" }\n\n'
    f'[daemon.cors]\norigins = ["{ORIGIN}", "http://localhost:3000"]\n\n'
    '[storage]\nurl_ttl = "60s"\n',
)


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("signed")
    d = Daemon(write_config(tmp / "loom.toml", CONFIG), tmp / "data", env={"T_SIGNED_KEY": KEY}).start()
    yield d
    d.stop()


@pytest.fixture(scope="module")
def keyed(daemon):
    with httpx.Client(base_url=daemon.url, headers={"Authorization": f"Bearer {KEY}"}, timeout=60) as c:
        yield c


@pytest.fixture(scope="module")
def image_url(daemon):
    client = openai.OpenAI(base_url=f"{daemon.url}/v1", api_key=KEY, max_retries=0)
    out = client.images.generate(model="mock-image", prompt="a lighthouse", size="64x64", response_format="url")
    return out.data[0].url


def query(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


def assert_refused(r: httpx.Response, code: str) -> None:
    assert r.status_code == 403, r.text
    error = r.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["code"] == code


def test_an_image_url_opens_without_a_key_for_its_lifetime(daemon, image_url):
    assert image_url.startswith(f"{daemon.url}/v1/files/images/")
    q = query(image_url)
    assert time.time() + 55 < int(q["exp"]) <= time.time() + 62  # url_ttl = "60s"
    r = httpx.get(image_url)  # no key: what an <img src> sends
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    assert r.content.startswith(b"\x89PNG")
    bare = image_url.split("?")[0]
    assert httpx.get(bare).status_code == 401  # the file itself still needs a key
    assert httpx.get(bare, headers={"Authorization": f"Bearer {KEY}"}).status_code == 200


def test_a_tampered_url_is_refused(image_url):
    q = query(image_url)
    bare = image_url.split("?")[0]
    sig = q["sig"]
    forged = sig[:-1] + ("A" if sig[-1] != "A" else "B")
    assert_refused(httpx.get(bare, params={"exp": q["exp"], "sig": forged}), "invalid_signature")
    longer = str(int(q["exp"]) + 86400)  # stretching the lifetime breaks the signature
    assert_refused(httpx.get(bare, params={"exp": longer, "sig": sig}), "invalid_signature")
    assert_refused(httpx.get(bare, params={"sig": sig}), "invalid_signature")
    # A bad signature is a 403 even with a key: the URL is judged by what it carries.
    r = httpx.get(bare, params={"exp": q["exp"], "sig": forged}, headers={"Authorization": f"Bearer {KEY}"})
    assert_refused(r, "invalid_signature")


def test_a_signature_is_for_one_path(daemon, image_url, keyed):
    other = keyed.post(
        "/v1/images/generations", json={"model": "mock-image", "prompt": "a boat", "response_format": "url"}
    ).json()["data"][0]["url"]
    q = query(image_url)
    moved = other.split("?")[0]
    assert_refused(httpx.get(moved, params=q), "invalid_signature")
    # Out of the public folders, a valid-looking query opens nothing either.
    assert_refused(httpx.get(f"{daemon.url}/v1/files/loom.db", params=q), "invalid_signature")


def test_an_expired_url_is_refused(daemon, image_url):
    # Signed with the daemon's own secret (its data dir), an hour ago: a real URL that has expired.
    signer = URLSigner(load_secret(daemon.data_dir), ttl=60)
    rel = urlsplit(image_url).path.removeprefix("/v1/files/")
    expired = daemon.url + signer.sign(rel, now=time.time() - 3600)
    assert_refused(httpx.get(expired), "url_expired")
    fresh = daemon.url + signer.sign(rel)
    assert httpx.get(fresh).status_code == 200


def test_job_artifacts_results_and_personas_carry_signed_urls(daemon, keyed):
    job = keyed.post(
        "/v1/pipelines/persona", params={"wait": 60}, json={"name": "Grace", "prompt": "an admiral", "remember": False}
    ).json()
    assert job["state"] == "succeeded", job
    urls = [a["url"] for a in job["artifacts"]]
    urls += [job["result"]["image"]["url"], job["result"]["image"]["artifact_url"]]
    urls += [f["url"] for f in job["result"]["files"].values()]
    persona = keyed.get("/v1/personas/Grace").json()
    urls.append(persona["image"]["url"])
    assert job["output_url"].endswith("/") and "?" not in job["output_url"]  # a folder, not a file
    for url in urls:
        assert url.startswith("/v1/files/") and "exp" in query(url) and "sig" in query(url), url
        r = httpx.get(daemon.url + url)
        assert r.status_code == 200, (url, r.text)
    found = keyed.get("/v1/artifacts", params={"job_id": job["id"]}).json()["data"]
    assert found and all(httpx.get(daemon.url + a["url"]).status_code == 200 for a in found)


def test_cors_preflight_from_a_named_origin(daemon):
    r = httpx.options(
        f"{daemon.url}/v1/images/generations",
        headers={
            "Origin": ORIGIN,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type",
        },
    )
    assert r.status_code == 204, r.text
    assert r.headers["access-control-allow-origin"] == ORIGIN
    assert "authorization" in r.headers["access-control-allow-headers"].lower()
    assert "POST" in r.headers["access-control-allow-methods"] or r.headers["access-control-allow-methods"] == "*"


def test_cors_answers_carry_the_origin_and_expose_loom_headers(daemon):
    r = httpx.post(
        f"{daemon.url}/v1/chat/completions",
        headers={"Origin": ORIGIN, "Authorization": f"Bearer {KEY}"},
        json={"model": "mock-chat", "messages": [{"role": "user", "content": "hi"}]},
    )
    assert r.status_code == 200
    assert r.headers["access-control-allow-origin"] == ORIGIN
    assert "x-loom-model" in r.headers["access-control-expose-headers"].lower()


def test_cors_refuses_another_origin(daemon):
    r = httpx.options(
        f"{daemon.url}/v1/images/generations",
        headers={"Origin": "https://evil.example.net", "Access-Control-Request-Method": "POST"},
    )
    assert r.status_code == 400
    assert "access-control-allow-origin" not in r.headers
    r = httpx.get(
        f"{daemon.url}/v1/models", headers={"Origin": "https://evil.example.net", "Authorization": f"Bearer {KEY}"}
    )
    assert "access-control-allow-origin" not in r.headers  # the browser keeps the answer from the page


def test_cors_is_off_by_default(mock_daemon):
    r = httpx.options(
        f"{mock_daemon.url}/v1/models", headers={"Origin": ORIGIN, "Access-Control-Request-Method": "GET"}
    )
    assert "access-control-allow-origin" not in r.headers
    r = httpx.get(f"{mock_daemon.url}/v1/models", headers={"Origin": ORIGIN})
    assert "access-control-allow-origin" not in r.headers


def test_signed_urls_work_on_a_daemon_without_keys(mock_daemon):
    r = httpx.post(
        f"{mock_daemon.url}/v1/images/generations",
        json={"model": "mock-image", "prompt": "x", "size": "64x64", "response_format": "url"},
    )
    url = r.json()["data"][0]["url"]
    assert httpx.get(url).status_code == 200
    q = query(url)
    assert_refused(httpx.get(url.split("?")[0], params={"exp": q["exp"], "sig": "x" + q["sig"]}), "invalid_signature")


def test_a_signed_url_from_an_answer_is_an_image_input_again(keyed):
    """A client passes back the URL it was given (query and all): pipelines read the file it names."""
    job = keyed.post(
        "/v1/pipelines/persona", params={"wait": 60}, json={"name": "Hedy", "prompt": "an inventor", "remember": False}
    ).json()
    url = job["result"]["image"]["url"]
    assert "sig=" in url
    described = keyed.post(
        "/v1/pipelines/describe", params={"wait": 60}, json={"image": url, "detail": "brief", "remember": False}
    ).json()
    assert described["state"] == "succeeded", described


def test_job_events_carry_signed_image_urls(daemon, keyed):
    """A page following a job over SSE (or the WebSocket) shows each candidate's image in <img>."""
    params = {
        "prompt": "a red apple",
        "width": 64,
        "height": 64,
        "seed": 7,
        "beam_width": 2,
        "iterations": 1,
        "llm_model": "mock-chat",
        "image_model": "mock-image",
        "vision_model": "mock-vision",
    }
    job = keyed.post("/v1/pipelines/beam_search", params={"wait": 60}, json=params).json()
    assert job["state"] == "succeeded", job
    token = keyed.post("/v1/stream-tokens").json()["token"]
    urls = []
    with httpx.stream("GET", f"{daemon.url}/v1/jobs/{job['id']}/events", params={"token": token}) as r:
        assert r.status_code == 200
        for line in r.iter_lines():
            if line.startswith("data:") and '"image_url"' in line:
                node = json.loads(line[5:])["data"]
                if node.get("image_url"):
                    urls.append(node["image_url"])
    assert urls
    for url in urls:
        assert "sig" in query(url)
        assert httpx.get(daemon.url + url).status_code == 200  # no key, as an <img> asks
    lineage = keyed.get(f"/v1/jobs/{job['id']}/lineage").json()
    node_urls = [n["image_url"] for n in lineage["nodes"] if n.get("image_url")]
    assert node_urls and all(httpx.get(daemon.url + u).status_code == 200 for u in node_urls)


def test_evaluations_and_retrieval_hits_carry_signed_urls(daemon, keyed):
    job = keyed.post(
        "/v1/pipelines/persona", params={"wait": 60}, json={"name": "Alan", "prompt": "a codebreaker"}
    ).json()  # remember: its image goes into the retrieval index
    assert job["state"] == "succeeded", job
    side = {"job_id": job["id"]}
    made = keyed.post("/v1/evaluations", json={"a": side, "b": side, "choice": "tie"})
    assert made.status_code == 201, made.text
    listed = keyed.get("/v1/evaluations", params={"job_id": job["id"]}).json()["data"]
    urls = [made.json()["a"]["image_url"], listed[0]["b"]["image_url"]]
    hits = keyed.post("/v1/rag/search", json={"text": "a codebreaker", "collection": "images"}).json()["data"]
    urls += [h["url"] for h in hits if h.get("url")]
    assert len(urls) >= 3
    for url in urls:
        assert "sig" in query(url), url
        assert httpx.get(daemon.url + url).status_code == 200
