"""HTTP clients for Loom's own routes (sync and async), on httpx; event streams through httpx-sse.

For the OpenAI-shaped routes use the official ``openai`` package pointed at ``{url}/v1``; these
clients cover what it has no shape for (translation, vision, admin, jobs) and raise Loom's error
classes from the daemon's OpenAI-shaped error bodies.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar
from urllib.parse import quote

import httpx
from httpx_sse import EventSource

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
    error: E.LoomError
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


@dataclass(frozen=True)
class _Call:
    """One request of the route table, and how to read its answer."""

    method: str
    path: str
    body: Any = None
    query: dict[str, Any] | None = None
    #: "json" (None for an empty body), "text", "bytes", or a key of the JSON answer.
    read: str = "json"
    #: Extra request headers (a client's own upstream keys, ``X-OpenAI-API-Key``).
    headers: dict[str, str] | None = None

    def result(self, response: httpx.Response) -> Any:
        raise_for_error(response)
        if self.read == "text":
            return response.text
        if self.read == "bytes":
            return response.content
        value: Any = response.json() if response.content else None
        return value if self.read == "json" else value[self.read]


R = TypeVar("R")


class _Routes(Generic[R]):
    """Every route, written once for both clients: each method returns what ``_send`` returns, the
    answer in :class:`LoomClient` and an awaitable of it in :class:`AsyncLoomClient`."""

    def _send(self, call: _Call) -> R:
        raise NotImplementedError

    def health(self) -> R:
        return self._send(_Call("GET", "/health"))

    def models(self) -> R:
        return self._send(_Call("GET", "/v1/models", read="data"))

    def model(self, model_id: str) -> R:
        return self._send(_Call("GET", f"/v1/models/{model_id}"))

    def translate(self, model: str, text: str | list[str], source: str, target: str) -> R:
        body = {"model": model, "text": text, "source": source, "target": target}
        return self._send(_Call("POST", "/v1/translations/text", body))

    def describe(self, model: str, image: str, prompt: str | None = None, detail: str = "normal") -> R:
        body = {"model": model, "image": image, "detail": detail}
        if prompt is not None:
            body["prompt"] = prompt
        return self._send(_Call("POST", "/v1/vision/describe", body))

    def score(self, model: str, image: str, text: str, alpha: float = 0.7) -> R:
        body = {"model": model, "image": image, "text": text, "alpha": alpha}
        return self._send(_Call("POST", "/v1/vision/score", body))

    def file(self, path: str) -> R:
        """A file the daemon serves (an image, a job output) by its relative path or URL."""
        return self._send(_Call("GET", _file_path(path), read="bytes"))

    # --- admin: the scheduler and providers (admin key) ---

    def metrics(self) -> R:
        """``/metrics`` in Prometheus' text format."""
        return self._send(_Call("GET", "/metrics", read="text"))

    def scheduler(self) -> R:
        """Devices (budget, used, free), resident models, queues and running work."""
        return self._send(_Call("GET", "/admin/scheduler"))

    def load_model(self, model: str) -> R:
        return self._send(_Call("POST", f"/admin/models/{_seg(model)}/load"))

    def unload_model(self, model: str) -> R:
        return self._send(_Call("POST", f"/admin/models/{_seg(model)}/unload"))

    def pin_model(self, model: str, pinned: bool = True) -> R:
        return self._send(_Call("POST", f"/admin/models/{_seg(model)}/pin", {"pinned": pinned}))

    def configured_models(self) -> R:
        """``GET /admin/models``: every model with its weights' location and size, and whether it is loaded."""
        return self._send(_Call("GET", "/admin/models"))

    def add_model(self, source: str, **fields: Any) -> R:
        """Add a GGUF file, model folder or cached hub id; ``fields`` as ``POST /admin/models`` takes them."""
        body = {"source": source, **{k: v for k, v in fields.items() if v is not None}}
        return self._send(_Call("POST", "/admin/models", body))

    def remove_model(self, model: str) -> R:
        return self._send(_Call("DELETE", f"/admin/models/{_seg(model)}"))

    def reload_models(self) -> R:
        """Take in hand edits of the config file's ``[[models]]``."""
        return self._send(_Call("POST", "/admin/models/reload"))

    def cancel_work(self, work_id: str) -> R:
        return self._send(_Call("POST", f"/admin/work/{_seg(work_id)}/cancel"))

    def providers(self) -> R:
        """Upstream health, what serves each model, and the switches in force."""
        return self._send(_Call("GET", "/admin/providers"))

    def check_providers(self) -> R:
        return self._send(_Call("POST", "/admin/providers/check"))

    def switch_provider(self, model: str, to: str | None) -> R:
        """Serve ``model`` (an id or capability) with ``to`` from now on; ``to=None`` undoes it."""
        return self._send(_Call("POST", "/admin/providers/switch", {"model": model, "to": to}))

    # --- pipelines and jobs ---

    def start_pipeline(
        self,
        name: str,
        params: dict | None = None,
        *,
        wait: float | None = None,
        upstream_keys: dict[str, str] | None = None,
    ) -> R:
        """Start a job; with ``wait``, the daemon answers when it ends (at most that many
        seconds). ``upstream_keys`` (``{"X-OpenAI-API-Key": ...}``) go as headers, for the job's
        calls to remote services that take a per-request key; the daemon never stores them."""
        query = {"wait": wait} if wait else None
        path = f"/v1/pipelines/{_seg(name)}"
        return self._send(_Call("POST", path, params or {}, query, headers=dict(upstream_keys or {}) or None))

    def jobs(
        self, state: str | list[str] | None = None, pipeline: str | None = None, limit: int = 50, offset: int = 0
    ) -> R:
        query: dict[str, Any] = {"limit": limit, "offset": offset}
        if state:
            query["state"] = state if isinstance(state, str) else ",".join(state)
        if pipeline:
            query["pipeline"] = pipeline
        return self._send(_Call("GET", "/v1/jobs", query=query))

    def job(self, job_id: str) -> R:
        return self._send(_Call("GET", f"/v1/jobs/{_seg(job_id)}"))

    def cancel_job(self, job_id: str) -> R:
        return self._send(_Call("POST", f"/v1/jobs/{_seg(job_id)}/cancel"))

    def resume_job(self, job_id: str, upstream_keys: dict[str, str] | None = None) -> R:
        """A job started with upstream keys needs the same ones again (they are never stored)."""
        path = f"/v1/jobs/{_seg(job_id)}/resume"
        return self._send(_Call("POST", path, headers=dict(upstream_keys or {}) or None))

    def lineage(self, job_id: str) -> R:
        return self._send(_Call("GET", f"/v1/jobs/{_seg(job_id)}/lineage"))

    def prune_jobs(self, older_than: str | int, *, dry_run: bool = False, rag: str | None = None) -> R:
        """``POST /admin/jobs/prune``: remove finished jobs older than ``older_than`` ("30d")."""
        body: dict[str, Any] = {"older_than": older_than, "dry_run": dry_run}
        if rag is not None:
            body["rag"] = rag
        return self._send(_Call("POST", "/admin/jobs/prune", body))

    # --- batches (OpenAI's Batch API; the openai package creates them) ---

    def batches(self, limit: int = 20, after: str | None = None) -> R:
        query: dict[str, Any] = {"limit": limit}
        if after:
            query["after"] = after
        return self._send(_Call("GET", "/v1/batches", query=query))

    def cancel_batch(self, batch_id: str) -> R:
        return self._send(_Call("POST", f"/v1/batches/{_seg(batch_id)}/cancel"))

    def rag_add(self, items: dict[str, Any] | list[dict[str, Any]]) -> R:
        """``POST /v1/rag/items``: one item (``text`` and/or ``image``, ``collection``, ``meta``)
        or a list of them, embedded and stored in the retrieval indices."""
        return self._send(_Call("POST", "/v1/rag/items", items))

    def rag_delete(self, item_id: int) -> R:
        return self._send(_Call("DELETE", f"/v1/rag/items/{int(item_id)}"))


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


