"""HTTP clients for Loom's own routes (sync and async), on httpx.

For the OpenAI-shaped routes use the official ``openai`` package pointed at ``{url}/v1``; these
clients cover what it has no shape for (translation, vision, admin, jobs) and raise Loom's error
classes from the daemon's OpenAI-shaped error bodies.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx

from . import errors as E

DEFAULT_URL = "http://127.0.0.1:11435"

_BY_STATUS: dict[int, type[E.LoomError]] = {
    400: E.InvalidRequest,
    401: E.AuthenticationFailed,
    403: E.PermissionDenied,
    404: E.NotFound,
    409: E.Conflict,
    413: E.PayloadTooLarge,
    429: E.QueueFull,
    502: E.ProviderError,
    503: E.Unavailable,
    504: E.ProviderTimeout,
}
_BY_CODE: dict[str, type[E.LoomError]] = {
    "model_not_found": E.ModelNotFound,
    "unsupported_parameter": E.UnsupportedParameter,
    "capability_not_supported": E.CapabilityNotSupported,
    "out_of_memory": E.OutOfMemory,
}


def raise_for_error(response: httpx.Response) -> None:
    """Turn an error response into the matching :class:`loom.sdk.errors.LoomError`."""
    if response.status_code < 400:
        return
    try:
        body = response.json().get("error", {})
    except ValueError:
        body = {"message": response.text}
    code = body.get("code")
    cls = _BY_CODE.get(code) or _BY_STATUS.get(response.status_code, E.LoomError)
    message = body.get("message") or f"HTTP {response.status_code}"
    if issubclass(cls, E.QueueFull):
        error = cls(message, retry_after=float(response.headers.get("retry-after", 1)), param=body.get("param"))
    else:
        error = cls(message, param=body.get("param"))
    error.status_code = response.status_code
    raise error


def _settings(url: str | None, api_key: str | None) -> tuple[str, dict[str, str]]:
    url = (url or os.environ.get("LOOM_URL") or DEFAULT_URL).rstrip("/")
    key = api_key if api_key is not None else os.environ.get("LOOM_API_KEY")
    return url, ({"Authorization": f"Bearer {key}"} if key else {})


class _Routes:
    """Route table shared by both clients: (method, path, json body[, query params])."""

    @staticmethod
    def translate(model: str, text: str | list[str], source: str, target: str):
        return "POST", "/v1/translations/text", {"model": model, "text": text, "source": source, "target": target}

    @staticmethod
    def describe(model: str, image: str, prompt: str | None = None, detail: str = "normal"):
        body = {"model": model, "image": image, "detail": detail}
        if prompt is not None:
            body["prompt"] = prompt
        return "POST", "/v1/vision/describe", body

    @staticmethod
    def score(model: str, image: str, text: str, alpha: float = 0.7):
        return "POST", "/v1/vision/score", {"model": model, "image": image, "text": text, "alpha": alpha}

    # --- admin: the scheduler and providers (admin key) ---

    @staticmethod
    def scheduler():
        return "GET", "/admin/scheduler", None

    @staticmethod
    def load_model(model: str):
        return "POST", f"/admin/models/{_seg(model)}/load", None

    @staticmethod
    def unload_model(model: str):
        return "POST", f"/admin/models/{_seg(model)}/unload", None

    @staticmethod
    def pin_model(model: str, pinned: bool = True):
        return "POST", f"/admin/models/{_seg(model)}/pin", {"pinned": pinned}

    @staticmethod
    def configured_models():
        return "GET", "/admin/models", None

    @staticmethod
    def add_model(source: str, **fields: Any):
        return "POST", "/admin/models", {"source": source, **{k: v for k, v in fields.items() if v is not None}}

    @staticmethod
    def remove_model(model: str):
        return "DELETE", f"/admin/models/{_seg(model)}", None

    @staticmethod
    def reload_models():
        return "POST", "/admin/models/reload", None

    @staticmethod
    def cancel_work(work_id: str):
        return "POST", f"/admin/work/{_seg(work_id)}/cancel", None

    @staticmethod
    def providers():
        return "GET", "/admin/providers", None

    @staticmethod
    def check_providers():
        return "POST", "/admin/providers/check", None

    @staticmethod
    def switch_provider(model: str, to: str | None):
        return "POST", "/admin/providers/switch", {"model": model, "to": to}

    # --- pipelines and jobs ---

    @staticmethod
    def start_pipeline(name: str, params: dict | None = None):
        return "POST", f"/v1/pipelines/{_seg(name)}", params or {}

    @staticmethod
    def jobs(state: str | list[str] | None = None, pipeline: str | None = None, limit: int = 50, offset: int = 0):
        query: dict[str, Any] = {"limit": limit, "offset": offset}
        if state:
            query["state"] = state if isinstance(state, str) else ",".join(state)
        if pipeline:
            query["pipeline"] = pipeline
        return "GET", "/v1/jobs", None, query

    @staticmethod
    def job(job_id: str):
        return "GET", f"/v1/jobs/{_seg(job_id)}", None

    @staticmethod
    def cancel_job(job_id: str):
        return "POST", f"/v1/jobs/{_seg(job_id)}/cancel", None

    @staticmethod
    def resume_job(job_id: str):
        return "POST", f"/v1/jobs/{_seg(job_id)}/resume", None

    @staticmethod
    def lineage(job_id: str):
        return "GET", f"/v1/jobs/{_seg(job_id)}/lineage", None


def _seg(value: str) -> str:
    return quote(str(value), safe="")


def _file_path(path: str) -> str:
    """``output/x.png``, ``/v1/files/output/x.png`` or a full URL's path -> the route to GET."""
    path = httpx.URL(path).path if "://" in path else path
    return path if path.startswith("/v1/files/") else "/v1/files/" + path.lstrip("/")


