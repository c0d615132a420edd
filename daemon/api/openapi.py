"""The OpenAPI document (``/docs/openapi.json``, ``loom openapi``): what each route takes and answers.

Routes decode their own bodies (strictly, with Loom's error shape) and answer with ``Response``
objects, so Litestar can infer neither. Each handler declares its wire instead, next to itself,
with ``operation_class=doc(...)``: the request body (a msgspec Struct as JSON, or a form as
``multipart/form-data``), query parameters, the success status and body (and ``text/event-stream``
where the route streams), and the errors it can answer. :func:`finish` then adds what every
route of a Router shares (the key's 401 and the admin key's 403 when keys are configured, the
security schemes) and msgspec's JSON schema of every Struct named. Every error is OpenAI's shape,
``ErrorResponse``, except on the routes of another API (``error_shape``: Anthropic's Messages
API). ``tests/integration/test_openapi.py`` keeps the document in step with the routes, and ``tests/integration/test_openapi_fuzz.py`` fuzzes a live daemon against it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import msgspec
from litestar.openapi.spec import (
    Components,
    OpenAPIHeader,
    OpenAPIMediaType,
    OpenAPIResponse,
    Operation,
    Parameter,
    Reference,
    RequestBody,
    Schema,
    SecurityScheme,
)
from loom.sdk.types import ErrorResponse

from ..ollama.wire import OllamaError
from . import openapi_rules
from .openapi_rules import Known

REF = "#/components/schemas/{name}"

#: What each error status means on Loom's routes.
REASONS: dict[int, str] = {
    400: "Invalid request: a field is missing, malformed or not supported; `param` names it",
    401: "Missing or wrong API key",
    403: "The key is not an admin key",
    404: "No such model, job, file or other resource",
    409: "The resource is in a state that does not allow this",
    413: "The request body is over `[daemon.limits] max_body_bytes`",
    429: "The model's queue is full; retry after `Retry-After` seconds",
    499: "The work was cancelled (`POST /admin/work/{work_id}/cancel`)",
    502: "The provider failed while serving the request",
    503: "Loom cannot serve this now: out of memory, queue wait exceeded, device unavailable, shutting down",
    504: "A remote provider did not answer in time",
    507: "The output could not be written: the disk is full or the data dir is not writable",
    529: "The model's queue is full (Anthropic's `overloaded_error`); retry after `Retry-After` seconds",
}
#: Errors of a route that runs a model: it does not exist, its queue is full, the work was
#: cancelled by id, the provider failed, it cannot run now, a remote one timed out.
MODEL_ERRORS = (404, 429, 499, 502, 503, 504)
#: Errors of a route that writes files (``response_format=url``).
STORAGE_ERRORS = (507,)
#: Errors of a route that reads a body: it is invalid, or too big.
BODY_ERRORS = (400, 413)


@dataclass
class RawSchema(Schema):
    """A JSON schema written by hand or by msgspec, passed through as it is."""

    raw: dict = field(default_factory=dict)

    def to_schema(self) -> dict:
        return self.raw


@dataclass(frozen=True)
class Query:
    """A query parameter (or, with ``where="header"``, a header) a route reads itself."""

    name: str
    schema: dict[str, Any]
    description: str
    where: str = "query"


#: The stream routes' query parameter for a browser (``POST /v1/stream-tokens`` mints it).
TOKEN = Query("token", {"type": "string"}, "A stream token, for clients that cannot send a header (EventSource)")


@dataclass(frozen=True)
class Doc:
    summary: str
    #: The Struct answered as JSON on success (None: no JSON body).
    returns: type | None = None
    status: int = 200
    #: The request body, decoded strictly from JSON.
    body: type | None = None
    #: The body may be left out (``POST /admin/models/{model_id}/pin``: pinned by default).
    body_optional: bool = False
    #: The request body as a multipart form; the Struct's fields are the form's fields.
    form: type | None = None
    #: The Struct of each server-sent event's ``data`` when the route streams (``text/event-stream``).
    events: type | None = None
    #: The Struct of each line when the route streams newline-delimited JSON (Ollama's routes).
    lines: type | None = None
    #: A success body that is not JSON: its media type ("text/plain", "*/*").
    media_type: str | None = None
    errors: tuple[int, ...] = ()
    query: tuple[Query, ...] = ()
    #: Response headers on success, name -> description.
    headers: dict[str, str] = field(default_factory=dict)
    #: The Struct of the error bodies, where a route answers another API's shape (Anthropic's
    #: ``{"type": "error", ...}``, Ollama's ``{"error": "..."}``).
    error_shape: type = ErrorResponse


class Documented(Operation):
    """An operation built from a :class:`Doc` (what :func:`finish` and the tests look for)."""

    doc: ClassVar[Doc]


#: Every Struct a route names; :func:`finish` publishes their schemas.
DOCUMENTED: list[type] = [ErrorResponse]


def ref(struct: type) -> Reference:
    if struct not in DOCUMENTED:
        DOCUMENTED.append(struct)
    return Reference(ref=REF.format(name=struct.__name__))


def error_response(status: int, shape: type = ErrorResponse) -> OpenAPIResponse:
    headers: dict[str, OpenAPIHeader | Reference] | None = None
    if status in (429, 529):
        headers = {"Retry-After": OpenAPIHeader(schema=RawSchema(raw={"type": "integer"}), description="Seconds")}
    return OpenAPIResponse(
        description=REASONS[status],
        content={"application/json": OpenAPIMediaType(schema=ref(shape))},
        headers=headers,
    )


#: One server-sent event, as a client parses it (what schemathesis checks each event against).
SSE_EVENT = {
    "type": "object",
    "properties": {
        "event": {"type": "string"},
        "data": {"type": "string"},
        "id": {"type": "string"},
        "retry": {"type": "integer"},
    },
}


def _success(d: Doc) -> OpenAPIResponse:
    content: dict[str, OpenAPIMediaType] = {}
    if d.returns is not None:
        content["application/json"] = OpenAPIMediaType(schema=ref(d.returns))
    description = {200: "OK", 201: "Created", 202: "Accepted"}[d.status]
    if d.events is not None:
        ref(d.events)
        content["text/event-stream"] = OpenAPIMediaType(schema=RawSchema(raw=SSE_EVENT))
        description += f"; streamed as server-sent events whose `data` is a {d.events.__name__}"
    if d.lines is not None:
        ref(d.lines)
        content["application/x-ndjson"] = OpenAPIMediaType(schema=RawSchema(raw={"type": "string"}))
        description += f"; streamed as newline-delimited JSON, a {d.lines.__name__} per line"
    if d.media_type is not None:
        content[d.media_type] = OpenAPIMediaType(schema=RawSchema(raw={"type": "string", "format": "binary"}))
    headers: dict[str, OpenAPIHeader | Reference] = {
        name: OpenAPIHeader(schema=RawSchema(raw={"type": "string"}), description=text)
        for name, text in d.headers.items()
    }
    return OpenAPIResponse(description=description, content=content or None, headers=headers or None)


def _form_schema(struct: type) -> RawSchema:
    """A form Struct's schema for ``multipart/form-data``: ``bytes`` fields are files."""
    (_schema,), defs = msgspec.json.schema_components([struct], ref_template=REF)
    raw = defs[struct.__name__]
    for f in msgspec.structs.fields(struct):
        prop = raw["properties"][f.encode_name]
        if f.type is bytes or f.type == bytes | None:
            prop = {"type": "string", "format": "binary"}
        elif f.type is bool:  # true/false, or 1/0 as some clients send a flag (Form.flag)
            prop = {"anyOf": [{"type": "boolean"}, {"type": "integer", "enum": [0, 1]}], "default": prop.get("default")}
        elif "anyOf" in prop:  # a form field is left out, never null
            branches = [b for b in prop["anyOf"] if b != {"type": "null"}]
            prop = branches[0] if len(branches) == 1 else {"anyOf": branches}
        if "default" in prop and prop["default"] is None:
            del prop["default"]
        raw["properties"][f.encode_name] = prop
    return RawSchema(raw=raw)


