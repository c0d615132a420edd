"""OpenAI's Files API: ``POST /v1/files`` (multipart), ``GET /v1/files``, ``GET /v1/files/{file_id}``,
``GET /v1/files/{file_id}/content`` and ``DELETE /v1/files/{file_id}``, in OpenAI's shapes.

``/v1/files/<path>`` also serves the files Loom makes (``images/...``, ``output/...``:
:func:`.loom_routes.serve_file`). The two never meet: an OpenAI file id is ``file-`` and letters
or digits, with no slash, and Loom's paths start with a folder; so ``GET /v1/files/{path}``
answers an id (or an id's ``/content``) from the upload store and anything else from the data
dir. Each file belongs to the key that uploaded it (:func:`.jobs.owner_of`); another key's file
is a 404, as a missing one.
"""

from __future__ import annotations

from litestar import Request, Response, delete, get, post
from litestar.datastructures import UploadFile
from litestar.di import NamedDependency
from litestar.params import FromPath
from loom.sdk.errors import InvalidRequest, UnsupportedParameter

from ..principals import principal_of
from ..uploads import EXPIRES_MAX_S, EXPIRES_MIN_S, PURPOSES, UploadStore
from .batch_shapes import FileDeleted, FileForm, FileList, OpenAIFile
from .jobs import owner_of
from .openapi import BODY_ERRORS, Query, doc
from .respond import json_response

#: Room for the form's other fields and boundaries around the file itself.
FORM_OVERHEAD = 64 * 1024
FILE_FIELDS = {"file", "purpose", "expires_after[anchor]", "expires_after[seconds]"}


LIST_QUERY = (
    Query("purpose", {"type": "string"}, "Only files with this purpose"),
    Query("limit", {"type": "integer", "minimum": 1, "maximum": 10000}, "At most this many (default 10000)"),
    Query("order", {"enum": ["asc", "desc"]}, "By created_at: desc (the default) lists the newest first"),
    Query("after", {"type": "string"}, "List the files after the one with this id"),
)


@post(
    "/files",
    status_code=200,
    operation_class=doc("Upload a file", form=FileForm, returns=OpenAIFile, errors=BODY_ERRORS),
)
async def create_file(request: Request, uploads: NamedDependency[UploadStore]) -> Response:
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        raise InvalidRequest("send the file as multipart/form-data with 'file' and 'purpose', as the OpenAI API does")
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > uploads.max_bytes + FORM_OVERHEAD:
        uploads.check_size(int(declared) - FORM_OVERHEAD)
    form = await request.form()
    fields: dict[str, object] = {}
    for key, value in form.multi_items():
        if key not in FILE_FIELDS:
            raise UnsupportedParameter(f"Unsupported parameter: '{key}' is not supported by Loom", param=key)
        fields[key] = value
    upload = fields.get("file")
    if not isinstance(upload, UploadFile):
        raise InvalidRequest("missing required field 'file' (the file's content, as a form file)", param="file")
    purpose = fields.get("purpose")
    if not isinstance(purpose, str) or purpose not in PURPOSES:
        raise InvalidRequest(f"purpose must be one of {', '.join(PURPOSES)}, got {purpose!r}", param="purpose")
    expires_in = _expires_in(fields)
    data = await upload.read()
    uploads.check_size(len(data))
    filename = upload.filename or "upload"
    return json_response(uploads.create(data, filename, purpose, owner_of(request), expires_in=expires_in))


def _expires_in(fields: dict[str, object]) -> int | None:
    anchor, seconds = fields.get("expires_after[anchor]"), fields.get("expires_after[seconds]")
    if anchor is None and seconds is None:
        return None
    if anchor != "created_at":
        raise InvalidRequest(
            f"expires_after[anchor] must be 'created_at', got {anchor!r}", param="expires_after.anchor"
        )
    if not isinstance(seconds, str) or not seconds.isdigit() or not EXPIRES_MIN_S <= int(seconds) <= EXPIRES_MAX_S:
        raise InvalidRequest(
            f"expires_after[seconds] must be a whole number from {EXPIRES_MIN_S} to {EXPIRES_MAX_S}, got {seconds!r}",
            param="expires_after.seconds",
        )
    return int(seconds)


@get("/files", operation_class=doc("List files", returns=FileList, errors=(400, 404), query=LIST_QUERY))
async def list_files(request: Request, uploads: NamedDependency[UploadStore]) -> Response:
    q = request.query_params
    limit = q.get("limit", "10000")
    if not limit.isdigit() or not 1 <= int(limit) <= 10_000:
        raise InvalidRequest(f"limit must be an integer from 1 to 10000, got {limit!r}", param="limit")
    order = q.get("order", "desc")
    page = uploads.page(
        principal_of(request).scope, purpose=q.get("purpose"), limit=int(limit), after=q.get("after"), order=order
    )
    return json_response(page)


@delete(
    "/files/{path:path}",
    status_code=200,
    operation_class=doc("Delete an uploaded file (its id: file-...)", returns=FileDeleted, errors=(404,)),
)
async def delete_file(request: Request, path: FromPath[str], uploads: NamedDependency[UploadStore]) -> Response:
    # The same path as GET /v1/files/{path} (one Litestar route, so OPTIONS names both methods).
    return json_response(uploads.delete(path.strip("/"), principal_of(request).scope))


def retrieve(request: Request, uploads: UploadStore, file_id: str) -> Response:
    """``GET /v1/files/{file_id}`` (called by the files route for an OpenAI file id)."""
    return json_response(uploads.get(file_id, principal_of(request).scope))


def content(request: Request, uploads: UploadStore, file_id: str) -> Response:
    """``GET /v1/files/{file_id}/content``: the file's bytes, as uploaded."""
    data = uploads.content(file_id, principal_of(request).scope)
    return Response(content=data, media_type="application/octet-stream")


ROUTES = [create_file, list_files, delete_file]
