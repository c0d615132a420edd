"""What the OpenAPI document says beyond each body's msgspec schema: the rules across fields that
a Struct cannot state (either-or fields, a field that needs another), and what the daemon holds
when it starts (which model ids can serve each body, whether a route names a default model).

:func:`apply` rewrites the built document's schemas in place; :func:`openapi.finish` calls it.
The document is built once, at start-up: a model added or removed while the daemon runs
(``POST /admin/models``, ``DELETE /admin/models/{id}``, Ollama's pull and delete) is in the
document after the next restart, and until then a request naming it is answered by what the
registry holds now (404 for a removed one).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import msgspec
from loom.sdk.types import Capability

C = Capability
#: The body whose ``model`` names a model with one of these capabilities.
MODEL_CAPABILITIES: dict[str, frozenset[Capability]] = {
    "ChatCompletionRequest": frozenset({C.CHAT}),
    "CreateResponseRequest": frozenset({C.CHAT}),
    "CreateMessageRequest": frozenset({C.CHAT}),
    "CountTokensRequest": frozenset({C.CHAT}),
    "CompletionRequest": frozenset({C.COMPLETION}),
    "EmbeddingRequest": frozenset({C.EMBEDDING}),
    "ImageGenerationRequest": frozenset({C.IMAGE}),
    "TranslationRequest": frozenset({C.TRANSLATION}),
    "DescribeRequest": frozenset({C.VISION}),
    "ScoreRequest": frozenset({C.VISION}),
    "OllamaChatRequest": frozenset({C.CHAT}),
    "OllamaGenerateRequest": frozenset({C.CHAT, C.COMPLETION}),
    "OllamaEmbedRequest": frozenset({C.EMBEDDING}),
    "OllamaEmbeddingsRequest": frozenset({C.EMBEDDING}),
}
#: Multipart routes (their form schema is the operation's own): path -> capability of ``model``,
#: and the route (``[routes]``) that serves a form naming none.
FORM_MODELS: dict[str, tuple[Capability, str]] = {
    "/v1/images/edits": (C.IMAGE, "image"),
    "/v1/images/variations": (C.IMAGE, "image"),
}


def present(*names: str) -> dict[str, Any]:
    """The fields are there and not null."""
    return {"required": list(names), "properties": {n: {"not": {"type": "null"}} for n in names}}


#: Rules across a body's fields, as JSON schema keywords added to the Struct's schema.
CROSS_FIELD: dict[str, dict[str, Any]] = {
    # daemon/api/rag.py: the query is a text or an image, never both.
    "RagSearchRequest": {"oneOf": [present("text"), present("image")]},
    # daemon/api/rag_items.py: an item is a text, an image or both.
    "RagItem": {"anyOf": [present("text"), present("image")]},
    # daemon/evaluations.py: both images, or the question whose images they are.
    "EvaluationRequest": {"anyOf": [present("a", "b"), present("question")]},
    # daemon/api/admin_providers.py: what is switched is a model or a capability.
    "SwitchRequest": {"oneOf": [present("model"), present("capability")]},
    # OpenAI: top_logprobs is the number of alternatives logprobs gives.
    "ChatCompletionRequest": {
        "if": present("top_logprobs"),
        "then": {"required": ["logprobs"], "properties": {"logprobs": {"const": True}}},
    },
}


#: Ollama's ``keep_alive`` as a string: what ``ollama.options.keep_alive`` reads (a signed number,
#: or Go duration parts); the route refuses others with its own message, so it is stated here.
DURATION = r"^\s*[+-]?((\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?|((\d+(\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h))+)\s*$"
KEEP_ALIVE = ("OllamaChatRequest", "OllamaGenerateRequest", "OllamaEmbedRequest", "OllamaEmbeddingsRequest")


@dataclass(frozen=True)
class Known:
    """What decides at start-up whether a well-formed request can be served."""

    #: Model ids and aliases per capability.
    models: dict[Capability, list[str]] = field(default_factory=dict)
    #: The ``[routes]`` roles that name a default model.
    routed: frozenset[str] = frozenset()

    @classmethod
    def of(cls, registry: Iterable[Any], routes: Any) -> Known:
        models: dict[Capability, list[str]] = {}
        for entry in registry:
            for capability in entry.capabilities:
                models.setdefault(capability, []).extend((entry.id, *entry.config.aliases))
        routed = frozenset(name for name in type(routes).__struct_fields__ if getattr(routes, name))
        return cls(models, routed)

    def names(self, capabilities: Iterable[Capability]) -> list[str]:
        return sorted({name for c in capabilities for name in self.models.get(c, ())})


def lone_tags(structs: Iterable[type]) -> dict[str, str]:
    """Struct name -> tag field of the tagged Structs reachable from ``structs`` that never share
    a union with another Struct: msgspec decodes those with their tag left out (only one type
    fits), so the document does not require it."""
    tagged: dict[str, str] = {}
    in_unions: set[str] = set()
    seen: set[int] = set()

    def walk(t: Any) -> None:
        if id(t) in seen:
            return
        seen.add(id(t))
        if isinstance(t, msgspec.inspect.StructType):
            if t.tag_field is not None:
                tagged[t.cls.__name__] = t.tag_field
            for f in t.fields:
                walk(f.type)
            return
        if isinstance(t, msgspec.inspect.UnionType):
            members = [m for m in t.types if isinstance(m, msgspec.inspect.StructType)]
            if len(members) > 1:
                in_unions.update(m.cls.__name__ for m in members)
        for name in ("types", "item_type", "key_type", "value_type"):
            inner = getattr(t, name, None)
            for x in inner if isinstance(inner, tuple) else (inner,) if inner is not None else ():
                walk(x)

    for info in msgspec.inspect.multi_type_info(list(structs)):
        walk(info)
    return {name: tag for name, tag in tagged.items() if name not in in_unions}


def _limit_model(prop: dict[str, Any], names: list[str]) -> dict[str, Any]:
    """``model``'s schema, its strings limited to ``names`` (a null stays allowed where it was)."""
    if not names:  # no model can serve it: any id is as good (each is refused by name)
        return prop
    limited = {"type": "string", "enum": names}
    if "anyOf" in prop:
        return {**prop, "anyOf": [limited if b.get("type") == "string" else b for b in prop["anyOf"]]}
    return {**{k: v for k, v in prop.items() if k not in ("type", "minLength", "pattern")}, **limited}