def doc(summary: str, **kw: Any) -> type[Operation]:
    """An ``operation_class`` for a route described by ``Doc(summary, **kw)``."""
    d = Doc(summary, **kw)
    if d.body is not None:
        ref(d.body)

    @dataclass
    class Op(Documented):
        def __post_init__(self) -> None:
            self.summary = d.summary
            if d.body is not None:
                content = {"application/json": OpenAPIMediaType(schema=ref(d.body))}
                self.request_body = RequestBody(required=not d.body_optional, content=content)
            elif d.form is not None:
                content = {"multipart/form-data": OpenAPIMediaType(schema=_form_schema(d.form))}
                self.request_body = RequestBody(required=True, content=content)
            if d.query:
                self.parameters = [*(self.parameters or []), *map(_parameter, d.query)]
            self.responses = {str(d.status): _success(d)}
            for status in sorted(set(d.errors)):
                self.responses[str(status)] = error_response(status, d.error_shape)

    Op.doc = d
    Op.__name__ = Op.__qualname__ = f"Doc_{summary.replace(' ', '_')[:40]}"
    return Op


def _parameter(q: Query) -> Parameter:
    return Parameter(
        name=q.name, param_in=q.where, required=False, description=q.description, schema=RawSchema(raw=q.schema)
    )


def finish(schema: Any, *, keys: bool, known: Known | None = None) -> None:
    """Complete a built document (Litestar fills ``components.schemas`` from its own registry when
    it builds it, so Loom's go in after): the Structs' schemas with the rules across their fields
    and the model ids ``known`` at start-up (:mod:`.openapi_rules`), and for every route under
    ``/v1``, ``/admin`` and ``/metrics`` the key's errors and security when ``keys`` are configured."""
    _, defs = msgspec.json.schema_components(DOCUMENTED, ref_template=REF)
    openapi_rules.apply(defs, schema.paths or {}, known or Known(), DOCUMENTED)
    if schema.components is None:
        schema.components = Components()
    if schema.components.schemas is None:
        schema.components.schemas = {}
    for name, raw in defs.items():
        schema.components.schemas[name] = RawSchema(raw=raw)
    if keys:
        schema.components.security_schemes = {
            "bearer": SecurityScheme(type="http", scheme="bearer", description="Authorization: Bearer <key>"),
            "apiKey": SecurityScheme(
                type="apiKey", name="X-API-Key", security_scheme_in="header", description="The key in X-API-Key"
            ),
        }
    for path, item in (schema.paths or {}).items():
        guarded = path.startswith(("/v1/", "/admin/", "/api/")) or path == "/metrics"
        body = OllamaError if path.startswith("/api/") else ErrorResponse
        for method in ("get", "post", "put", "patch", "delete"):
            op = getattr(item, method, None)
            if op is None or not guarded or not keys:
                continue
            op.security = [{"bearer": []}, {"apiKey": []}]
            shape = op.doc.error_shape if isinstance(op, Documented) else body
            op.responses["401"] = error_response(401, shape)
            if not path.startswith(("/v1/", "/api/")):
                op.responses["403"] = error_response(403, shape)
            op.responses = dict(sorted(op.responses.items()))


def document(app: Any) -> dict[str, Any]:
    """The app's document as JSON-ready data (what ``loom openapi`` prints)."""
    return app.openapi_schema.to_schema()