@dataclass(frozen=True)
class ServerEvent:
    """One server-sent event: its type (``event:``, "message" if none), JSON-decoded data, and id."""

    event: str
    data: Any
    id: str | None = None


#: ``on_status(connected, error)``: called when a stream connects, and when it drops (with why).
StatusCallback = Callable[[bool, "str | None"], None]
_RETRYABLE = (E.Unavailable, E.ProviderError, E.ProviderTimeout)
_FINAL = frozenset({"succeeded", "failed", "cancelled", "interrupted"})


async def _parse_sse(lines: AsyncIterator[str]) -> AsyncIterator[ServerEvent]:
    event, data, ident = "", [], None
    async for line in lines:
        if not line:
            if data:
                text = "\n".join(data)
                try:
                    value = json.loads(text)
                except ValueError:
                    value = text
                yield ServerEvent(event or "message", value, ident)
            event, data = "", []
            continue
        if line.startswith(":"):
            continue
        field, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if field == "event":
            event = value
        elif field == "data":
            data.append(value)
        elif field == "id":
            ident = value


def describe_error(error: BaseException) -> str:
    """A short, plain reason for a failed connection ("connection refused", "timed out", ...)."""
    if isinstance(error, httpx.ConnectError):
        # The cause is a few links down (httpcore, then anyio's "All connection attempts failed").
        cause: BaseException | None = error
        while cause is not None:
            if isinstance(cause, ConnectionRefusedError) or "refused" in str(cause).lower():
                return "connection refused"
            cause = cause.__cause__ or cause.__context__
        return f"cannot connect ({error})"
    if isinstance(error, httpx.TimeoutException):
        return "timed out"
    if isinstance(error, httpx.RemoteProtocolError):
        return "connection closed by the daemon"
    if isinstance(error, E.LoomError):
        return f"HTTP {getattr(error, 'status_code', '?')}: {error}"
    return f"{type(error).__name__}: {error}" if str(error) else type(error).__name__


