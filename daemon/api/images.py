"""/v1/images/generations: n, size, seed; ``b64_json`` or a ``url`` this daemon serves."""

from __future__ import annotations

import base64
import time

from litestar import Request, Response, post
from litestar.di import NamedDependency
from loom.sdk import calls, types
from loom.sdk.errors import ProviderError
from loom.sdk.image_events import ImageStreamEvent
from loom.sdk.protocols import ImageJob, RunContext
from loom.sdk.types import Capability, ImageData, ImageGenerationRequest, ImagesResponse

from ..files import FileStore
from ..http.body import BodyReader
from ..models import ModelEntry, ModelRegistry
from ..principals import owner_folder, principal_of
from ..routing import ModelRouter
from ..scheduler import Priority
from ..storage.service import Storage
from .image_stream import check_stream, stream_response
from .openapi import BODY_ERRORS, MODEL_ERRORS, STORAGE_ERRORS, doc
from .respond import PROVENANCE, json_response, served_by


def parse_size(size: str, entry: ModelEntry) -> tuple[int, int]:
    """The requested size; ``auto`` is the serving provider's ``default_size``."""
    return types.parse_size(size) or entry.provider_cls.default_size


async def render(
    router: ModelRouter,
    files: FileStore,
    storage: Storage,
    name: str,
    job: ImageJob,
    response_format: str,
    base_url: str,
    folder: str = "images",
    *,
    priority: Priority = Priority.INTERACTIVE,
    ctx: RunContext | None = None,
):
    """Generate ``job`` on ``name`` (or its fallbacks); return the serving entry and the body.

    A ``url`` answer is a signed, expiring ``/v1/files/`` URL, or with an output store a
    presigned URL to the image there; the image is written to the data dir first, so a store
    that cannot take it (507 ``storage_error``) loses nothing. ``folder``: where it is written
    (:func:`image_folder`: the principal's own, so the file is theirs)."""
    entry, images = await router.run(name, Capability.IMAGE, calls.GenerateImages(job=job), priority=priority, ctx=ctx)
    if len(images) != job.n:
        raise ProviderError(f"{entry.id} returned {len(images)} images, {job.n} were asked for")
    data = []
    for png in images:
        if response_format == "url":
            rel = files.save(png, ".png", folder)
            await storage.publish(rel)
            data.append(ImageData(url=storage.url(rel, base_url)))
        else:
            data.append(ImageData(b64_json=base64.b64encode(png).decode()))
    return entry, ImagesResponse(created=int(time.time()), data=data)


def base_url(request: Request) -> str:
    return str(request.base_url).rstrip("/")


def image_folder(request: Request) -> str:
    """Where the request's generated images go: under its principal's own folder."""
    return owner_folder("images", principal_of(request).name)


@post(
    "/images/generations",
    status_code=200,
    operation_class=doc(
        "Generate images",
        body=ImageGenerationRequest,
        returns=ImagesResponse,
        events=ImageStreamEvent,
        errors=BODY_ERRORS + MODEL_ERRORS + STORAGE_ERRORS,
        headers=PROVENANCE,
    ),
)
async def generations(
    request: Request,
    bodies: NamedDependency[BodyReader],
    registry: NamedDependency[ModelRegistry],
    router: NamedDependency[ModelRouter],
    files: NamedDependency[FileStore],
    storage: NamedDependency[Storage],
) -> Response:
    req = await bodies.decode(request, ImageGenerationRequest)
    if req.stream:
        check_stream(req.n, req.response_format)
        return await stream_response(router, req.model, image_job(registry, req), edit=False)
    entry, body = await generate(req, registry, router, files, storage, base_url(request), image_folder(request))
    return json_response(body, headers=served_by(entry))


def image_job(registry: ModelRegistry, req: ImageGenerationRequest) -> ImageJob:
    """What the request asks the model for (``size=auto``: the serving provider's default)."""
    entry = registry.for_capability(req.model, Capability.IMAGE)
    width, height = parse_size(req.size, entry)
    return ImageJob(
        prompt=req.prompt,
        width=width,
        height=height,
        n=req.n,
        seed=req.seed,
        negative_prompt=req.negative_prompt,
        steps=req.steps,
        guidance_scale=req.guidance_scale,
        partial_images=(req.partial_images or 0) if req.stream else 0,
    )


async def generate(
    req: ImageGenerationRequest,
    registry: ModelRegistry,
    router: ModelRouter,
    files: FileStore,
    storage: Storage,
    base_url: str,
    folder: str = "images",
    *,
    priority: Priority = Priority.INTERACTIVE,
    ctx: RunContext | None = None,
) -> tuple[ModelEntry, ImagesResponse]:
    """A generation request's answer, not streamed (the route's, and a batch line's)."""
    job = image_job(registry, req)
    return await render(
        router, files, storage, req.model, job, req.response_format, base_url, folder, priority=priority, ctx=ctx
    )
