"""A pipeline's form, made from the JSON schema of its ``Params`` (what ``GET /v1/pipelines``
publishes), and the posted form turned back into the JSON body the API takes.

The form only shapes input; the pipeline's own Params decode it (the API's strict decoding), so
the page refuses exactly what ``POST /v1/pipelines/{name}`` refuses, with the same message.
A blank optional field is left out (its default applies); a nested object or list is typed as
JSON. Fields named ``model`` or ``*_model`` offer the configured models.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from loom.sdk.errors import InvalidRequest

#: ``<role>_model`` fields offer the models with that capability.
MODEL_ROLES = {"llm": "chat", "chat": "chat", "image": "image", "vision": "vision", "embedding": "embedding"}


@dataclass
class Field:
    name: str
    kind: str  # text | textarea | integer | number | boolean | choice | model | json
    required: bool
    default: Any = None
    description: str = ""
    minimum: float | None = None
    maximum: float | None = None
    step: str | None = None
    choices: list[str] = field(default_factory=list)
    nullable: bool = False
    #: What the input shows: the posted value after an error, else the default.
    value: str = ""

    @property
    def label(self) -> str:
        return self.name.replace("_", " ")


def _resolve(schema: dict, defs: dict) -> dict:
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/$defs/"):
        return defs.get(ref.rsplit("/", 1)[1], {})
    return schema


def _show(value: Any, kind: str) -> str:
    if value is None:
        return ""
    if kind == "json":
        return json.dumps(value)
    if kind == "boolean":
        return "true" if value else ""
    return str(value)


def fields_of(schema: dict, models: Mapping[str, list[str]]) -> list[Field]:
    """The form's fields from a ``msgspec.json.schema(Params)`` document; ``models`` maps a
    capability ("chat", "image", ...) and "" (any) to model ids."""
    defs = schema.get("$defs", {})
    root = _resolve(schema, defs)
    required = set(root.get("required", []))
    fields = []
    for name, prop in root.get("properties", {}).items():
        prop = _resolve(prop, defs)
        nullable = False
        if "anyOf" in prop:
            options = [_resolve(o, defs) for o in prop["anyOf"]]
            concrete = [o for o in options if o.get("type") != "null"]
            nullable = len(concrete) < len(options)
            inner = concrete[0] if len(concrete) == 1 else {"type": "object"}
            prop = {**inner, **{k: v for k, v in prop.items() if k != "anyOf"}}
        kind, choices, step = "json", [], None
        typ = prop.get("type")
        if "enum" in prop:
            kind, choices = "choice", [str(c) for c in prop["enum"]]
        elif typ == "boolean":
            kind = "boolean"
        elif typ == "integer":
            kind, step = "integer", str(prop.get("multipleOf", 1))
        elif typ == "number":
            kind, step = "number", "any"
        elif typ == "string":
            if name == "model" or name.endswith("_model"):
                kind = "model"
                choices = models.get(MODEL_ROLES.get(name.removesuffix("_model"), ""), models.get("", []))
            elif "prompt" in name or prop.get("maxLength", 0) > 200 or name in ("text", "story", "system"):
                kind = "textarea"
            else:
                kind = "text"
        default = prop.get("default")
        fields.append(
            Field(
                name=name,
                kind=kind,
                required=name in required,
                default=default,
                description=prop.get("description", ""),
                minimum=prop.get("minimum"),
                maximum=prop.get("maximum"),
                step=step,
                choices=choices,
                nullable=nullable,
                value=_show(default, kind),
            )
        )
    return fields


def params_from_form(fields: list[Field], form: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON object the form describes. Sets each field's ``value`` to what was posted, so a
    refused form is shown again as the person filled it."""
    out: dict[str, Any] = {}
    for f in fields:
        raw = form.get(f.name)
        raw = "" if raw is None else str(raw)
        f.value = raw
        if f.kind == "boolean":
            out[f.name] = raw.lower() in ("true", "on", "1", "yes")
            continue
        if raw.strip() == "":
            continue  # the default (or, for a required field, the Params' own error)
        if f.kind == "integer":
            try:
                out[f.name] = int(raw.strip())
            except ValueError:
                raise InvalidRequest(f"{f.name} must be a whole number, got {raw!r}", param=f.name) from None
        elif f.kind == "number":
            try:
                out[f.name] = float(raw.strip())
            except ValueError:
                raise InvalidRequest(f"{f.name} must be a number, got {raw!r}", param=f.name) from None
        elif f.kind == "json":
            try:
                out[f.name] = json.loads(raw)
            except ValueError as e:
                raise InvalidRequest(f"{f.name} must be JSON: {e}", param=f.name) from None
        else:
            out[f.name] = raw
    return out