def _is_final(e: ServerEvent) -> bool:
    return e.event == "state" and isinstance(e.data, dict) and e.data.get("data", {}).get("state") in _FINAL


def _result_of(job: dict) -> Any:
    """A finished job's result; its error raised as the matching Loom error otherwise (the job
    is on the error's ``job``)."""
    if job["state"] == "succeeded":
        return job["result"]
    body = job.get("error") or {}
    if job["state"] == "cancelled":
        error: E.LoomError = E.Cancelled(f"job {job['id']} was cancelled")
    elif job["state"] == "interrupted":
        error = E.Unavailable(f"job {job['id']} was interrupted by a daemon stop; resume it to go on")
    else:
        cls = _BY_CODE.get(body.get("code") or "") or E.LoomError
        error = cls(f"job {job['id']} failed: {body.get('message') or 'unknown error'}", param=body.get("param"))
        error.code = body.get("code") or error.code
    error.job = job
    raise error


async def _read_events(response: httpx.Response) -> AsyncIterator[ServerEvent]:
    """The events of an SSE response (parsed by httpx-sse); data is JSON-decoded when it is JSON.
    Comments (keep-alives) and events without data are skipped."""
    async for sse in EventSource(response).aiter_sse():
        if not sse.data:
            continue
        yield ServerEvent(sse.event, _json_or_text(sse.data), sse.id or None)


def _json_or_text(data: str) -> Any:
    try:
        return json.loads(data)
    except ValueError:
        return data


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
        return f"HTTP {error.status_code or '?'}: {error}"
    return f"{type(error).__name__}: {error}" if str(error) else type(error).__name__


