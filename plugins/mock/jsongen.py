"""JSON values for ``response_format``: a free-form object, or one that fits a JSON schema.

Covers the schema subset structured-output APIs use: type (or a list of types), properties and
required, items / prefixItems, enum, const, anyOf / oneOf / allOf, local ``$ref`` and the usual
bounds (minimum / maximum, minLength / maxLength, minItems / maxItems).
"""

from __future__ import annotations

import json
import math
import random
from typing import Any

from .text import VOCABULARY, snippet, words

_MAX_DEPTH = 12  # deeper than this only required fields and minItems are filled (recursive refs)


def free_object(question: str, r: random.Random) -> dict[str, Any]:
    """What ``json_object`` mode returns: a small object derived from the question and seed."""
    return {
        "reply": f"Mock reply to '{snippet(question)}'",
        "words": words(r, r.randint(3, 6)),
        "confidence": round(r.random(), 3),
    }


def dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def from_schema(schema: Any, r: random.Random) -> Any:
    return _value(schema, r, schema, 0)


def _resolve(ref: str, root: Any) -> Any:
    if not ref.startswith("#"):
        return {}  # remote refs are not fetched; any value will do
    node = root
    for part in ref.lstrip("#").strip("/").split("/"):
        if not part:
            continue
        part = part.replace("~1", "/").replace("~0", "~")
        node = node.get(part, {}) if isinstance(node, dict) else {}
    return node


def _type_of(schema: dict) -> str:
    t = schema.get("type")
    if isinstance(t, list):
        non_null = [x for x in t if x != "null"]
        return non_null[0] if non_null else "null"
    if isinstance(t, str):
        return t
    if "properties" in schema or "required" in schema:
        return "object"
    if "items" in schema or "prefixItems" in schema:
        return "array"
    return "string"


def _value(schema: Any, r: random.Random, root: Any, depth: int) -> Any:
    if not isinstance(schema, dict):  # `true` / `{}` accept anything
        return r.choice(VOCABULARY)
    if "$ref" in schema:
        return _value(_resolve(schema["$ref"], root), r, root, depth + 1)
    if "const" in schema:
        return schema["const"]
    if schema.get("enum"):
        return r.choice(schema["enum"])
    for key in ("anyOf", "oneOf"):
        if schema.get(key):
            return _value(r.choice(schema[key]), r, root, depth + 1)
    if schema.get("allOf"):
        merged: dict[str, Any] = {k: v for k, v in schema.items() if k != "allOf"}
        for part in schema["allOf"]:
            part = _resolve(part["$ref"], root) if "$ref" in part else part
            merged.setdefault("properties", {}).update(part.get("properties", {}))
            merged["required"] = [*merged.get("required", []), *part.get("required", [])]
            for k, v in part.items():
                merged.setdefault(k, v)
        return _value(merged, r, root, depth + 1)
    kind = _type_of(schema)
    if kind == "object":
        return _object(schema, r, root, depth)
    if kind == "array":
        return _array(schema, r, root, depth)
    if kind == "integer":
        lo, hi = _bounds(schema, 0, 100, step=1)
        lo, hi = math.ceil(lo), math.floor(hi)
        return r.randint(lo, hi) if lo <= hi else lo
    if kind == "number":
        lo, hi = _bounds(schema, 0.0, 100.0, step=1e-3)
        return min(max(round(r.uniform(lo, hi), 3), lo), hi) if lo < hi else lo
    if kind == "boolean":
        return r.random() < 0.5
    if kind == "null":
        return None
    return _string(schema, r)


def _bounds(schema: dict, lo: float, hi: float, *, step: float) -> tuple[float, float]:
    """The inclusive range to draw from; ``step`` moves off an exclusive bound."""
    has_lo = "minimum" in schema or "exclusiveMinimum" in schema
    has_hi = "maximum" in schema or "exclusiveMaximum" in schema
    if "minimum" in schema:
        lo = schema["minimum"]
    elif "exclusiveMinimum" in schema:
        lo = schema["exclusiveMinimum"] + step
    if "maximum" in schema:
        hi = schema["maximum"]
    elif "exclusiveMaximum" in schema:
        hi = schema["exclusiveMaximum"] - step
    if lo > hi and has_lo != has_hi:  # a single bound outside the default range
        lo, hi = (lo, lo + 100) if has_lo else (hi - 100, hi)
    return lo, hi


def _object(schema: dict, r: random.Random, root: Any, depth: int) -> dict[str, Any]:
    props: dict[str, Any] = schema.get("properties") or {}
    required = list(schema.get("required") or [])
    # Fill every declared property (structured outputs usually want them all); past the depth
    # limit only the required ones, so recursive schemas end.
    names = list(props) if depth < _MAX_DEPTH else []
    names += [n for n in required if n not in names]
    # An object schema that lists no properties at all gets one invented; one that declares an
    # empty ``properties`` (a function without arguments) stays empty.
    if not names and "properties" not in schema and schema.get("additionalProperties") is not False:
        return {"mock": r.choice(VOCABULARY)}
    return {name: _value(props.get(name, {}), r, root, depth + 1) for name in names}


def _array(schema: dict, r: random.Random, root: Any, depth: int) -> list[Any]:
    prefix = schema.get("prefixItems") or []
    lo = int(schema.get("minItems", 0))
    hi = int(schema.get("maxItems", max(lo, 3)))
    if depth >= _MAX_DEPTH:
        count = lo
    else:  # 1..3 items by default, never fewer than the prefix or minItems, never over maxItems
        count = min(hi, max(lo, len(prefix), r.randint(max(lo, 1), max(lo, 1, hi))))
    items = schema.get("items", {})
    return [_value(prefix[i] if i < len(prefix) else items, r, root, depth + 1) for i in range(count)]


def _string(schema: dict, r: random.Random) -> str:
    fmt = schema.get("format")
    if fmt == "date":
        return f"20{r.randint(10, 30)}-{r.randint(1, 12):02d}-{r.randint(1, 28):02d}"
    if fmt == "date-time":
        return f"20{r.randint(10, 30)}-{r.randint(1, 12):02d}-{r.randint(1, 28):02d}T12:00:00Z"
    if fmt == "email":
        return f"{r.choice(VOCABULARY)}@example.com"
    if fmt in ("uri", "url"):
        return f"https://example.com/{r.choice(VOCABULARY)}"
    if fmt == "uuid":
        return f"{r.getrandbits(32):08x}-{r.getrandbits(16):04x}-4{r.getrandbits(12):03x}-8{r.getrandbits(12):03x}-{r.getrandbits(48):012x}"
    lo = int(schema.get("minLength", 0))
    hi = int(schema.get("maxLength", max(lo, 40)))
    text = " ".join(words(r, r.randint(1, 4)))
    while len(text) < lo:
        text += " " + r.choice(VOCABULARY)
    return text[:hi]
