"""``[plugins.seed_api]``: which seeds are served, and where seed 004's models come from."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from msgspec import Meta, Struct, field

Seed = Literal["000", "001", "002", "003", "004"]
Prefix = Annotated[str, Meta(pattern=r"^(/[A-Za-z0-9._-]+)*$")]


class Seed004Models(Struct, forbid_unknown_fields=True, kw_only=True):
    """Loom models behind each of seed 004's provider names (its ``/api/providers/switch``
    values). None: the local names use Loom's ``[routes]``; ``openai`` is then unavailable."""

    openai_llm: str | None = None
    openai_image: str | None = None
    openai_vision: str | None = None
    local_llm: str | None = None
    flux: str | None = None
    local_vision: str | None = None


class SeedApiOptions(Struct, forbid_unknown_fields=True, kw_only=True):
    #: The seeds whose APIs are served (all five by default).
    seeds: list[Seed] = field(default_factory=lambda: ["000", "001", "002", "003", "004"])
    #: Seed 004's local Flux service (``POST {prefix}/generate``, ``GET {prefix}/health``): point
    #: the orchestrator's Flux URL here. "" serves the bare ``/generate`` (not with seed 002,
    #: whose ``/generate/`` is the same path).
    flux_prefix: Prefix = "/flux"
    #: Seed 004's local vision service (``POST {prefix}/evaluate``, ``{prefix}/analyze``).
    vision_prefix: Prefix = "/vision"
    seed004: Seed004Models = field(default_factory=Seed004Models)
    #: Seed 004's providers at start-up: llm, image, vision.
    seed004_active: dict[Literal["llm", "image", "vision"], str] = field(
        default_factory=lambda: {"llm": "local-llm", "image": "flux", "vision": "local"}
    )
    #: Seed 003: how long a persona image URL stays valid (the seed's S3 URLs: 60 s).
    persona_url_seconds: Annotated[float, Meta(gt=0, le=86400)] = 60.0
    #: A seed's own front end (static files: seed 004's ``public/``, seed 000's pages) served by
    #: Loom from the same origin as its API, as its relative URLs need: URL prefix -> folder,
    #: e.g. ``{"/demo" = "/src/image-gen-pipe-v2/public"}`` serves ``/demo/demo.html``.
    static: dict[Annotated[str, Meta(pattern=r"^(/[A-Za-z0-9._-]+)+$")], str] = field(default_factory=dict)
    #: Seconds the synchronous routes (seed 000's GPT-2 and translator, seed 003) wait for their job.
    wait_seconds: Annotated[float, Meta(gt=0, le=3600)] = 300.0

    def __post_init__(self) -> None:
        if "002" in self.seeds and "004" in self.seeds and self.flux_prefix == "":
            raise ValueError(
                "flux_prefix = '' serves seed 004's /generate, which is seed 002's /generate/: set a prefix"
            )
        for prefix, folder in self.static.items():
            if not Path(folder).is_dir():
                raise ValueError(f"static {prefix!r}: {folder!r} is not a folder")
        if "004" in self.seeds and self.flux_prefix == self.vision_prefix:
            raise ValueError("flux_prefix and vision_prefix must differ")
