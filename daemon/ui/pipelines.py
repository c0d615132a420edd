"""Starting pipelines from the browser: every pipeline's form, built from its parameter schema.

``POST /ui/pipelines/{name}`` decodes through the API's own ``decode_params`` and
``check_models`` and submits to the same runner, then sends the browser to the job's page. A
refused form comes back filled in, with the API's message next to the field it names.

Where a configured remote model takes a user's own key (seed 004's demo: the user's OpenAI key),
the form has a password field per such header. The key goes to the job as that header would
(``RunContext.credentials``, in memory for the job's run only): never stored, logged, or shown
again (a refused form comes back with the field empty). A pipeline whose models need a key
checks it at submit as the API does: missing (401) or malformed (400).
"""

from __future__ import annotations

from collections import defaultdict

import msgspec
from litestar import Request, Response, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath
from litestar.response import Redirect
from loom.sdk.errors import LoomError

from ..api.jobs import check_models, decode_params, owner_of
from ..config import Routes
from ..http.errors import status_of
from ..jobs.keys_needed import keys_taken, require_keys
from ..jobs.runner import JobRunner, PipelineInfo
from ..models import ModelRegistry
from ..routing import ModelRouter
from .forms import Field, fields_of, params_from_form
from .render import page


def _models(registry: ModelRegistry) -> dict[str, list[str]]:
    by_capability: dict[str, list[str]] = defaultdict(list)
    for entry in registry:
        by_capability[""].append(entry.id)
        for capability in entry.capabilities:
            by_capability[capability.value].append(entry.id)
    return by_capability


def _fields(runner: JobRunner, registry: ModelRegistry, name: str) -> tuple[PipelineInfo, list[Field]]:
    info = runner.pipeline(name)
    schema = msgspec.json.schema(info.cls.Params)
    return info, fields_of(schema, _models(registry))


@get("/pipelines")
async def pipelines_page(request: Request, runner: NamedDependency[JobRunner]) -> Response:
    pipelines = [
        {"name": p.name, "plugin": p.plugin, "description": p.description}
        for p in sorted(runner.pipelines.values(), key=lambda p: p.name)
        if not p.hidden
    ]
    return page(request, "pipelines.html", pipelines=pipelines)


@get("/pipelines/{name:str}")
async def pipeline_form(
    request: Request,
    name: FromPath[str],
    runner: NamedDependency[JobRunner],
    registry: NamedDependency[ModelRegistry],
) -> Response:
    info, fields = _fields(runner, registry, name)
    return page(request, "pipeline_form.html", pipeline=info, fields=fields, keys=_key_fields(registry), error=None)


#: The form field of a user's key for a header: "upstream_key:x-openai-api-key".
KEY_FIELD = "upstream_key:"


def _key_fields(registry: ModelRegistry) -> list[dict]:
    """A password field per header in which configured models take a user's own key."""
    return [
        {
            "name": KEY_FIELD + name,
            "id": "key-" + name,
            "header": spec["header"],
            "required": spec["required"],
            "models": spec["models"],
        }
        for name, spec in sorted(keys_taken(registry).items())
    ]


@post("/pipelines/{name:str}")
async def start_pipeline(
    request: Request,
    name: FromPath[str],
    runner: NamedDependency[JobRunner],
    registry: NamedDependency[ModelRegistry],
    router: NamedDependency[ModelRouter],
    routes: NamedDependency[Routes],
) -> Response:
    info, fields = _fields(runner, registry, name)
    form = await request.form()
    taken = {k["name"] for k in _key_fields(registry)}
    keys = {k[len(KEY_FIELD) :]: v.strip() for k, v in form.items() if k in taken and isinstance(v, str) and v.strip()}
    try:
        body = msgspec.json.encode(params_from_form(fields, form))
        params = decode_params(info, body)
        check_models(registry, params)
        require_keys(info.cls, params, keys, registry, router, routes)
        job = runner.submit(name, params, keys, owner=owner_of(request))  # the signed-in principal's
    except LoomError as e:
        return page(
            request,
            "pipeline_form.html",
            status_code=status_of(e),
            pipeline=info,
            fields=fields,
            keys=_key_fields(registry),
            error=e,
        )
    return Redirect(f"/ui/jobs/{job['id']}", status_code=303)


ROUTES = [pipelines_page, pipeline_form, start_pipeline]
