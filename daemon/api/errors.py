"""The API's exception handlers: every error answered from the table in :mod:`loom.daemon.http.errors`."""

from __future__ import annotations

import msgspec
from litestar import MediaType, Request, Response
from litestar.exceptions import HTTPException
from litestar.types import ExceptionHandlersMap
from loom.sdk import errors as E

from ..http.errors import error_body, from_http_exception, log, status_of, validation_error


def error_response(error: E.LoomError) -> Response:
    headers = {}
    if isinstance(error, E.QueueFull):
        headers["Retry-After"] = str(max(1, round(error.retry_after)))
    return Response(
        content=error_body(error),
        status_code=status_of(error),
        media_type=MediaType.JSON,
        headers=headers,
    )


def handle_loom_error(request: Request, exc: E.LoomError) -> Response:
    if status_of(exc) >= 500:
        log.warning("%s %s -> %s: %s", request.method, request.url.path, type(exc).__name__, exc.message)
    return error_response(exc)


def handle_msgspec_error(request: Request, exc: msgspec.MsgspecError) -> Response:
    return error_response(validation_error(exc))


def handle_http_exception(request: Request, exc: HTTPException) -> Response:
    response = error_response(from_http_exception(exc))
    response.status_code = exc.status_code
    # 405 carries Allow (the route's methods), as HTTP asks; Litestar puts it on the exception.
    for name, value in (exc.headers or {}).items():
        response.headers[name] = value
    return response


def handle_unexpected(request: Request, exc: Exception) -> Response:
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return error_response(E.LoomError(f"Internal error: {type(exc).__name__}: {exc}"))


EXCEPTION_HANDLERS: ExceptionHandlersMap = {
    E.LoomError: handle_loom_error,
    msgspec.MsgspecError: handle_msgspec_error,
    HTTPException: handle_http_exception,
    Exception: handle_unexpected,
}
