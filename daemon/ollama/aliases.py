"""``/api/copy`` and ``/api/delete``: Ollama's names are Loom's aliases.

Copying a model gives it one more name: an alias in its ``[[models]]`` entry of the config file
(edited in place, comments kept, and taken in at once, as ``loom models add`` does). Deleting an
alias removes that name only, as deleting a copied tag in Ollama leaves the model; deleting a
model's id removes the model (``DELETE /admin/models/{id}``).
"""

from __future__ import annotations

from loom.sdk.errors import InvalidRequest

from ..catalog.live import ModelCatalog
from .names import alias_for


def _model_table(doc, model_id: str, source: str):
    for m in doc.get("models") or []:
        if hasattr(m, "get") and m.get("id") == model_id:
            return m
    raise InvalidRequest(f"{source} has no [[models]] entry with id '{model_id}'")


def _declared(catalog: ModelCatalog, name: str):
    entry = catalog.registry.get(name)
    if entry.source != "config":
        raise InvalidRequest(
            f"model '{entry.id}' is registered by the plugin '{entry.source}', not the config, so its names "
            "cannot be changed here"
        )
    return entry


async def copy(catalog: ModelCatalog, source: str, destination: str) -> None:
    """Name the model ``source`` means ``destination`` too."""
    entry = _declared(catalog, source)
    alias = alias_for(destination)
    if not alias:
        raise InvalidRequest("destination is required", param="destination")
    if alias in catalog.registry:
        raise InvalidRequest(
            f"'{destination}' already names model '{catalog.registry.get(alias).id}'", param="destination"
        )

    def change(text: str, where: str) -> str:
        import tomlkit

        doc = tomlkit.parse(text)
        table = _model_table(doc, entry.id, where)
        names = list(table.get("aliases") or [])
        table["aliases"] = [*names, alias]
        return tomlkit.dumps(doc)

    await catalog.edit(change)


async def delete(catalog: ModelCatalog, name: str) -> None:
    """Remove ``name``: an alias leaves its model; a model's id removes the model."""
    entry = _declared(catalog, name)
    if name == entry.id:
        await catalog.remove(entry.id)
        return

    def change(text: str, where: str) -> str:
        import tomlkit

        doc = tomlkit.parse(text)
        table = _model_table(doc, entry.id, where)
        names = [n for n in table.get("aliases") or [] if n != name]
        if names:
            table["aliases"] = names
        else:
            del table["aliases"]
        return tomlkit.dumps(doc)

    await catalog.edit(change)
