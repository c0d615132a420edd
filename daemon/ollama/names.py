"""Model names as Ollama users write them (``name:tag``) and Loom's ids and aliases.

A name Loom knows as it is (an id or an alias, tag and all) is that model. Otherwise a name
tagged ``:latest`` is the untagged name (Ollama's default tag), so ``smollm2-135m:latest`` is
``smollm2-135m``. Lists show each of a model's names, untagged ones with ``:latest`` added, as
Ollama lists its models.
"""

from __future__ import annotations

from loom.sdk.errors import InvalidRequest, ModelNotFound

from ..models import ModelEntry, ModelRegistry

LATEST = ":latest"


def loom_name(registry: ModelRegistry, name: str) -> str:
    """The id or alias of ``registry`` that ``name`` means; ModelNotFound (404) in Ollama's words."""
    if not name:
        raise InvalidRequest("model is required", param="model")
    if name in registry:
        return name
    if name.endswith(LATEST) and name[: -len(LATEST)] in registry:
        return name[: -len(LATEST)]
    raise ModelNotFound(f"model '{name}' not found", param="model")


def entry_for(registry: ModelRegistry, name: str) -> ModelEntry:
    return registry.get(loom_name(registry, name))


def shown(name: str) -> str:
    """A Loom name as Ollama lists it: tagged ``:latest`` unless it has a tag."""
    last = name.rsplit("/", 1)[-1]
    return name if ":" in last else name + LATEST


def names_of(entry: ModelEntry) -> list[str]:
    """Every name of ``entry`` as listed: its id, then its aliases."""
    return [shown(n) for n in (entry.id, *entry.config.aliases)]


def alias_for(name: str) -> str:
    """The alias a new Ollama name is stored as (``:latest`` left off, as it is implied)."""
    return name[: -len(LATEST)] if name.endswith(LATEST) else name
