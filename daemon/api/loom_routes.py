"""Loom's routes for what OpenAI's API has no shape for: translation, vision, files."""

from __future__ import annotations

import mimetypes

from litestar import Request, Response, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath
from litestar.response import File
from loom.sdk import calls
from loom.sdk.errors import NotFound, ProviderError
from loom.sdk.types import (
    Capability,
    DescribeRequest,
    DescribeResponse,
    ScoreRequest,
    ScoreResponse,
    TranslationRequest,
    TranslationResponse,
)

from ..files import FileStore
from ..http.body import BodyReader
from ..jobs.runner import JobRunner
from ..media import image_bytes
from ..models import ModelRegistry
from ..principals import may_read_file, principal_of
from ..routing import ModelRouter
from ..storage.service import Storage
from ..uploads import UploadStore, is_file_id
from . import files_api
from .auth import signed
from .openapi import BODY_ERRORS, MODEL_ERRORS, Query, doc
from .respond import PROVENANCE, json_response, served_by


@post(
    "/translations/text",
    status_code=200,
    operation_class=doc(
        "Translate texts",
        body=TranslationRequest,
        returns=TranslationResponse,
        errors=BODY_ERRORS + MODEL_ERRORS,
        headers=PROVENANCE,
    ),
)
async def translate(
    request: Request, bodies: NamedDependency[BodyReader], router: NamedDependency[ModelRouter]
) -> Response:
    req = await bodies.decode(request, TranslationRequest)
    texts = req.texts()
    entry, out = await router.run(
        req.model,
        Capability.TRANSLATION,
        calls.Translate(texts=texts, source=req.source, target=req.target),
    )
    if len(out) != len(texts):
        raise ProviderError(f"{entry.id} returned {len(out)} translations for {len(texts)} texts")
    body = TranslationResponse(model=req.model, source=req.source, target=req.target, translations=out)
    return json_response(body, headers=served_by(entry))


@post(
    "/vision/describe",
    status_code=200,
    operation_class=doc(
        "Describe an image",
        body=DescribeRequest,
        returns=DescribeResponse,
        errors=BODY_ERRORS + MODEL_ERRORS,
        headers=PROVENANCE,
    ),
)
async def describe(
    request: Request,
    bodies: NamedDependency[BodyReader],
    registry: NamedDependency[ModelRegistry],
    router: NamedDependency[ModelRouter],
    files: NamedDependency[FileStore],
) -> Response:
    req = await bodies.decode(request, DescribeRequest)
    registry.for_capability(req.model, Capability.VISION)
    image = image_bytes(req.image, files)
    entry, text = await router.run(
        req.model,
        Capability.VISION,
        calls.Describe(image=image, prompt=req.prompt, detail=req.detail, max_tokens=req.max_tokens),
    )
    return json_response(DescribeResponse(model=req.model, description=text), headers=served_by(entry))


@post(
    "/vision/score",
    status_code=200,
    operation_class=doc(
        "Score an image against a text (CLIP and aesthetic)",
        body=ScoreRequest,
        returns=ScoreResponse,
        errors=BODY_ERRORS + MODEL_ERRORS,
        headers=PROVENANCE,
    ),
)
async def score(
    request: Request,
    bodies: NamedDependency[BodyReader],
    registry: NamedDependency[ModelRegistry],
    router: NamedDependency[ModelRouter],
    files: NamedDependency[FileStore],
) -> Response:
    req = await bodies.decode(request, ScoreRequest)
    registry.for_capability(req.model, Capability.VISION)
    image = image_bytes(req.image, files)
    entry, s = await router.run(req.model, Capability.VISION, calls.Score(image=image, text=req.text))
    combined = s.combined(req.alpha)
    body = ScoreResponse(model=req.model, clip=s.clip, aesthetic=s.aesthetic, combined=combined, alpha=req.alpha)
    return json_response(body, headers=served_by(entry))


SIGNED = (
    Query("exp", {"type": "string", "pattern": "^[0-9]{1,12}$"}, "A signed URL's expiry (unix seconds)"),
    Query("sig", {"type": "string"}, "A signed URL's signature: with 'exp' it stands in for the key"),
)


@get(
    "/files/{path:path}",
    operation_class=doc(
        "A file Loom made, or an uploaded file (OpenAI's files/{file_id} and files/{file_id}/content)",
        media_type="*/*",
        errors=(403, 404),
        query=SIGNED,
    ),
    opt={"signed": True},
)
async def serve_file(
    request: Request,
    path: FromPath[str],
    files: NamedDependency[FileStore],
    storage: NamedDependency[Storage],
    runner: NamedDependency[JobRunner],
    uploads: NamedDependency[UploadStore],
) -> File | Response:
    """The URLs answers carry are signed (``?exp=&sig=``) and need no key until they expire; a
    signature that does not hold is a 403 with or without a key (the key guard has judged it
    already where keys are configured). A folder's URL (a job's ``output_url``, ending in ``/``)
    answers its index: every file in it with its URL and size. Without a signature a user reads
    its own jobs' and requests' files only (:func:`~loom.daemon.principals.may_read_file`).

    Litestar routes every ``GET /v1/files/...`` here (a ``path`` parameter takes the whole
    rest), so an OpenAI file id (``file-...``, no slash), and an id followed by ``/content``,
    are answered from the Files API's store (:mod:`.files_api`, which keeps its own owners);
    Loom's own paths always start with a public folder, so the two cannot be confused."""
    rel = path.strip("/")
    file_id, _, rest = rel.partition("/")
    if is_file_id(file_id) and rest in ("", "content"):
        return files_api.content(request, uploads, file_id) if rest else files_api.retrieve(request, uploads, file_id)
    if not signed(request, storage.signer) and not may_read_file(
        principal_of(request), rel, runner.store.owner_of_output
    ):
        raise NotFound(f"No file at '{rel}'", param="path")  # another's: as if there were none
    if rel and (files.root / rel).is_dir():  # Litestar drops the trailing slash: ask the disk
        data = [{"path": p, "url": storage.url(p), "bytes": n} for p, n in files.listing(rel)]
        return json_response({"object": "list", "path": rel, "data": data})
    file = files.resolve(rel)
    media_type = mimetypes.guess_type(file.name)[0] or "application/octet-stream"
    return File(path=file, media_type=media_type, content_disposition_type="inline")
