"""Options of the openai plugin: named service instances (``[plugins.openai.instances.NAME]``) and
what a ``[[models]]`` entry with ``provider = "openai"`` says about the model it maps to."""

from __future__ import annotations

import math
import re
from typing import Annotated, Literal

from loom.sdk.config import UPSTREAM_KEY_HEADER, EnvSecret
from loom.sdk.errors import ConfigError
from msgspec import Meta, Struct, field

from .profiles import ParameterOptions, ProfileName

_SIZE = re.compile(r"^([1-9][0-9]{1,4})x([1-9][0-9]{1,4})$")


class OptionsError(ConfigError, ValueError):
    """A ConfigError that msgspec reports with the key path (it is also a ValueError)."""


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
    #: A request header in which a client may send its own key for this service (the seed's
    #: "X-OpenAI-API-Key"): a request (or a job started by one) that carries it uses that key for
    #: its own calls, instead of ``api_key``; without it, ``api_key`` is used. The key is never
    #: logged, stored or shown. The name must look like ``X-<name>-API-Key``. None: not allowed.
    user_key_header: str | None = None
    #: What a user's own key starts with; a job submitted with a key that does not is refused
    #: (400), as seed 004's server refuses one without OpenAI's "sk-". Default: "sk-" for the
    #: ``X-OpenAI-API-Key`` header, no check for others; "" turns the check off.
    user_key_prefix: str | None = None

    def __post_init__(self) -> None:
        if self.user_key_header is not None and not UPSTREAM_KEY_HEADER.match(self.user_key_header):
            raise OptionsError(
                f"user_key_header must be named like X-<name>-API-Key (e.g. X-OpenAI-API-Key), "
                f"got {self.user_key_header!r}"
            )


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
    #: here, so Loom's client gets what it asked for either way); "omit" leaves the field out, for
    #: services that refuse it (OpenAI's GPT image models always answer base64 and refuse it).
    image_response_format: Literal["b64_json", "url", "omit"] | None = "b64_json"
    #: The image sizes the service makes for this model, e.g. DALL-E 3's ["1024x1024",
    #: "1792x1024", "1024x1792"]. Another size is served at the allowed one closest in aspect
    #: ratio, then in area (the image comes back at that size). None: any size is sent as asked.
    image_sizes: list[str] | None = None
    #: Send ``size`` at all. Off for services that refuse it (x.ai picks the size itself).
    send_size: bool = True
    #: Send ``seed`` (a Loom extension a Loom or local upstream honours; OpenAI and x.ai refuse it).
    send_seed: bool = True
    #: Send ``n``; off: each request makes one image, and n images take n requests.
    send_n: bool = True
    #: Most images one request may ask for (DALL-E 3: 1); more are asked for in several requests.
    max_n: Annotated[int, Meta(ge=1, le=128)] = 10
    #: The model's parameter profile (:mod:`.profiles`): "auto" picks the family by the service's
    #: model id (gpt-5* -> "gpt-5", o1/o3/o4* -> "o-series", else "standard").
    profile: ProfileName = "auto"
    #: Overrides of the profile: ``{ token_limit, refuses, accepts, reasoning_effort, verbosity,
    #: reasoning_tokens }``.
    parameters: ParameterOptions | None = None
    #: When a caller wants previews (``partial_images``, one image), ask the service for a
    #: streamed image (``stream`` with ``partial_images``) and pass each partial image on as a
    #: preview: for services that stream images (OpenAI's GPT image models, another Loom). Off:
    #: the service is asked for the final image only, and no previews are sent.
    stream_images: bool = False

    def __post_init__(self) -> None:
        for size in self.image_sizes or ():
            if not _SIZE.match(size):
                raise OptionsError(f"image_sizes: {size!r} is not a size like '1024x1024'")
        if self.image_sizes is not None and not self.image_sizes:
            raise OptionsError("image_sizes: name at least one size, or leave it out to send any size")

    def image_size(self, width: int, height: int) -> tuple[int, int]:
        """The size to ask the service for: as asked when allowed (or when any is), else the
        allowed size closest in aspect ratio, then in area."""
        if not self.image_sizes:
            return width, height
        allowed = [tuple(int(x) for x in s.split("x")) for s in self.image_sizes]
        if (width, height) in allowed:
            return width, height

        def distance(size: tuple[int, ...]) -> tuple[float, float]:
            w, h = size
            return (abs(math.log((w / h) / (width / height))), abs(math.log((w * h) / (width * height))))

        w, h = min(allowed, key=distance)
        return w, h
