"""Seed 004's runtime provider switching: its provider names, the Loom models behind them, and
the API-key rule its server applied at submit (an OpenAI provider active: the key is required)."""

from __future__ import annotations

from typing import Any

from loom.sdk.errors import LoomError
from loom.sdk.routes import RouteContext

from .options import SeedApiOptions

#: The seed's valid names per role (provider-routes.js).
VALID = {"llm": ["openai", "local-llm"], "image": ["openai", "flux"], "vision": ["openai", "local"]}
#: Loom's role for each of the seed's roles.
LOOM_ROLE = {"llm": "chat", "image": "image", "vision": "score"}
#: The seed's health entry per local provider, and the label its 503 used.
HEALTH_KEY = {"llm": "localLLM", "image": "flux", "vision": "localVision"}
LABEL = {
    ("llm", "local-llm"): "Local LLM service",
    ("image", "flux"): "Flux service",
    ("vision", "local"): "Local vision service",
    ("llm", "openai"): "OpenAI LLM",
    ("image", "openai"): "OpenAI image model",
    ("vision", "openai"): "OpenAI vision model",
}
INVALID = {"llm": "Invalid LLM provider", "image": "Invalid image provider", "vision": "Invalid vision provider"}


class Providers:
    """The active provider per role (memory only, as the seed's ``runtimeProviders``)."""

    def __init__(self, loom: RouteContext, options: SeedApiOptions) -> None:
        self.loom = loom
        m = options.seed004
        self.configured: dict[tuple[str, str], str | None] = {
            ("llm", "openai"): m.openai_llm,
            ("image", "openai"): m.openai_image,
            ("vision", "openai"): m.openai_vision,
            ("llm", "local-llm"): m.local_llm,
            ("image", "flux"): m.flux,
            ("vision", "local"): m.local_vision,
        }
        self.active = {role: options.seed004_active.get(role, VALID[role][1]) for role in VALID}
        for role, name in self.active.items():
            if name not in VALID[role]:
                raise ValueError(f"seed004_active.{role} must be one of {', '.join(VALID[role])}, got {name!r}")

    def model(self, role: str, name: str | None = None) -> str | None:
        """The Loom model behind ``name`` (the active one by default); None if there is none."""
        name = name or self.active[role]
        configured = self.configured[(role, name)]
        try:
            if configured is not None:
                return self.loom.model_for(LOOM_ROLE[role], configured)
            if name == "openai":
                return None
            return self.loom.model_for(LOOM_ROLE[role])
        except LoomError:
            return None

    def needs_openai(self) -> bool:
        return "openai" in self.active.values()

    def health(self, role: str, name: str) -> dict[str, Any]:
        model = self.model(role, name)
        if model is None:
            return {"available": False, "status": "unavailable", "error": f"no Loom model serves {name!r}"}
        return {"available": True, "status": "healthy", "model": model}

    def status(self) -> dict[str, Any]:
        health = {HEALTH_KEY[role]: self.health(role, VALID[role][1]) for role in VALID}
        health["vlm"] = self.health("vision", "local")
        return {
            "active": dict(self.active),
            "available": {role: list(names) for role, names in VALID.items()},
            "health": health,
            "environment": {"isLocal": True, "nodeEnv": None},
            "config": {
                "localLLM": {"model": self.model("llm", "local-llm")},
                "flux": {"apiUrl": None, "model": self.model("image", "flux")},
                "localVision": {"apiUrl": None},
            },
        }

    def switch(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """``POST /api/providers/switch``: the seed's status and body."""
        for role in VALID:
            value = body.get(role)
            if value and value not in VALID[role]:
                return 400, {"error": INVALID[role], "valid": VALID[role]}
        for role in VALID:
            value = body.get(role)
            if value and self.model(role, value) is None:
                label = LABEL[(role, value)]
                return 503, {
                    "error": f"{label} not available",
                    "message": f"Configure a Loom model for {value!r} ([plugins.seed_api.seed004]) before switching",
                }
        for role in VALID:
            if body.get(role):
                self.active[role] = body[role]
        return 200, {"success": True, "active": dict(self.active), "message": "Providers updated successfully"}
