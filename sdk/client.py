"""HTTP clients for Loom's own routes (sync and async), on httpx.

For the OpenAI-shaped routes use the official ``openai`` package pointed at ``{url}/v1``; these
clients cover what it has no shape for (translation, vision, admin, jobs) and raise Loom's error
classes from the daemon's OpenAI-shaped error bodies.
"""

from __future__ import annotations

import os
from typing import Any

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
    """Route table shared by both clients: (method, path, json body)."""

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


class LoomClient:
    """Synchronous client: ``LoomClient(url, api_key)``; url and key default to LOOM_URL / LOOM_API_KEY."""

    def __init__(self, url: str | None = None, api_key: str | None = None, timeout: float = 60.0) -> None:
        self.url, headers = _settings(url, api_key)
        self.http = httpx.Client(base_url=self.url, headers=headers, timeout=timeout)

    def request(self, method: str, path: str, json: Any = None, **kw) -> Any:
        response = self.http.request(method, path, json=json, **kw)
        raise_for_error(response)
        return response.json() if response.content else None

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

    async def request(self, method: str, path: str, json: Any = None, **kw) -> Any:
        response = await self.http.request(method, path, json=json, **kw)
        raise_for_error(response)
        return response.json() if response.content else None

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

    async def aclose(self) -> None:
        await self.http.aclose()

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc) -> None:
        await self.aclose()
