"""One table from Loom's domain errors to HTTP statuses and OpenAI-shaped bodies, and msgspec's
decoding errors as Loom's (their path kept as ``param``). Every face that answers HTTP (the API's
dialects, the web UI) reads it; the API's exception handlers (:mod:`loom.daemon.api.errors`) answer
with it."""

from __future__ import annotations

import logging

import msgspec
from litestar.exceptions import HTTPException
from loom.sdk import errors as E
from loom.sdk.types import ErrorBody, ErrorResponse

#: Where the faces' error handlers log a 5xx and an unexpected exception.
log = logging.getLogger("loom.api")

#: Most specific class first; the first ``isinstance`` match wins.
STATUS: list[tuple[type[E.LoomError], int]] = [
    (E.PayloadTooLarge, 413),
    (E.Conflict, 409),
    (E.InvalidRequest, 400),
    (E.ModelNotFound, 404),
    (E.NotFound, 404),
    (E.AuthenticationFailed, 401),
    (E.PermissionDenied, 403),
    (E.QueueFull, 429),
    (E.Unavailable, 503),
    (E.StorageError, 507),
    (E.ProviderTimeout, 504),
    (E.ProviderError, 502),
    (E.Cancelled, 499),
    (E.LoomError, 500),
]


def status_of(error: E.LoomError) -> int:
    return next(status for cls, status in STATUS if isinstance(error, cls))


def error_body(error: E.LoomError) -> bytes:
    body = ErrorResponse(ErrorBody(error.message, error.type, error.param, error.code))
    return msgspec.json.encode(body)


def validation_error(e: msgspec.MsgspecError) -> E.InvalidRequest:
    """msgspec's message keeps the path (``... - at `$.messages[0].role```); lift it into param."""
    message = str(e)
    param = None
    if " - at `$" in message:
        path = message.rsplit(" - at `", 1)[1].rstrip("`")
        path = path.rsplit("` in `", 1)[-1]  # "key` in `$.logit_bias": a dict's key
        param = path[2:] if path.startswith("$.") else path.lstrip("$") or None
    if message.startswith("Object contains unknown field"):
        field = message.split("`")[1]
        where = f"{param}." if param else ""
        return E.UnsupportedParameter(
            f"Unsupported parameter: '{where}{field}' is not supported by Loom", param=f"{where}{field}"
        )
    if message.startswith("Object missing required field"):
        # The path of the missing field itself, as for every other field error (messages[0].role).
        field = message.split("`")[1]
        param = f"{param}.{field}" if param else field
        return E.InvalidRequest(f"Invalid request: missing required field '{param}'", param=param)
    if isinstance(e, msgspec.DecodeError) and not isinstance(e, msgspec.ValidationError):
        return E.InvalidRequest(f"Malformed JSON in request body: {message}", code="invalid_json")
    return E.InvalidRequest(f"Invalid request: {message}", param=param)


def from_http_exception(exc: HTTPException) -> E.LoomError:
    """Litestar's HTTP exception (a 405, a 404 for no route...) as the Loom error of its status."""
    status = exc.status_code
    kinds = {
        401: E.AuthenticationFailed,
        403: E.PermissionDenied,
        404: E.NotFound,
        413: E.PayloadTooLarge,
        429: E.QueueFull,
    }
    cls = kinds.get(status, E.InvalidRequest if status < 500 else E.LoomError)
    return cls(str(exc.detail))
