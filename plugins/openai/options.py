"""Options of the openai plugin: named service instances (``[plugins.openai.instances.NAME]``) and
what a ``[[models]]`` entry with ``provider = "openai"`` says about the model it maps to."""

from __future__ import annotations

from typing import Annotated, Literal

from msgspec import Meta, Struct, field

from loom.sdk.config import EnvSecret

Seconds = Annotated[float, Meta(gt=0.0)]


class Instance(Struct, forbid_unknown_fields=True, frozen=True, kw_only=True, weakref=True):
    """One OpenAI-compatible service: OpenAI, x.ai, Ollama, vLLM, LocalAI or another Loom."""

    #: Up to and including the version prefix, e.g. "https://api.x.ai/v1".
    base_url: str
    #: ``{ env = "XAI_API_KEY" }``; resolved on each call, so a missing key fails that call (401
    #: naming the variable), never start-up. None: the service takes no key.
    api_key: EnvSecret | None = None
    #: Seconds to wait for an answer (for a stream: between chunks) before a try counts as failed.
    timeout: Seconds = 60.0
    #: Further tries after a timeout, a connection error or a 5xx (never after a 4xx or a 429).
    retries: Annotated[int, Meta(ge=0, le=10)] = 2
    #: Loom public model id -> the service's id, for models whose options name no ``model``.
    model_map: dict[str, str] = field(default_factory=dict)
    #: Extra headers sent on every request; a value may be a secret (``{ env = "..." }``).
    headers: dict[str, str | EnvSecret] = field(default_factory=dict)
    #: Ask for token usage on streams (``stream_options.include_usage``); off for old servers.
    stream_usage: bool = True


class PluginOptions(Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    """The ``[plugins.openai]`` section."""

    instances: dict[str, Instance] = field(default_factory=dict)
    #: Seconds between health checks (``GET {base_url}/models``) of each instance in use.
    health_interval: Seconds = 30.0


class ModelOptions(Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    """The ``options`` of a ``[[models]]`` entry served by this provider."""

    #: Which ``[plugins.openai.instances.NAME]``; may be left out when there is only one.
    instance: str | None = None
    #: The service's model id; default: the instance's ``model_map`` entry, else the Loom id.
    model: str | None = None
    #: How :meth:`score` asks for its JSON rating: "json_object" works with most services,
    #: "json_schema" (structured outputs) also bounds the numbers.
    score_format: Literal["json_object", "json_schema"] = "json_object"
    #: The ``response_format`` asked of the service for images (a ``url`` answer is fetched
    #: here, so Loom's client gets what it asked for either way); None leaves the field out, for
    #: services that refuse it.
    image_response_format: Literal["b64_json", "url"] | None = "b64_json"
