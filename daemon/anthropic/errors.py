"""Loom's errors in Anthropic's shape and statuses, for the Messages API's routes only.

``{"type": "error", "error": {"type": "invalid_request_error", "message": ...}}``: the body has no
``param``, so a message that does not name its field already gets it put first. The statuses are
Loom's (:data:`loom.daemon.http.errors.STATUS`) with Anthropic's names, except a full queue: 529
``overloaded_error`` with ``Retry-After``, as Anthropic answers when it is overloaded. The
routes declare :data:`EXCEPTION_HANDLERS` themselves, so every other route keeps OpenAI's shape;
the key guard's 401 passes through them too (Litestar resolves handlers per route).
"""

from __future__ import annotations

import msgspec
from litestar import MediaType, Request, Response
from litestar.exceptions import HTTPException
from litestar.types import ExceptionHandlersMap
from loom.sdk import errors as E
from loom.sdk.anthropic import AnthropicError, AnthropicErrorResponse, ErrorType

from ..http import errors as openai_errors

#: Loom's status -> Anthropic's error type (and the status it answers with, where it differs).
_KINDS: dict[int, tuple[int, ErrorType]] = {
    400: (400, "invalid_request_error"),
    401: (401, "authentication_error"),
    403: (403, "permission_error"),
    404: (404, "not_found_error"),
    409: (409, "invalid_request_error"),
    413: (413, "request_too_large"),
    429: (529, "overloaded_error"),
    504: (504, "timeout_error"),
}


def kind_of(error: E.LoomError, status: int | None = None) -> tuple[int, ErrorType]:
    """The status and Anthropic error type ``error`` is answered with."""
    if isinstance(error, E.QuotaExceeded):
        return 429, "rate_limit_error"  # the caller's own limit, as Anthropic answers it
    status = openai_errors.status_of(error) if status is None else status
    return _KINDS.get(status, (status, "invalid_request_error" if status < 500 else "api_error"))


def message_of(error: E.LoomError) -> str:
    if error.param and error.param not in error.message:
        return f"{error.param}: {error.message}"
    return error.message


def error_response(error: E.LoomError, status: int | None = None, headers: dict | None = None) -> Response:
    status, kind = kind_of(error, status)
    headers = dict(headers or {})
    if isinstance(error, E.QueueFull):
        headers["Retry-After"] = str(max(1, round(error.retry_after)))
    body = AnthropicErrorResponse(error=AnthropicError(type=kind, message=message_of(error)))
    return Response(content=msgspec.json.encode(body), status_code=status, media_type=MediaType.JSON, headers=headers)


def _loom(request: Request, exc: E.LoomError) -> Response:
    if openai_errors.status_of(exc) >= 500:
        openai_errors.log.warning("%s %s -> %s: %s", request.method, request.url.path, type(exc).__name__, exc.message)
    return error_response(exc)


def _msgspec(request: Request, exc: msgspec.MsgspecError) -> Response:
    return error_response(openai_errors.validation_error(exc))


def _http(request: Request, exc: HTTPException) -> Response:
    error = openai_errors.from_http_exception(exc)
    return error_response(error, exc.status_code, exc.headers)


def _unexpected(request: Request, exc: Exception) -> Response:
    openai_errors.log.exception("unhandled error on %s %s", request.method, request.url.path)
    return error_response(E.LoomError(f"Internal error: {type(exc).__name__}: {exc}"))


EXCEPTION_HANDLERS: ExceptionHandlersMap = {
    E.LoomError: _loom,
    msgspec.MsgspecError: _msgspec,
    HTTPException: _http,
    Exception: _unexpected,
}
