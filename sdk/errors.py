"""Loom's domain errors.

Providers and pipelines raise these; the daemon maps each class to an HTTP status and an
OpenAI-shaped body in one table (``loom.daemon.http.errors``). Nothing here knows about HTTP.

What a provider raises (:data:`PROVIDER_ERRORS`): ``InvalidRequest`` (and its
``UnsupportedParameter``, ``CapabilityNotSupported``), ``NotFound``, ``RateLimited``,
``Unavailable``, ``OutOfMemory``, ``ProviderError``, ``ProviderTimeout``, ``Cancelled`` (from
``ctx.check()``), ``AuthenticationFailed`` / ``PermissionDenied`` (an upstream refused its key), and
``OptionsError`` from its ``Options``. The rest are the daemon's own: ``ModelNotFound``,
``PayloadTooLarge``, ``Conflict``, ``QueueFull``, ``StorageError``, ``WorkerCrashed``,
``ConfigError``, ``PluginError``; a plugin catches them (a pipeline's step may), it does not raise
them.
"""

from __future__ import annotations

from typing import Any


class LoomError(Exception):
    """Base of every error Loom reports to a client.

    ``type`` and ``code`` follow OpenAI's error body; ``param`` names the offending field.
    """

    type = "server_error"
    code: str | None = None
    #: The HTTP status of the response this error was read from (set by :mod:`loom.sdk.client`);
    #: None where it was raised in process.
    status_code: int | None = None
    #: The job record, for an error a job ended with (:meth:`loom.sdk.client.LoomClient.run`).
    job: dict[str, Any] | None = None

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        if code is not None:
            self.code = code


class InvalidRequest(LoomError):
    """The request is malformed or asks for something that cannot be done (400)."""

    type = "invalid_request_error"


class UnsupportedParameter(InvalidRequest):
    """A parameter Loom or the serving model does not support; refused, never dropped (400)."""

    code = "unsupported_parameter"


class CapabilityNotSupported(InvalidRequest):
    """The model exists but lacks the capability the route needs (400)."""

    code = "capability_not_supported"


class NotFound(LoomError):
    """A job, file or other resource does not exist (404)."""

    type = "invalid_request_error"
    code = "not_found"


class ModelNotFound(NotFound):
    """No model or alias with that id (404)."""

    code = "model_not_found"


class AuthenticationFailed(LoomError):
    """Missing or wrong API key, or a provider key that is not configured (401)."""

    type = "authentication_error"
    code = "invalid_api_key"


class PermissionDenied(LoomError):
    """The key is valid but may not use this route, e.g. a user key on /admin (403)."""

    type = "permission_error"
    code = "permission_denied"


class PayloadTooLarge(InvalidRequest):
    """The request body exceeds the configured limit (413)."""

    code = "payload_too_large"


class Conflict(InvalidRequest):
    """The resource is in a state that does not allow this action (409)."""

    code = "conflict"


class QueueFull(LoomError):
    """Admission control refused the work; retry after ``retry_after`` seconds (429)."""

    type = "rate_limit_error"
    code = "queue_full"

    def __init__(self, message: str, *, retry_after: float = 1.0, **kw) -> None:
        super().__init__(message, **kw)
        self.retry_after = retry_after


class RateLimited(QueueFull):
    """An upstream service said 429 (429 with its Retry-After)."""

    code = "rate_limit_exceeded"


class QuotaExceeded(RateLimited):
    """The caller's principal is past its quota (``[daemon.quotas]``): 429 with Retry-After in
    every dialect (Anthropic's ``rate_limit_error``, not its 529 for an overloaded server)."""


class Unavailable(LoomError):
    """Loom cannot serve this now: out of memory, queue wait exceeded, shutting down (503)."""

    type = "server_error"
    code = "unavailable"


class OutOfMemory(Unavailable):
    """A load or run did not fit in memory even after evicting others (503)."""

    code = "out_of_memory"


class StorageError(LoomError):
    """Loom could not write its output: the disk is full, or the data dir is not writable (507).
    Nothing half-written is left behind."""

    type = "server_error"
    code = "storage_error"


class ProviderError(LoomError):
    """The provider failed while serving the request (502)."""

    type = "server_error"
    code = "provider_error"


class WorkerCrashed(ProviderError):
    """The process serving the model died (a crash, ``kill -9``, the OOM killer) while the work
    ran (502). Nothing else is affected: the next request for the model loads it again."""

    code = "worker_crashed"


class ProviderTimeout(ProviderError):
    """The provider did not answer in time (504)."""

    code = "provider_timeout"


class Cancelled(LoomError):
    """The work was cancelled by its client or by id; raised inside providers at a safe point."""

    type = "server_error"
    code = "cancelled"


class ConfigError(Exception):
    """The configuration is invalid; start-up stops with this message (key path and reason)."""


class OptionsError(ConfigError, ValueError):
    """A provider's options are invalid; raise it from an ``Options`` struct's ``__post_init__``.

    msgspec turns a ValueError raised in ``__post_init__`` into a ValidationError, so when the
    daemon decodes ``[[models]].options`` the message comes back with the key path; built by
    hand, ``Options(...)`` raises it as the ConfigError it is.
    """


class PluginError(Exception):
    """A plugin could not be registered (e.g. a duplicate provider or model name)."""


#: The errors a provider raises for its own failures (the module docstring says which are the
#: daemon's own).
PROVIDER_ERRORS: tuple[type[Exception], ...] = (
    InvalidRequest,
    NotFound,
    AuthenticationFailed,
    PermissionDenied,
    RateLimited,
    Unavailable,
    ProviderError,
    Cancelled,
    OptionsError,
)