class LoomClient:
    """Synchronous client: ``LoomClient(url, api_key)``; url and key default to LOOM_URL / LOOM_API_KEY."""

    def __init__(self, url: str | None = None, api_key: str | None = None, timeout: float = 60.0) -> None:
        self.url, headers = _settings(url, api_key)
        self.http = httpx.Client(base_url=self.url, headers=headers, timeout=timeout)

    def request(self, method: str, path: str, json: Any = None, params: Any = None, **kw) -> Any:
        response = self.http.request(method, path, json=json, params=params, **kw)
        raise_for_error(response)
        return response.json() if response.content else None

    def metrics(self) -> str:
        """``/metrics`` in Prometheus' text format."""
        response = self.http.get("/metrics")
        raise_for_error(response)
        return response.text

    def file(self, path: str) -> bytes:
        """A file the daemon serves (an image, a job output) by its relative path or URL."""
        response = self.http.get(_file_path(path))
        raise_for_error(response)
        return response.content

    def health(self) -> dict:
        return self.request("GET", "/health")

    def models(self) -> list[dict]:
        return self.request("GET", "/v1/models")["data"]

    def model(self, model_id: str) -> dict:
        return self.request("GET", f"/v1/models/{model_id}")

    def translate(self, *args, **kw) -> dict:
        return self.request(*_Routes.translate(*args, **kw))

    def describe(self, *args, **kw) -> dict:
        return self.request(*_Routes.describe(*args, **kw))

    def score(self, *args, **kw) -> dict:
        return self.request(*_Routes.score(*args, **kw))

    # --- admin, pipelines and jobs (see _Routes) ---

    def scheduler(self) -> dict:
        """Devices (budget, used, free), resident models, queues and running work."""
        return self.request(*_Routes.scheduler())

    def load_model(self, model: str) -> dict:
        return self.request(*_Routes.load_model(model))

    def unload_model(self, model: str) -> dict:
        return self.request(*_Routes.unload_model(model))

    def pin_model(self, model: str, pinned: bool = True) -> dict:
        return self.request(*_Routes.pin_model(model, pinned))

    def configured_models(self) -> dict:
        """``GET /admin/models``: every model with its weights' location and size, and whether it is loaded."""
        return self.request(*_Routes.configured_models())

    def add_model(self, source: str, **fields: Any) -> dict:
        """Add a GGUF file, model folder or cached hub id; ``fields`` as ``POST /admin/models`` takes them."""
        return self.request(*_Routes.add_model(source, **fields))

    def remove_model(self, model: str) -> dict:
        return self.request(*_Routes.remove_model(model))

    def reload_models(self) -> dict:
        """Take in hand edits of the config file's ``[[models]]``."""
        return self.request(*_Routes.reload_models())

    def cancel_work(self, work_id: str) -> dict:
        return self.request(*_Routes.cancel_work(work_id))

    def providers(self) -> dict:
        """Upstream health, what serves each model, and the switches in force."""
        return self.request(*_Routes.providers())

    def check_providers(self) -> dict:
        return self.request(*_Routes.check_providers())

    def switch_provider(self, model: str, to: str | None) -> dict:
        """Serve ``model`` (an id or capability) with ``to`` from now on; ``to=None`` undoes it."""
        return self.request(*_Routes.switch_provider(model, to))

    def start_pipeline(self, name: str, params: dict | None = None) -> dict:
        return self.request(*_Routes.start_pipeline(name, params))

    def jobs(
        self, state: str | list[str] | None = None, pipeline: str | None = None, limit: int = 50, offset: int = 0
    ) -> dict:
        return self.request(*_Routes.jobs(state, pipeline, limit, offset))

    def job(self, job_id: str) -> dict:
        return self.request(*_Routes.job(job_id))

    def cancel_job(self, job_id: str) -> dict:
        return self.request(*_Routes.cancel_job(job_id))

    def resume_job(self, job_id: str) -> dict:
        return self.request(*_Routes.resume_job(job_id))

    def lineage(self, job_id: str) -> dict:
        return self.request(*_Routes.lineage(job_id))

    def close(self) -> None:
        self.http.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class AsyncLoomClient:
    """Asynchronous twin of :class:`LoomClient`."""

    def __init__(self, url: str | None = None, api_key: str | None = None, timeout: float = 60.0) -> None:
        self.url, headers = _settings(url, api_key)
        self.http = httpx.AsyncClient(base_url=self.url, headers=headers, timeout=timeout)

    async def request(self, method: str, path: str, json: Any = None, params: Any = None, **kw) -> Any:
        response = await self.http.request(method, path, json=json, params=params, **kw)
        raise_for_error(response)
        return response.json() if response.content else None

    async def metrics(self) -> str:
        """``/metrics`` in Prometheus' text format."""
        response = await self.http.get("/metrics")
        raise_for_error(response)
        return response.text

    async def file(self, path: str) -> bytes:
        """A file the daemon serves (an image, a job output) by its relative path or URL."""
        response = await self.http.get(_file_path(path))
        raise_for_error(response)
        return response.content

    async def events(
        self,
        path: str = "/admin/events",
        *,
        last_event_id: str | int | None = None,
        reconnect: bool = True,
        retry: float = 0.5,
        max_retry: float = 5.0,
        read_timeout: float = 60.0,
        stop: Callable[[ServerEvent], bool] | None = None,
        end_on_empty: bool = False,
        on_status: StatusCallback | None = None,
    ) -> AsyncIterator[ServerEvent]:
        """Iterate an SSE stream, reconnecting (with backoff, sending ``Last-Event-ID``) when it
        drops or the daemon is down. Ends after an event for which ``stop`` is true; with
        ``end_on_empty``, also when a reconnect ends cleanly having sent nothing new (a finished
        job's stream). Errors that retrying cannot fix (401, 403, 404, 400) are raised."""
        delay = retry
        timeout = httpx.Timeout(self.http.timeout.connect, read=read_timeout, write=10.0, pool=10.0)
        while True:
            headers = {"accept": "text/event-stream"}
            if last_event_id is not None:
                headers["last-event-id"] = str(last_event_id)
            received = 0
            try:
                async with self.http.stream("GET", path, headers=headers, timeout=timeout) as response:
                    if response.status_code >= 400:
                        await response.aread()
                        raise_for_error(response)
                    delay = retry
                    if on_status:
                        on_status(True, None)
                    async for event in _parse_sse(response.aiter_lines()):
                        received += 1
                        if event.id is not None:
                            last_event_id = event.id
                        yield event
                        if stop is not None and stop(event):
                            return
                why, clean = "the daemon closed the stream", True
            except (httpx.TransportError, *_RETRYABLE) as e:
                if not reconnect:
                    raise
                why, clean = describe_error(e), False
            if not reconnect or (end_on_empty and clean and received == 0):
                return
            if on_status:
                on_status(False, why)
            await asyncio.sleep(delay)
            delay = min(max_retry, delay * 2)

    async def job_events(self, job_id: str, after: int = 0, **kw) -> AsyncIterator[ServerEvent]:
        """A job's events after ``after``, resuming across reconnects; ends after its final state."""
        last = after

        def final(e: ServerEvent) -> bool:
            return e.event == "state" and isinstance(e.data, dict) and e.data.get("data", {}).get("state") in _FINAL

        while True:
            path = f"/v1/jobs/{_seg(job_id)}/events"
            async for event in self.events(path, last_event_id=last or None, stop=final, end_on_empty=True, **kw):
                last = int(event.id) if event.id else last
                yield event
                if final(event):
                    return
            # A clean end with nothing new: the job is over, or the daemon shut down under us.
            try:
                if (await self.job(job_id))["state"] in _FINAL:
                    return
            except (httpx.TransportError, *_RETRYABLE):
                pass
            await asyncio.sleep(kw.get("retry", 0.5))

    async def health(self) -> dict:
        return await self.request("GET", "/health")

    async def models(self) -> list[dict]:
        return (await self.request("GET", "/v1/models"))["data"]

    async def model(self, model_id: str) -> dict:
        return await self.request("GET", f"/v1/models/{model_id}")

    async def translate(self, *args, **kw) -> dict:
        return await self.request(*_Routes.translate(*args, **kw))

    async def describe(self, *args, **kw) -> dict:
        return await self.request(*_Routes.describe(*args, **kw))

    async def score(self, *args, **kw) -> dict:
        return await self.request(*_Routes.score(*args, **kw))

    # --- admin, pipelines and jobs (see _Routes) ---

    async def scheduler(self) -> dict:
        """Devices (budget, used, free), resident models, queues and running work."""
        return await self.request(*_Routes.scheduler())

    async def load_model(self, model: str) -> dict:
        return await self.request(*_Routes.load_model(model))

    async def unload_model(self, model: str) -> dict:
        return await self.request(*_Routes.unload_model(model))

    async def pin_model(self, model: str, pinned: bool = True) -> dict:
        return await self.request(*_Routes.pin_model(model, pinned))

    async def configured_models(self) -> dict:
        return await self.request(*_Routes.configured_models())

    async def add_model(self, source: str, **fields: Any) -> dict:
        return await self.request(*_Routes.add_model(source, **fields))

    async def remove_model(self, model: str) -> dict:
        return await self.request(*_Routes.remove_model(model))

    async def reload_models(self) -> dict:
        return await self.request(*_Routes.reload_models())

    async def cancel_work(self, work_id: str) -> dict:
        return await self.request(*_Routes.cancel_work(work_id))

    async def providers(self) -> dict:
        """Upstream health, what serves each model, and the switches in force."""
        return await self.request(*_Routes.providers())

    async def check_providers(self) -> dict:
        return await self.request(*_Routes.check_providers())

    async def switch_provider(self, model: str, to: str | None) -> dict:
        """Serve ``model`` (an id or capability) with ``to`` from now on; ``to=None`` undoes it."""
        return await self.request(*_Routes.switch_provider(model, to))

    async def start_pipeline(self, name: str, params: dict | None = None) -> dict:
        return await self.request(*_Routes.start_pipeline(name, params))

    async def jobs(
        self, state: str | list[str] | None = None, pipeline: str | None = None, limit: int = 50, offset: int = 0
    ) -> dict:
        return await self.request(*_Routes.jobs(state, pipeline, limit, offset))

    async def job(self, job_id: str) -> dict:
        return await self.request(*_Routes.job(job_id))

    async def cancel_job(self, job_id: str) -> dict:
        return await self.request(*_Routes.cancel_job(job_id))

    async def resume_job(self, job_id: str) -> dict:
        return await self.request(*_Routes.resume_job(job_id))

    async def lineage(self, job_id: str) -> dict:
        return await self.request(*_Routes.lineage(job_id))

    async def aclose(self) -> None:
        await self.http.aclose()

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc) -> None:
        await self.aclose()
