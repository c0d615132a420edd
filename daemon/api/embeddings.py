"""/v1/embeddings: float or base64 (what the openai package asks for by default)."""

from __future__ import annotations

import base64

import numpy as np
from litestar import Request, Response, post
from litestar.di import NamedDependency
from loom.sdk import calls
from loom.sdk.errors import ProviderError, UnsupportedParameter
from loom.sdk.protocols import RunContext
from loom.sdk.types import Capability, Embedding, EmbeddingList, EmbeddingRequest, EmbeddingUsage

from ..http.body import BodyReader
from ..models import ModelEntry
from ..routing import ModelRouter
from ..scheduler import Priority
from .openapi import BODY_ERRORS, MODEL_ERRORS, doc
from .respond import PROVENANCE, json_response, served_by


@post(
    "/embeddings",
    status_code=200,
    operation_class=doc(
        "Create embeddings",
        body=EmbeddingRequest,
        returns=EmbeddingList,
        errors=BODY_ERRORS + MODEL_ERRORS,
        headers=PROVENANCE,
    ),
)
async def embeddings(
    request: Request, bodies: NamedDependency[BodyReader], router: NamedDependency[ModelRouter]
) -> Response:
    req = await bodies.decode(request, EmbeddingRequest)
    entry, answer = await embed(router, req)
    return json_response(answer, headers=served_by(entry))


async def embed(
    router: ModelRouter,
    req: EmbeddingRequest,
    *,
    priority: Priority = Priority.INTERACTIVE,
    ctx: RunContext | None = None,
) -> tuple[ModelEntry, EmbeddingList]:
    """An embeddings request's answer (the route's, and a batch line's)."""
    inputs = req.inputs()
    entry, result = await router.run(
        req.model, Capability.EMBEDDING, calls.Embed(inputs=inputs), priority=priority, ctx=ctx
    )
    if len(result.vectors) != len(inputs):
        raise ProviderError(f"{entry.id} returned {len(result.vectors)} vectors for {len(inputs)} inputs")
    vectors = np.asarray(result.vectors, dtype=np.float32)
    if req.dimensions is not None and req.dimensions != vectors.shape[1]:
        raise UnsupportedParameter(
            f"dimensions={req.dimensions} is not supported: '{entry.id}' makes "
            f"{vectors.shape[1]}-dimensional embeddings",
            param="dimensions",
        )
    if req.encoding_format == "base64":
        data = [Embedding(i, base64.b64encode(v.tobytes()).decode()) for i, v in enumerate(vectors)]
    else:
        data = [Embedding(i, v.tolist()) for i, v in enumerate(vectors)]
    usage = EmbeddingUsage(result.prompt_tokens, result.prompt_tokens)
    return entry, EmbeddingList(data=data, model=req.model, usage=usage)