def apply(schemas: dict[str, Any], paths: dict[str, Any], known: Known, structs: Iterable[type] = ()) -> None:
    """Add the cross-field rules and the model ids to ``schemas`` (component name -> raw schema)
    and to the multipart operations in ``paths``; a lone tag of ``structs`` is not required."""
    for name, tag in lone_tags(structs).items():
        raw = schemas.get(name)
        if raw is not None and tag in raw.get("required", ()):
            raw["required"] = [r for r in raw["required"] if r != tag]
    for name, rule in CROSS_FIELD.items():
        if name in schemas:
            schemas[name].update(rule)
    for name in KEEP_ALIVE:
        for branch in schemas.get(name, {}).get("properties", {}).get("keep_alive", {}).get("anyOf", ()):
            if branch.get("type") == "string":
                branch["pattern"] = DURATION
    for name, capabilities in MODEL_CAPABILITIES.items():
        props = schemas.get(name, {}).get("properties", {})
        if "model" in props:
            props["model"] = _limit_model(props["model"], known.names(capabilities))
    for path, (capability, route) in FORM_MODELS.items():
        item = paths.get(path)
        op = getattr(item, "post", None)
        if op is None or op.request_body is None:
            continue
        raw = op.request_body.content["multipart/form-data"].schema.raw
        raw["properties"]["model"] = _limit_model(raw["properties"]["model"], known.names([capability]))
        if route not in known.routed and "model" not in raw.get("required", []):
            raw["required"] = [*raw.get("required", []), "model"]
