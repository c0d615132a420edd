"""The upstream keys a job needs, checked when it is submitted (seed 004's server: 401 when the
key is missing, 400 when it is malformed), rather than at the job's first call.

A job's models are those its parameters name (``model`` / ``*_model``) and, for each role the
pipeline declares in ``Pipeline.model_roles`` and no parameter overrides, the role's route, as
``JobContext.model_for`` resolves it. A remote model says what key it takes through the optional
provider method ``upstream_key()`` -> ``{"header", "prefix", "required"}`` (the openai plugin:
an instance with ``user_key_header``; ``required`` when it has no key of its own). The keys
themselves are only looked at, never kept.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgspec
from loom.sdk.errors import AuthenticationFailed, ConfigError, InvalidRequest, LoomError
from loom.sdk.pipelines import Pipeline
from loom.sdk.types import Capability

from ..config import VISION_ROLES, Routes
from ..models import ModelRegistry
from ..routing import ModelRouter


def job_models(
    model_roles: Mapping[str, tuple[str, ...]],
    params: msgspec.Struct,
    registry: ModelRegistry,
    router: ModelRouter,
    routes: Routes,
) -> list[str]:
    """The ids of the models a job with ``params`` will call (as far as the daemon can tell)."""
    out: list[str] = []
    for f in msgspec.structs.fields(type(params)):
        value = getattr(params, f.name)
        if (f.name == "model" or f.name.endswith("_model")) and isinstance(value, str) and value in registry:
            out.append(registry.get(value).id)  # an alias names its model
    for role, overrides in model_roles.items():
        if any(getattr(params, name, None) for name in overrides):
            continue
        model = _route(role, registry, router, routes)
        if model is not None and model in registry:
            out.append(registry.get(model).id)
    return list(dict.fromkeys(out))


def _route(role: str, registry: ModelRegistry, router: ModelRouter, routes: Routes) -> str | None:
    fallback = VISION_ROLES.get(role)
    try:
        capability = Capability(fallback or role)
    except ValueError:
        return None
    route = getattr(routes, role, None) or (getattr(routes, fallback, None) if fallback else None)
    route = router.route_for(capability, route)
    if route:
        return route
    entry = registry.first_with(capability)
    return entry.id if entry is not None else None


def keys_taken(registry: ModelRegistry, models: list[str] | None = None) -> dict[str, dict[str, Any]]:
    """Lower-case header -> ``{"header", "prefix", "required", "models"}`` for the per-request keys
    ``models`` (default: every configured model) take; ``required``: some model needs it."""
    out: dict[str, dict[str, Any]] = {}
    for entry in registry:
        if entry.local or (models is not None and entry.id not in models):
            continue
        ask = getattr(entry.instance(), "upstream_key", None)
        spec = ask() if callable(ask) else None
        if not spec:
            continue
        seen = out.setdefault(
            spec["header"].lower(), {"header": spec["header"], "prefix": spec.get("prefix"), "required": False}
        )
        seen.setdefault("models", []).append(entry.id)
        seen["required"] = seen["required"] or bool(spec.get("required"))
    return out


def check_keys(taken: Mapping[str, Mapping[str, Any]], keys: Mapping[str, str], pipeline: str) -> None:
    """Raise for a key a job's models need that ``keys`` lacks (401) or one that is malformed (400)."""
    for name, spec in taken.items():
        key = keys.get(name)
        models = ", ".join(f"'{m}'" for m in spec["models"])
        if key is None:
            if spec["required"]:
                raise AuthenticationFailed(
                    f"Missing API key: pipeline '{pipeline}' uses {models}, which need(s) your own key in the "
                    f"{spec['header']} header",
                    param=spec["header"],
                    code="upstream_key_missing",
                )
            continue
        prefix = spec.get("prefix")
        if prefix and not key.startswith(prefix):
            raise InvalidRequest(
                f"Invalid API key format: the key in the {spec['header']} header must start with '{prefix}'",
                param=spec["header"],
                code="upstream_key_malformed",
            )


def require_keys(
    pipeline: type[Pipeline],
    params: msgspec.Struct,
    keys: Mapping[str, str],
    registry: ModelRegistry,
    router: ModelRouter,
    routes: Routes,
) -> None:
    """:func:`check_keys` for a job of ``pipeline`` (the class) with ``params``."""
    roles = pipeline.model_roles
    models = job_models(roles, params, registry, router, routes)
    try:
        taken = keys_taken(registry, models)
    except (LoomError, ConfigError):
        return  # a model that cannot be built fails the job with its own error, as before
    check_keys(taken, keys, pipeline.name)
