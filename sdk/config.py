"""Config types a plugin sees: a model entry and a secret reference.

The daemon's whole config (``loom.daemon.config``) embeds these; ``register_models`` takes them.
"""

from __future__ import annotations

import os
import re
from typing import Annotated, Literal

from msgspec import Meta, Struct, field

from .errors import ConfigError
from .types import Capability

#: The request headers that carry a client's own upstream key (``X-OpenAI-API-Key``): the daemon
#: passes those to providers in ``RunContext.credentials``; ``X-API-Key`` is the daemon's own key.
UPSTREAM_KEY_HEADER = re.compile(r"^x-[a-z0-9][a-z0-9-]*-api-key$", re.IGNORECASE)


class EnvSecret(Struct, forbid_unknown_fields=True, frozen=True):
    """A secret read from the environment: ``{ env = "OPENAI_API_KEY" }``. Never inline."""

    env: str

    def resolve(self, where: str = "") -> str:
        value = os.environ.get(self.env)
        if not value:
            at = f" (needed by {where})" if where else ""
            raise ConfigError(f"environment variable {self.env} is not set{at}")
        return value

    def get(self) -> str | None:
        return os.environ.get(self.env) or None


class RayResources(Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    """A model's ``ray`` table: what its Ray actor asks of the cluster, and which nodes may hold it.
    Used when the model runs on Ray (``executor = "ray"``), ignored otherwise."""

    #: CPUs Ray reserves for the actor. 0 (the default): Loom's memory ledger alone decides
    #: what a node holds; ask for CPUs when other Ray work shares the cluster.
    num_cpus: float = 0
    #: GPUs Ray reserves for the actor; fractions let models share one (0.5). Which GPU of the
    #: node a model uses is Loom's memory ledger's choice; this keeps Ray's own accounting right
    #: for other Ray work on the cluster. 0: Loom's ledger alone decides what fits.
    num_gpus: float = 0
    #: Custom resources the node must offer, e.g. ``{ big_memory = 1 }`` (``ray start --resources``).
    resources: dict[str, float] = field(default_factory=dict)
    #: Ray node labels the node must carry (``ray start --labels zone=a``).
    labels: dict[str, str] = field(default_factory=dict)
    #: The node that must hold the model, by its name in Loom: its ``loom-node`` label (``ray start
    #: --labels loom-node=gpu-a``), else its host name.
    node: str | None = None


class ModelConfig(Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    """One ``[[models]]`` entry: a public id served by a provider."""

    id: str
    provider: str
    aliases: list[str] = field(default_factory=list)
    #: Narrow what the provider declares (e.g. a chat model that should not embed); empty = all.
    capabilities: list[Capability] = field(default_factory=list)
    #: Decoded strictly against the provider's ``Options`` struct at start-up.
    options: dict = field(default_factory=dict)
    device: str = "auto"
    dtype: Literal["auto", "float32", "float16", "bfloat16"] = "auto"
    #: Unload after this long idle: "30s", "5m", "1h", 0 (right after use) or -1 (never).
    keep_alive: str | int = "5m"
    pin: bool = False
    #: Memory override for admission, e.g. "1.5GB"; otherwise the provider's estimate.
    vram: str | None = None
    #: Model ids to fall back to, in order, when this one cannot serve.
    fallbacks: list[str] = field(default_factory=list)
    #: Fall back once this many requests already wait for this model (None: only on failure).
    fallback_on_queue: int | None = None
    #: Requests run at once on this model (default: what the provider serves at once, e.g. a
    #: llamacpp model's ``parallel`` slots; else 1 for local models, 16 for remote ones).
    concurrency: int | None = None
    #: CPU threads the model's runtime computes with (torch's intra-op threads, llama.cpp's
    #: ``n_threads``); default: the machine's physical cores (:mod:`loom.sdk.threads`).
    threads: Annotated[int, Meta(ge=1)] | None = None
    #: Image models: images per work item (one pipeline call) when a request asks for several.
    #: An n-image request runs as items of at most this many, the first at its priority and the
    #: rest one level lower, so chat waits for at most one item. Default 1: one image each.
    max_batch: Annotated[int, Meta(ge=1)] | None = None
    #: Queued requests allowed before answering 429.
    max_queue: int | None = None
    #: Where the model runs: "subprocess" (a worker process per load), "inprocess" or "ray" (an
    #: actor on a Ray cluster, see ``ray``); default: the provider's preference, else
    #: ``[scheduler] executor``. Remote models always run in process.
    executor: Literal["inprocess", "subprocess", "ray"] | None = None
    #: On Ray: the actor's resources and the nodes that may hold it.
    ray: RayResources = field(default_factory=RayResources)
    #: A call that produces nothing (result, chunk or progress) for this long is hung: its worker
    #: is killed and the call fails with 504. Default: ``[scheduler] call_timeout``.
    call_timeout: str | int | None = None
    description: str = ""