class LoomClient(_Routes[Any]):
    """Synchronous client: ``LoomClient(url, api_key)``; url and key default to LOOM_URL / LOOM_API_KEY."""

    def __init__(self, url: str | None = None, api_key: str | None = None, timeout: float = 60.0) -> None:
        self.url, headers = _settings(url, api_key)
        self.http = httpx.Client(base_url=self.url, headers=headers, timeout=timeout)

    def _send(self, call: _Call) -> Any:
        response = self.http.request(call.method, call.path, json=call.body, params=call.query, headers=call.headers)
        return call.result(response)

    def request(self, method: str, path: str, json: Any = None, params: Any = None) -> Any:
        """Any route: the JSON answer (None for an empty one), or the matching Loom error."""
        return self._send(_Call(method, path, json, params))

    def run(
        self,
        name: str,
        params: dict | None = None,
        *,
        on_event: Callable[[ServerEvent], None] | None = None,
        upstream_keys: dict[str, str] | None = None,
    ) -> Any:
        """Start a pipeline, follow its events (``on_event`` gets each: progress, lineage, ...)
        and return its result; a failed job raises its error (the job is on ``error.job``)."""
        job = self.start_pipeline(name, params, upstream_keys=upstream_keys)
        after = 0
        while job["state"] not in _FINAL:
            for event in self.job_events(job["id"], after=after):
                after = int(event.id) if event.id else after
                if on_event is not None:
                    on_event(event)
            # An "interrupted" end may be followed by a resume at the daemon's restart.
            job = self.job(job["id"])
        return _result_of(job)

    def job_events(self, job_id: str, after: int = 0, retry: float = 0.5, max_retry: float = 5.0):
        """A job's events after ``after`` (SSE), reconnecting with ``Last-Event-ID`` when the
        stream drops; ends after the job's final state event."""
        last, delay = after, retry
        path = f"/v1/jobs/{_seg(job_id)}/events"
        timeout = httpx.Timeout(self.http.timeout.connect, read=60.0, write=10.0, pool=10.0)
        while True:
            headers = {"accept": "text/event-stream", **({"last-event-id": str(last)} if last else {})}
            try:
                with self.http.stream("GET", path, headers=headers, timeout=timeout) as response:
                    if response.status_code >= 400:
                        response.read()
                        raise_for_error(response)
                    delay = retry
                    for sse in EventSource(response).iter_sse():
                        if not sse.data:
                            continue
                        event = ServerEvent(sse.event, _json_or_text(sse.data), sse.id or None)
                        last = int(event.id) if event.id else last
                        yield event
                        if _is_final(event):
                            return
            except (httpx.TransportError, *_RETRYABLE):
                pass
            try:  # a clean end with nothing final: the job is over, or the daemon went away
                if self.job(job_id)["state"] in _FINAL:
                    return
            except (httpx.TransportError, *_RETRYABLE):
                pass
            time.sleep(delay)
            delay = min(max_retry, delay * 2)

    def close(self) -> None:
        self.http.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class AsyncLoomClient(_Routes[Awaitable[Any]]):
    """Asynchronous twin of :class:`LoomClient` (the same routes: ``await client.jobs()``), plus
    the event streams."""

    def __init__(self, url: str | None = None, api_key: str | None = None, timeout: float = 60.0) -> None:
        self.url, headers = _settings(url, api_key)
        self.http = httpx.AsyncClient(base_url=self.url, headers=headers, timeout=timeout)

    async def _send(self, call: _Call) -> Any:
        response = await self.http.request(
            call.method, call.path, json=call.body, params=call.query, headers=call.headers
        )
        return call.result(response)

    async def run(
        self,
        name: str,
        params: dict | None = None,
        *,
        on_event: Callable[[ServerEvent], Any] | None = None,
        upstream_keys: dict[str, str] | None = None,
    ) -> Any:
        """As :meth:`LoomClient.run`; ``on_event`` may be a coroutine function."""
        job = await self.start_pipeline(name, params, upstream_keys=upstream_keys)
        after = 0
        while job["state"] not in _FINAL:
            async for event in self.job_events(job["id"], after=after):
                after = int(event.id) if event.id else after
                if on_event is not None:
                    outcome = on_event(event)
                    if asyncio.iscoroutine(outcome):
                        await outcome
            job = await self.job(job["id"])  # an "interrupted" end may be followed by a resume
        return _result_of(job)

    async def request(self, method: str, path: str, json: Any = None, params: Any = None) -> Any:
        """Any route: the JSON answer (None for an empty one), or the matching Loom error."""
        return await self._send(_Call(method, path, json, params))

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
                    async for event in _read_events(response):
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

    async def aclose(self) -> None:
        await self.http.aclose()

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc) -> None:
        await self.aclose()
